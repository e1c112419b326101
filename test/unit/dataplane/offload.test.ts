import { expect } from 'chai';
import { Dataplane } from '../../../src/dataplane/dataplane.js';
import { DropReason } from '../../../src/util/counters.js';
import { OffloadResolver, SEGMENT_HEADROOM, VNET_HDR_LEN } from '../../../src/dataplane/offload.js';
import type { FrameSink } from '../../../src/dataplane/port.js';
import { HostPort, TapPort, TunPort } from '../../../src/dataplane/ports.js';
import {
  checksum,
  emitTcp,
  ETH_HLEN,
  EtherType,
  IpProtocol,
  Ipv4View,
  ParseError,
  parseIpv4,
  parseMac,
  pseudoHeaderSum,
  TcpFlags,
  TcpView,
  UdpView,
  writeEthernetHeader,
  writeIpv4Header,
  writeUdpHeader,
} from '../../../src/packet/index.js';
import { RecordingSink } from '../../helpers/frames.js';
import { GATEWAY_MAC, routedDataplane } from '../../helpers/node.js';

const A = '10.244.1.2';
const B = '10.244.1.3';
const HOST = '10.244.1.0';
const A_MAC = parseMac('0a:58:0a:f4:01:02');
const B_MAC = parseMac('0a:58:0a:f4:01:03');
const GW_MAC = parseMac(GATEWAY_MAC);
const HEAD = 128;
const CAPACITY = 80 * 1024;
const TCP_HLEN = 32; // with a timestamp option, as Linux sends
const { ACK, PSH, CWR, FIN } = TcpFlags;

/**
 * What the TUN driver hands over from a pod with TSO: a TCP super-frame (one IPv4/TCP header, all
 * the payload) with a virtio-net header before it asking for GSO into `mss` segments and a partial
 * checksum (the field holds the pseudo-header sum for the whole segment, as Linux leaves it).
 */
function superFrame(payload: number, mss: number, flags: number, dstMac = B_MAC, dst = B) {
  const buf = Buffer.alloc(HEAD + CAPACITY, 0xa5);
  const off = HEAD;
  const ip = off + ETH_HLEN;
  const tcp = ip + 20;
  for (let i = 0; i < payload; i++) buf[tcp + TCP_HLEN + i] = (i * 13 + 7) & 0xff;
  writeEthernetHeader(buf, off, dstMac.hi, dstMac.lo, A_MAC.hi, A_MAC.lo, EtherType.IPv4);
  const options = Buffer.from('0101080a0000000100000002', 'hex');
  emitTcp({ srcPort: 40000, dstPort: 5201, seq: 0xfffff000, ack: 77, flags, window: 500, options, payloadLength: payload }, buf, tcp, parseIpv4(A), parseIpv4(dst));
  buf.writeUInt16BE(pseudoHeaderSum(parseIpv4(A), parseIpv4(dst), IpProtocol.TCP, TCP_HLEN + payload), tcp + 16);
  writeIpv4Header(buf, ip, parseIpv4(A), parseIpv4(dst), IpProtocol.TCP, 64, TCP_HLEN + payload, 0xfffe, true);
  const h = off - VNET_HDR_LEN;
  buf[h] = 1; // NEEDS_CSUM
  buf[h + 1] = 1 | 0x80; // GSO_TCPV4 | ECN
  buf.writeUInt16LE(ETH_HLEN + 20 + TCP_HLEN, h + 2);
  buf.writeUInt16LE(mss, h + 4);
  buf.writeUInt16LE(ETH_HLEN + 20, h + 6);
  buf.writeUInt16LE(16, h + 8);
  return { buf, off, len: ETH_HLEN + 20 + TCP_HLEN + payload, original: Buffer.from(buf.subarray(tcp + TCP_HLEN, tcp + TCP_HLEN + payload)) };
}

/**
 * The virtio-net header of a super-frame made by `superFrame` (1400-byte segments), written whole to
 * an offload device: partial checksum and GSO_TCPV4 | ECN, csum_start and hdr_len counted from the
 * frame's first byte, `l2` bytes before the IP header (ETH_HLEN on a TAP, 0 on a TUN).
 */
function expectSuperFrameHeader(vnet: Buffer, l2: number): void {
  expect(vnet[0]).to.equal(1); // NEEDS_CSUM
  expect(vnet[1]).to.equal(0x81); // GSO_TCPV4 | ECN
  expect(vnet.readUInt16LE(2)).to.equal(l2 + 20 + TCP_HLEN);
  expect(vnet.readUInt16LE(4)).to.equal(1400);
  expect(vnet.readUInt16LE(6)).to.equal(l2 + 20);
  expect(vnet.readUInt16LE(8)).to.equal(16);
}

const ipv = new Ipv4View();
const tcpv = new TcpView();

/** Checks a plain segment (its own Ethernet frame) and returns its TCP payload. */
function checkSegment(buf: Buffer, off: number, len: number) {
  expect(ipv.reset(buf, off + ETH_HLEN, len - ETH_HLEN)).to.equal(ParseError.Ok);
  expect(ipv.totalLength).to.equal(len - ETH_HLEN);
  expect(ipv.verifyChecksum()).to.equal(true);
  expect(tcpv.reset(buf, ipv.payloadOffset, ipv.payloadLength)).to.equal(ParseError.Ok);
  expect(tcpv.verifyChecksum(ipv.src, ipv.dst)).to.equal(true);
  return { ident: ipv.ident, seq: tcpv.seq, flags: tcpv.flags, payload: buf.subarray(tcpv.payloadOffset, tcpv.payloadOffset + tcpv.payloadLength) };
}

describe('dataplane/offload: OffloadResolver', () => {
  it('splits a TCP super-frame in place into MSS segments: lengths, ids, sequence numbers, flags, checksums, payload', () => {
    const f = superFrame(5000, 1400, ACK | PSH | CWR | FIN);
    const r = new OffloadResolver();
    const n = r.resolve(f.buf, f.off, f.len, CAPACITY);
    expect(n).to.equal(4);
    const payloads: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      if (i > 0) expect(r.segOff[i]! - r.segOff[i - 1]! - r.segLen[i - 1]!).to.be.at.least(SEGMENT_HEADROOM);
      const s = checkSegment(f.buf, r.segOff[i]!, r.segLen[i]!);
      expect(s.ident).to.equal((0xfffe + i) & 0xffff);
      expect(s.seq).to.equal((0xfffff000 + i * 1400) >>> 0); // wraps past 2^32
      expect(s.flags).to.equal(i === 0 ? ACK | CWR : i === n - 1 ? ACK | PSH | FIN : ACK);
      expect(s.payload.length).to.equal(i === n - 1 ? 5000 - 3 * 1400 : 1400);
      payloads.push(Buffer.from(s.payload));
    }
    expect(r.segOff[0]).to.equal(f.off);
    expect(Buffer.concat(payloads).equals(f.original)).to.equal(true);
  });

  it('completes a partial checksum (TCP, and UDP with 0 sent as 0xffff) without GSO', () => {
    const f = superFrame(1000, 1400, ACK | PSH);
    f.buf[f.off - VNET_HDR_LEN + 1] = 0; // GSO_NONE, still NEEDS_CSUM
    const r = new OffloadResolver();
    expect(r.resolve(f.buf, f.off, f.len, CAPACITY)).to.equal(1);
    expect(checkSegment(f.buf, f.off, f.len).payload.equals(f.original)).to.equal(true);

    const buf = Buffer.alloc(HEAD + 200, 0xa5);
    const ip = HEAD + ETH_HLEN;
    writeEthernetHeader(buf, HEAD, B_MAC.hi, B_MAC.lo, A_MAC.hi, A_MAC.lo, EtherType.IPv4);
    for (let i = 0; i < 40; i++) buf[ip + 28 + i] = i;
    writeIpv4Header(buf, ip, parseIpv4(A), parseIpv4(B), IpProtocol.UDP, 64, 48);
    writeUdpHeader(buf, ip + 20, 5353, 53, 40);
    buf.writeUInt16BE(pseudoHeaderSum(parseIpv4(A), parseIpv4(B), IpProtocol.UDP, 48), ip + 26);
    buf.fill(0, HEAD - VNET_HDR_LEN, HEAD);
    buf[HEAD - VNET_HDR_LEN] = 1;
    buf.writeUInt16LE(ETH_HLEN + 20, HEAD - VNET_HDR_LEN + 6);
    buf.writeUInt16LE(6, HEAD - VNET_HDR_LEN + 8);
    expect(r.resolve(buf, HEAD, ETH_HLEN + 68, 200)).to.equal(1);
    const udp = UdpView.parse(buf, ip + 20, 48);
    expect(udp.checksum).to.not.equal(0);
    expect(udp.verifyChecksum(parseIpv4(A), parseIpv4(B))).to.equal(true);
  });

  it('drops what it cannot finish: no room in the slot, other GSO types, a broken header', () => {
    const r = new OffloadResolver();
    const f = superFrame(20000, 1400, ACK);
    expect(r.resolve(f.buf, f.off, f.len, f.len + 100)).to.equal(0);
    expect(r.dropReason).to.equal(DropReason.Oversize);
    const g = superFrame(3000, 1400, ACK);
    g.buf[g.off - VNET_HDR_LEN + 1] = 3; // GSO_UDP
    expect(r.resolve(g.buf, g.off, g.len, CAPACITY)).to.equal(0);
    expect(r.dropReason).to.equal(DropReason.OffloadUnsupported);
    const z = superFrame(3000, 1400, ACK);
    z.buf.writeUInt16LE(0, z.off - VNET_HDR_LEN + 4); // gso_size 0
    expect(r.resolve(z.buf, z.off, z.len, CAPACITY)).to.equal(0);
    expect(r.dropReason).to.equal(DropReason.MalformedL4);
  });
});

/** Records frames and whether each went out with its own virtio-net header. */
class HdrSink implements FrameSink {
  frames: Array<{ frame: Buffer; hdr: number; vnet: Buffer }> = [];
  writeBatch(bufs: Buffer[], offs: Uint32Array, lens: Uint32Array, count: number, hdrs?: Uint8Array): number {
    for (let i = 0; i < count; i++) {
      const b = bufs[i]!;
      const o = offs[i]!;
      const hdr = hdrs?.[i] ?? 0;
      this.frames.push({ frame: Buffer.from(b.subarray(o, o + lens[i]!)), hdr, vnet: hdr === 1 ? Buffer.from(b.subarray(o - VNET_HDR_LEN, o)) : Buffer.alloc(0) });
    }
    return count;
  }
}

function node() {
  const { dp, router } = routedDataplane();
  const pod = (ip: string, mac: { hi: number; lo: number }) => {
    const sink = new HdrSink();
    const port = new TapPort(ip, dp, sink, { macHi: mac.hi, macLo: mac.lo, ip: parseIpv4(ip) }, { offload: true, rxCapacity: CAPACITY });
    dp.neighbors.set(parseIpv4(ip), mac.hi, mac.lo);
    dp.switch.attach(port);
    return { port, sink };
  };
  const a = pod(A, A_MAC);
  const b = pod(B, B_MAC);
  const hostSink = new RecordingSink();
  router.attachHost(new HostPort('podnet0', dp, hostSink));
  return { dp, a, b, hostSink };
}

function send(dp: Dataplane, port: TapPort, f: { buf: Buffer; off: number; len: number }): void {
  dp.tick();
  dp.receive(port, f.buf, f.off, f.len);
  dp.flush();
}

describe('dataplane/offload: the switch with offload ports', () => {
  it('passes a super-frame between two offload pods as it is, header and all', () => {
    const n = node();
    const f = superFrame(5000, 1400, ACK | PSH);
    send(n.dp, n.a.port, f);
    expect(n.b.sink.frames).to.have.length(1);
    expect(n.b.sink.frames[0]!.hdr).to.equal(1);
    expect(n.b.sink.frames[0]!.frame.length).to.equal(f.len);
    expect(n.b.port.traffic.txBytes).to.equal(f.len);
  });

  it('splits it when the bridge hook has to see inside, and when it is routed', () => {
    const n = node();
    const seen: number[] = [];
    n.dp.switch.bridgeHook = (_buf, _off, len) => seen.push(len) > 0;
    send(n.dp, n.a.port, superFrame(5000, 1400, ACK | PSH));
    expect(seen).to.deep.equal([1452, 1452, 1452, 852]);
    expect(n.b.sink.frames.map((x) => x.hdr)).to.deep.equal([0, 0, 0, 0]);
    for (const { frame } of n.b.sink.frames) checkSegment(frame, 0, frame.length);

    n.dp.switch.bridgeHook = undefined;
    send(n.dp, n.a.port, superFrame(3000, 1400, ACK, GW_MAC, HOST)); // to the host, through the router
    const pkts = n.hostSink.take();
    expect(pkts.map((p) => p.length)).to.deep.equal([1452, 1452, 252]); // IP packets: 20 + 32 + payload
    for (const p of pkts) {
      expect(ipv.reset(p, 0, p.length)).to.equal(ParseError.Ok);
      expect(ipv.ttl).to.equal(63);
      expect(tcpv.reset(p, 20, p.length - 20)).to.equal(ParseError.Ok);
      expect(tcpv.verifyChecksum(ipv.src, ipv.dst)).to.equal(true);
    }
  });

  it('keeps the super-frame whole under a bridge hook whose probe says conntrack has nothing to do with it', () => {
    const n = node();
    let hooked = 0;
    let tracked = false;
    n.dp.switch.bridgeHook = () => ++hooked > 0;
    n.dp.switch.bridgeProbe = () => tracked;
    send(n.dp, n.a.port, superFrame(5000, 1400, ACK | PSH));
    expect(n.b.sink.frames.map((x) => x.hdr)).to.deep.equal([1]);
    expect(hooked).to.equal(0);
    tracked = true; // a connection conntrack knows (a DNATed one's reply): split, and each segment hooked
    send(n.dp, n.a.port, superFrame(5000, 1400, ACK | PSH));
    expect(n.b.sink.frames.map((x) => x.hdr)).to.deep.equal([1, 0, 0, 0, 0]);
    expect(hooked).to.equal(4);
  });
});

/** A TUN pod's packet as its offload device hands it over: the IP packet, the virtio-net header before it. */
function tunSuperFrame(payload: number, mss: number, flags: number, dst = B) {
  const f = superFrame(payload, mss, flags, B_MAC, dst);
  // The same packet without its Ethernet header; csum_start and hdr_len count from the IP header.
  const buf = Buffer.alloc(HEAD + CAPACITY, 0x5a);
  const off = HEAD;
  f.buf.copy(buf, off, f.off + ETH_HLEN, f.off + f.len);
  f.buf.copy(buf, off - VNET_HDR_LEN, f.off - VNET_HDR_LEN, f.off);
  buf.writeUInt16LE(20 + TCP_HLEN, off - VNET_HDR_LEN + 2);
  buf.writeUInt16LE(20, off - VNET_HDR_LEN + 6);
  return { buf, off, len: f.len - ETH_HLEN, original: f.original };
}

describe('dataplane/offload: TUN pods with offloads', () => {
  const T = '10.244.1.4';
  const T_MAC = parseMac('0a:58:0a:f4:01:04');
  function withTun() {
    const n = node();
    const sink = new HdrSink();
    const port = new TunPort(
      'tun',
      n.dp,
      sink,
      { macHi: T_MAC.hi, macLo: T_MAC.lo, ip: parseIpv4(T) },
      { macHi: GW_MAC.hi, macLo: GW_MAC.lo, network: parseIpv4('10.244.1.0'), mask: 0xffffff00, broadcast: parseIpv4('10.244.1.255') },
      { offload: true, rxCapacity: CAPACITY },
    );
    n.dp.neighbors.set(parseIpv4(T), T_MAC.hi, T_MAC.lo);
    n.dp.switch.attach(port);
    return { ...n, tun: { port, sink } };
  }
  function fromTun(n: ReturnType<typeof withTun>, f: { buf: Buffer; off: number; len: number }): void {
    n.dp.tick();
    n.dp.receive(n.tun.port, f.buf, f.off, f.len);
    n.dp.flush();
  }

  it('is an offload port whose frames start 14 bytes before the packet', () => {
    const n = withTun();
    expect(n.tun.port.offload).to.equal(true);
    expect(n.tun.port.rxCapacity).to.equal(CAPACITY + ETH_HLEN);
  });

  it('passes a TUN pod\'s super-frame to an offload TAP pod whole, csum_start and hdr_len counted from Ethernet', () => {
    const n = withTun();
    const f = tunSuperFrame(5000, 1400, ACK | PSH);
    // The TUN pod sends as itself.
    writeIpv4Header(f.buf, f.off, parseIpv4(T), parseIpv4(B), IpProtocol.TCP, 64, TCP_HLEN + 5000, 0xfffe, true);
    f.buf.writeUInt16BE(pseudoHeaderSum(parseIpv4(T), parseIpv4(B), IpProtocol.TCP, TCP_HLEN + 5000), f.off + 20 + 16);
    fromTun(n, f);
    expect(n.b.sink.frames).to.have.length(1);
    const out = n.b.sink.frames[0]!;
    expect(out.hdr).to.equal(1);
    expect(out.frame.length).to.equal(ETH_HLEN + f.len);
    expect(out.frame.subarray(ETH_HLEN).equals(f.buf.subarray(f.off, f.off + f.len))).to.equal(true);
    expectSuperFrameHeader(out.vnet, ETH_HLEN);
    expect(n.tun.port.drops.toJSON()).to.deep.equal({});
  });

  it('writes a TAP pod\'s super-frame to the TUN pod whole, as an IP packet with the header counted from IP', () => {
    const n = withTun();
    const f = superFrame(5000, 1400, ACK | PSH, T_MAC, T);
    send(n.dp, n.a.port, f);
    expect(n.tun.sink.frames).to.have.length(1);
    const out = n.tun.sink.frames[0]!;
    expect(out.hdr).to.equal(1);
    expect(out.frame.equals(f.buf.subarray(f.off + ETH_HLEN, f.off + f.len))).to.equal(true);
    expectSuperFrameHeader(out.vnet, 0);
  });

  it('splits a TUN pod\'s super-frame for the host, every checksum right; a partial checksum alone is completed from the right byte', () => {
    const n = withTun();
    const mk = (payload: number, gso: boolean) => {
      const f = tunSuperFrame(payload, 1400, ACK, HOST);
      writeIpv4Header(f.buf, f.off, parseIpv4(T), parseIpv4(HOST), IpProtocol.TCP, 64, TCP_HLEN + payload, 0x1234, true);
      f.buf.writeUInt16BE(pseudoHeaderSum(parseIpv4(T), parseIpv4(HOST), IpProtocol.TCP, TCP_HLEN + payload), f.off + 20 + 16);
      // Framed to the gateway (the host is another subnet for the TUN pod's routing: the gateway MAC).
      if (!gso) f.buf[f.off - VNET_HDR_LEN + 1] = 0; // GSO_NONE: a partial checksum only
      return f;
    };
    fromTun(n, mk(3000, true));
    const pkts = n.hostSink.take();
    expect(pkts.map((p) => p.length)).to.deep.equal([1452, 1452, 252]);
    const payloads: Buffer[] = [];
    for (const p of pkts) {
      expect(ipv.reset(p, 0, p.length)).to.equal(ParseError.Ok);
      expect(tcpv.reset(p, 20, p.length - 20)).to.equal(ParseError.Ok);
      expect(tcpv.verifyChecksum(ipv.src, ipv.dst)).to.equal(true);
      payloads.push(Buffer.from(p.subarray(20 + TCP_HLEN)));
    }
    expect(Buffer.concat(payloads).equals(mk(3000, true).original)).to.equal(true);
    fromTun(n, mk(600, false));
    const [one] = n.hostSink.take();
    expect(one!.length).to.equal(20 + TCP_HLEN + 600);
    expect(tcpv.reset(one!, 20, one!.length - 20)).to.equal(ParseError.Ok);
    expect(ipv.reset(one!, 0, one!.length)).to.equal(ParseError.Ok);
    expect(tcpv.verifyChecksum(ipv.src, ipv.dst)).to.equal(true);
    expect(n.tun.port.drops.toJSON()).to.deep.equal({});
  });

  it('a plain packet after a super-frame in the same slot is plain: no stale header is read', () => {
    const n = withTun();
    const f = tunSuperFrame(3000, 1400, ACK);
    writeIpv4Header(f.buf, f.off, parseIpv4(T), parseIpv4(B), IpProtocol.TCP, 64, TCP_HLEN + 3000, 1, true);
    f.buf.writeUInt16BE(pseudoHeaderSum(parseIpv4(T), parseIpv4(B), IpProtocol.TCP, TCP_HLEN + 3000), f.off + 20 + 16);
    fromTun(n, f);
    expect(n.b.sink.frames.map((x) => x.hdr)).to.deep.equal([1]);
    // The device's next packet in that slot: a small one with an all-zero header (nothing to do).
    f.buf.fill(0, f.off - VNET_HDR_LEN, f.off);
    writeIpv4Header(f.buf, f.off, parseIpv4(T), parseIpv4(B), IpProtocol.TCP, 64, TCP_HLEN + 100, 2, true);
    fromTun(n, { buf: f.buf, off: f.off, len: 20 + TCP_HLEN + 100 });
    expect(n.b.sink.frames.map((x) => x.hdr)).to.deep.equal([1, 0]);
    expect(n.b.sink.frames[1]!.frame.length).to.equal(ETH_HLEN + 20 + TCP_HLEN + 100);
  });
});

/** Writes a segment's full TCP checksum (as a sender without checksum offload does). */
function fullTcpChecksum(buf: Buffer, tcp: number, len: number, src: string, dst: string): void {
  buf.writeUInt16BE(0, tcp + 16);
  buf.writeUInt16BE(checksum(buf, tcp, len, pseudoHeaderSum(parseIpv4(src), parseIpv4(dst), IpProtocol.TCP, len)), tcp + 16);
}

describe('dataplane/offload: the host port with offloads', () => {
  const C = '10.244.1.5';
  const C_MAC = parseMac('0a:58:0a:f4:01:05');
  function withOffloadHost() {
    const { dp, router } = routedDataplane();
    const pod = (ip: string, mac: { hi: number; lo: number }, offload: boolean) => {
      const sink = new HdrSink();
      const port = new TapPort(ip, dp, sink, { macHi: mac.hi, macLo: mac.lo, ip: parseIpv4(ip) }, { offload, rxCapacity: CAPACITY });
      dp.neighbors.set(parseIpv4(ip), mac.hi, mac.lo);
      dp.switch.attach(port);
      return { port, sink };
    };
    const a = pod(A, A_MAC, true);
    const b = pod(B, B_MAC, true);
    const c = pod(C, C_MAC, false); // a device opened without offloads (an older attachment)
    const hostSink = new HdrSink();
    const host = new HostPort('podnet0', dp, hostSink, { offload: true, rxCapacity: CAPACITY });
    router.attachHost(host);
    return { dp, router, a, b, c, host, hostSink };
  }
  /** The host's TCP super-frame as podnet0 hands it over: IP packet, header counted from the IP header. */
  function hostSuperFrame(payload: number, dst: string) {
    const f = tunSuperFrame(payload, 1400, ACK | PSH, dst);
    writeIpv4Header(f.buf, f.off, parseIpv4(HOST), parseIpv4(dst), IpProtocol.TCP, 64, TCP_HLEN + payload, 0x4321, true);
    f.buf.writeUInt16BE(pseudoHeaderSum(parseIpv4(HOST), parseIpv4(dst), IpProtocol.TCP, TCP_HLEN + payload), f.off + 20 + 16);
    return f;
  }
  function fromHost(n: ReturnType<typeof withOffloadHost>, f: { buf: Buffer; off: number; len: number }): void {
    n.dp.tick();
    n.dp.receive(n.host, f.buf, f.off, f.len);
    n.dp.flush();
  }

  it('routes the host\'s super-frame to an offload pod whole: header counted from Ethernet, partial checksum, TTL down', () => {
    const n = withOffloadHost();
    const f = hostSuperFrame(5000, B);
    fromHost(n, f);
    expect(n.b.sink.frames).to.have.length(1);
    const out = n.b.sink.frames[0]!;
    expect(out.hdr).to.equal(1);
    expect(out.frame.length).to.equal(ETH_HLEN + f.len);
    expectSuperFrameHeader(out.vnet, ETH_HLEN);
    expect(ipv.reset(out.frame, ETH_HLEN, f.len)).to.equal(ParseError.Ok);
    expect(ipv.ttl).to.equal(63);
    expect(ipv.verifyChecksum()).to.equal(true);
    expect(out.frame.readUInt16BE(ETH_HLEN + 20 + 16)).to.equal(pseudoHeaderSum(parseIpv4(HOST), parseIpv4(B), IpProtocol.TCP, TCP_HLEN + 5000));
    expect(out.frame.subarray(ETH_HLEN + 20 + TCP_HLEN).equals(f.original)).to.equal(true);
    expect(n.router.superFramesRouted).to.equal(1);
  });

  it('splits it for a pod without offloads, every checksum right', () => {
    const n = withOffloadHost();
    const f = hostSuperFrame(3000, C);
    fromHost(n, f);
    expect(n.c.sink.frames.map((x) => [x.hdr, x.frame.length])).to.deep.equal([
      [0, 1466],
      [0, 1466],
      [0, 266],
    ]);
    const payloads = n.c.sink.frames.map(({ frame }) => Buffer.from(checkSegment(frame, 0, frame.length).payload));
    expect(Buffer.concat(payloads).equals(f.original)).to.equal(true);
  });

  it('completes a partial checksum of the host\'s that comes without GSO, from the byte its header names', () => {
    const n = withOffloadHost();
    const f = hostSuperFrame(600, B);
    f.buf[f.off - VNET_HDR_LEN + 1] = 0; // GSO_NONE, still NEEDS_CSUM
    fromHost(n, f);
    expect(n.b.sink.frames.map((x) => x.hdr)).to.deep.equal([0]);
    const { frame } = n.b.sink.frames[0]!;
    expect(checkSegment(frame, 0, frame.length).payload.equals(f.original)).to.equal(true);
  });

  it('hands a pod\'s super-frame to the host whole, header counted from IP; plain packets with a plain header', () => {
    const n = withOffloadHost();
    const f = superFrame(5000, 1400, ACK | PSH, GW_MAC, HOST);
    send(n.dp, n.a.port, f);
    expect(n.hostSink.frames).to.have.length(1);
    const out = n.hostSink.frames[0]!;
    expect(out.hdr).to.equal(1);
    expect(out.frame.length).to.equal(f.len - ETH_HLEN);
    expectSuperFrameHeader(out.vnet, 0);
    expect(ipv.reset(out.frame, 0, out.frame.length)).to.equal(ParseError.Ok);
    expect(ipv.ttl).to.equal(63);
    expect(out.frame.readUInt16BE(20 + 16)).to.equal(pseudoHeaderSum(parseIpv4(A), parseIpv4(HOST), IpProtocol.TCP, TCP_HLEN + 5000));
    expect(out.frame.subarray(20 + TCP_HLEN).equals(f.original)).to.equal(true);
    expect(n.host.traffic.txBytes).to.equal(f.len - ETH_HLEN);

    // A plain segment (all-zero header, full checksum) goes as a plain packet (the addon writes a zero header).
    const small = superFrame(100, 1400, ACK, GW_MAC, HOST);
    small.buf.fill(0, small.off - VNET_HDR_LEN, small.off);
    fullTcpChecksum(small.buf, small.off + ETH_HLEN + 20, TCP_HLEN + 100, A, HOST);
    send(n.dp, n.a.port, small);
    expect(n.hostSink.frames.map((x) => x.hdr)).to.deep.equal([1, 0]);
  });

  it('a plain packet of the host\'s (all-zero header) routes as before; the host\'s own traffic back to it is refused', () => {
    const n = withOffloadHost();
    const f = hostSuperFrame(100, B);
    f.buf.fill(0, f.off - VNET_HDR_LEN, f.off);
    fullTcpChecksum(f.buf, f.off + 20, TCP_HLEN + 100, HOST, B);
    fromHost(n, f);
    expect(n.b.sink.frames.map((x) => x.hdr)).to.deep.equal([0]);
    const { frame } = n.b.sink.frames[0]!;
    expect(checkSegment(frame, 0, frame.length).payload.length).to.equal(100);
    // A super-frame of the host's to an address outside the pod CIDR would go back to the host: refused, not looped.
    fromHost(n, hostSuperFrame(3000, '192.0.2.1'));
    expect(n.hostSink.frames.filter((x) => x.hdr === 1)).to.have.length(0);
  });
});
