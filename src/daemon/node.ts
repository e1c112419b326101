import type { Logger } from 'pino';
import { join } from 'node:path';
import { Dataplane } from '../dataplane/dataplane.js';
import { HostPort, TapPort, TunPort } from '../dataplane/ports.js';
import { Router } from '../dataplane/router.js';
import { podGsoMaxSegments } from '../dataplane/vxlan.js';
import { KubeProxy } from '../services/hooks.js';
import { Conntrack, type ConntrackRestore } from '../nat/conntrack.js';
import { monotonicSeconds, openSharedConntrack } from '../nat/shared.js';
import { coarseClock } from '../util/clock.js';
import { existsSync, rmSync } from 'node:fs';
import { Nat } from '../nat/nat.js';
import { HookPoint } from '../dataplane/hooks.js';
import type { Port } from '../dataplane/port.js';
import { TunTap } from '../io/tuntap.js';
import { deleteNetns, ip, ipBatch, run, Undo } from '../netns/run.js';
import { exists, invalid, notFound } from '../util/errors.js';
import { readJsonIfExists, writeFileAtomic } from '../util/fsutil.js';
import type { Config } from './config.js';
import { Ipam } from './ipam.js';
import { parseSubnet, type Subnet } from '../store/subnet.js';
import { ipv4ToString, parseIpv4 } from '../packet/addr.js';
import {
  attachmentName,
  inspectInterface,
  nsPathExec,
  newDeviceName,
  plumbAttachment,
  plumbPod,
  replumbPod,
  podMac,
  validateAttachment,
  validateLabels,
  validatePodName,
  type AttachmentSpec,
  type DeviceKind,
  type PodSpec,
  validateNamedPorts,
  validateNamespace,
  type NamedPort,
} from './pods.js';
import { PolicyHook } from '../policy/hook.js';
import { DropReason, dropReasonName } from '../util/counters.js';

/** The gateway's MAC: locally administered, derived from the gateway IP like pod MACs but with 0a:59. */
function gatewayMac(gw: number): { hi: number; lo: number; str: string } {
  const hi = 0x0a59;
  const lo = gw >>> 0;
  const b = [0x0a, 0x59, lo >>> 24, (lo >>> 16) & 255, (lo >>> 8) & 255, lo & 255];
  return { hi, lo, str: b.map((x) => x.toString(16).padStart(2, '0')).join(':') };
}

export interface PodInfo {
  name: string;
  node: string;
  ip: string;
  mac: string;
  netns: string;
  device: DeviceKind;
  hostDevice: string;
  labels: Record<string, string>;
  /** Kubernetes namespace (NetworkPolicy): `default` unless given at `pod add` or by the CNI (K8S_POD_NAMESPACE). */
  namespace: string;
  /** Named container ports, for NetworkPolicy's named ports. */
  namedPorts: NamedPort[];
  /** Set for a CNI attachment (see attachContainer). */
  attachment?: AttachmentSpec;
}

interface PodRuntime {
  info: PodInfo;
  dev: TunTap;
  port: Port;
}

/** What a start found of a previous run (`status().restart`). */
export interface RestartInfo {
  /** Pods whose namespace (and processes) were kept and whose eth0 was attached again. */
  reattached: number;
  /** Pods recreated from scratch (their namespace was gone). */
  recreated: number;
  /** Pods that could not be brought back (logged). */
  failed: number;
  /** The conntrack table taken over from the shared file (or why it was not). */
  conntrack: (ConntrackRestore & { file?: string; fresh: boolean; discardedReason?: string }) | { file?: undefined; error: string };
}

export interface PodEvents {
  podAdded?(pod: PodInfo): Promise<void> | void;
  podRemoved?(pod: PodInfo): Promise<void> | void;
}

/**
 * One node's data plane and the pods on it: owns the devices (their fds), the switch and router, IPAM and
 * the namespaces it creates. Every operation that creates something unwinds on failure.
 */
export class NodeRuntime {
  readonly dp: Dataplane;
  readonly router: Router;
  /** Services and masquerade: the router's kube-proxy hooks (src/services/hooks.ts). */
  readonly kubeProxy: KubeProxy;
  /** NetworkPolicy (src/policy): its tables are swapped in by the PolicyController. */
  readonly policy: PolicyHook;
  readonly subnet: Subnet;
  readonly ipam: Ipam;
  readonly gatewayMac: { hi: number; lo: number; str: string };
  readonly conntrack: Conntrack;
  readonly hostDeviceName = 'podnet0';
  private hostDev: TunTap | undefined;
  private hostPort: HostPort | undefined;
  private readonly pods = new Map<string, PodRuntime>();
  private readonly statePath: string;
  private readonly podCidr: Subnet;
  /** Serialises pod operations so two requests never race on names or addresses. */
  private queue: Promise<unknown> = Promise.resolve();
  events: PodEvents = {};

  constructor(
    readonly cfg: Config,
    subnetCidr: string,
    private readonly log: Logger,
  ) {
    this.subnet = parseSubnet(subnetCidr);
    this.podCidr = parseSubnet(cfg.podCidr);
    const dir = join(cfg.stateDir, cfg.node);
    this.statePath = join(dir, 'pods.json');
    this.ipam = new Ipam(this.subnet.cidr, join(dir, 'ipam.json'));
    this.dp = new Dataplane({ agingSeconds: cfg.macAgingSeconds });
    this.gatewayMac = gatewayMac(this.subnet.gatewayIp);
    this.router = new Router(this.dp, {
      gatewayIp: this.subnet.gatewayIp,
      gatewayMacHi: this.gatewayMac.hi,
      gatewayMacLo: this.gatewayMac.lo,
      hostIp: this.subnet.hostIp,
      subnetNetwork: this.subnet.network,
      subnetMask: this.subnet.mask,
      podCidrNetwork: this.podCidr.network,
      podCidrMask: this.podCidr.mask,
      serviceNetwork: parseSubnet(cfg.serviceCidr).network,
      serviceMask: parseSubnet(cfg.serviceCidr).mask,
      mtu: cfg.podMtu,
    });
    this.dp.switch.attach(this.router.port);
    this.conntrack = this.openConntrack();
    this.router.nat = new Nat(this.conntrack, { drops: this.router.drops });
    this.kubeProxy = new KubeProxy(this.router);
    // NetworkPolicy at FORWARD: registered by the PolicyController only while a policy selects a
    // pod of this node (an empty FORWARD chain keeps the bridge path free of conntrack).
    this.policy = new PolicyHook();
    this.policy.setNodeAddresses([this.subnet.hostIp, this.subnet.gatewayIp]);
    const ct = this.conntrack;
    const nat = this.router.nat;
    const dp = this.dp;
    // The switch's bridge hook shows IPv4 between two pods to conntrack and the FORWARD hooks
    // (Router.bridgeIp): replies of DNATed connections (a service endpoint answering a client on this
    // node) are un-NATed, and new connections meet the policy. So it is installed only while
    // conntrack holds DNAT entries or FORWARD has hooks, decided after each batch: a reply cannot
    // come before the batch whose flush delivered its connection's first packet has ended. Its probe
    // lets TCP super-frames of connections conntrack does not know pass between two pods whole even
    // then. The switch has validated the IPv4 header of a frame from a pod port.
    const router = this.router;
    const bridgeHook = (buf: Buffer, ipOff: number, ipLen: number) => router.bridgeIp(buf, ipOff, ipLen);
    // While FORWARD has hooks (a policy selects a pod here), every new connection must meet them,
    // so no offloaded frame between two pods may pass around the hook: the probe then says yes to all
    // (super-frames are split and shown to conntrack, as those of DNATed connections always were).
    dp.switch.bridgeProbe = (buf, ipOff, ipLen) => router.hooks.count(HookPoint.Forward) > 0 || nat.tracks(buf, ipOff, ipLen, dp.now);
    dp.afterBatch = () => {
      ct.gc(dp.now, 64);
      dp.switch.bridgeHook = ct.dnatCount > 0 || router.hooks.count(HookPoint.Forward) > 0 ? bridgeHook : undefined;
    };
  }

  /** Recorded pods a start could not bring back: kept on record, their namespaces removed by a reset. */
  private unrestored: PodSpec[] = [];

  /** What `start` found of a previous run of this node's daemon. */
  restart: RestartInfo = { reattached: 0, recreated: 0, failed: 0, conntrack: { restored: 0, expired: 0, discarded: 0, fresh: true } };

  /** The conntrack file (shared memory that outlives the daemon), or '' when conntrack is in private memory. */
  get conntrackFile(): string {
    return this.cfg.conntrackFile === '' ? '' : (this.cfg.conntrackFile ?? `/dev/shm/podnet-${this.cfg.node}.conntrack`);
  }

  /**
   * The conntrack table, in a /dev/shm file so that its entries (and with them the NAT decisions and
   * allocated ports) survive a restart or a crash of the daemon. Without a usable file, private memory.
   */
  private openConntrack(): Conntrack {
    const file = this.conntrackFile;
    if (file === '') return new Conntrack({ max: this.cfg.conntrackMax });
    coarseClock.refresh();
    const now = coarseClock.seconds;
    try {
      const shared = openSharedConntrack(file, { max: this.cfg.conntrackMax }, now, monotonicSeconds() - now);
      this.restart.conntrack = { file, ...shared.restore };
      if (shared.restore.discardedReason !== undefined) this.log.warn({ file, reason: shared.restore.discardedReason }, 'conntrack file discarded: starting with an empty table');
      else if (!shared.restore.fresh) this.log.info({ file, ...shared.restore }, 'conntrack table taken over from the previous run');
      return shared.ct;
    } catch (err) {
      this.log.warn({ file, err: (err as Error).message }, 'conntrack file unusable: the table will not survive a restart');
      this.restart.conntrack = { error: (err as Error).message };
      return new Conntrack({ max: this.cfg.conntrackMax });
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** Where a pod's device lives once plumbed: its namespace (a path) and its name there. */
  private deviceHome(spec: PodSpec): { netnsPath: string; ifname: string } {
    return spec.attachment
      ? { netnsPath: spec.attachment.netns, ifname: spec.attachment.ifname }
      : { netnsPath: `/run/netns/${this.nsName(spec.name)}`, ifname: 'eth0' };
  }

  /**
   * Keeps a TAP pod's TSO super-frames to what one UDP GSO run of VXLAN datagrams carries (its
   * device's gso_max_segs, `podGsoMaxSegments`), so that a super-frame crosses hosts as one run and
   * reaches the other pod as one frame. Best effort: a kernel or iproute2 too old to change it
   * leaves the default, and super-frames then take two runs, which is slower, not wrong.
   */
  private async fitSuperFramesToTunnel(pod: string, home: { netnsPath: string; ifname: string }): Promise<void> {
    const segs = podGsoMaxSegments(this.cfg.podMtu);
    try {
      await nsPathExec(home.netnsPath, 'ip', ['link', 'set', 'dev', home.ifname, 'gso_max_segs', String(segs)]);
    } catch (err) {
      this.log.warn({ pod, gsoMaxSegs: segs, err: (err as Error).message }, 'could not set gso_max_segs: super-frames may cross hosts as two runs');
    }
  }

  nsName(pod: string): string {
    return `${this.cfg.nsPrefix}${this.cfg.node}-${pod}`;
  }

  /** Creates the host port (TUN `podnet0`): the node reaches every pod, and pods the node, without NAT. */
  async start(): Promise<void> {
    const undo = new Undo();
    try {
      // Persistent: the device, its address and routes stay when this daemon stops or dies, so
      // the host's connections to pods outlive it; a new daemon attaches to it again here.
      // With offloads, as pods' devices: the host's TCP to and from pods moves super-frames.
      const dev = TunTap.open(this.hostDeviceName, 'tun', { offload: true });
      undo.push('close host device', () => dev.close());
      const host = new HostPort(this.hostDeviceName, this.dp, dev, { offload: dev.offload, rxCapacity: dev.rx.slotSize - dev.rx.headroom });
      this.router.attachHost(host);
      dev.start((n) => this.dp.receiveRing(host, dev.rx, n));
      await run('sysctl', ['-qw', `net.ipv6.conf.${this.hostDeviceName}.disable_ipv6=1`]).catch(() => undefined);
      await ipBatch([
        `link set dev ${this.hostDeviceName} mtu ${this.cfg.podMtu}`,
        `addr replace ${ipv4ToString(this.subnet.hostIp)}/32 dev ${this.hostDeviceName}`,
        `link set dev ${this.hostDeviceName} up`,
        `route replace ${this.podCidr.cidr} dev ${this.hostDeviceName} src ${ipv4ToString(this.subnet.hostIp)}`,
        `route replace ${parseSubnet(this.cfg.serviceCidr).cidr} dev ${this.hostDeviceName} src ${ipv4ToString(this.subnet.hostIp)}`,
      ]);
      // As a pod's device (fitSuperFramesToTunnel): one super-frame of the host's, one VXLAN GSO run.
      const segs = podGsoMaxSegments(this.cfg.podMtu);
      await ip(['link', 'set', 'dev', this.hostDeviceName, 'gso_max_segs', String(segs)]).catch((err: Error) =>
        this.log.warn({ device: this.hostDeviceName, gsoMaxSegs: segs, err: err.message }, 'could not set gso_max_segs: super-frames may cross hosts as two runs'),
      );
      dev.setPersist(true);
      this.hostDev = dev;
      this.hostPort = host;
      undo.commit();
    } catch (err) {
      await undo.unwind();
      throw err;
    }
    await this.restorePods();
  }

  /**
   * Brings back the pods a previous run of this daemon had, with the same addresses. A pod whose
   * namespace is still there keeps it, and with it its processes and their sockets: its persistent
   * eth0 is attached again (or, if it is gone, made anew inside the namespace). Only a pod whose
   * namespace is gone is created from scratch.
   */
  private async restorePods(): Promise<void> {
    const saved = readJsonIfExists<PodSpec[]>(this.statePath) ?? [];
    for (const spec of saved) {
      try {
        const target = this.deviceHome(spec);
        const kept = existsSync(target.netnsPath);
        if (spec.attachment && !kept) {
          // Its container is gone with its namespace (the runtime's, never recreated by podnet): dropped.
          this.ipam.release(spec.name);
          this.log.info({ pod: spec.name, netns: target.netnsPath }, 'attachment dropped: its namespace is gone');
          continue;
        }
        await this.createPod(spec, kept);
        if (kept) this.restart.reattached++;
        else this.restart.recreated++;
        this.log.info({ pod: spec.name, kept }, kept ? 'pod attached again' : 'pod recreated');
      } catch (err) {
        this.restart.failed++;
        // Stays recorded (the next start tries again; a reset removes its namespace).
        this.unrestored.push(spec);
        this.log.error({ pod: spec.name, err: (err as Error).message }, 'could not restore pod');
      }
    }
    this.persist();
  }

  private persist(): void {
    const specs: PodSpec[] = [...this.pods.values()].map((p) => ({
      name: p.info.name,
      labels: p.info.labels,
      namespace: p.info.namespace,
      ...(p.info.namedPorts.length > 0 ? { namedPorts: p.info.namedPorts } : {}),
      device: p.info.device,
      ip: p.info.ip,
      hostDevice: p.info.hostDevice,
      ...(p.info.attachment ? { attachment: p.info.attachment } : {}),
    }));
    for (const u of this.unrestored) if (!this.pods.has(u.name)) specs.push(u);
    writeFileAtomic(this.statePath, JSON.stringify(specs, null, 2));
  }

  addPod(spec: { name: unknown; labels?: unknown; device?: unknown; namespace?: unknown; namedPorts?: unknown }): Promise<PodInfo> {
    return this.serial(async () => {
      const name = validatePodName(spec.name);
      const labels = validateLabels(spec.labels);
      const namespace = validateNamespace(spec.namespace);
      const namedPorts = validateNamedPorts(spec.namedPorts);
      const device = spec.device ?? 'tap';
      if (device !== 'tap' && device !== 'tun') throw invalid(`invalid device ${JSON.stringify(device)}: must be tap or tun`);
      if (this.pods.has(name)) throw exists(`pod ${name} already exists on node ${this.cfg.node}`);
      const info = await this.createPod({ name, labels, device, namespace, namedPorts });
      this.persist();
      await this.events.podAdded?.(info);
      return info;
    });
  }

  /**
   * Creates a pod, or with `inNetns` brings one back whose namespace exists: its eth0 (persistent)
   * is attached again from inside the namespace, or created there if it is gone, and configured
   * idempotently. The device is made persistent last, so a failure before leaves nothing behind.
   */
  private async createPod(spec: PodSpec, inNetns = false): Promise<PodInfo> {
    const undo = new Undo();
    try {
      const addr = this.ipam.allocate(spec.name, spec.ip);
      undo.push('release address', () => this.ipam.release(spec.name));
      const ipNum = parseIpv4(addr);
      const mac = podMac(ipNum);
      const netns = spec.attachment?.netns ?? this.nsName(spec.name);
      const home = this.deviceHome(spec);
      const hostDevice = inNetns ? (spec.hostDevice ?? home.ifname) : newDeviceName();
      // Pods get offloads (virtio-net headers, checksum offload, TSO), TAP and TUN alike: their
      // kernel hands over TCP super-frames, which the switch passes between pods as they are, the
      // router sends across hosts as GSO runs, and which are split for the rest.
      const dev = inNetns
        ? TunTap.open(home.ifname, spec.device, { offload: true, netns: home.netnsPath })
        : TunTap.open(hostDevice, spec.device, { offload: true });
      undo.push('close device', () => dev.close());
      const plumbing = { netns, device: hostDevice, kind: spec.device, mac: mac.str, ip: addr, prefix: this.subnet.prefix, gateway: ipv4ToString(this.subnet.gatewayIp), mtu: this.cfg.podMtu, undo };
      if (inNetns) {
        await replumbPod({ ...plumbing, netnsPath: home.netnsPath, ifname: home.ifname, own: !spec.attachment, flush: spec.ip !== undefined && spec.ip !== addr });
      } else if (spec.attachment) {
        await plumbAttachment({ ...plumbing, ifname: spec.attachment.ifname });
      } else {
        await plumbPod(plumbing);
      }
      await this.fitSuperFramesToTunnel(spec.name, home);
      const identity = { macHi: mac.hi, macLo: mac.lo, ip: ipNum };
      const port =
        spec.device === 'tap'
          ? new TapPort(spec.name, this.dp, dev, identity, { offload: dev.offload, rxCapacity: dev.rx.slotSize - dev.rx.headroom })
          : new TunPort(
              spec.name,
              this.dp,
              dev,
              identity,
              {
                macHi: this.gatewayMac.hi,
                macLo: this.gatewayMac.lo,
                network: this.subnet.network,
                mask: this.subnet.mask,
                broadcast: this.subnet.broadcast,
              },
              { offload: dev.offload, rxCapacity: dev.rx.slotSize - dev.rx.headroom },
            );
      this.dp.neighbors.set(ipNum, mac.hi, mac.lo);
      this.dp.switch.attach(port);
      undo.push('detach port', () => {
        this.dp.switch.detach(port);
        this.dp.neighbors.delete(ipNum);
      });
      // An attachment's device goes when the runtime destroys its namespace, maybe before its DEL.
      const onGone = spec.attachment
        ? (err: Error) => this.log.warn({ pod: spec.name, err: err.message }, 'attachment device gone (its namespace was destroyed?); waiting for DEL')
        : undefined;
      dev.start((n) => this.dp.receiveRing(port as TapPort, dev.rx, n), onGone);
      const info: PodInfo = { name: spec.name, node: this.cfg.node, ip: addr, mac: mac.str, netns, device: spec.device, hostDevice, labels: spec.labels, namespace: spec.namespace ?? 'default', namedPorts: spec.namedPorts ?? [] };
      if (spec.attachment) info.attachment = spec.attachment;
      dev.setPersist(true);
      this.pods.set(spec.name, { info, dev, port });
      this.policy.addPod(ipNum);
      undo.commit();
      this.log.info({ pod: spec.name, ip: addr, device: spec.device, netns }, 'pod added');
      return info;
    } catch (err) {
      await undo.unwind((what, e) => this.log.warn({ what, err: (e as Error).message }, 'undo step failed'));
      throw err;
    }
  }

  delPod(name: unknown): Promise<PodInfo> {
    return this.serial(async () => {
      const n = validatePodName(name);
      const pod = this.pods.get(n);
      if (!pod) throw notFound(`pod ${n} not found on node ${this.cfg.node}`);
      await this.destroyPod(pod);
      this.persist();
      await this.events.podRemoved?.(pod.info);
      return pod.info;
    });
  }

  private async destroyPod(pod: PodRuntime): Promise<void> {
    this.dp.switch.detach(pod.port);
    const addr = parseIpv4(pod.info.ip);
    this.dp.neighbors.delete(addr);
    this.policy.removePod(addr);
    unpersistAndClose(pod.dev);
    // Its connections go with it (as the kubelet has conntrack entries of a deleted pod's IP removed):
    // none may be found by the next pod that gets the address.
    const removed = this.conntrack.deleteWhere((id, ct) => ct.src(id * 2) === addr || ct.dst(id * 2) === addr || ct.src(id * 2 + 1) === addr || ct.dst(id * 2 + 1) === addr);
    if (removed > 0) this.log.info({ pod: pod.info.name, entries: removed }, "pod's conntrack entries removed");
    if (!pod.info.attachment) await deleteNetns(pod.info.netns);
    this.ipam.release(pod.info.name);
    this.pods.delete(pod.info.name);
    this.log.info({ pod: pod.info.name }, 'pod deleted');
  }

  /**
   * CNI ADD: puts a TAP (or TUN) into the runtime's namespace at `netns` under `ifname`, with an address
   * from this node's subnet, and records the attachment (it is a pod to the rest of podnet: a service
   * endpoint when its labels match, restored after a daemon restart while its namespace lives).
   */
  attachContainer(req: { containerId?: unknown; ifname?: unknown; netns?: unknown; network?: unknown; labels?: unknown; device?: unknown; namespace?: unknown }): Promise<PodInfo & { prefix: number; gateway: string; mtu: number }> {
    return this.serial(async () => {
      const attachment = validateAttachment(req, true);
      const labels = validateLabels(req.labels);
      const namespace = validateNamespace(req.namespace);
      const device = req.device ?? 'tap';
      if (device !== 'tap' && device !== 'tun') throw invalid(`invalid device ${JSON.stringify(device)}: must be tap or tun`);
      const name = attachmentName(attachment.containerId, attachment.ifname);
      if (this.pods.has(name)) throw exists(`container ${attachment.containerId} already has interface ${attachment.ifname} on node ${this.cfg.node} (pod ${name})`);
      const info = await this.createPod({ name, labels, device, namespace, attachment });
      this.persist();
      await this.events.podAdded?.(info);
      return this.withAddressing(info);
    });
  }

  private withAddressing(info: PodInfo): PodInfo & { prefix: number; gateway: string; mtu: number } {
    return { ...info, prefix: this.subnet.prefix, gateway: ipv4ToString(this.subnet.gatewayIp), mtu: this.cfg.podMtu };
  }

  private findAttachment(containerId: string, ifname: string): PodRuntime | undefined {
    const p = this.pods.get(attachmentName(containerId, ifname));
    return p?.info.attachment?.containerId === containerId && p.info.attachment.ifname === ifname ? p : undefined;
  }

  /** CNI DEL: removes the device, the address and the record. Nothing to remove is not an error. */
  detachContainer(req: { containerId?: unknown; ifname?: unknown }): Promise<{ removed: PodInfo | undefined }> {
    return this.serial(async () => {
      const a = validateAttachment(req, false);
      const pod = this.findAttachment(a.containerId, a.ifname);
      if (!pod) return { removed: undefined };
      await this.destroyPod(pod);
      this.persist();
      await this.events.podRemoved?.(pod.info);
      return { removed: pod.info };
    });
  }

  /**
   * CNI CHECK: the attachment is recorded for this namespace and its interface is there, up, with the
   * recorded MAC (TAP), MTU and address.
   */
  checkContainer(req: { containerId?: unknown; ifname?: unknown; netns?: unknown }): Promise<PodInfo & { prefix: number; gateway: string; mtu: number }> {
    return this.serial(async () => {
      const a = validateAttachment(req, true);
      const pod = this.findAttachment(a.containerId, a.ifname);
      if (!pod) throw notFound(`no attachment of container ${a.containerId} with interface ${a.ifname} on node ${this.cfg.node}`);
      const info = pod.info;
      if (info.attachment!.netns !== a.netns) throw invalid(`netns: container ${a.containerId} was attached in ${info.attachment!.netns}, not ${a.netns}`);
      const iface = await inspectInterface(a.netns, a.ifname);
      if (!iface) throw notFound(`interface ${a.ifname} is missing from network namespace ${a.netns}`);
      const want = `${info.ip}/${this.subnet.prefix}`;
      if (!iface.addrs.includes(want)) throw invalid(`interface ${a.ifname} in ${a.netns} lacks address ${want} (has ${iface.addrs.join(', ') || 'none'})`);
      if (info.device === 'tap' && iface.mac !== info.mac) throw invalid(`interface ${a.ifname} in ${a.netns} has MAC ${String(iface.mac)}, not ${info.mac}`);
      if (iface.mtu !== this.cfg.podMtu) throw invalid(`interface ${a.ifname} in ${a.netns} has MTU ${iface.mtu}, not ${this.cfg.podMtu}`);
      if (!iface.up) throw invalid(`interface ${a.ifname} in ${a.netns} is down`);
      return this.withAddressing(info);
    });
  }

  /** CNI GC: removes the attachments of `network` that are not in `valid`; returns what it removed. */
  gcAttachments(req: { network?: unknown; valid?: unknown }): Promise<{ removed: PodInfo[] }> {
    return this.serial(async () => {
      if (typeof req.network !== 'string' || req.network.length === 0) throw invalid('network: must be the CNI network name');
      if (!Array.isArray(req.valid)) throw invalid('valid: must be a list of {containerId, ifname}');
      const keep = new Set<string>();
      for (const [i, v] of (req.valid as unknown[]).entries()) {
        const o = (v ?? {}) as { containerId?: unknown; ifname?: unknown };
        if (typeof o.containerId !== 'string' || typeof o.ifname !== 'string') throw invalid(`valid[${i}]: must be {containerId, ifname} strings`);
        keep.add(`${o.containerId}\0${o.ifname}`);
      }
      const removed: PodInfo[] = [];
      for (const pod of [...this.pods.values()]) {
        const a = pod.info.attachment;
        if (!a || a.network !== req.network || keep.has(`${a.containerId}\0${a.ifname}`)) continue;
        await this.destroyPod(pod);
        removed.push(pod.info);
      }
      this.persist();
      for (const p of removed) await this.events.podRemoved?.(p);
      return { removed };
    });
  }

  listAttachments(): PodInfo[] {
    return this.listPods().filter((p) => p.attachment);
  }

  /** A pod's switch port (a capture attaches to it), undefined when there is no such pod. */
  podPort(name: string): TapPort | TunPort | undefined {
    return this.pods.get(name)?.port as TapPort | TunPort | undefined;
  }

  /** The host port (podnet0), once started. */
  get host(): HostPort | undefined {
    return this.hostPort;
  }

  getPod(name: string): PodInfo {
    const pod = this.pods.get(validatePodName(name));
    if (!pod) throw notFound(`pod ${name} not found on node ${this.cfg.node}`);
    return pod.info;
  }

  listPods(): PodInfo[] {
    return [...this.pods.values()].map((p) => p.info).sort((a, b) => a.name.localeCompare(b.name));
  }

  podStats(): Array<PodInfo & { counters: ReturnType<Port['stats']>; device_stats: ReturnType<TunTap['stats']> }> {
    return this.listPods().map((info) => {
      const p = this.pods.get(info.name)!;
      const counters = p.port.stats();
      // Connections NetworkPolicy refused for this pod count among its drops, by reason.
      const denied = this.policy.podDenials(parseIpv4(info.ip));
      const drops: Record<string, number> = { ...counters.drops };
      if (denied.ingress > 0) drops[dropReasonName(DropReason.PolicyDeniedIngress)] = denied.ingress;
      if (denied.egress > 0) drops[dropReasonName(DropReason.PolicyDeniedEgress)] = denied.egress;
      return { ...info, counters: { ...counters, drops }, policyDenials: denied, device_stats: p.dev.stats() };
    });
  }

  status() {
    const r = this.router;
    return {
      node: this.cfg.node,
      subnet: this.subnet.cidr,
      gateway: ipv4ToString(this.subnet.gatewayIp),
      gatewayMac: this.gatewayMac.str,
      hostAddress: ipv4ToString(this.subnet.hostIp),
      podCidr: this.cfg.podCidr,
      podMtu: this.cfg.podMtu,
      ipam: { used: this.ipam.used(), capacity: this.ipam.capacity() },
      pods: this.podStats(),
      router: {
        forwarded: r.forwarded,
        icmpSent: r.icmpSent,
        ignored: r.ignored,
        // Offload work finished for packets from the overlay and the uplink (see Router.routeIp).
        checksumsCompleted: r.checksumsCompleted,
        superFramesSplit: r.splitter.superFrames,
        drops: r.drops.toJSON(),
        port: r.port.stats(),
      },
      host: this.hostPort
        ? { device: this.hostDeviceName, ...this.hostPort.traffic.toJSON() }
        : undefined,
      conntrack: { entries: this.conntrack.size, max: this.cfg.conntrackMax, file: this.conntrackFile || undefined, ...this.conntrack.stats, ...this.conntrack.census(this.dp.now) },
      restart: this.restart,
      nat: { ...this.router.nat!.stats },
      switch: { macEntries: this.dp.switch.macs.entries(this.dp.now).length, macTableFull: this.dp.switch.macTableFull, injectOverflow: this.dp.injectOverflow },
    };
  }

  /**
   * Stops the data plane's devices. By default (a restart, an upgrade) every pod stays as it is:
   * namespaces, their processes, the persistent devices with their addresses and routes, podnet0 and
   * its routes, and the conntrack file; the kernel queues or drops what pods send meanwhile and TCP
   * retransmits it to the next daemon. With `cleanup` it removes every pod namespace, device and
   * route this node created and the conntrack file; pods stay recorded so a restart brings them back.
   */
  stop(opts: { cleanup?: boolean } = {}): Promise<void> {
    return this.serial(async () => {
      for (const pod of [...this.pods.values()]) {
        try {
          this.dp.switch.detach(pod.port);
          if (opts.cleanup) {
            unpersistAndClose(pod.dev);
            if (!pod.info.attachment) await deleteNetns(pod.info.netns);
          } else {
            pod.dev.close();
          }
          this.pods.delete(pod.info.name);
        } catch (err) {
          this.log.error({ pod: pod.info.name, err: (err as Error).message }, 'teardown failed');
        }
      }
      if (this.hostDev) {
        if (opts.cleanup) {
          for (const cidr of [this.podCidr.cidr, parseSubnet(this.cfg.serviceCidr).cidr]) {
            try {
              await ip(['route', 'del', cidr, 'dev', this.hostDeviceName]);
            } catch {
              /* the route goes with the device anyway */
            }
          }
          unpersistAndClose(this.hostDev);
        } else {
          this.hostDev.close();
        }
        this.hostDev = undefined;
      }
      if (opts.cleanup) {
        for (const u of this.unrestored) if (!u.attachment) await deleteNetns(this.nsName(u.name)).catch(() => undefined);
        if (this.conntrackFile !== '') rmSync(this.conntrackFile, { force: true });
      }
    });
  }
}

/** Closes a device so that the kernel deletes its interface (it is persistent while in use). */
function unpersistAndClose(dev: TunTap): void {
  try {
    dev.setPersist(false);
  } catch {
    /* closed already: nothing to delete through it */
  }
  dev.close();
}
