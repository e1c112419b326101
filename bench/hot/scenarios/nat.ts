/**
 * Connection tracking and NAT scenarios (src/nat).
 *
 * src/nat is loaded at run time (dynamic `import()`) and used through the small structural interface
 * below, so the bench builds and runs whether or not src/nat exists yet or has changed shape: if the
 * module or a method these scenarios need is missing, they are listed as "not available yet" instead.
 * Once the router calls NAT itself, these should become `RingWorkload`s through `Dataplane.receiveRing`
 * (pod -> ClusterIP frames through switch, router, NAT); until then they time `Nat` on its own, the cost
 * the router will add per packet.
 *
 *   clusterip_established/{1k,100k,1M}: established TCP connections from local pods to a ClusterIP
 *     (DNAT to one of 8 endpoints), N of them tracked (each created by a full SYN, SYN/ACK, ACK exchange
 *     through `Nat`). Each packet belongs to a connection drawn uniformly at random from the N, so the
 *     table's size shows as cache misses. Per packet: `translate` (parse, conntrack lookup, TCP state
 *     update, DNAT rewrite with incremental IPv4 and TCP checksum updates); per batch `ct.gc(now, 256)`.
 *   new_connections/clusterip: every packet a TCP SYN of a new connection to a ClusterIP: `translate`
 *     (miss) + `createDnat` (clash check, insert, state, rewrite). The table is kept at 65536
 *     connections: the oldest is deleted for each new one (connections ending), delete cost included.
 *   new_connections/masquerade: the same to 256 outside servers with `createSnat` to the node's
 *     address, ports 61001-65535: the client port (32768-60999) is outside the range, so every
 *     connection runs nf_nat's port search.
 *
 * Frames are 64-byte TCP (established: ACK|PSH with 10 bytes of data) or 54-byte SYNs, built with valid
 * checksums; per batch they are restored from a pristine copy and the flow fields (client address and
 * port, server address) are written with RFC 1624 checksum updates. That preparation is timed on its own
 * and subtracted like the restore step of the other scenarios. The clock is a constant (no entry
 * expires during a run).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  ETH_HLEN,
  IPV4_MIN_HLEN,
  Ipv4View,
  ParseError,
  TCP_MIN_HLEN,
  TcpFlags,
  TcpView,
  ipv4ToString,
  parseIpv4,
  updateChecksum16,
  updateChecksum32,
} from '../../../src/packet/index.js';
import { BATCH, FrameRing, writeFrame, type FlowFrame } from '../frames.js';
import { NET, podMac } from '../node.js';
import { PacketWorkload, type Scenario, type Workload } from '../workload.js';

// ---- what the scenarios need from src/nat ---------------------------------------------------

interface ConntrackLike {
  readonly size: number;
  readonly stats: { dropFull: number; evicted: number; invalid: number; expired: number };
  delete(id: number): boolean;
  gc(now: number, budget: number): number;
  tcpState(id: number): number;
  isAssured(id: number): boolean;
}
interface NatLike {
  ref: number;
  readonly drops: { readonly total: number; toJSON(): Record<string, number> };
  translate(buf: Buffer, ipOff: number, ipLen: number, now: number): number;
  createDnat(buf: Buffer, ipOff: number, ipLen: number, now: number, toIp: number, toPort: number): number;
  createSnat(buf: Buffer, ipOff: number, ipLen: number, now: number, toIp: number, portMin: number, portMax: number): number;
}
interface NatModule {
  Conntrack: new (opts: { max?: number; seed?: number }) => ConntrackLike;
  Nat: new (ct: ConntrackLike, opts?: { seed?: number }) => NatLike;
  Verdict: { Ok: number; New: number };
  TcpState: { Established: number };
}

/** Where the compiled src/nat sits relative to this file (dist/bench/hot/scenarios -> dist/src/nat). */
const NAT_URL = new URL('../../../src/nat/index.js', import.meta.url);

let loaded: Promise<{ mod?: NatModule; reason?: string }> | undefined;

function loadNat(): Promise<{ mod?: NatModule; reason?: string }> {
  loaded ??= (async () => {
    if (!existsSync(fileURLToPath(NAT_URL))) return { reason: 'src/nat is not there yet' };
    let m: Record<string, unknown>;
    try {
      m = (await import(NAT_URL.href)) as Record<string, unknown>;
    } catch (err) {
      return { reason: `src/nat does not load: ${(err as Error).message}` };
    }
    const missing: string[] = [];
    const proto = (name: string) => (typeof m[name] === 'function' ? (m[name] as { prototype: Record<string, unknown> }).prototype : undefined);
    const ct = proto('Conntrack');
    const nat = proto('Nat');
    if (ct === undefined) missing.push('Conntrack');
    else for (const f of ['delete', 'gc', 'tcpState', 'isAssured']) if (typeof ct[f] !== 'function') missing.push(`Conntrack.${f}`);
    if (nat === undefined) missing.push('Nat');
    else for (const f of ['translate', 'createDnat', 'createSnat']) if (typeof nat[f] !== 'function') missing.push(`Nat.${f}`);
    const verdict = m.Verdict as Record<string, unknown> | undefined;
    if (typeof verdict?.Ok !== 'number' || typeof verdict?.New !== 'number') missing.push('Verdict.Ok/New');
    if (typeof (m.TcpState as Record<string, unknown> | undefined)?.Established !== 'number') missing.push('TcpState.Established');
    if (missing.length > 0) return { reason: `src/nat has no ${missing.join(', ')} (yet)` };
    return { mod: m as unknown as NatModule };
  })();
  return loaded;
}

async function natUnavailable(): Promise<string | undefined> {
  return (await loadNat()).reason;
}

async function natModule(): Promise<NatModule> {
  const { mod, reason } = await loadNat();
  if (mod === undefined) throw new Error(reason);
  return mod;
}

// ---- the cluster these scenarios run in -------------------------------------------------------

const NOW = 1000;
const VIP = parseIpv4('10.96.0.10');
const VIP_PORT = 80;
const EP_PORT = 8080;
/** 8 endpoints of the service, on this node and three others. */
const ENDPOINTS = Int32Array.from({ length: 8 }, (_, i) => (parseIpv4(`10.244.${1 + (i & 3)}.${10 + (i >> 2)}`) | 0));
const CLIENTS = 200;
const CLIENT_BASE = (NET.subnet + 2) >>> 0;
const SERVERS = 256;
const SERVER_BASE = parseIpv4('93.184.0.0');
const SERVER_PORT = 443;
const MASQ_MIN = 61001;
const MASQ_MAX = 65535;
const CHURN_TABLE = 65536;
const NODE_IP_I32 = NET.underlayIp | 0;

const IP_OFF = ETH_HLEN;
const L4_OFF = ETH_HLEN + IPV4_MIN_HLEN;
const HEADERS = ETH_HLEN + IPV4_MIN_HLEN + TCP_MIN_HLEN;

/** Client address and port of established connection `j` (unique for j < 200 * 55535). */
function clientIp(j: number): number {
  return (CLIENT_BASE + (j % CLIENTS)) >>> 0;
}
function clientPort(j: number): number {
  return 10000 + ((j / CLIENTS) | 0);
}
function endpointOf(j: number): number {
  return ENDPOINTS[Math.imul(j, 0x9e3779b1) >>> 29]! >>> 0;
}

/** A ring of 64 identical template frames (`frame`), restored and re-addressed per batch. */
function templateRing(f: FlowFrame, bytes: number): FrameRing {
  const ring = new FrameRing(BATCH, HEADERS);
  for (let i = 0; i < ring.slots; i++) ring.fill(i, (buf, off) => writeFrame(buf, off, f, bytes));
  ring.seal();
  return ring;
}

const ipv = new Ipv4View();
const tcpv = new TcpView();

function expect(cond: boolean, what: string): void {
  if (!cond) throw new Error(what);
}

// The per-batch preparation writes bytes by hand: Buffer's writeUInt16BE & co validate their arguments
// on every call and would make the (subtracted) preparation cost larger than what it prepares for.
function wr16(buf: Buffer, v: number, o: number): void {
  buf[o] = v >>> 8;
  buf[o + 1] = v;
}
function wr32(buf: Buffer, v: number, o: number): void {
  buf[o] = v >>> 24;
  buf[o + 1] = v >>> 16;
  buf[o + 2] = v >>> 8;
  buf[o + 3] = v;
}

/** Checks a translated packet's addresses, ports and both checksums. */
function expectPacket(buf: Buffer, off: number, src: number, dst: number, sport: number | [number, number], dport: number): void {
  expect(ipv.reset(buf, off + IP_OFF, buf.length - off - IP_OFF) === ParseError.Ok, 'bad IPv4 header');
  expect(ipv.verifyChecksum(), 'IPv4 header checksum wrong');
  expect(ipv.src === src, `source ${ipv4ToString(ipv.src)}, expected ${ipv4ToString(src)}`);
  expect(ipv.dst === dst, `destination ${ipv4ToString(ipv.dst)}, expected ${ipv4ToString(dst)}`);
  expect(tcpv.reset(buf, ipv.payloadOffset, ipv.payloadLength) === ParseError.Ok, 'bad TCP header');
  expect(tcpv.verifyChecksum(ipv.src, ipv.dst), 'TCP checksum wrong');
  if (typeof sport === 'number') expect(tcpv.srcPort === sport, `source port ${tcpv.srcPort}, expected ${sport}`);
  else expect(tcpv.srcPort >= sport[0] && tcpv.srcPort <= sport[1], `source port ${tcpv.srcPort} outside ${sport[0]}-${sport[1]}`);
  expect(tcpv.dstPort === dport, `destination port ${tcpv.dstPort}, expected ${dport}`);
}

function counters(nat: NatLike, ct: ConntrackLike): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(nat.drops.toJSON())) out[`nat.${k}`] = v;
  for (const k of ['dropFull', 'evicted', 'invalid', 'expired'] as const) if (ct.stats[k] > 0) out[`conntrack.${k}`] = ct.stats[k];
  return out;
}

// ---- clusterip_established --------------------------------------------------------------------

/** Creates `n` established, assured connections client(j):port(j) -> VIP:80, DNAT to endpointOf(j). */
function populate(m: NatModule, nat: NatLike, ct: ConntrackLike, n: number): void {
  const buf = Buffer.alloc(256);
  const f: FlowFrame = { srcMac: podMac(CLIENT_BASE), dstMac: podMac(CLIENT_BASE), srcIp: CLIENT_BASE, dstIp: VIP, l4: 'tcp', sport: 1, dport: VIP_PORT, ident: 1 };
  const len = writeFrame(buf, 0, f, 64) - ETH_HLEN;
  // Only the tuple and flags change from step to step: NAT does not check checksums, so these set-up
  // packets do not keep them right (the timed packets do).
  const put = (src: number, dst: number, sport: number, dport: number, flags: number) => {
    buf.writeUInt32BE(src, IP_OFF + 12);
    buf.writeUInt32BE(dst, IP_OFF + 16);
    buf.writeUInt16BE(sport, L4_OFF);
    buf.writeUInt16BE(dport, L4_OFF + 2);
    buf[L4_OFF + 13] = flags;
  };
  const { Ok, New } = m.Verdict;
  for (let j = 0; j < n; j++) {
    const c = clientIp(j);
    const p = clientPort(j);
    const ep = endpointOf(j);
    put(c, VIP, p, VIP_PORT, TcpFlags.SYN);
    let v = nat.translate(buf, IP_OFF, len, NOW);
    if (v === New) v = nat.createDnat(buf, IP_OFF, len, NOW, ep, EP_PORT);
    expect(v === Ok, `set-up: SYN of connection ${j} gave verdict ${v}`);
    const id = nat.ref >> 1;
    put(ep, c, EP_PORT, p, TcpFlags.SYN | TcpFlags.ACK);
    expect(nat.translate(buf, IP_OFF, len, NOW) === Ok, `set-up: SYN/ACK of connection ${j}`);
    put(c, VIP, p, VIP_PORT, TcpFlags.ACK);
    expect(nat.translate(buf, IP_OFF, len, NOW) === Ok, `set-up: ACK of connection ${j}`);
    if (j === 0 || j === n - 1) {
      expect(ct.tcpState(id) === m.TcpState.Established && ct.isAssured(id), `set-up: connection ${j} is not established and assured`);
    }
  }
  expect(ct.size === n, `set-up: ${ct.size} connections tracked, expected ${n}`);
}

async function clusteripEstablished(n: number): Promise<Workload> {
  const m = await natModule();
  const ct = new m.Conntrack({ max: Math.max(n, 1024), seed: 0x5eed });
  const nat = new m.Nat(ct, { seed: 0x5eed });
  populate(m, nat, ct, n);

  const bytes = 64;
  const sport0 = clientPort(0);
  const ring = templateRing({ srcMac: podMac(CLIENT_BASE), dstMac: podMac(CLIENT_BASE), srcIp: CLIENT_BASE, dstIp: VIP, l4: 'tcp', sport: sport0, dport: VIP_PORT, ident: 7 }, bytes);
  const buf = ring.buffer;
  const ipc0 = buf.readUInt16BE(ring.frameOffset(0) + IP_OFF + 10);
  const tcpc0 = buf.readUInt16BE(ring.frameOffset(0) + L4_OFF + 16);
  const ipLen = bytes - ETH_HLEN;

  // Connections in the order packets arrive: uniform over the n (a fixed pseudo-random sequence).
  const order = new Int32Array(1 << 20);
  let x = 0x2545f491;
  for (let i = 0; i < order.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    order[i] = (x >>> 0) % n;
  }
  const orderMask = order.length - 1;
  let pos = 0;
  const cur = new Int32Array(BATCH);
  let ok = 0;
  const { Ok } = m.Verdict;
  const step = ring.slotSize;

  const prepare = (): void => {
    ring.restore(BATCH);
    for (let k = 0, off = ring.headroom; k < BATCH; k++, off += step) {
      const j = order[pos]!;
      pos = (pos + 1) & orderMask;
      cur[k] = j;
      const src = clientIp(j);
      const sport = clientPort(j);
      wr32(buf, src, off + IP_OFF + 12);
      wr16(buf, updateChecksum32(ipc0, CLIENT_BASE, src), off + IP_OFF + 10);
      wr16(buf, sport, off + L4_OFF);
      wr16(buf, updateChecksum16(updateChecksum32(tcpc0, CLIENT_BASE, src), sport0, sport), off + L4_OFF + 16);
    }
  };
  const process = (): void => {
    for (let k = 0, off = ring.headroom + IP_OFF; k < BATCH; k++, off += step) {
      if (nat.translate(buf, off, ipLen, NOW) === Ok) ok++;
    }
    ct.gc(NOW, 256);
  };
  return new PacketWorkload(bytes, BATCH, HEADERS, prepare, process, () => ok, () => counters(nat, ct), () => {
    prepare();
    const before = ok;
    process();
    expect(ok - before === BATCH, `verification: ${ok - before} of ${BATCH} packets translated; ${JSON.stringify(counters(nat, ct))}`);
    for (let k = 0; k < BATCH; k++) {
      const j = cur[k]!;
      try {
        expectPacket(buf, ring.frameOffset(k), clientIp(j), endpointOf(j), clientPort(j), EP_PORT);
      } catch (err) {
        throw new Error(`verification: packet ${k} (connection ${j}): ${(err as Error).message}`);
      }
    }
  });
}

// ---- new_connections ------------------------------------------------------------------------

async function newConnections(kind: 'clusterip' | 'masquerade'): Promise<Workload> {
  const m = await natModule();
  const ct = new m.Conntrack({ max: CHURN_TABLE + 2 * BATCH, seed: 0x5eed });
  const nat = new m.Nat(ct, { seed: 0x5eed });
  const masq = kind === 'masquerade';
  const bytes = HEADERS; // a bare SYN
  const sport0 = 32768;
  const dst0 = masq ? SERVER_BASE : VIP;
  const dport = masq ? SERVER_PORT : VIP_PORT;
  const ring = templateRing(
    { srcMac: podMac(CLIENT_BASE), dstMac: podMac(CLIENT_BASE), srcIp: CLIENT_BASE, dstIp: dst0, l4: 'tcp', sport: sport0, dport, ident: 7, tcpFlags: TcpFlags.SYN },
    bytes,
  );
  const buf = ring.buffer;
  const ipc0 = buf.readUInt16BE(ring.frameOffset(0) + IP_OFF + 10);
  const tcpc0 = buf.readUInt16BE(ring.frameOffset(0) + L4_OFF + 16);
  const ipLen = bytes - ETH_HLEN;
  const step = ring.slotSize;

  // Connection c: client c % 200, port 32768 + (c / 200) % 28232, server c % 256 (masquerade).
  // Unique among the 65536 live ones (200 * 28232 > 65536).
  const client = (c: number) => (CLIENT_BASE + (c % CLIENTS)) >>> 0;
  const cport = (c: number) => 32768 + (((c / CLIENTS) | 0) % 28232);
  const server = (c: number) => (masq ? (SERVER_BASE + (c % SERVERS)) >>> 0 : VIP);
  let next = 0;
  const cur = new Int32Array(BATCH);
  const fifo = new Int32Array(CHURN_TABLE);
  let head = 0;
  let live = 0;
  let created = 0;
  const { Ok, New } = m.Verdict;

  const prepare = (): void => {
    ring.restore(BATCH);
    for (let k = 0, off = ring.headroom; k < BATCH; k++, off += step) {
      const c = next++;
      cur[k] = c;
      const src = client(c);
      const dst = server(c);
      const sport = cport(c);
      wr32(buf, src, off + IP_OFF + 12);
      wr32(buf, dst, off + IP_OFF + 16);
      wr16(buf, updateChecksum32(updateChecksum32(ipc0, CLIENT_BASE, src), dst0, dst), off + IP_OFF + 10);
      wr16(buf, sport, off + L4_OFF);
      const t = updateChecksum32(updateChecksum32(tcpc0, CLIENT_BASE, src), dst0, dst);
      wr16(buf, updateChecksum16(t, sport0, sport), off + L4_OFF + 16);
    }
  };
  const process = (): void => {
    for (let k = 0, off = ring.headroom + IP_OFF; k < BATCH; k++, off += step) {
      if (nat.translate(buf, off, ipLen, NOW) !== New) continue; // not new: counted as missing
      // The node address goes in as int32: 192.168.50.11 as an unsigned number is above the small-
      // integer range, and V8 boxes it in a 16-byte HeapNumber on every call (measured: 16 B/packet).
      const v = masq
        ? nat.createSnat(buf, off, ipLen, NOW, NODE_IP_I32, MASQ_MIN, MASQ_MAX)
        : nat.createDnat(buf, off, ipLen, NOW, endpointOf(cur[k]!), EP_PORT);
      if (v !== Ok) continue;
      created++;
      // Keep the table at CHURN_TABLE connections: the oldest one ends as this one starts.
      if (live === CHURN_TABLE) ct.delete(fifo[head]!);
      else live++;
      fifo[head] = nat.ref >> 1;
      head = head + 1 === CHURN_TABLE ? 0 : head + 1;
    }
    ct.gc(NOW, 256);
  };
  return new PacketWorkload(bytes, BATCH, HEADERS, prepare, process, () => created, () => counters(nat, ct), () => {
    prepare();
    const before = created;
    process();
    expect(created - before === BATCH, `verification: ${created - before} of ${BATCH} connections created; ${JSON.stringify(counters(nat, ct))}`);
    for (let k = 0; k < BATCH; k++) {
      const c = cur[k]!;
      try {
        if (masq) expectPacket(buf, ring.frameOffset(k), NET.underlayIp, server(c), [MASQ_MIN, MASQ_MAX], SERVER_PORT);
        else expectPacket(buf, ring.frameOffset(k), client(c), endpointOf(c), cport(c), EP_PORT);
      } catch (err) {
        throw new Error(`verification: packet ${k} (connection ${c}): ${(err as Error).message}`);
      }
    }
  });
}

// ---- registry entries -------------------------------------------------------------------------

const ESTABLISHED = 'conntrack lookup + DNAT + checksum update (Nat.translate on its own; router does not call NAT yet)';

export const natScenarios: Scenario[] = [
  ...([
    ['1k', 1_000],
    ['100k', 100_000],
    ['1M', 1_000_000],
  ] as const).map(([variant, n]) => ({
    name: `clusterip_established/${variant}`,
    family: 'clusterip_established',
    frame: '64 B TCP',
    description: `${ESTABLISHED}, ${variant} tracked connections`,
    unavailable: natUnavailable,
    setup: () => clusteripEstablished(n),
  })),
  {
    name: 'new_connections/clusterip',
    family: 'new_connections',
    frame: '54 B TCP SYN',
    description: 'conntrack insert + DNAT setup to a ClusterIP endpoint (table kept at 64k, oldest deleted)',
    unavailable: natUnavailable,
    setup: () => newConnections('clusterip'),
  },
  {
    name: 'new_connections/masquerade',
    family: 'new_connections',
    frame: '54 B TCP SYN',
    description: 'conntrack insert + SNAT setup with source port allocation (table kept at 64k, oldest deleted)',
    unavailable: natUnavailable,
    setup: () => newConnections('masquerade'),
  },
];
