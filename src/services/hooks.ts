/**
 * kube-proxy's decisions as data-plane hooks (src/dataplane/hooks.ts): which endpoint a new connection
 * to a service goes to (PRE_ROUTING, `ServicesHook`) and the masquerade of pod traffic leaving the
 * cluster (POST_ROUTING, `MasqueradeHook`). They only decide, in the packet context; the router applies
 * the decision as one conntrack entry. Per new connection, nothing is allocated.
 */
import { HookPoint, HookVerdict, Ingress, MARK_UPLINK, type ConnectionHook, type PacketContext } from '../dataplane/hooks.js';
import { DropReason } from '../util/counters.js';
import { ServiceTable } from '../dataplane/services.js';
import type { Router } from '../dataplane/router.js';
import { IcmpUnreachCode, IpProtocol, TcpFlags } from '../packet/index.js';

/** Ports for SNAT: masquerade to the node uses a range the host's own sockets never use. */
export const MASQUERADE_PORT_MIN = 61001;
export const MASQUERADE_PORT_MAX = 65535;

/** Source ports of connections SNATed to the gateway (hairpin, NodePort with policy Cluster). */
const GATEWAY_SNAT_MIN = 1024;
const GATEWAY_SNAT_MAX = 65535;

export interface KubeProxyConfig {
  /** The node's gateway (source of hairpin and NodePort-Cluster connections). */
  gatewayIp: number;
  podCidrNetwork: number;
  podCidrMask: number;
  serviceNetwork?: number;
  serviceMask?: number;
}

/**
 * Services (cluster, external and LoadBalancer IPs; node ports from the uplink): picks the endpoint
 * and asks for DNAT (and SNAT to the gateway where replies must come back through this node). A
 * service address on a port no service has, or a service without endpoints, is rejected with ICMP
 * port unreachable; anything else from the uplink that is no service is not for us.
 */
export class ServicesHook implements ConnectionHook {
  readonly name = 'services';
  /** VIPs and node ports are never pod addresses. */
  readonly podToPod = false;
  /** Swapped in whole by the service controller. */
  table = new ServiceTable();
  /** The node's underlay address as int32 (node ports); 0 = none yet. */
  nodeIp32 = 0;
  private readonly gw32: number;
  private readonly svcNet32: number;
  private readonly svcMask32: number;

  constructor(cfg: KubeProxyConfig) {
    this.gw32 = cfg.gatewayIp | 0;
    this.svcNet32 = (cfg.serviceNetwork ?? 0) | 0;
    this.svcMask32 = (cfg.serviceMask ?? 0xffffffff) | 0;
  }

  newConnection(ctx: PacketContext): HookVerdict {
    const svc = this.table;
    const proto = ctx.proto;
    const dst = ctx.dst;
    const fromOutside = ctx.ingress === Ingress.Uplink;
    if (proto === IpProtocol.TCP || proto === IpProtocol.UDP) {
      let slot = svc.lookupVip(dst, proto, ctx.dport);
      if (slot < 0 && fromOutside && dst === this.nodeIp32) slot = svc.lookupNodePort(proto, ctx.dport);
      if (slot >= 0) {
        const localOnly = fromOutside && svc.policyLocal(slot);
        const ep = svc.pick(slot, ctx.src, ctx.now, localOnly);
        if (ep === 0) return reject(ctx, DropReason.ServiceNoEndpoints);
        ctx.dnatIp = ep;
        ctx.dnatPort = svc.targetPort(slot);
        // NodePort/LB with policy Cluster: masquerade to our gateway so replies come back here.
        // Hairpin: a pod reaching itself through its service sees the gateway as the client.
        if ((fromOutside && !localOnly) || ep === ctx.src) {
          ctx.snatIp = this.gw32;
          ctx.snatPortMin = GATEWAY_SNAT_MIN;
          ctx.snatPortMax = GATEWAY_SNAT_MAX;
        }
        if (fromOutside) ctx.mark |= MARK_UPLINK;
        return HookVerdict.Continue;
      }
    }
    if (svc.isVip(dst) || ((dst & this.svcMask32) === this.svcNet32 && !fromOutside)) return reject(ctx, DropReason.ServiceNoPort);
    if (fromOutside) {
      ctx.dropReason = DropReason.UplinkNotForUs;
      return HookVerdict.Drop;
    }
    return HookVerdict.Continue;
  }
}

function reject(ctx: PacketContext, reason: DropReason): HookVerdict {
  ctx.dropReason = reason;
  ctx.rejectCode = IcmpUnreachCode.Port;
  return HookVerdict.Reject;
}

/**
 * Masquerade: pod traffic to anything outside the pod and service CIDRs and not this node leaves
 * through the uplink with the node's address (SNAT to `MASQUERADE_PORT_MIN..MAX`).
 */
export class MasqueradeHook implements ConnectionHook {
  readonly name = 'masquerade';
  /** Only traffic to outside addresses. */
  readonly podToPod = false;
  /** Whether the node has an uplink to send masqueraded traffic out of. */
  enabled = false;
  /** The node's underlay address as int32 (the masquerade source); 0 = none yet. */
  nodeIp32 = 0;
  private readonly podNet32: number;
  private readonly podMask32: number;

  constructor(cfg: KubeProxyConfig) {
    this.podNet32 = cfg.podCidrNetwork | 0;
    this.podMask32 = cfg.podCidrMask | 0;
  }

  newConnection(ctx: PacketContext): HookVerdict {
    if (!this.enabled || this.nodeIp32 === 0 || ctx.dnatIp !== 0 || ctx.snatIp !== 0 || ctx.ingress === Ingress.Host || ctx.ingress >= Ingress.Uplink) return HookVerdict.Continue;
    const proto = ctx.proto;
    const dst = ctx.dst;
    if (
      (ctx.src & this.podMask32) === this.podNet32 &&
      (dst & this.podMask32) !== this.podNet32 &&
      dst !== this.nodeIp32 &&
      (proto === IpProtocol.TCP || proto === IpProtocol.UDP || proto === IpProtocol.ICMP) &&
      // Only a TCP SYN opens a connection to masquerade. Any other segment conntrack does not know
      // belongs to a connection the host kernel NATed (a CNI portmap hostPort: DNATed to the pod on
      // the host, so its replies must go back through the host, whose conntrack reverses it).
      (proto !== IpProtocol.TCP || (ctx.tcpFlags & (TcpFlags.SYN | TcpFlags.ACK)) === TcpFlags.SYN)
    ) {
      ctx.snatIp = this.nodeIp32;
      ctx.snatPortMin = MASQUERADE_PORT_MIN;
      ctx.snatPortMax = MASQUERADE_PORT_MAX;
      ctx.mark |= MARK_UPLINK;
    }
    return HookVerdict.Continue;
  }
}

/** Both kube-proxy hooks of one node, registered on its router. */
export class KubeProxy {
  readonly services: ServicesHook;
  readonly masquerade: MasqueradeHook;

  constructor(router: Router) {
    const cfg = router.cfg;
    this.services = new ServicesHook(cfg);
    this.masquerade = new MasqueradeHook(cfg);
    router.hooks.register(HookPoint.PreRouting, this.services);
    router.hooks.register(HookPoint.PostRouting, this.masquerade);
  }

  /** The node's underlay address (node ports, masquerade source); 0 = none. */
  set nodeIp(ip: number) {
    this.services.nodeIp32 = ip | 0;
    this.masquerade.nodeIp32 = ip | 0;
  }
  get nodeIp(): number {
    return this.services.nodeIp32 >>> 0;
  }
}
