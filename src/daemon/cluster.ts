import type { Logger } from 'pino';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { openStore } from '../store/index.js';
import { ClusterRegistry, type NodeRecord, type PodRecord } from '../store/registry.js';
import type { ClusterStore, Lease, Watch } from '../store/types.js';
import { DgramTransport, NativeUdpTransport } from '../io/udp.js';
import { ServiceController } from '../services/controller.js';
import { PolicyController } from '../policy/controller.js';
import { IngressController } from '../ingress/controller.js';
import { Uplink } from '../uplink/uplink.js';
import type { Router } from '../dataplane/router.js';
import { MASQUERADE_PORT_MAX, MASQUERADE_PORT_MIN, type MasqueradeHook } from '../services/hooks.js';
import { VxlanOverlay } from '../dataplane/vxlan.js';
import type { FrameTap } from '../dataplane/tap.js';
import type { Dataplane, IngressPort } from '../dataplane/dataplane.js';
import { parseMac, VXLAN_OVERHEAD } from '../packet/index.js';
import { parseSubnet } from '../store/subnet.js';
import { ipv4ToString, parseIpv4 } from '../packet/addr.js';
import type { Config } from './config.js';
import type { Underlay } from './underlay.js';
import type { NodeRuntime, PodInfo } from './node.js';
import { StoreHealth } from './storehealth.js';

/**
 * Receive slot of the VXLAN socket: the largest UDP payload (64 KB, a GRO run or a kernel peer's
 * super-frame), the ring's headroom, and room to split a super-frame joined from a run again in
 * place (each segment then gets its own headers and headroom), as a TAP's offload slots have.
 */
const VXLAN_RX_SLOT_SIZE = 80 * 1024;

/**
 * UDP GSO send sockets of the VXLAN transport: their ephemeral ports are the outer source ports
 * flows are hashed to (RFC 7348's entropy), so enough of them that flows rarely share one.
 */
const VXLAN_GSO_SOCKETS = 64;

/** The VTEP MAC of a node: locally administered 0a:5a + its underlay IPv4 (random when it has none). */
export function vtepMacFor(underlayIp: string | undefined): string {
  const bytes = underlayIp ? underlayIp.split('.').map(Number) : [...randomBytes(4)];
  return [0x0a, 0x5a, ...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/**
 * This node's membership in the cluster: registers the node (and so gets its pod subnet) in the store
 * under a lease, publishes its pods, and follows the other nodes.
 */
export class ClusterMembership {
  private transport: DgramTransport | NativeUdpTransport | undefined;
  /** The VXLAN overlay, once attached with an underlay address. */
  overlay: VxlanOverlay | undefined;
  private nodeWatch: Watch | undefined;
  services: ServiceController | undefined;
  policy: PolicyController | undefined;
  ingress: IngressController | undefined;
  private dp: Dataplane | undefined;
  private router: Router | undefined;
  private masquerade: MasqueradeHook | undefined;
  private uplink: Uplink | undefined;
  /** Where uplink packets enter the data plane (a capture sets its `rxTap`). */
  uplinkIngress: { rxTap: FrameTap | undefined; receive(buf: Buffer, off: number, len: number): void } | undefined;

  private constructor(
    private readonly cfg: Config,
    private readonly underlay: Underlay,
    readonly store: ClusterStore,
    readonly registry: ClusterRegistry,
    readonly self: NodeRecord,
    private lease: Lease,
    private readonly log: Logger,
  ) {
    this.health = new StoreHealth(() => this.store.get(`${this.registry.root}/nodes/${this.self.name}`), log, {
      onReachable: () => this.reregisterIfLost(),
    });
    this.watchLease(lease);
    this.health.start();
  }

  /** Whether the store answers (and since when not); drives re-registration after a lost lease. */
  readonly health: StoreHealth;
  /** The lease was lost (an outage longer than the client keeps a lease for): register again. */
  private leaseLost = false;
  private reregistrations = 0;
  private pods: () => PodInfo[] = () => [];

  private watchLease(lease: Lease): void {
    lease.on('lost', (err) => {
      if (lease !== this.lease) return;
      this.log.error({ err: err.message }, 'cluster lease lost: registering again (same subnet) once the store answers');
      this.leaseLost = true;
      this.health.failed(err);
    });
  }

  /**
   * After a lost lease: registers the node again. The registry gives back the subnet this node holds
   * (its claim moves onto the new lease), and the pods are published again under the new lease. The
   * data plane is not touched: its peers, routes and services never went away meanwhile.
   */
  private async reregisterIfLost(): Promise<void> {
    if (!this.leaseLost) return;
    const { subnet, lease } = await this.registry.registerNode(
      { name: this.self.name, underlayIp: this.self.underlayIp, vtepMac: this.self.vtepMac, rco: this.self.rco },
      { podCidr: this.cfg.podCidr, subnetPrefix: this.cfg.subnetPrefix, leaseTtlSeconds: this.cfg.leaseTtl },
    );
    if (subnet !== this.self.subnet) {
      // Another node took our subnet while we could not renew: our pods' addresses are no longer ours.
      this.log.error({ subnet: this.self.subnet, got: subnet }, 'subnet lost during the store outage: this node needs a reset');
    }
    this.lease = lease;
    this.watchLease(lease);
    this.reregistrations++;
    // Only once the pods are published under the new lease is the registration whole again; if that
    // fails, the next probe registers (and publishes) once more.
    await this.republish(this.pods());
    this.leaseLost = false;
    this.log.info({ subnet, lease: lease.id }, 'registered again after losing the lease');
  }

  get subnet(): string {
    return this.self.subnet;
  }

  static async join(cfg: Config, underlay: Underlay, log: Logger): Promise<ClusterMembership> {
    const store = await openStore(cfg.store ?? { kind: 'embedded', path: join(cfg.stateDir, 'cluster.db') }, log);
    try {
      const registry = new ClusterRegistry(store, { log });
      const vtepMac = vtepMacFor(underlay.ip);
      const rco = cfg.vxlan.remoteChecksumOffload;
      const { subnet, lease } = await registry.registerNode(
        { name: cfg.node, underlayIp: underlay.ip ?? '0.0.0.0', vtepMac, rco },
        { podCidr: cfg.podCidr, subnetPrefix: cfg.subnetPrefix, leaseTtlSeconds: cfg.leaseTtl },
      );
      const self: NodeRecord = { name: cfg.node, underlayIp: underlay.ip ?? '0.0.0.0', vtepMac, subnet, rco };
      log.info({ subnet, vtepMac }, 'joined cluster');
      return new ClusterMembership(cfg, underlay, store, registry, self, lease, log);
    } catch (err) {
      await store.close();
      throw err;
    }
  }

  /**
   * Publishes the node's pods to the store as they come and go, and builds the VXLAN overlay: every other
   * node in the store becomes a peer (route + VTEP), added and removed live as nodes join and leave.
   */
  async attach(node: NodeRuntime): Promise<void> {
    // Pods are bound to the node's lease: a node that dies takes its pods (and so its endpoints) along.
    this.pods = () => node.listPods();
    node.events = {
      podAdded: (p) => this.registry.putPod(toRecord(p), { lease: this.lease }).then(() => undefined),
      podRemoved: (p) => this.registry.deletePod(p.node, p.name).then(() => undefined),
    };
    this.services = new ServiceController({
      store: this.store,
      registry: this.registry,
      node: this.self.name,
      serviceCidr: this.cfg.serviceCidr,
      ...(this.cfg.loadBalancerPool ? { loadBalancerPool: this.cfg.loadBalancerPool } : {}),
      log: this.log,
    });
    if (this.self.underlayIp === '0.0.0.0') {
      this.log.warn('no underlay address: this node will not reach other nodes');
      await this.services.start(node.kubeProxy.services, node.conntrack);
      await this.startPolicy(node);
      await this.startIngress();
      return;
    }
    node.kubeProxy.nodeIp = parseIpv4(this.self.underlayIp);
    const vtep = parseMac(this.self.vtepMac);
    const subnet = parseSubnet(this.self.subnet);
    const dp = node.dp;
    this.dp = dp;
    let overlay: VxlanOverlay | undefined;
    if (this.cfg.vxlan.transport === 'native') {
      let ingress: IngressPort | undefined;
      const t = await NativeUdpTransport.bind(this.cfg.vxlan.port, this.self.underlayIp, (ring, count) => {
        // Every send happens in a data-plane batch, whose flush sends the queue (addFlushable
        // below): no microtask per batch as a safety net.
        dp.receiveRing((ingress ??= overlay!.ingress(ring)), ring, count);
      }, {
        autoFlush: false,
        flowPorts: true,
        // A datagram may be a whole GSO super-frame: a kernel VXLAN peer behind a veth hands its
        // TSO segments on unsegmented (see Router.splitFromWire), up to 64 KB.
        slotSize: VXLAN_RX_SLOT_SIZE,
        // Pods' TCP super-frames leave as one UDP GSO run each, from one of these sockets' ports.
        gsoSockets: VXLAN_GSO_SOCKETS,
        // ... and arrive as runs of datagrams (UDP_GRO), joined back into super-frames for the pods.
        gro: true,
      });
      if (t.flowPortsError !== undefined) {
        this.log.warn({ err: t.flowPortsError.message }, 'vxlan: per-flow source ports unavailable (no raw socket); sending from the VXLAN port');
      }
      if (t.socket.groError !== undefined) {
        this.log.warn({ err: t.socket.groError.message }, 'vxlan: UDP GRO unavailable; datagrams are received one by one');
      }
      if (t.gsoError !== undefined) {
        this.log.warn({ err: t.gsoError.message }, 'vxlan: UDP GSO unavailable; super-frames are split and sent datagram by datagram');
      }
      dp.addFlushable(t);
      this.transport = t;
    } else {
      const ingress: IngressPort = { receive: (buf, off, len, srcIp) => overlay!.receive(buf, off, len, srcIp) };
      this.transport = await DgramTransport.bind(this.cfg.vxlan.port, this.self.underlayIp, (buf, srcIp, srcPort) => {
        const tap = overlay?.tap;
        if (tap !== undefined) overlay!.tapRun(tap, buf, 0, buf.length, 0, srcIp, srcPort);
        dp.receiveOne(ingress, buf, 0, buf.length, srcIp);
      });
    }
    overlay = new VxlanOverlay(
      { vni: this.cfg.vxlan.vni, port: this.cfg.vxlan.port, localVtepMacHi: vtep.hi, localVtepMacLo: vtep.lo, innerMtu: this.cfg.underlay.mtu - VXLAN_OVERHEAD, subnetMask: subnet.mask },
      this.transport,
      node.router,
    );
    this.overlay = overlay;
    node.router.overlay = overlay;
    const known = new Map<string, number>(); // node name -> subnet network it was routed with
    this.nodeWatch = await this.registry.watchNodes((ev) => {
      const n = ev.node;
      if (n.name === this.self.name) return;
      const net = parseSubnet(n.subnet);
      const previous = known.get(n.name);
      if (previous !== undefined && (ev.type === 'removed' || previous !== net.network)) {
        overlay!.removePeer(previous);
        known.delete(n.name);
      }
      if (ev.type === 'removed') {
        this.log.info({ node: n.name, subnet: n.subnet }, 'node left: route removed');
        return;
      }
      known.set(n.name, net.network);
      const mac = parseMac(n.vtepMac);
      const rco = n.rco === true && this.cfg.vxlan.remoteChecksumOffload;
      overlay!.setPeer({ subnetNetwork: net.network, underlayIp: parseIpv4(n.underlayIp), vtepMacHi: mac.hi, vtepMacLo: mac.lo, rco });
      this.log.info({ node: n.name, subnet: n.subnet, underlay: n.underlayIp }, ev.type === 'added' ? 'node joined: route added' : 'node updated');
    });
    if (this.underlay.interface && this.cfg.uplink.enabled) {
      const router = node.router;
      const uplinkIngress = { rxTap: undefined as FrameTap | undefined, receive: (buf: Buffer, off: number, len: number) => router.fromUplink(buf, off, len) };
      this.uplinkIngress = uplinkIngress;
      this.uplink = await Uplink.open({
        interface: this.underlay.interface,
        nodeIp: this.self.underlayIp,
        nodePortRange: [30000, 32767],
        masqueradePortRange: [MASQUERADE_PORT_MIN, MASQUERADE_PORT_MAX],
        log: this.log,
        // One captured packet is one batch; the router copies it into a frame with headroom.
        onPacket: (buf, ipOff, ipLen) => dp.receiveOne(uplinkIngress, buf, ipOff, ipLen),
      });
      router.uplink = this.uplink;
      node.kubeProxy.masquerade.enabled = true;
      this.router = router;
      this.masquerade = node.kubeProxy.masquerade;
    }
    const uplink = this.uplink;
    await this.services.start(node.kubeProxy.services, node.conntrack, uplink ? (ips) => uplink.setAnnounced(ips) : undefined);
    await this.startPolicy(node);
    await this.startIngress();
  }

  /** NetworkPolicy: policies and namespace labels from the store, compiled for this node's pods. */
  private async startPolicy(node: NodeRuntime): Promise<void> {
    const nodeIps = [node.subnet.hostIp, node.subnet.gatewayIp];
    if (this.self.underlayIp !== '0.0.0.0') nodeIps.push(parseIpv4(this.self.underlayIp));
    node.policy.setNodeAddresses(nodeIps);
    this.policy = new PolicyController({ registry: this.registry, node: this.self.name, log: this.log });
    await this.policy.start(node.router, node.policy);
  }

  /** Ingress: records in the store for every node; served on the underlay address when enabled. */
  private async startIngress(): Promise<void> {
    const ing = this.cfg.ingress;
    const serve = ing.enabled && this.self.underlayIp !== '0.0.0.0';
    this.ingress = new IngressController({
      store: this.store,
      registry: this.registry,
      services: this.services!,
      log: this.log,
      ...(serve ? { listen: { address: this.self.underlayIp, httpPort: ing.httpPort, httpsPort: ing.httpsPort } } : {}),
    });
    await this.ingress.start();
  }

  /**
   * Stops following other nodes and closes the VXLAN socket (before the data plane goes away).
   * `keepRules`: the uplink's iptables rules stay for the next daemon (a restart, not a cleanup).
   */
  async stopDataplane(opts: { keepRules?: boolean } = {}): Promise<void> {
    await this.ingress?.stop();
    await this.services?.stop();
    await this.policy?.stop();
    if (this.uplink) {
      if (this.router) this.router.uplink = undefined;
      if (this.masquerade) this.masquerade.enabled = false;
      await this.uplink.close({ keepRules: !!opts.keepRules });
      this.uplink = undefined;
    }
    await this.nodeWatch?.cancel();
    this.nodeWatch = undefined;
    if (this.transport instanceof NativeUdpTransport) this.dp?.removeFlushable(this.transport);
    await this.transport?.close();
    this.transport = undefined;
  }

  async listNodes(): Promise<NodeRecord[]> {
    return this.registry.listNodes();
  }

  async listAllPods(): Promise<PodRecord[]> {
    return this.registry.listPods();
  }

  status() {
    const o = this.overlay;
    return {
      store: { kind: this.cfg.store?.kind ?? 'embedded', ...this.health.status(), lease: this.lease.id, leaseLost: this.leaseLost, reregistrations: this.reregistrations },
      vtepMac: this.self.vtepMac,
      ingress: this.ingress?.status(),
      underlayIp: this.self.underlayIp,
      uplink: this.uplink ? { interface: this.underlay.interface, ...this.uplink.stats() } : undefined,
      vxlan: o
        ? {
            vni: this.cfg.vxlan.vni,
            port: this.cfg.vxlan.port,
            // Outer UDP source port: hashed per inner flow, or the VXLAN port (dgram transport, no raw socket).
            sourcePorts: this.transport instanceof NativeUdpTransport && this.transport.flowPorts ? 'per-flow' : 'fixed',
            // Pods' super-frames sent as one UDP GSO run each (udp-gso), or split into datagrams (none).
            txOffload: this.transport instanceof NativeUdpTransport && this.transport.sourcePorts !== undefined ? 'udp-gso' : 'none',
            rxOffload: this.transport instanceof NativeUdpTransport && this.transport.socket.gro ? 'udp-gro' : 'none',
            groSuperFrames: o.gro.superFrames,
            groSegments: o.gro.segments,
            gsoRuns: this.transport instanceof NativeUdpTransport ? this.transport.gsoRuns : 0,
            gsoDatagrams: this.transport instanceof NativeUdpTransport ? this.transport.gsoDatagrams : 0,
            socket: this.transport instanceof NativeUdpTransport ? this.transport.stats() : undefined,
            innerMtu: o.innerMtu,
            encapsulated: o.encapsulated,
            decapsulated: o.decapsulated,
            // Datagrams with VXLAN remote checksum offload (inner TCP checksum left partial).
            remoteChecksumOffload: this.cfg.vxlan.remoteChecksumOffload,
            rcoSent: o.rcoSent,
            rcoReceived: o.rcoReceived,
            drops: o.drops.toJSON(),
            peers: o.peerStats().map(({ peer: p, txDatagrams, rxDatagrams }) => ({
              subnet: `${ipv4ToString(p.subnetNetwork)}`,
              underlayIp: ipv4ToString(p.underlayIp),
              rco: p.rco === true,
              txDatagrams,
              rxDatagrams,
            })),
          }
        : undefined,
    };
  }

  /**
   * Publishes pods a restart brought back, bound to this run's lease (the previous run's lease
   * expires on its own; the node record and the subnet claim have moved to this one already).
   */
  async republish(pods: PodInfo[]): Promise<void> {
    for (const p of pods) await this.registry.putPod(toRecord(p), { lease: this.lease });
  }

  /**
   * Leaves the cluster. `deregister` (a cleanup): deletes this node's pods and revokes the lease (the
   * node entry and subnet go with it). Otherwise (a restart) it only disconnects: the registration
   * lives until its lease expires, and a daemon back by then takes it over with the same subnet.
   */
  async leave(opts: { deregister?: boolean } = {}): Promise<void> {
    this.health.stop();
    if (opts.deregister) {
      try {
        for (const p of await this.registry.listPods(this.self.name)) await this.registry.deletePod(p.node, p.name);
        await this.lease.revoke();
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'could not deregister cleanly; the lease will expire');
      }
    }
    await this.store.close();
  }
}

function toRecord(p: PodInfo): PodRecord {
  return { name: p.name, node: p.node, ip: p.ip, mac: p.mac, labels: p.labels, namespace: p.namespace, ...(p.namedPorts.length > 0 ? { namedPorts: p.namedPorts } : {}) };
}
