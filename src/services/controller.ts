import type { Logger } from 'pino';
import type { ClusterStore, Watch } from '../store/types.js';
import type { ClusterRegistry, Collection, NodeRecord, PodRecord } from '../store/registry.js';
import { ServiceTable, type ServicePortSpec } from '../dataplane/services.js';
import type { ServicesHook } from './hooks.js';
import type { Conntrack } from '../nat/conntrack.js';
import { IpProtocol } from '../packet/index.js';
import { parseSubnet } from '../store/subnet.js';
import { ipv4ToString, parseIpv4 } from '../packet/addr.js';
import { ErrorCode, PodnetError, exists, notFound } from '../util/errors.js';
import { selects, serviceRecordSchema, validateSpec, type ServiceRecord } from './record.js';

const NODE_PORT_MIN = 30000;
const NODE_PORT_MAX = 32767;

export interface ServiceControllerOptions {
  store: ClusterStore;
  registry: ClusterRegistry;
  node: string;
  serviceCidr: string;
  loadBalancerPool?: string;
  log: Logger;
}

/**
 * Services, the way kube-proxy sees them but in userspace: records live in the cluster store (any node
 * can create one; cluster IPs, node ports and LoadBalancer IPs are claimed atomically), every node
 * watches services, pods and nodes and rebuilds the router's service table when anything changes.
 */
export class ServiceController {
  readonly services: Collection<ServiceRecord>;
  private readonly svc = new Map<string, ServiceRecord>();
  private readonly pods = new Map<string, PodRecord>();
  private readonly nodes = new Map<string, NodeRecord>();
  private watches: Watch[] = [];
  private hook: ServicesHook | undefined;
  private conntrack: Conntrack | undefined;
  private announce: ((ips: string[]) => Promise<void> | void) | undefined;
  /** service/proto/port -> endpoints, to find the ones that went away. */
  private lastEndpoints = new Map<string, Set<number>>();
  private announced = '';
  private rebuildPending = false;
  private readonly root: string;

  constructor(private readonly o: ServiceControllerOptions) {
    this.services = o.registry.collection({ kind: 'service', dir: 'services', schema: serviceRecordSchema, keyOf: (s) => s.name });
    this.root = o.registry.root;
  }

  /** Starts following the store and programming the data plane's services hook (none: API only). */
  async start(hook: ServicesHook | undefined, conntrack: Conntrack | undefined, announce?: (ips: string[]) => Promise<void> | void): Promise<void> {
    this.hook = hook;
    this.conntrack = conntrack;
    this.announce = announce;
    this.watches.push(
      await this.services.watch((ev) => {
        if (ev.type === 'removed') this.svc.delete(ev.record.name);
        else this.svc.set(ev.record.name, ev.record);
        this.scheduleRebuild();
      }),
      await this.o.registry.watchPods((ev) => {
        const k = `${ev.pod.node}/${ev.pod.name}`;
        if (ev.type === 'removed') this.pods.delete(k);
        else this.pods.set(k, ev.pod);
        this.scheduleRebuild();
      }),
      await this.o.registry.watchNodes((ev) => {
        if (ev.type === 'removed') this.nodes.delete(ev.node.name);
        else this.nodes.set(ev.node.name, ev.node);
        this.scheduleRebuild();
      }),
    );
    this.rebuild();
  }

  async stop(): Promise<void> {
    for (const w of this.watches) await w.cancel();
    this.watches = [];
  }

  /** Coalesces bursts of watch events (e.g. the initial listing) into one rebuild. */
  private scheduleRebuild(): void {
    if (this.rebuildPending) return;
    this.rebuildPending = true;
    queueMicrotask(() => {
      this.rebuildPending = false;
      this.rebuild();
    });
  }

  /** Builds the router's service table from services and pods; drops UDP flows to vanished endpoints. */
  private rebuild(): void {
    const hook = this.hook;
    if (!hook) return;
    const vips: Array<{ vip: number; ports: ServicePortSpec[] }> = [];
    const current = new Map<string, Set<number>>();
    const announce: string[] = [];
    const nodeNames = [...this.nodes.keys()].sort();
    for (const s of this.svc.values()) {
      const members = [...this.pods.values()].filter((p) => selects(s.selector, p.labels));
      const ports: ServicePortSpec[] = s.ports.map((p) => {
        const proto = p.protocol === 'udp' ? IpProtocol.UDP : IpProtocol.TCP;
        const endpoints = members.map((m) => parseIpv4(m.ip));
        current.set(`${s.name}/${proto}/${p.port}`, new Set(endpoints));
        return {
          service: s.name,
          proto,
          port: p.port,
          targetPort: p.targetPort,
          nodePort: p.nodePort ?? 0,
          endpoints,
          localEndpoints: members.filter((m) => m.node === this.o.node).map((m) => parseIpv4(m.ip)),
          sessionAffinity: s.sessionAffinity === 'ClientIP',
          affinityTimeout: s.affinityTimeoutSeconds,
          policyLocal: s.externalTrafficPolicy === 'Local',
        };
      });
      vips.push({ vip: parseIpv4(s.clusterIp), ports });
      const outside = [...s.externalIps, ...(s.loadBalancerIp ? [s.loadBalancerIp] : [])];
      for (const ip of outside) {
        vips.push({ vip: parseIpv4(ip), ports });
        // One node answers ARP for each outside IP (as MetalLB's layer-2 mode): chosen by hash, so all
        // nodes agree without talking; it moves when that node leaves.
        if (nodeNames.length > 0 && nodeNames[parseIpv4(ip) % nodeNames.length] === this.o.node) announce.push(ip);
      }
    }
    hook.table = new ServiceTable({ vips }, hook.table);

    // Endpoints that went away: their UDP flows would otherwise keep sending into a black hole.
    const gone = new Set<number>();
    for (const [k, before] of this.lastEndpoints) {
      const now = current.get(k);
      for (const ep of before) if (!now?.has(ep)) gone.add(ep);
    }
    this.lastEndpoints = current;
    if (gone.size > 0 && this.conntrack) {
      const ct = this.conntrack;
      const n = ct.deleteWhere((id) => ct.proto(id) === IpProtocol.UDP && gone.has(ct.src(id * 2 + 1) >>> 0));
      if (n > 0) this.o.log.info({ endpoints: [...gone].map(ipv4ToString), flows: n }, 'removed UDP flows to deleted endpoints');
    }
    const key = announce.sort().join(',');
    if (key !== this.announced && this.announce) {
      this.announced = key;
      void Promise.resolve(this.announce(announce)).catch((err) => this.o.log.error({ err: (err as Error).message }, 'announcing service IPs failed'));
    }
  }

  // ---- API ----

  async create(input: unknown): Promise<ServiceRecord> {
    const spec = validateSpec(input);
    if (await this.services.get(spec.name)) throw exists(`service ${spec.name} already exists`);
    const claimed: string[] = [];
    const claim = async (kind: string, value: string) => {
      const key = `${this.root}/alloc/${kind}/${value}`;
      if (await this.o.store.createIfAbsent(key, spec.name)) {
        claimed.push(key);
        return true;
      }
      return false;
    };
    try {
      const clusterIp = await this.allocateIp('clusterip', this.o.serviceCidr, claim, 10);
      const ports = [];
      for (const p of spec.ports) {
        let nodePort = p.nodePort;
        if (spec.type !== 'ClusterIP') {
          if (nodePort !== undefined) {
            if (!(await claim('nodeport', String(nodePort)))) throw exists(`node port ${nodePort} is already in use`);
          } else {
            nodePort = await this.allocateNodePort(claim);
          }
        }
        ports.push({ ...p, ...(nodePort !== undefined ? { nodePort } : {}) });
      }
      let loadBalancerIp: string | undefined;
      if (spec.type === 'LoadBalancer') {
        if (!this.o.loadBalancerPool) throw new PodnetError(ErrorCode.Precondition, 'type LoadBalancer needs loadBalancerPool in the daemon config');
        loadBalancerIp = await this.allocateIp('lbip', this.o.loadBalancerPool, claim, 0);
      }
      const record: ServiceRecord = {
        name: spec.name,
        type: spec.type,
        clusterIp,
        ports,
        selector: spec.selector,
        externalIps: spec.externalIps,
        ...(loadBalancerIp ? { loadBalancerIp } : {}),
        sessionAffinity: spec.sessionAffinity,
        affinityTimeoutSeconds: spec.affinityTimeoutSeconds,
        externalTrafficPolicy: spec.externalTrafficPolicy,
      };
      if (!(await this.o.store.createIfAbsent(this.services.prefix + record.name, JSON.stringify(record)))) {
        throw exists(`service ${spec.name} already exists`);
      }
      return record;
    } catch (err) {
      for (const k of claimed) await this.o.store.delete(k).catch(() => undefined);
      throw err;
    }
  }

  private async allocateIp(kind: string, cidr: string, claim: (k: string, v: string) => Promise<boolean>, skip: number): Promise<string> {
    const net = parseSubnet(cidr);
    const first = net.prefix >= 31 ? net.network : net.network + 1 + skip;
    const last = net.prefix >= 31 ? net.broadcast : net.broadcast - 1;
    for (let ip = first; ip <= last; ip++) if (await claim(kind, ipv4ToString(ip))) return ipv4ToString(ip);
    throw new PodnetError(ErrorCode.Exhausted, `no free address left in ${cidr} for ${kind === 'lbip' ? 'LoadBalancer IPs' : 'cluster IPs'}`);
  }

  private async allocateNodePort(claim: (k: string, v: string) => Promise<boolean>): Promise<number> {
    const span = NODE_PORT_MAX - NODE_PORT_MIN + 1;
    const start = Math.floor(Math.random() * span);
    for (let i = 0; i < span; i++) {
      const p = NODE_PORT_MIN + ((start + i) % span);
      if (await claim('nodeport', String(p))) return p;
    }
    throw new PodnetError(ErrorCode.Exhausted, `all node ports ${NODE_PORT_MIN}-${NODE_PORT_MAX} are in use`);
  }

  async delete(name: string): Promise<ServiceRecord> {
    const s = await this.services.get(name).catch(() => undefined);
    if (!s) throw notFound(`service ${name} not found`);
    await this.services.delete(name);
    const keys = [
      `${this.root}/alloc/clusterip/${s.clusterIp}`,
      ...s.ports.filter((p) => p.nodePort !== undefined).map((p) => `${this.root}/alloc/nodeport/${p.nodePort}`),
      ...(s.loadBalancerIp ? [`${this.root}/alloc/lbip/${s.loadBalancerIp}`] : []),
    ];
    for (const k of keys) await this.o.store.delete(k);
    return s;
  }

  /** A service as this node knows it now (from its watches), with its endpoint IPs; for the ingress. */
  lookup(name: string): (ServiceRecord & { endpoints: string[] }) | undefined {
    const s = this.svc.get(name);
    if (!s) return undefined;
    const endpoints: string[] = [];
    for (const p of this.pods.values()) if (selects(s.selector, p.labels)) endpoints.push(p.ip);
    return { ...s, endpoints };
  }

  async list(): Promise<Array<ServiceRecord & { endpoints: string[] }>> {
    const pods = await this.o.registry.listPods();
    return (await this.services.list()).map((s) => ({ ...s, endpoints: pods.filter((p) => selects(s.selector, p.labels)).map((p) => p.ip) }));
  }
}
