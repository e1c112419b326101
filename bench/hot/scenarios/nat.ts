/**
 * Connection tracking and NAT scenarios: the full data path as the daemon runs it since services landed
 * (pod TAP port -> switch -> router: `nat.translate` on every packet, a new connection decided by the
 * service table or masquerade -> routing -> VXLAN to the endpoint's node, or the uplink).
 *
 *   clusterip_established/{1k,100k,1M}: established TCP connections from a pod to 16 ClusterIPs (port 80,
 *     DNAT to two endpoints each on the 4 other nodes, port 8080), N of them tracked. Each packet belongs to a
 *     connection drawn uniformly at random from the N, so the table's size shows as cache misses.
 *     Per packet, on top of `route_vxlan_encap`: conntrack lookup, TCP state update, DNAT rewrite with
 *     incremental IPv4 and TCP checksum updates. The N connections are created before timing through the
 *     router's own `Nat` (SYN with `createDnat`, SYN/ACK and ACK with `translate`), so each is
 *     ESTABLISHED and assured; the table is sized max(N, the daemon's 131072).
 *   new_connections/clusterip: every packet the SYN of a new connection to a ClusterIP: conntrack miss,
 *     service lookup, endpoint pick, `createDnat` (clash check, insert, state, rewrite), then VXLAN.
 *   new_connections/masquerade: every packet the SYN of a new connection to one of 256 outside servers:
 *     conntrack miss, masquerade with `createSnat` to the node address, ports 61001-65535 (the client port
 *     32768-60999 is outside the range, so every connection runs nf_nat's port search), out of the
 *     uplink (a counting stand-in: the daemon has no uplink yet).
 *   Both new_connections variants run with the daemon's table size (131072): once it is full of these
 *   unanswered SYNs, every new connection also evicts the oldest unassured one (Linux's early_drop), as
 *   on a busy node.
 *
 * Frames are 64-byte TCP (established: ACK|PSH with 10 bytes of data) or 54-byte SYNs, built with valid
 * checksums. Per batch they are restored from a pristine copy (the router and overlay rewrite headers)
 * and the flow fields (destination address, client port) are written with RFC 1624 checksum updates;
 * that preparation is timed on its own and subtracted like the restore step of the other scenarios.
 */
import type { ServicePortSpec, ServiceTableSpec } from '../../../src/dataplane/services.js';
import { MASQUERADE_PORT_MAX, MASQUERADE_PORT_MIN } from '../../../src/services/hooks.js';
import { TcpState } from '../../../src/nat/conntrack.js';
import { Verdict } from '../../../src/nat/nat.js';
import {
  ETH_HLEN,
  IpProtocol,
  IPV4_MIN_HLEN,
  Ipv4View,
  ParseError,
  TCP_MIN_HLEN,
  TcpFlags,
  TcpView,
  VxlanView,
  ipv4ToString,
  parseIpv4,
  updateChecksum16,
  updateChecksum32,
} from '../../../src/packet/index.js';
import { capturer, expect, expectEthernet, expectInPlace, transportCapturer } from '../checks.js';
import { BATCH, FrameRing, writeFrame, type FlowFrame } from '../frames.js';
import { buildNode, gatewayMac, NET, type BenchNode, type BenchPeer } from '../node.js';
import { RingWorkload, type Captured, type Scenario, type Workload } from '../workload.js';

const VIPS = 16;
const VIP_BASE = parseIpv4('10.96.0.10');
const VIP_PORT = 80;
const EP_PORT = 8080;
const SERVERS = 256;
const SERVER_BASE = parseIpv4('93.184.0.0');
const SERVER_PORT = 443;

const IP_OFF = ETH_HLEN;
const L4_OFF = ETH_HLEN + IPV4_MIN_HLEN;
/** Bytes the path rewrites: the Ethernet header (overlay), IPv4 header (NAT, TTL), TCP ports and checksum (NAT). */
const HEADERS = ETH_HLEN + IPV4_MIN_HLEN + TCP_MIN_HLEN;

/**
 * 32 endpoints, 8 on each of the 4 other nodes (`buildNode`'s peers): 10.244.2.10-17, 10.244.3.10-17, ...
 * ClusterIP i has endpoints 2i and 2i+1 (on the same node). The sets are disjoint so that connections
 * from one client port to two services never share a REPLY tuple (which NAT would resolve by remapping
 * the client port, as Linux does, and which these scenarios keep out of the way).
 */
export const ENDPOINTS: readonly number[] = Array.from({ length: 2 * VIPS }, (_, i) => (NET.subnet + (((i >> 3) + 1) << 8) + 10 + (i & 7)) >>> 0);

function endpointsOf(vip: number): number[] {
  return [ENDPOINTS[2 * vip]!, ENDPOINTS[2 * vip + 1]!];
}

/** 16 ClusterIPs 10.96.0.10-25, port 80/TCP -> 8080 on two endpoints each, as the service controller installs them. */
function serviceSpec(): ServiceTableSpec {
  const vips: ServiceTableSpec['vips'] = [];
  for (let i = 0; i < VIPS; i++) {
    const port: ServicePortSpec = {
      service: `default/svc${i}`,
      proto: IpProtocol.TCP,
      port: VIP_PORT,
      targetPort: EP_PORT,
      nodePort: 0,
      endpoints: endpointsOf(i),
      localEndpoints: [],
      sessionAffinity: false,
      affinityTimeout: 0,
      policyLocal: false,
    };
    vips.push({ vip: (VIP_BASE + i) >>> 0, ports: [port] });
  }
  return { vips };
}

/** Which peer node an endpoint lives on. */
function peerOf(node: BenchNode, ip: number): BenchPeer {
  const p = node.peers.find((x) => ((ip & NET.subnetMask) >>> 0) === x.subnetNetwork);
  if (p === undefined) throw new Error(`no peer for ${ipv4ToString(ip)}`);
  return p;
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

/**
 * A ring of 64 identical template frames from pod 0 (the same checksums in every slot) and the function
 * that re-addresses slot `k` to `dst`:`dport` from client port `sport`, checksums updated incrementally.
 */
function flowRing(node: BenchNode, f: Omit<FlowFrame, 'srcMac' | 'dstMac' | 'srcIp'>, bytes: number) {
  const pod = node.pods[0]!;
  const frame: FlowFrame = { ...f, srcMac: pod.mac, dstMac: gatewayMac(NET.gatewayIp), srcIp: pod.ip };
  const ring = new FrameRing(BATCH, HEADERS);
  for (let i = 0; i < ring.slots; i++) ring.fill(i, (buf, off) => writeFrame(buf, off, frame, bytes));
  ring.seal();
  const buf = ring.buffer;
  const ipc0 = buf.readUInt16BE(ring.frameOffset(0) + IP_OFF + 10);
  const tcpc0 = buf.readUInt16BE(ring.frameOffset(0) + L4_OFF + 16);
  const readdress = (off: number, dst: number, sport: number): void => {
    wr32(buf, dst, off + IP_OFF + 16);
    wr16(buf, updateChecksum32(ipc0, f.dstIp, dst), off + IP_OFF + 10);
    wr16(buf, sport, off + L4_OFF);
    wr16(buf, updateChecksum16(updateChecksum32(tcpc0, f.dstIp, dst), f.sport, sport), off + L4_OFF + 16);
  };
  return { ring, pod, readdress };
}

const ipv = new Ipv4View();
const tcpv = new TcpView();
const vx = new VxlanView();

/** A forwarded packet: addresses, ports, TTL 63 and both checksums. */
function expectPacket(buf: Buffer, ipOff: number, src: number, dst: number | readonly number[], sport: number | [number, number], dport: number): void {
  expect(ipv.reset(buf, ipOff, buf.length - ipOff) === ParseError.Ok, 'bad IPv4 header');
  expect(ipv.verifyChecksum(), 'IPv4 header checksum wrong');
  expect(ipv.ttl === 63, `TTL ${ipv.ttl}, expected 63`);
  expect(ipv.src === src, `source ${ipv4ToString(ipv.src)}, expected ${ipv4ToString(src)}`);
  if (typeof dst === 'number') expect(ipv.dst === dst, `destination ${ipv4ToString(ipv.dst)}, expected ${ipv4ToString(dst)}`);
  else expect(dst.includes(ipv.dst), `destination ${ipv4ToString(ipv.dst)} is not an endpoint`);
  expect(tcpv.reset(buf, ipv.payloadOffset, ipv.payloadLength) === ParseError.Ok, 'bad TCP header');
  expect(tcpv.verifyChecksum(ipv.src, ipv.dst), 'TCP checksum wrong');
  if (typeof sport === 'number') expect(tcpv.srcPort === sport, `source port ${tcpv.srcPort}, expected ${sport}`);
  else expect(tcpv.srcPort >= sport[0] && tcpv.srcPort <= sport[1], `source port ${tcpv.srcPort} outside ${sport[0]}-${sport[1]}`);
  expect(tcpv.dstPort === dport, `destination port ${tcpv.dstPort}, expected ${dport}`);
}

/** A VXLAN datagram carrying a packet to an endpoint on `peer`. */
function expectToPeer(out: Captured, ring: FrameRing, k: number, bytes: number, peer: BenchPeer): number {
  expectInPlace(out, ring, ring.frameOffset(k) - 8, 8 + bytes);
  expect(out.dstIp === peer.underlayIp, `sent to ${ipv4ToString(out.dstIp!)}, expected ${ipv4ToString(peer.underlayIp)}`);
  expect(vx.reset(out.buf, out.off, out.len) === ParseError.Ok && vx.vni === NET.vni, 'bad VXLAN header');
  expectEthernet(out.buf, vx.payloadOffset, vx.payloadLength, peer.vtepMac, NET.vtepMac, 'inner frame');
  return vx.payloadOffset + ETH_HLEN;
}

// ---- clusterip_established --------------------------------------------------------------------

/** ClusterIP and client port of connection j (16 VIPs x 64512 ports: unique for j < 1032192). */
function vipOf(j: number): number {
  return (VIP_BASE + (j & (VIPS - 1))) >>> 0;
}
function sportOf(j: number): number {
  return 1024 + (j >>> 4);
}

/** Creates n established, assured connections j through the router's `Nat`, DNAT to `ep(j)`. */
function populate(node: BenchNode, n: number, ep: (j: number) => number): void {
  const nat = node.nat;
  const ct = node.conntrack;
  const client = node.pods[0]!.ip;
  const now = node.dp.now;
  const buf = Buffer.alloc(128);
  const f: FlowFrame = { srcMac: node.pods[0]!.mac, dstMac: gatewayMac(NET.gatewayIp), srcIp: client, dstIp: VIP_BASE, l4: 'tcp', sport: 1, dport: VIP_PORT, ident: 1 };
  const len = writeFrame(buf, 0, f, 64) - ETH_HLEN;
  // NAT reads tuples and flags, not checksums, so these set-up packets do not keep them right.
  const put = (src: number, dst: number, sport: number, dport: number, flags: number) => {
    wr32(buf, src, IP_OFF + 12);
    wr32(buf, dst, IP_OFF + 16);
    wr16(buf, sport, L4_OFF);
    wr16(buf, dport, L4_OFF + 2);
    buf[L4_OFF + 13] = flags;
  };
  for (let j = 0; j < n; j++) {
    const vip = vipOf(j);
    const sport = sportOf(j);
    const e = ep(j);
    put(client, vip, sport, VIP_PORT, TcpFlags.SYN);
    let v = nat.translate(buf, IP_OFF, len, now);
    if (v === Verdict.New) v = nat.createDnat(buf, IP_OFF, len, now, e, EP_PORT);
    expect(v === Verdict.Ok, `set-up: SYN of connection ${j} gave verdict ${v}`);
    const id = nat.ref >> 1;
    put(e, client, EP_PORT, sport, TcpFlags.SYN | TcpFlags.ACK);
    expect(nat.translate(buf, IP_OFF, len, now) === Verdict.Ok, `set-up: SYN/ACK of connection ${j}`);
    put(client, vip, sport, VIP_PORT, TcpFlags.ACK);
    expect(nat.translate(buf, IP_OFF, len, now) === Verdict.Ok, `set-up: ACK of connection ${j}`);
    if (j === 0 || j === n - 1) {
      expect(ct.tcpState(id) === TcpState.Established && ct.isAssured(id), `set-up: connection ${j} is not established and assured`);
    }
  }
  expect(ct.size === n, `set-up: ${ct.size} connections tracked, expected ${n}`);
  expect(nat.stats.clashResolved === 0, `set-up: ${nat.stats.clashResolved} client ports remapped`);
}

async function clusteripEstablished(n: number): Promise<Workload> {
  const node = buildNode({ conntrackMax: Math.max(NET.conntrackMax, n), services: serviceSpec() });
  // The endpoint each connection was given (one of its ClusterIP's two), as a random pick would.
  const ep = (j: number) => ENDPOINTS[2 * (j & (VIPS - 1)) + (Math.imul(j, 0x9e3779b1) >>> 31)]!;
  populate(node, n, ep);

  const bytes = 64;
  const { ring, pod, readdress } = flowRing(node, { dstIp: VIP_BASE, l4: 'tcp', sport: 1024, dport: VIP_PORT, ident: 7 }, bytes);
  // Connections in the order packets arrive: uniform over the n (a fixed pseudo-random sequence).
  const order = new Int32Array(1 << 20);
  let x = 0x2545f491;
  for (let i = 0; i < order.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    order[i] = (x >>> 0) % n;
  }
  const mask = order.length - 1;
  let pos = 0;
  const cur = new Int32Array(BATCH);
  const step = ring.slotSize;
  const prepare = (): void => {
    ring.restore(BATCH);
    for (let k = 0, off = ring.headroom; k < BATCH; k++, off += step) {
      const j = order[pos]!;
      pos = (pos + 1) & mask;
      cur[k] = j;
      readdress(off, vipOf(j), sportOf(j));
    }
  };
  return new RingWorkload({
    dp: node.dp,
    port: pod.port,
    ring,
    frameBytes: bytes,
    counter: () => node.transport.datagrams,
    drops: node.drops,
    capture: transportCapturer(node.transport),
    prepare,
    check: (k, out) => {
      const j = cur[k]!;
      const e = ep(j);
      const ipOff = expectToPeer(out, ring, k, bytes, peerOf(node, e));
      expectPacket(out.buf, ipOff, pod.ip, e, sportOf(j), EP_PORT);
    },
  });
}

// ---- new_connections --------------------------------------------------------------------------

/** `withNode` adds to the node before the run (the policy scenario registers its hook there). */
export async function newConnections(kind: 'clusterip' | 'masquerade', withNode?: (node: BenchNode) => void): Promise<Workload> {
  const masq = kind === 'masquerade';
  const node = masq ? buildNode({ uplink: true }) : buildNode({ services: serviceSpec() });
  withNode?.(node);
  const bytes = HEADERS; // a bare SYN
  const dst0 = masq ? SERVER_BASE : VIP_BASE;
  const dport = masq ? SERVER_PORT : VIP_PORT;
  const sport0 = 32768;
  const { ring, pod, readdress } = flowRing(node, { dstIp: dst0, l4: 'tcp', sport: sport0, dport, ident: 7, tcpFlags: TcpFlags.SYN }, bytes);

  // Connection c. ClusterIP: VIP c % 16, client port 1024 + (c / 16) % 64000. Masquerade: server
  // c % 256, client port 32768 + (c / 256) % 28232. Unique among any 1M consecutive (7M) connections.
  const dstOf = masq ? (c: number) => (SERVER_BASE + (c & (SERVERS - 1))) >>> 0 : (c: number) => (VIP_BASE + (c & (VIPS - 1))) >>> 0;
  const sportOfC = masq ? (c: number) => 32768 + ((c >>> 8) % 28232) : (c: number) => 1024 + ((c >>> 4) % 64000);
  let next = 0;
  const cur = new Int32Array(BATCH);
  const step = ring.slotSize;
  const prepare = (): void => {
    ring.restore(BATCH);
    for (let k = 0, off = ring.headroom; k < BATCH; k++, off += step) {
      const c = next++;
      cur[k] = c;
      readdress(off, dstOf(c), sportOfC(c));
    }
  };
  const capture = masq
    ? capturer((fn) => (node.uplink.inspect = fn === undefined ? undefined : (buf, off, len) => fn({ buf, off, len })))
    : transportCapturer(node.transport);
  return new RingWorkload({
    dp: node.dp,
    port: pod.port,
    ring,
    frameBytes: bytes,
    counter: masq ? () => node.uplink.packets : () => node.transport.datagrams,
    drops: () => {
      const d = node.drops();
      if (node.conntrack.stats.dropFull > 0) d['conntrack.drop_full'] = node.conntrack.stats.dropFull;
      return d;
    },
    capture,
    prepare,
    check: (k, out) => {
      const c = cur[k]!;
      if (masq) {
        expectInPlace(out, ring, ring.frameOffset(k) + ETH_HLEN, bytes - ETH_HLEN);
        expectPacket(out.buf, out.off, NET.underlayIp, dstOf(c), [MASQUERADE_PORT_MIN, MASQUERADE_PORT_MAX], SERVER_PORT);
      } else {
        expect(out.dstIp !== undefined, 'not sent over VXLAN');
        const ipOff = out.off + 8 + ETH_HLEN;
        expect(ipv.reset(out.buf, ipOff, out.len - 8 - ETH_HLEN) === ParseError.Ok, 'bad IPv4 header');
        const peer = peerOf(node, ipv.dst);
        expectToPeer(out, ring, k, bytes, peer);
        expectPacket(out.buf, ipOff, pod.ip, endpointsOf(c & (VIPS - 1)), sportOfC(c), EP_PORT);
      }
    },
  });
}

// ---- registry entries -------------------------------------------------------------------------

const available = async (): Promise<string | undefined> => undefined;

export const natScenarios: Scenario[] = [
  ...([
    ['1k', 1_000],
    ['100k', 100_000],
    ['1M', 1_000_000],
  ] as const).map(([variant, n]) => ({
    name: `clusterip_established/${variant}`,
    family: 'clusterip_established',
    frame: '64 B TCP',
    description: `pod -> ClusterIP, established: conntrack lookup + DNAT + checksum update, then VXLAN; ${variant} tracked connections`,
    unavailable: available,
    setup: () => clusteripEstablished(n),
  })),
  {
    name: 'new_connections/clusterip',
    family: 'new_connections',
    frame: '54 B TCP SYN',
    description: 'pod -> ClusterIP, new connection: conntrack miss, service lookup, insert + DNAT setup, then VXLAN',
    unavailable: available,
    setup: () => newConnections('clusterip'),
  },
  {
    name: 'new_connections/masquerade',
    family: 'new_connections',
    frame: '54 B TCP SYN',
    description: 'pod -> outside, new connection: conntrack miss, insert + SNAT with port allocation, out of the uplink',
    unavailable: available,
    setup: () => newConnections('masquerade'),
  },
];
