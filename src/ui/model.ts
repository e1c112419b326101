/**
 * The cluster map of `podnet ui`: what the daemons' API answers, turned into nodes, pods, services
 * and the traffic between them, with rates derived from successive readings of the counters the data
 * plane keeps anyway (no new counting on the data path).
 *
 * - Cluster view (nodes, every node's pods, services and their endpoints) from one daemon: the same
 *   answers `podnet nodes`, `podnet pod list --all` and `podnet svc list` print.
 * - Per node, from that node's own daemon where its API socket is reachable from here: `podnet status`
 *   (per-port rx/tx frames and bytes, drops, VXLAN datagrams, routed packets) and the conntrack table
 *   (`podnet conntrack list`: both tuples and per-direction packet counts of every connection).
 * - Pod rates: differences of the port counters between two readings over the time between them.
 * - Connections (flows): every conntrack entry is one connection from its ORIGINAL source to its
 *   REPLY source (the endpoint a service's DNAT chose), through the service whose address it was sent
 *   to; its rate is the difference of its packet counts (both directions). Conntrack holds what NAT
 *   touches: connections to services (cluster IPs, node ports, LB and external IPs), masqueraded
 *   egress, hairpins. Plain pod-to-pod traffic is never tracked (the router forwards it without an
 *   entry), so it shows in the two pods' rates and their nodes' VXLAN rates, not as a line. Where both
 *   nodes of a connection track it, the larger of their figures is taken, never their sum.
 * - Node rates: VXLAN datagrams sent and received and packets routed. The overlay keeps these per
 *   node, not per peer, so the rate on a link between two nodes is known only where one side has that
 *   link alone (a node with one peer sends all its datagrams to it): `abPerSec` / `baPerSec` are left
 *   out otherwise rather than guessed.
 *
 * Everything here is pure: `MapBuilder.update(snapshot)` takes one reading and returns the map; the
 * builder only remembers the previous counter values.
 */
import { isIpv4, parseCidr } from '../store/subnet.js';
import { ipv4ToString, parseIpv4 } from '../packet/addr.js';

// ---- what the API answers (the parts read here) ---------------------------------------------------

export interface NodeRecordView {
  name: string;
  underlayIp: string;
  vtepMac: string;
  subnet: string;
}

export interface PodRecordView {
  name: string;
  node: string;
  ip: string;
  mac: string;
  labels: Record<string, string>;
  device?: string;
}

export interface ServiceView {
  name: string;
  type: string;
  clusterIp: string;
  loadBalancerIp?: string;
  externalIps: string[];
  ports: Array<{ port: number; targetPort: number; protocol: string; nodePort?: number }>;
  endpoints: string[];
}

export interface PortCountersView {
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  drops: Record<string, number>;
}

/** `GET /v1/status` of one node (see daemon/node.ts and daemon/cluster.ts). */
export interface NodeStatusView {
  node: string;
  subnet: string;
  pods: Array<{ name: string; ip: string; device?: string; counters: PortCountersView }>;
  router: { forwarded: number; drops: Record<string, number> };
  conntrack?: { entries: number; max: number };
  cluster?: {
    vtepMac?: string;
    underlayIp?: string;
    store?: { reachable: boolean };
    vxlan?: { encapsulated: number; decapsulated: number; drops: Record<string, number>; peers: Array<{ underlayIp: string }> };
  };
}

/** One entry of `GET /v1/conntrack`. */
export interface ConnView {
  id: number;
  protoName: string;
  state: string;
  dnat: boolean;
  snat: boolean;
  original: { src: string; dst: string; sport: number; dport: number };
  reply: { src: string; dst: string; sport: number; dport: number };
  packetsOriginal: number;
  packetsReply: number;
}

/** What one node's own daemon answered at `at` (ms), or why it could not be read. */
export type NodeReading = { at: number; status: NodeStatusView; conntrack: ConnView[] } | { at: number; error: string };

/** One poll of the cluster. */
export interface ClusterSnapshot {
  /** When the cluster view was read (ms since the epoch). */
  at: number;
  /** The node whose daemon gave the cluster view. */
  source: string;
  nodes: NodeRecordView[];
  pods: PodRecordView[];
  services: ServiceView[];
  /** Per node name: its own daemon's reading; a node missing here has no daemon reachable from this machine. */
  readings: Record<string, NodeReading>;
}

// ---- the map -------------------------------------------------------------------------------------

export interface Rates {
  rxFramesPerSec: number;
  txFramesPerSec: number;
  rxBytesPerSec: number;
  txBytesPerSec: number;
}

export interface MapNode {
  name: string;
  underlayIp: string;
  subnet: string;
  /**
   * live: counters read from its daemon; unreachable: its daemon did not answer; remote: no daemon
   * socket here; unregistered: pods name it but the cluster has no such node (any more).
   */
  counters: 'live' | 'unreachable' | 'remote' | 'unregistered';
  error?: string;
  podCount: number;
  /** VXLAN datagrams per second sent to / received from other nodes, packets routed per second. */
  vxlanTxPerSec?: number;
  vxlanRxPerSec?: number;
  forwardedPerSec?: number;
  conntrackEntries?: number;
  drops?: number;
}

export interface MapPod {
  /** `node/name`: unique in the cluster. */
  id: string;
  name: string;
  node: string;
  ip: string;
  device?: string;
  labels: Record<string, string>;
  /** Undefined until two readings of the node's counters exist (or while they are not reachable). */
  rates?: Rates;
  rxFrames?: number;
  txFrames?: number;
  drops?: number;
  /** Services that have this pod as an endpoint. */
  services: string[];
}

export interface MapService {
  name: string;
  type: string;
  clusterIp: string;
  addresses: string[];
  ports: string;
  /** Endpoint pods by id. */
  endpoints: string[];
  /** Endpoint addresses that are no known pod. */
  otherEndpoints: string[];
}

/** One end of a flow: a pod, a node itself (its podnet0, gateway or underlay address), or an outside address. */
export type MapRef = { kind: 'pod'; id: string } | { kind: 'node'; name: string } | { kind: 'external'; ip: string };

export interface MapFlow {
  /** `from>to`: stable across updates. */
  key: string;
  from: MapRef;
  to: MapRef;
  /**
   * The services whose addresses the client connected to (DNAT), if any. One pair of ends is one
   * flow whether the client went through a service or not: the endpoint's node sees the connection
   * after the DNAT, and its figure is compared with the client node's.
   */
  services: string[];
  protocols: string[];
  connections: number;
  /** Packets per second, both directions; undefined on the first reading of a connection pair. */
  packetsPerSec?: number;
}

export interface MapNodeLink {
  /** a < b by name. */
  a: string;
  b: string;
  /** VXLAN peers of each other (from either side's status), or only seen as connections. */
  peered: boolean;
  /**
   * VXLAN datagrams per second from a to b and from b to a, where the counters tell it: a's sent
   * datagrams when a has no other peer, else b's received ones when b has no other peer.
   */
  abPerSec?: number;
  baPerSec?: number;
  /** Sum of the rates of the tracked connections (flows) between the two nodes' pods. */
  packetsPerSec: number;
  connections: number;
}

export interface ClusterMap {
  at: number;
  source: string;
  nodes: MapNode[];
  pods: MapPod[];
  services: MapService[];
  flows: MapFlow[];
  externals: string[];
  nodeLinks: MapNodeLink[];
}

/** Most flows in a map (the busiest); the rest are counted in `flowsOmitted`. */
export const MAX_FLOWS = 200;
/** Most outside addresses shown one by one; the others are joined as `other`. */
export const MAX_EXTERNALS = 12;

/**
 * Remembers counter values between readings and turns them into per-second rates. A value lower than
 * the one before means its counter started again (a daemon restart, a re-created pod): no rate then.
 */
export class RateTracker {
  private prev = new Map<string, { v: number; t: number }>();
  private next = new Map<string, { v: number; t: number }>();

  /** Per second since the previous reading of `key`; undefined for a first reading or a reset counter. */
  rate(key: string, value: number, at: number): number | undefined {
    this.next.set(key, { v: value, t: at });
    const p = this.prev.get(key);
    if (!p || at <= p.t || value < p.v) return undefined;
    return ((value - p.v) * 1000) / (at - p.t);
  }

  /** The increase since the previous reading, or undefined when there is none (or the counter reset). */
  delta(key: string, value: number): number | undefined {
    const p = this.prev.get(key);
    this.next.set(key, { v: value, t: 0 });
    if (!p || value < p.v) return undefined;
    return value - p.v;
  }

  /** Ends a reading: keys not read in it are forgotten. */
  commit(): void {
    this.prev = this.next;
    this.next = new Map();
  }
}

/** Subnet "10.244.3.0/24" -> its host address (.0, podnet0) and gateway (.1). */
function nodeAddresses(subnet: string): string[] {
  try {
    const { base } = parseCidr(subnet);
    return [ipv4ToString(base), ipv4ToString((base + 1) >>> 0)];
  } catch {
    return [];
  }
}

const round = (v: number | undefined, digits = 1): number | undefined => (v === undefined ? undefined : Math.round(v * 10 ** digits) / 10 ** digits);
const sumValues = (r: Record<string, number> | undefined): number => Object.values(r ?? {}).reduce((a, b) => a + b, 0);

/** Builds maps from successive snapshots; keeps the previous counter values for the rates. */
export class MapBuilder {
  private readonly counters = new RateTracker();
  /** Per node, the time of its previous reading (ms): a connection first seen after it is new. */
  private lastReading = new Map<string, number>();

  update(snap: ClusterSnapshot): ClusterMap {
    const podsByIp = new Map<string, string>();
    const pods: MapPod[] = [...snap.pods]
      .sort((a, b) => a.node.localeCompare(b.node) || a.name.localeCompare(b.name))
      .map((p) => {
        const id = `${p.node}/${p.name}`;
        podsByIp.set(p.ip, id);
        return { id, name: p.name, node: p.node, ip: p.ip, ...(p.device ? { device: p.device } : {}), labels: { ...p.labels }, services: [] };
      });
    const podById = new Map(pods.map((p) => [p.id, p]));
    const nodeByAddr = new Map<string, string>();
    for (const n of snap.nodes) {
      nodeByAddr.set(n.underlayIp, n.name);
      for (const a of nodeAddresses(n.subnet)) nodeByAddr.set(a, n.name);
    }

    // Services: addresses a client connects to, and their endpoints as pods.
    const serviceByAddr = new Map<string, string>();
    const serviceByNodePort = new Map<number, string>();
    const services: MapService[] = [...snap.services]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((s) => {
        const addresses = [s.clusterIp, ...(s.loadBalancerIp ? [s.loadBalancerIp] : []), ...s.externalIps];
        for (const a of addresses) serviceByAddr.set(a, s.name);
        for (const p of s.ports) if (p.nodePort) serviceByNodePort.set(p.nodePort, s.name);
        const endpoints: string[] = [];
        const otherEndpoints: string[] = [];
        for (const ip of s.endpoints) {
          const id = podsByIp.get(ip);
          if (id) {
            endpoints.push(id);
            podById.get(id)!.services.push(s.name);
          } else otherEndpoints.push(ip);
        }
        return {
          name: s.name,
          type: s.type,
          clusterIp: s.clusterIp,
          addresses,
          ports: s.ports.map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}${p.targetPort !== p.port ? `>${p.targetPort}` : ''}/${p.protocol}`).join(','),
          endpoints: endpoints.sort(),
          otherEndpoints,
        };
      });

    const ref = (ip: string): MapRef => {
      const pod = podsByIp.get(ip);
      if (pod) return { kind: 'pod', id: pod };
      const node = nodeByAddr.get(ip);
      if (node) return { kind: 'node', name: node };
      return { kind: 'external', ip };
    };
    const refKey = (r: MapRef) => (r.kind === 'pod' ? `pod:${r.id}` : r.kind === 'node' ? `node:${r.name}` : `ext:${r.ip}`);

    // Flows: per (from, to, service), per node: packets since the previous reading and connections.
    interface Acc {
      from: MapRef;
      to: MapRef;
      services: Set<string>;
      protocols: Set<string>;
      perNode: Map<string, { packets: number; known: boolean; connections: number; seconds: number }>;
    }
    const flows = new Map<string, Acc>();
    const peers = new Map<string, boolean>();
    /** Per node with live counters: its VXLAN peers (node names) and datagram rates. */
    const vxlanOf = new Map<string, { peers: string[]; tx?: number; rx?: number }>();
    const known = new Set(snap.nodes.map((n) => n.name));
    const unregistered = [...new Set(pods.filter((p) => !known.has(p.node)).map((p) => p.node))];
    const nodes: MapNode[] = [...snap.nodes]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((n) => {
        const podCount = pods.filter((p) => p.node === n.name).length;
        const r = snap.readings[n.name];
        const base = { name: n.name, underlayIp: n.underlayIp, subnet: n.subnet, podCount };
        if (!r) return { ...base, counters: 'remote' as const };
        if ('error' in r) return { ...base, counters: 'unreachable' as const, error: r.error };
        const st = r.status;
        const k = `node:${n.name}:`;
        const vx = st.cluster?.vxlan;
        const peerNames: string[] = [];
        for (const p of vx?.peers ?? []) {
          const other = nodeByAddr.get(p.underlayIp);
          if (other && other !== n.name) {
            peers.set([n.name, other].sort().join('|'), true);
            peerNames.push(other);
          }
        }
        const vxlanTxPerSec = vx ? round(this.counters.rate(`${k}vxtx`, vx.encapsulated, r.at)) : undefined;
        const vxlanRxPerSec = vx ? round(this.counters.rate(`${k}vxrx`, vx.decapsulated, r.at)) : undefined;
        // Peers it has no subnet route to any more are not counted: its peer list is what it sends to.
        if (vx) vxlanOf.set(n.name, { peers: peerNames, ...(vxlanTxPerSec !== undefined ? { tx: vxlanTxPerSec } : {}), ...(vxlanRxPerSec !== undefined ? { rx: vxlanRxPerSec } : {}) });
        for (const sp of st.pods) {
          const pod = podById.get(`${n.name}/${sp.name}`);
          if (!pod) continue;
          const c = sp.counters;
          const pk = `${k}pod:${sp.name}:`;
          const rx = this.counters.rate(pk + 'rxf', c.rxFrames, r.at);
          const tx = this.counters.rate(pk + 'txf', c.txFrames, r.at);
          const rxb = this.counters.rate(pk + 'rxb', c.rxBytes, r.at);
          const txb = this.counters.rate(pk + 'txb', c.txBytes, r.at);
          if (rx !== undefined && tx !== undefined && rxb !== undefined && txb !== undefined) {
            pod.rates = { rxFramesPerSec: round(rx)!, txFramesPerSec: round(tx)!, rxBytesPerSec: Math.round(rxb), txBytesPerSec: Math.round(txb) };
          }
          pod.rxFrames = c.rxFrames;
          pod.txFrames = c.txFrames;
          pod.drops = sumValues(c.drops);
          if (!pod.device && sp.device) pod.device = sp.device;
        }
        // Connections: the previous reading of this node tells which ones are new since.
        const prevAt = this.lastReading.get(n.name);
        this.lastReading.set(n.name, r.at);
        const seconds = prevAt !== undefined && r.at > prevAt ? (r.at - prevAt) / 1000 : 0;
        for (const c of r.conntrack) {
          const from = ref(c.original.src);
          const to = ref(c.reply.src);
          const fk = refKey(from);
          const tk = refKey(to);
          if (fk === tk) continue; // a pod reaching itself through a service (hairpin)
          let service: string | undefined;
          if (c.dnat) service = serviceByAddr.get(c.original.dst) ?? (nodeByAddr.has(c.original.dst) ? serviceByNodePort.get(c.original.dport) : undefined);
          const key = `${fk}>${tk}`;
          let acc = flows.get(key);
          if (!acc) flows.set(key, (acc = { from, to, services: new Set(), protocols: new Set(), perNode: new Map() }));
          if (service) acc.services.add(service);
          acc.protocols.add(c.protoName);
          let pn = acc.perNode.get(n.name);
          if (!pn) acc.perNode.set(n.name, (pn = { packets: 0, known: seconds > 0, connections: 0, seconds }));
          pn.connections++;
          const total = c.packetsOriginal + c.packetsReply;
          const ck = `${k}ct:${c.id}:${c.protoName}:${c.original.src}:${c.original.sport}>${c.original.dst}:${c.original.dport}`;
          const d = this.counters.delta(ck, total);
          // Seen before: what it sent since. New since the previous reading: all of it.
          if (d !== undefined) pn.packets += d;
          else if (seconds > 0) pn.packets += total;
        }
        return {
          ...base,
          counters: 'live' as const,
          ...(vx ? { vxlanTxPerSec, vxlanRxPerSec } : {}),
          forwardedPerSec: round(this.counters.rate(`${k}fwd`, st.router.forwarded, r.at)),
          conntrackEntries: st.conntrack?.entries,
          drops: sumValues(st.router.drops) + sumValues(vx?.drops),
        };
      });
    for (const name of unregistered.sort()) {
      nodes.push({ name, underlayIp: '', subnet: '', counters: 'unregistered', podCount: pods.filter((p) => p.node === name).length });
    }
    this.counters.commit();
    for (const name of [...this.lastReading.keys()]) {
      const r = snap.readings[name];
      if (!r || 'error' in r) this.lastReading.delete(name);
    }

    let mapFlows: MapFlow[] = [...flows.entries()].map(([key, a]) => {
      let rate: number | undefined;
      let connections = 0;
      for (const pn of a.perNode.values()) {
        connections = Math.max(connections, pn.connections);
        if (pn.known) rate = Math.max(rate ?? 0, pn.packets / pn.seconds);
      }
      return {
        key,
        from: a.from,
        to: a.to,
        services: [...a.services].sort(),
        protocols: [...a.protocols].sort(),
        connections,
        ...(rate !== undefined ? { packetsPerSec: round(rate)! } : {}),
      };
    });
    mapFlows.sort((x, y) => (y.packetsPerSec ?? 0) - (x.packetsPerSec ?? 0) || y.connections - x.connections || x.key.localeCompare(y.key));
    mapFlows = mapFlows.slice(0, MAX_FLOWS);

    // Outside addresses: the busiest one by one, the rest as "other".
    const extRate = new Map<string, number>();
    for (const f of mapFlows) for (const r of [f.from, f.to]) if (r.kind === 'external') extRate.set(r.ip, (extRate.get(r.ip) ?? 0) + (f.packetsPerSec ?? 0) + 1e-9);
    const shown = [...extRate.entries()].sort((a, b) => b[1] - a[1] || cmpIp(a[0], b[0])).map(([ip]) => ip);
    const keep = new Set(shown.slice(0, MAX_EXTERNALS));
    const externals = shown.slice(0, MAX_EXTERNALS).sort(cmpIp);
    if (shown.length > MAX_EXTERNALS) {
      externals.push('other');
      const fold = (r: MapRef): MapRef => (r.kind === 'external' && !keep.has(r.ip) ? { kind: 'external', ip: 'other' } : r);
      const merged = new Map<string, MapFlow>();
      for (const f of mapFlows) {
        const from = fold(f.from);
        const to = fold(f.to);
        const key = `${refKey(from)}>${refKey(to)}`;
        const m = merged.get(key);
        if (!m) {
          merged.set(key, { ...f, key, from, to });
          continue;
        }
        m.services = [...new Set([...m.services, ...f.services])].sort();
        m.protocols = [...new Set([...m.protocols, ...f.protocols])].sort();
        m.connections += f.connections;
        if (m.packetsPerSec !== undefined || f.packetsPerSec !== undefined) m.packetsPerSec = round((m.packetsPerSec ?? 0) + (f.packetsPerSec ?? 0));
      }
      mapFlows = [...merged.values()];
    }

    // Between nodes: the flows whose two ends are on different nodes.
    const nodeOf = (r: MapRef): string | undefined => (r.kind === 'pod' ? podById.get(r.id)?.node : r.kind === 'node' ? r.name : undefined);
    const links = new Map<string, MapNodeLink>();
    for (const key of peers.keys()) {
      const [a, b] = key.split('|') as [string, string];
      links.set(key, { a, b, peered: true, packetsPerSec: 0, connections: 0 });
    }
    for (const f of mapFlows) {
      const a = nodeOf(f.from);
      const b = nodeOf(f.to);
      if (!a || !b || a === b) continue;
      const key = [a, b].sort().join('|');
      let l = links.get(key);
      if (!l) {
        const [x, y] = key.split('|') as [string, string];
        links.set(key, (l = { a: x, b: y, peered: false, packetsPerSec: 0, connections: 0 }));
      }
      l.packetsPerSec = round(l.packetsPerSec + (f.packetsPerSec ?? 0))!;
      l.connections += f.connections;
    }
    // A direction's datagram rate, where one side has this link alone.
    const direction = (from: string, to: string): number | undefined => {
      const f = vxlanOf.get(from);
      if (f && f.peers.length === 1 && f.peers[0] === to && f.tx !== undefined) return f.tx;
      const t = vxlanOf.get(to);
      if (t && t.peers.length === 1 && t.peers[0] === from && t.rx !== undefined) return t.rx;
      return undefined;
    };
    for (const l of links.values()) {
      const ab = direction(l.a, l.b);
      const ba = direction(l.b, l.a);
      if (ab !== undefined) l.abPerSec = ab;
      if (ba !== undefined) l.baPerSec = ba;
    }
    const nodeLinks = [...links.values()].sort((x, y) => x.a.localeCompare(y.a) || x.b.localeCompare(y.b));

    return { at: snap.at, source: snap.source, nodes, pods, services, flows: mapFlows, externals, nodeLinks };
  }
}

function cmpIp(a: string, b: string): number {
  if (isIpv4(a) && isIpv4(b)) return parseIpv4(a) - parseIpv4(b);
  return a.localeCompare(b);
}
