/**
 * One node's data plane assembled from the daemon's own modules, without devices: the real `Dataplane`,
 * `Switch`, `Router` (with connection tracking and NAT), `TapPort`s and `VxlanOverlay`, with counting
 * sinks at the device boundary. The wiring follows `src/daemon/node.ts` (router port on the switch, pod
 * ports restricted to the MAC and IP the pod was given, pod MACs in the neighbour table, a `Conntrack` of
 * the default size with `Nat` in the router, the switch's bridge hook through conntrack, a conntrack GC
 * slice after each batch) and `src/daemon/cluster.ts` (overlay, node address).
 */
import { Dataplane, type IngressPort } from '../../src/dataplane/dataplane.js';
import type { FrameSink } from '../../src/dataplane/port.js';
import { TapPort } from '../../src/dataplane/ports.js';
import { Router, type UplinkSender } from '../../src/dataplane/router.js';
import { ServiceTable, type ServiceTableSpec } from '../../src/dataplane/services.js';
import { VxlanOverlay, type UdpTransport } from '../../src/dataplane/vxlan.js';
import { Conntrack } from '../../src/nat/conntrack.js';
import { Nat } from '../../src/nat/nat.js';
import { KubeProxy } from '../../src/services/hooks.js';
import { VXLAN_PORT_LINUX, parseIpv4 } from '../../src/packet/index.js';

/** The device boundary: counts frames and bytes handed to a device write, never copies or keeps them. */
export class CountingSink implements FrameSink {
  frames = 0;
  bytes = 0;
  /** Set only while verifying (outside timed runs): sees each frame before it is counted. */
  inspect: ((buf: Buffer, off: number, len: number) => void) | undefined = undefined;

  writeBatch(bufs: Buffer[], offs: Uint32Array, lens: Uint32Array, count: number): number {
    const inspect = this.inspect;
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      if (inspect !== undefined) inspect(bufs[i]!, offs[i]!, lens[i]!);
      bytes += lens[i]!;
    }
    this.frames += count;
    this.bytes += bytes;
    return count;
  }
}

/** The VXLAN socket's stand-in: counts datagrams and bytes, never copies them (the real one does). */
export class CountingTransport implements UdpTransport {
  datagrams = 0;
  bytes = 0;
  inspect: ((buf: Buffer, off: number, len: number, dstIp: number, dstPort: number, srcPort: number) => void) | undefined = undefined;

  send(buf: Buffer, off: number, len: number, dstIp: number, dstPort: number, srcPort: number): boolean {
    if (this.inspect !== undefined) this.inspect(buf, off, len, dstIp, dstPort, srcPort);
    this.datagrams++;
    this.bytes += len;
    return true;
  }
}

/** The uplink's raw IP socket stand-in (masquerade, node ports): counts packets, never copies them. */
export class CountingUplink implements UplinkSender {
  packets = 0;
  bytes = 0;
  inspect: ((buf: Buffer, ipOff: number, ipLen: number) => void) | undefined = undefined;

  send(buf: Buffer, ipOff: number, ipLen: number): boolean {
    if (this.inspect !== undefined) this.inspect(buf, ipOff, ipLen);
    this.packets++;
    this.bytes += ipLen;
    return true;
  }
}

/** A MAC as the data path holds it. */
export interface Mac {
  hi: number;
  lo: number;
}

/** podnet's pod MAC: 0a:58 + the pod's IPv4 address (as `src/daemon/pods.ts` assigns it). */
export function podMac(ip: number): Mac {
  return { hi: 0x0a58, lo: ip >>> 0 };
}
/** The gateway's MAC: 0a:59 + the gateway address (as `src/daemon/node.ts` derives it). */
export function gatewayMac(ip: number): Mac {
  return { hi: 0x0a59, lo: ip >>> 0 };
}

export interface BenchPod {
  name: string;
  ip: number;
  mac: Mac;
  port: TapPort;
  sink: CountingSink;
}

export interface BenchPeer {
  subnetNetwork: number;
  underlayIp: number;
  vtepMac: Mac;
}

/** Addresses of the benchmark cluster: this node owns 10.244.1.0/24 of 10.244.0.0/16. */
export const NET = {
  podCidr: parseIpv4('10.244.0.0'),
  podCidrMask: 0xffff0000,
  subnet: parseIpv4('10.244.1.0'),
  subnetMask: 0xffffff00,
  hostIp: parseIpv4('10.244.1.0'),
  gatewayIp: parseIpv4('10.244.1.1'),
  underlayIp: parseIpv4('192.168.50.11'),
  vtepMac: { hi: 0x0e00, lo: 0x0a0b0c01 } as Mac,
  vni: 1,
  vxlanPort: VXLAN_PORT_LINUX,
  /** flannel's default: underlay MTU 1500 - 50. */
  innerMtu: 1450,
  /** The daemon's default service CIDR, 10.96.0.0/12. */
  serviceNetwork: parseIpv4('10.96.0.0'),
  serviceMask: 0xfff00000,
  /** The daemon's default `conntrackMax`. */
  conntrackMax: 131072,
} as const;

export interface NodeOptions {
  /** TAP pods 10.244.1.2, .3, ... (default 4). */
  pods?: number;
  /** Other nodes 10.244.2.0/24 at 192.168.50.12, 10.244.3.0/24 at .13, ... (default 4). */
  peers?: number;
  /** Conntrack size (default the daemon's, 131072). */
  conntrackMax?: number;
  /** Services, as the service controller installs them (default none). */
  services?: ServiceTableSpec;
  /** Give the router an uplink (masquerade, node ports); the daemon has none yet (default false). */
  uplink?: boolean;
}

export interface BenchNode {
  dp: Dataplane;
  router: Router;
  conntrack: Conntrack;
  nat: Nat;
  uplink: CountingUplink;
  pods: BenchPod[];
  overlay: VxlanOverlay;
  transport: CountingTransport;
  peers: BenchPeer[];
  /** Feeds VXLAN payloads from `peers[0]` into the overlay, as the daemon's UDP socket callback does. */
  vxlanIngress: IngressPort;
  /** Every drop counter of the node that is not zero, by place and reason (empty when nothing dropped). */
  drops(): Record<string, number>;
}

/** Builds a node as the daemon does (see the module comment and `NodeOptions`). */
export function buildNode(opts: NodeOptions = {}): BenchNode {
  const podCount = opts.pods ?? 4;
  const peerCount = opts.peers ?? 4;
  const dp = new Dataplane();
  const gwMac = gatewayMac(NET.gatewayIp);
  const router = new Router(dp, {
    gatewayIp: NET.gatewayIp,
    gatewayMacHi: gwMac.hi,
    gatewayMacLo: gwMac.lo,
    hostIp: NET.hostIp,
    subnetNetwork: NET.subnet,
    subnetMask: NET.subnetMask,
    podCidrNetwork: NET.podCidr,
    podCidrMask: NET.podCidrMask,
    serviceNetwork: NET.serviceNetwork,
    serviceMask: NET.serviceMask,
  });
  dp.switch.attach(router.port);
  // As src/daemon/node.ts: conntrack + NAT in the router, GC slice per batch, bridge hook.
  const conntrack = new Conntrack({ max: opts.conntrackMax ?? NET.conntrackMax });
  const nat = new Nat(conntrack, { drops: router.drops });
  router.nat = nat;
  dp.afterBatch = () => void conntrack.gc(dp.now, 64);
  dp.switch.bridgeHook = (buf, ipOff, ipLen) => router.bridgeIp(buf, ipOff, ipLen);
  // As src/daemon/node.ts, src/daemon/cluster.ts and the service controller.
  const kubeProxy = new KubeProxy(router);
  kubeProxy.nodeIp = NET.underlayIp;
  if (opts.services !== undefined) kubeProxy.services.table = new ServiceTable(opts.services);
  const uplink = new CountingUplink();
  if (opts.uplink === true) {
    router.uplink = uplink;
    kubeProxy.masquerade.enabled = true;
  }

  const pods: BenchPod[] = [];
  for (let i = 0; i < podCount; i++) {
    const ip = (NET.subnet + 2 + i) >>> 0;
    const mac = podMac(ip);
    const sink = new CountingSink();
    const port = new TapPort(`pod${i}`, dp, sink, { macHi: mac.hi, macLo: mac.lo, ip });
    dp.neighbors.set(ip, mac.hi, mac.lo);
    dp.switch.attach(port);
    pods.push({ name: `pod${i}`, ip, mac, port, sink });
  }

  const transport = new CountingTransport();
  const overlay = new VxlanOverlay(
    {
      vni: NET.vni,
      port: NET.vxlanPort,
      localVtepMacHi: NET.vtepMac.hi,
      localVtepMacLo: NET.vtepMac.lo,
      innerMtu: NET.innerMtu,
      subnetMask: NET.subnetMask,
    },
    transport,
    router,
  );
  router.overlay = overlay;
  const peers: BenchPeer[] = [];
  for (let i = 0; i < peerCount; i++) {
    const peer: BenchPeer = {
      subnetNetwork: (NET.subnet + ((i + 1) << 8)) >>> 0,
      underlayIp: (NET.underlayIp + 1 + i) >>> 0,
      vtepMac: { hi: 0x0e00, lo: (0x0a0b0c02 + i) >>> 0 },
    };
    overlay.setPeer({ subnetNetwork: peer.subnetNetwork, underlayIp: peer.underlayIp, vtepMacHi: peer.vtepMac.hi, vtepMacLo: peer.vtepMac.lo });
    peers.push(peer);
  }
  const fromIp = peers.length > 0 ? peers[0]!.underlayIp : 0;
  const vxlanIngress: IngressPort = {
    receive(buf: Buffer, off: number, len: number): void {
      overlay.receive(buf, off, len, fromIp);
    },
  };

  const drops = (): Record<string, number> => {
    const out: Record<string, number> = {};
    const add = (where: string, counts: Record<string, number>) => {
      for (const [k, v] of Object.entries(counts)) out[`${where}.${k}`] = v;
    };
    for (const p of pods) {
      add(p.name, p.port.drops.toJSON());
      if (p.port.tx.failed > 0) out[`${p.name}.tx_failed`] = p.port.tx.failed;
    }
    add('router', router.drops.toJSON());
    add('vxlan', overlay.drops.toJSON());
    if (dp.injectOverflow > 0) out['dataplane.inject_overflow'] = dp.injectOverflow;
    if (dp.switch.macTableFull > 0) out['switch.mac_table_full'] = dp.switch.macTableFull;
    if (router.icmpSent > 0) out['router.icmp_sent'] = router.icmpSent;
    // Not drops, but on these paths they mean a frame was flooded (unknown destination MAC).
    if (router.ignored > 0) out['router.ignored_flood_copies'] = router.ignored;
    return out;
  };

  return { dp, router, conntrack, nat, uplink, pods, overlay, transport, peers, vxlanIngress, drops };
}
