/**
 * NetworkPolicy compiled into tables a new connection is decided with in a bounded number of hash
 * probes, however many policies there are (see docs/ARCHITECTURE.md, "NetworkPolicy"):
 *
 * - every pod of the cluster gets a peer class (pods with one namespace, labels and named ports share
 *   one), found from its address in one U32Map probe;
 * - every address gets a CIDR class: the ipBlock CIDRs and their excepts cut the address space into
 *   elementary intervals, stored as disjoint aligned prefixes in one map per prefix length (at most 33
 *   probes, usually a handful);
 * - ports of each protocol are cut into elementary intervals (Uint16Array port -> class);
 * - each local pod selected by a policy gets a target class per direction (pods with the same selecting
 *   policies and named ports share one), and the union of what those policies allow is materialised as
 *   entries (target, peer, protocol, port class) -> the first policy that allows it; "any peer" and "any
 *   port" are entries of their own, so a lookup is at most 3 peers x 3 port keys.
 *
 * Compilation is control-plane work (it allocates); `decide` allocates nothing.
 */
import { IpProtocol } from '../packet/index.js';
import { U32Map } from '../util/u32map.js';
import { parseCidr } from '../store/subnet.js';
import { selectorMatches, type PolicyPeer, type PolicyRecord, type PolicyRule, type Protocol } from './spec.js';

export interface NamedPort {
  name: string;
  port: number;
  protocol: Protocol;
}

/** A pod as policy sees it. `ip` unsigned. */
export interface PolicyPod {
  name: string;
  node: string;
  namespace: string;
  ip: number;
  labels: Record<string, string>;
  namedPorts?: NamedPort[];
}

export interface PolicyInput {
  policies: PolicyRecord[];
  /** Every pod of the cluster (peers), the local ones included. */
  pods: PolicyPod[];
  /** Namespace labels (without the implicit kubernetes.io/metadata.name, which is added). */
  namespaces: Map<string, Record<string, string>>;
  /** Pods of this node are targets (policy is enforced for them here); undefined: every pod. */
  localNode: string | undefined;
}

export const Dir = { Ingress: 0, Egress: 1 } as const;
export type Dir = (typeof Dir)[keyof typeof Dir];

const PROTO_INDEX: Record<Protocol, number> = { TCP: 0, UDP: 1, SCTP: 2 };
const PROTOS = 3;
/** IP protocol number -> index into the port tables (-1: a protocol without ports, e.g. ICMP). */
export function protoIndex(proto: number): number {
  return proto === IpProtocol.TCP ? 0 : proto === IpProtocol.UDP ? 1 : proto === 132 ? 2 : -1;
}

export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

export function namespaceLabels(namespaces: Map<string, Record<string, string>>, ns: string): Record<string, string> {
  return { ...(namespaces.get(ns) ?? {}), [NAMESPACE_NAME_LABEL]: ns };
}

/** Does a peer (podSelector/namespaceSelector part) of a policy in `policyNs` select this pod? */
export function peerSelectsPod(peer: PolicyPeer, policyNs: string, pod: PolicyPod, namespaces: Map<string, Record<string, string>>): boolean {
  if (peer.ipBlock) return false;
  if (peer.namespaceSelector) {
    if (!selectorMatches(peer.namespaceSelector, namespaceLabels(namespaces, pod.namespace))) return false;
  } else if (pod.namespace !== policyNs) return false;
  return peer.podSelector ? selectorMatches(peer.podSelector, pod.labels) : true;
}

/** Does an ipBlock peer match this (unsigned) address? */
export function ipBlockMatches(peer: PolicyPeer, ip: number): boolean {
  if (!peer.ipBlock) return false;
  if (!inCidr(parseCidr(peer.ipBlock.cidr), ip)) return false;
  return !(peer.ipBlock.except ?? []).some((e) => inCidr(parseCidr(e), ip));
}

function inCidr(c: { base: number; prefix: number }, ip: number): boolean {
  const m = c.prefix === 0 ? 0 : (0xffffffff << (32 - c.prefix)) >>> 0;
  return ((ip & m) >>> 0) === c.base;
}

/** The numeric port range a rule port means for a pod with these named ports; null: it names a port the pod lacks. */
export function resolvePort(p: PolicyRule['ports'][number], named: NamedPort[] | undefined): [number, number] | null {
  if (p.port === undefined) return [1, 65535];
  if (typeof p.port === 'number') return [p.port, p.endPort ?? p.port];
  const n = named?.find((x) => x.name === p.port && x.protocol === p.protocol);
  return n ? [n.port, n.port] : null;
}

/** Does a rule's port list allow (proto, port) towards `portOwner` (whose named ports resolve)? */
export function rulePortsAllow(rule: PolicyRule, proto: number, port: number, portOwner: PolicyPod | undefined): boolean {
  if (rule.ports.length === 0) return true;
  const pi = protoIndex(proto);
  if (pi < 0) return false;
  for (const p of rule.ports) {
    if (PROTO_INDEX[p.protocol] !== pi) continue;
    const r = resolvePort(p, portOwner?.namedPorts);
    if (r && port >= r[0] && port <= r[1]) return true;
  }
  return false;
}

export function policySelects(p: PolicyRecord, pod: PolicyPod): boolean {
  return p.namespace === pod.namespace && selectorMatches(p.podSelector, pod.labels);
}

function isolates(p: PolicyRecord, dir: Dir): boolean {
  return dir === Dir.Ingress ? p.ingressIsolated : p.egressIsolated;
}
function rules(p: PolicyRecord, dir: Dir): PolicyRule[] {
  return dir === Dir.Ingress ? p.ingress : p.egress;
}

/** Result codes of `decide` (per direction). */
export const Decision = {
  /** No policy of this direction selects the pod: everything is allowed. */
  NotSelected: -1,
  /** Selected, and nothing allows it. */
  Denied: -2,
} as const;

const ANY_PEER = 0;

/**
 * The compiled form of every policy for this node's pods. Immutable once built; a change builds a
 * new one and the hook swaps it in (one reference), so a connection sees the old tables or the new.
 */
export class CompiledPolicies {
  /** Policies by index (entries point at the first policy that allows). */
  readonly policies: PolicyRecord[];
  /** Pod address -> peer class (1..). */
  private readonly podPeer = new U32Map(64);
  /** Prefix lengths present in `cidrMaps`, longest first. */
  private readonly prefixLens: Int32Array;
  private readonly prefixMasks: Int32Array;
  private readonly cidrMaps: U32Map[];
  /** Per protocol: port -> port class (1..). */
  private readonly portClass: Uint16Array[] = [];
  private readonly portClasses: number;
  /** Local pod address -> target class, per direction. */
  private readonly targets: [U32Map, U32Map] = [new U32Map(16), new U32Map(16)];
  /** Per direction, per target class: (peer, port key) -> policy index + 1. */
  private readonly tables: [U32Map[], U32Map[]] = [[], []];
  private readonly portKeys: number;
  /** Entries in all tables (for status and the bench). */
  entries = 0;
  readonly peerClasses: number;
  readonly cidrClasses: number;
  readonly targetClasses: [number, number];

  constructor(input: PolicyInput) {
    this.policies = input.policies.slice().sort((a, b) => (a.namespace + '/' + a.name < b.namespace + '/' + b.name ? -1 : 1));
    const pols = this.policies;
    // Named ports anyone refers to: only those split classes.
    const names = new Set<string>();
    for (const p of pols) for (const r of [...p.ingress, ...p.egress]) for (const port of r.ports) if (typeof port.port === 'string') names.add(`${port.protocol}/${port.port}`);
    const namedOf = (pod: PolicyPod) => (pod.namedPorts ?? []).filter((n) => names.has(`${n.protocol}/${n.name}`)).sort((a, b) => (a.name < b.name ? -1 : 1));

    // ---- ports ----
    const bounds: Array<Set<number>> = [];
    for (let i = 0; i < PROTOS; i++) bounds.push(new Set([1]));
    const addRange = (proto: Protocol, lo: number, hi: number) => {
      const b = bounds[PROTO_INDEX[proto]]!;
      b.add(lo);
      if (hi < 65535) b.add(hi + 1);
    };
    for (const p of pols) for (const r of [...p.ingress, ...p.egress]) for (const port of r.ports) if (typeof port.port === 'number') addRange(port.protocol, port.port, port.endPort ?? port.port);
    for (const pod of input.pods) for (const n of namedOf(pod)) addRange(n.protocol, n.port, n.port);
    let maxClasses = 1;
    for (let i = 0; i < PROTOS; i++) {
      const sorted = [...bounds[i]!].sort((a, b) => a - b);
      const t = new Uint16Array(65536);
      for (let c = 0; c < sorted.length; c++) t.fill(c + 1, sorted[c]!, c + 1 < sorted.length ? sorted[c + 1]! : 65536);
      this.portClass.push(t);
      maxClasses = Math.max(maxClasses, sorted.length);
    }
    this.portClasses = maxClasses;
    // Port key: 0 any protocol and port; 1 + proto * (classes + 1) + class, class 0 = any port of proto.
    this.portKeys = 1 + PROTOS * (maxClasses + 1);
    const portKey = (pi: number, cls: number) => 1 + pi * (this.portClasses + 1) + cls;
    /** The port keys a rule port covers (for a resolved range). */
    const keysOfRange = (proto: Protocol, lo: number, hi: number): number[] => {
      const pi = PROTO_INDEX[proto];
      if (lo === 1 && hi === 65535) return [portKey(pi, 0)];
      const t = this.portClass[pi]!;
      const out: number[] = [];
      for (let c = t[lo]!; c <= t[hi]!; c++) out.push(portKey(pi, c));
      return out;
    };

    // ---- peers: pod classes ----
    const classOf = new Map<string, number>();
    const classRep: PolicyPod[] = [undefined as unknown as PolicyPod];
    for (const pod of input.pods) {
      const sig = JSON.stringify([pod.namespace, Object.entries(pod.labels).sort(), namedOf(pod)]);
      let c = classOf.get(sig);
      if (c === undefined) {
        c = classRep.length;
        classRep.push(pod);
        classOf.set(sig, c);
      }
      this.podPeer.set(pod.ip, c);
    }
    const podClasses = classRep.length - 1;
    this.peerClasses = podClasses;

    // ---- peers: CIDR classes ----
    const blocks: Array<{ base: number; prefix: number }> = [];
    const outers: Array<{ base: number; prefix: number }> = [];
    for (const p of pols)
      for (const r of [...p.ingress, ...p.egress])
        for (const peer of r.peers ?? [])
          if (peer.ipBlock) {
            const o = parseCidr(peer.ipBlock.cidr);
            outers.push(o);
            blocks.push(o, ...(peer.ipBlock.except ?? []).map((e) => parseCidr(e)));
          }
    const cuts = new Set<number>();
    for (const b of blocks) {
      cuts.add(b.base);
      cuts.add(b.base + 2 ** (32 - b.prefix));
    }
    const sortedCuts = [...cuts].sort((a, b) => a - b);
    const intervals: Array<[number, number]> = []; // [lo, hi) inside some ipBlock cidr
    for (let i = 0; i + 1 < sortedCuts.length; i++) {
      const lo = sortedCuts[i]!;
      const hi = sortedCuts[i + 1]!;
      if (outers.some((o) => inCidr(o, lo))) intervals.push([lo, hi]);
    }
    this.cidrClasses = intervals.length;
    const byLen = new Map<number, U32Map>();
    intervals.forEach(([lo, hi], i) => {
      const cls = podClasses + 1 + i;
      for (let a = lo; a < hi; ) {
        let size = a === 0 ? 2 ** 32 : 2 ** Math.min(32, ctz(a));
        while (a + size > hi) size /= 2;
        const len = 32 - Math.log2(size);
        let m = byLen.get(len);
        if (!m) byLen.set(len, (m = new U32Map(16)));
        m.set(a, cls);
        a += size;
      }
    });
    const lens = [...byLen.keys()].sort((a, b) => b - a);
    this.prefixLens = Int32Array.from(lens);
    this.prefixMasks = Int32Array.from(lens.map((l) => (l === 0 ? 0 : (0xffffffff << (32 - l)) | 0)));
    this.cidrMaps = lens.map((l) => byLen.get(l)!);
    const cidrClassesOf = (peer: PolicyPeer): number[] => {
      const out: number[] = [];
      intervals.forEach(([lo], i) => {
        if (ipBlockMatches(peer, lo)) out.push(podClasses + 1 + i);
      });
      return out;
    };

    const peerCount = 1 + podClasses + intervals.length;
    const wide = peerCount * this.portKeys > 2 ** 32;
    if (wide) throw new Error(`policy tables too large: ${peerCount} peer classes x ${this.portKeys} port keys`);

    // ---- targets and their tables ----
    const podPeersOfRule = new Map<string, number[]>();
    const podClassesOf = (pi: number, dir: Dir, ri: number, peerIdx: number, peer: PolicyPeer): number[] => {
      const k = `${pi}/${dir}/${ri}/${peerIdx}`;
      let v = podPeersOfRule.get(k);
      if (!v) {
        v = [];
        for (let c = 1; c <= podClasses; c++) if (peerSelectsPod(peer, pols[pi]!.namespace, classRep[c]!, input.namespaces)) v.push(c);
        podPeersOfRule.set(k, v);
      }
      return v;
    };
    const local = input.pods.filter((p) => input.localNode === undefined || p.node === input.localNode);
    const counts: [number, number] = [0, 0];
    for (const dir of [Dir.Ingress, Dir.Egress] as const) {
      const sigs = new Map<string, number>();
      for (const pod of local) {
        const sel: number[] = [];
        pols.forEach((p, i) => {
          if (isolates(p, dir) && policySelects(p, pod)) sel.push(i);
        });
        if (sel.length === 0) continue;
        const sig = sel.join(',') + (dir === Dir.Ingress ? '|' + JSON.stringify(namedOf(pod)) : '');
        let t = sigs.get(sig);
        if (t === undefined) {
          t = this.tables[dir].length;
          sigs.set(sig, t);
          const table = new U32Map(64);
          this.tables[dir].push(table);
          const put = (peer: number, key: number, pi: number) => {
            const k = peer * this.portKeys + key;
            if (table.get(k) < 0) {
              table.set(k, pi + 1);
              this.entries++;
            }
          };
          for (const pi of sel) {
            rules(pols[pi]!, dir).forEach((rule, ri) => {
              // Peers: ANY, or pod classes and CIDR classes.
              const peerSets: Array<{ peers: number[]; pods: boolean }> = [];
              if (!rule.peers) peerSets.push({ peers: [ANY_PEER], pods: true });
              else
                rule.peers.forEach((peer, k) => {
                  if (peer.ipBlock) peerSets.push({ peers: cidrClassesOf(peer), pods: false });
                  else peerSets.push({ peers: podClassesOf(pi, dir, ri, k, peer), pods: true });
                });
              for (const { peers, pods } of peerSets) {
                if (rule.ports.length === 0) {
                  for (const peer of peers) put(peer, 0, pi);
                  continue;
                }
                for (const port of rule.ports) {
                  if (typeof port.port !== 'string' || dir === Dir.Ingress) {
                    // Numeric, or named on the target itself (ingress): the same for every peer.
                    const r = resolvePort(port, pod.namedPorts);
                    if (!r) continue;
                    const keys = keysOfRange(port.protocol, r[0], r[1]);
                    for (const peer of peers) for (const key of keys) put(peer, key, pi);
                  } else if (pods) {
                    // Egress to a named port: it resolves per destination pod (never for ipBlock peers).
                    const list = peers[0] === ANY_PEER ? range(1, podClasses) : peers;
                    for (const c of list) {
                      const r = resolvePort(port, classRep[c]!.namedPorts);
                      if (r) for (const key of keysOfRange(port.protocol, r[0], r[1])) put(c, key, pi);
                    }
                  }
                }
              }
            });
          }
        }
        this.targets[dir].set(pod.ip, t);
        const bits = this.anyTarget.get(pod.ip);
        this.anyTarget.set(pod.ip, (bits < 0 ? 0 : bits) | (1 << (1 - dir)));
      }
      counts[dir] = this.tables[dir].length;
    }
    this.targetClasses = counts;
  }

  /** Whether any local pod is selected in `dir` (the hook does nothing else when neither is). */
  selectsAny(dir: Dir): boolean {
    return this.tables[dir].length > 0;
  }

  /** Is this local address selected by a policy of `dir`? */
  selected(dir: Dir, ip: number): boolean {
    return this.targets[dir].get(ip) >= 0;
  }

  /** The target class of a local address in `dir`, -1 when no policy of `dir` selects it. */
  target(dir: Dir, ip: number): number {
    return this.targets[dir].get(ip);
  }

  /** Local address -> 1 (egress-selected) | 2 (ingress-selected); -1 when selected by nothing. */
  private readonly anyTarget = new U32Map(16);

  /** Whether some policy selects this local address, in either direction (its connections are tracked). */
  selectedAny(ip: number): boolean {
    return this.anyTarget.get(ip) >= 0;
  }

  /** The CIDR class of an address (0: in no ipBlock). */
  private cidrClass(ip: number): number {
    const lens = this.prefixMasks;
    for (let i = 0; i < lens.length; i++) {
      const c = this.cidrMaps[i]!.get(ip & lens[i]!);
      if (c >= 0) return c;
    }
    return 0;
  }

  /**
   * The decision for a new connection in `dir` for local pod `self` with `peer` the other end and
   * `port` the destination port: NotSelected, Denied, or the index of the first policy that allows it.
   * Addresses as int32 or unsigned. Allocates nothing.
   */
  decide(dir: Dir, self: number, peer: number, proto: number, port: number): number {
    const t = this.targets[dir].get(self);
    if (t < 0) return Decision.NotSelected;
    return this.decideTarget(dir, t, peer, proto, port);
  }

  /** `decide` for a target class found with `target`. */
  decideTarget(dir: Dir, t: number, peer: number, proto: number, port: number): number {
    const table = this.tables[dir][t]!;
    const pi = protoIndex(proto);
    const pk = this.portKeys;
    let specific = -1;
    let protoAny = -1;
    if (pi >= 0) {
      specific = 1 + pi * (this.portClasses + 1) + this.portClass[pi]![port & 0xffff]!;
      protoAny = 1 + pi * (this.portClasses + 1);
    }
    for (let k = 0; k < 3; k++) {
      // The CIDR class (a few probes) only when the cheaper keys allowed nothing.
      const pc = k === 0 ? ANY_PEER : k === 1 ? this.podPeer.get(peer) : this.cidrMaps.length === 0 ? 0 : this.cidrClass(peer);
      if (pc < 0 || (k === 2 && pc === 0)) continue;
      const base = pc * pk;
      let v = table.get(base);
      if (v < 0 && specific >= 0) {
        v = table.get(base + specific);
        if (v < 0) v = table.get(base + protoAny);
      }
      if (v >= 0) return v - 1;
    }
    return Decision.Denied;
  }

  status() {
    return {
      policies: this.policies.length,
      peerClasses: this.peerClasses,
      cidrClasses: this.cidrClasses,
      cidrPrefixLengths: this.prefixLens.length,
      portClasses: this.portClasses,
      ingressTargets: this.targetClasses[0],
      egressTargets: this.targetClasses[1],
      entries: this.entries,
    };
  }
}

function range(a: number, b: number): number[] {
  const out: number[] = [];
  for (let i = a; i <= b; i++) out.push(i);
  return out;
}

/** Trailing zero bits of a non-zero unsigned 32-bit number. */
function ctz(a: number): number {
  let n = 0;
  while (n < 32 && a % 2 ** (n + 1) === 0) n++;
  return n;
}

// ---- the slow evaluator: `policy check`, and the reference the tables are tested against ----

export interface DirectionExplanation {
  /** The policies of this direction that select the pod (namespace/name); empty: not isolated. */
  selectedBy: string[];
  /** The first (by namespace/name) policy that allows the connection, if any. */
  allowedBy?: string;
  allowed: boolean;
}

export interface Explanation {
  allowed: boolean;
  egress?: DirectionExplanation;
  ingress?: DirectionExplanation;
}

/**
 * Decides a connection from the records directly (no tables): `from` and `to` are pods, or for `to`
 * an outside address. `to` gets ingress evaluated when it is a pod; `from` egress.
 */
export function explain(policies: PolicyRecord[], namespaces: Map<string, Record<string, string>>, from: PolicyPod | number, to: PolicyPod | number, proto: number, port: number): Explanation {
  const sorted = policies.slice().sort((a, b) => (a.namespace + '/' + a.name < b.namespace + '/' + b.name ? -1 : 1));
  const ipOf = (x: PolicyPod | number) => (typeof x === 'number' ? x >>> 0 : x.ip >>> 0);
  const peerMatches = (rule: PolicyRule, policyNs: string, peer: PolicyPod | number) =>
    !rule.peers || rule.peers.some((p) => (p.ipBlock ? ipBlockMatches(p, ipOf(peer)) : typeof peer !== 'number' && peerSelectsPod(p, policyNs, peer, namespaces)));
  const direction = (dir: Dir, self: PolicyPod, peer: PolicyPod | number): DirectionExplanation => {
    const sel = sorted.filter((p) => isolates(p, dir) && policySelects(p, self));
    const portOwner = dir === Dir.Ingress ? self : typeof peer === 'number' ? undefined : peer;
    const allowing = sel.find((p) => rules(p, dir).some((r) => peerMatches(r, p.namespace, peer) && rulePortsAllow(r, proto, port, portOwner)));
    return { selectedBy: sel.map((p) => `${p.namespace}/${p.name}`), ...(allowing ? { allowedBy: `${allowing.namespace}/${allowing.name}` } : {}), allowed: sel.length === 0 || allowing !== undefined };
  };
  const out: Explanation = { allowed: true };
  if (typeof from !== 'number') out.egress = direction(Dir.Egress, from, to);
  if (typeof to !== 'number') out.ingress = direction(Dir.Ingress, to, from);
  out.allowed = (out.egress?.allowed ?? true) && (out.ingress?.allowed ?? true);
  return out;
}
