/**
 * Prometheus metrics of a node (`metrics.address` in the config; off by default), through prom-client.
 *
 * Nothing is counted for it on the data path: every value is read at scrape time from the counters
 * the data plane keeps anyway (typed arrays and plain numbers, the same ones `podnet status` shows),
 * by prom-client `collect` callbacks. Counters are set to the current total on each scrape
 * (`reset` + `inc`), so they stay monotonic as long as the daemon runs, as Prometheus expects of a
 * counter whose process restarts.
 *
 * Names follow Prometheus conventions: the `podnet_` prefix, `_total` for counters, bytes and seconds
 * as base units. Labels are bounded: `pod` (the node's pods), `reason` (the fixed DropReason table and
 * the uplink's drop names), `direction` (rx/tx), `peer` (the other nodes' underlay addresses). Nothing
 * is labelled by address, port or flow.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** What the exporter reads at each scrape: the node's status as the API returns it. */
export interface MetricsSource {
  status(): NodeStatusView;
}

/** The parts of `podnet status` the exporter reads (see daemon/node.ts and daemon/cluster.ts). */
export interface NodeStatusView {
  pods: Array<{ name: string; counters: { rxFrames: number; rxBytes: number; txFrames: number; txBytes: number; drops: Record<string, number> } }>;
  router: { forwarded: number; drops: Record<string, number> };
  conntrack: {
    entries: number;
    max: number;
    created: number;
    expired: number;
    evicted: number;
    dropFull: number;
    invalid: number;
    states?: Array<{ protocol: string; state: string; count: number }>;
    snat?: Record<string, number>;
  };
  cluster?: {
    vxlan?: {
      encapsulated: number;
      decapsulated: number;
      gsoRuns: number;
      groSuperFrames: number;
      rcoSent?: number;
      rcoReceived?: number;
      drops: Record<string, number>;
      peers: Array<{ underlayIp: string; txDatagrams?: number; rxDatagrams?: number }>;
    };
    uplink?: { captured: number; sent: number; drops?: Record<string, number> };
    store?: { reachable: boolean; outages: number };
    ingress?: { serving: boolean; requests?: number; proxied?: number; notFound?: number; unavailable?: number; badGateway?: number; gatewayTimeout?: number };
  };
}

type Reader = (set: (labels: Record<string, string>, v: number) => void) => void;

/**
 * A metric whose values are read at scrape time: a counter set to the current totals (reset, then
 * one `inc` by the total: prom-client counters have no `set`), or a gauge set to the current values.
 */
function readAtScrape(kind: 'counter' | 'gauge', registry: Registry, name: string, help: string, labelNames: string[], read: Reader): void {
  const cfg = { name, help, labelNames, registers: [registry] };
  if (kind === 'counter') {
    new Counter({
      ...cfg,
      collect() {
        this.reset();
        read((labels, v) => this.inc(labels, v));
      },
    });
  } else {
    new Gauge({
      ...cfg,
      collect() {
        this.reset();
        read((labels, v) => this.set(labels, v));
      },
    });
  }
}
const totalCounter = (registry: Registry, name: string, help: string, labelNames: string[], read: Reader) => readAtScrape('counter', registry, name, help, labelNames, read);
const gauge = (registry: Registry, name: string, help: string, labelNames: string[], read: Reader) => readAtScrape('gauge', registry, name, help, labelNames, read);

/** Builds the registry of one node: every podnet metric, and the process's (podnet_process_*). */
export function buildRegistry(source: MetricsSource): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'podnet_' });
  // One status read per scrape, shared by every collector of that scrape.
  let cached: NodeStatusView | undefined;
  let cachedAt = -1;
  const st = (): NodeStatusView => {
    const now = Date.now();
    if (cached === undefined || now !== cachedAt) {
      cached = source.status();
      cachedAt = now;
    }
    return cached;
  };
  const perPod = (field: 'rxFrames' | 'rxBytes' | 'txFrames' | 'txBytes') => (set: (l: Record<string, string>, v: number) => void) => {
    for (const p of st().pods) set({ pod: p.name }, p.counters[field]);
  };
  totalCounter(registry, 'podnet_pod_receive_frames_total', 'Frames the data plane received from a pod', ['pod'], perPod('rxFrames'));
  totalCounter(registry, 'podnet_pod_receive_bytes_total', 'Bytes the data plane received from a pod', ['pod'], perPod('rxBytes'));
  totalCounter(registry, 'podnet_pod_transmit_frames_total', 'Frames the data plane sent to a pod', ['pod'], perPod('txFrames'));
  totalCounter(registry, 'podnet_pod_transmit_bytes_total', 'Bytes the data plane sent to a pod', ['pod'], perPod('txBytes'));
  totalCounter(registry, 'podnet_pod_drops_total', 'Frames to or from a pod that were dropped, by reason (NetworkPolicy refusals of either direction included)', ['pod', 'reason'], (set) => {
    for (const p of st().pods) for (const [reason, v] of Object.entries(p.counters.drops)) set({ pod: p.name, reason }, v);
  });
  totalCounter(registry, 'podnet_router_forwarded_total', 'IPv4 packets the router forwarded', [], (set) => set({}, st().router.forwarded));
  totalCounter(registry, 'podnet_router_drops_total', 'Packets the router dropped, by reason', ['reason'], (set) => {
    for (const [reason, v] of Object.entries(st().router.drops)) set({ reason }, v);
  });
  totalCounter(registry, 'podnet_vxlan_datagrams_total', 'VXLAN datagrams sent (tx) and received (rx)', ['direction'], (set) => {
    const v = st().cluster?.vxlan;
    if (v === undefined) return;
    set({ direction: 'tx' }, v.encapsulated);
    set({ direction: 'rx' }, v.decapsulated);
  });
  totalCounter(registry, 'podnet_vxlan_gso_runs_total', 'Super-frames handed to the kernel as one UDP GSO run', [], (set) => {
    const v = st().cluster?.vxlan;
    if (v !== undefined) set({}, v.gsoRuns);
  });
  totalCounter(registry, 'podnet_vxlan_rco_datagrams_total', 'VXLAN datagrams sent (tx) and received (rx) with remote checksum offload (inner checksum partial)', ['direction'], (set) => {
    const v = st().cluster?.vxlan;
    if (v === undefined) return;
    set({ direction: 'tx' }, v.rcoSent ?? 0);
    set({ direction: 'rx' }, v.rcoReceived ?? 0);
  });
  totalCounter(registry, 'podnet_vxlan_gro_super_frames_total', 'Super-frames joined from received runs (GRO)', [], (set) => {
    const v = st().cluster?.vxlan;
    if (v !== undefined) set({}, v.groSuperFrames);
  });
  totalCounter(registry, 'podnet_vxlan_drops_total', 'VXLAN datagrams dropped, by reason', ['reason'], (set) => {
    for (const [reason, v] of Object.entries(st().cluster?.vxlan?.drops ?? {})) set({ reason }, v);
  });
  totalCounter(registry, 'podnet_vxlan_peer_datagrams_total', 'VXLAN datagrams sent to (tx) and accepted from (rx) each other node, by its underlay address', ['peer', 'direction'], (set) => {
    for (const p of st().cluster?.vxlan?.peers ?? []) {
      set({ peer: p.underlayIp, direction: 'tx' }, p.txDatagrams ?? 0);
      set({ peer: p.underlayIp, direction: 'rx' }, p.rxDatagrams ?? 0);
    }
  });
  gauge(registry, 'podnet_vxlan_peers', 'Other nodes this node has a VXLAN route to', [], (set) => set({}, st().cluster?.vxlan?.peers.length ?? 0));
  gauge(registry, 'podnet_conntrack_entries', 'Connections in the conntrack table', [], (set) => set({}, st().conntrack.entries));
  gauge(registry, 'podnet_conntrack_connections', 'Unexpired connections by protocol and state', ['protocol', 'state'], (set) => {
    for (const c of st().conntrack.states ?? []) set({ protocol: c.protocol, state: c.state }, c.count);
  });
  gauge(registry, 'podnet_nat_ports_in_use', 'Source ports (ICMP: identifiers) held by source-NATed connections (masquerade, hairpin, node ports)', ['protocol'], (set) => {
    for (const [protocol, v] of Object.entries(st().conntrack.snat ?? {})) set({ protocol }, v);
  });
  gauge(registry, 'podnet_store_reachable', 'Whether the cluster store answers (1) or not (0)', [], (set) => {
    const s = st().cluster?.store;
    if (s !== undefined) set({}, s.reachable ? 1 : 0);
  });
  totalCounter(registry, 'podnet_store_outages_total', 'Times the cluster store became unreachable', [], (set) => {
    const s = st().cluster?.store;
    if (s !== undefined) set({}, s.outages);
  });
  totalCounter(registry, 'podnet_ingress_requests_total', 'HTTP requests the ingress answered, by result (proxied, or the status it answered itself)', ['code'], (set) => {
    const i = st().cluster?.ingress;
    if (i === undefined || !i.serving) return;
    set({ code: 'proxied' }, i.proxied ?? 0);
    set({ code: '404' }, i.notFound ?? 0);
    set({ code: '502' }, i.badGateway ?? 0);
    set({ code: '503' }, i.unavailable ?? 0);
    set({ code: '504' }, i.gatewayTimeout ?? 0);
  });
  gauge(registry, 'podnet_conntrack_max_entries', 'Size of the conntrack table', [], (set) => set({}, st().conntrack.max));
  totalCounter(registry, 'podnet_conntrack_inserts_total', 'Connections created', [], (set) => set({}, st().conntrack.created));
  totalCounter(registry, 'podnet_conntrack_expired_total', 'Connections reclaimed after their timeout', [], (set) => set({}, st().conntrack.expired));
  totalCounter(registry, 'podnet_conntrack_evictions_total', 'Unassured connections dropped to make room', [], (set) => set({}, st().conntrack.evicted));
  totalCounter(registry, 'podnet_conntrack_table_full_total', 'New connections refused: the table was full of assured ones', [], (set) => set({}, st().conntrack.dropFull));
  totalCounter(registry, 'podnet_conntrack_invalid_total', 'Packets invalid for their connection state', [], (set) => set({}, st().conntrack.invalid));
  totalCounter(registry, 'podnet_uplink_packets_total', 'Packets taken off (rx) and sent out of (tx) the uplink', ['direction'], (set) => {
    const u = st().cluster?.uplink;
    if (u === undefined) return;
    set({ direction: 'rx' }, u.captured);
    set({ direction: 'tx' }, u.sent);
  });
  return registry;
}

/** Parses `metrics.address` ("host:port"); throws with the field named. */
export function parseListen(address: string): { host: string; port: number } {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]|localhost):(\d{1,5})$/.exec(address);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) throw new Error(`invalid config: metrics.address: expected host:port (e.g. 127.0.0.1:9464), got ${JSON.stringify(address)}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

/** The HTTP endpoint: GET /metrics in the text exposition format, everything else 404. */
export class MetricsServer {
  private constructor(
    private readonly server: Server,
    readonly address: string,
  ) {}

  static async start(address: string, registry: Registry): Promise<MetricsServer> {
    const { host, port } = parseListen(address);
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics\n');
        return;
      }
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${err.message}\n`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const a = server.address() as AddressInfo;
    return new MetricsServer(server, `${a.address}:${a.port}`);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
