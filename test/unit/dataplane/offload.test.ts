import { expect } from 'chai';
import { Dataplane } from '../../../src/dataplane/dataplane.js';
import { DropReason } from '../../../src/util/counters.js';
import { OffloadResolver, SEGMENT_HEADROOM, VNET_HDR_LEN } from '../../../src/dataplane/offload.js';
import type { FrameSink } from '../../../src/dataplane/port.js';
import { HostPort, TapPort } from '../../../src/dataplane/ports.js';
import {
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
  frames: Array<{ frame: Buffer; hdr: number }> = [];
  writeBatch(bufs: Buffer[], offs: Uint32Array, lens: Uint32Array, count: number, hdrs?: Uint8Array): number {
    for (let i = 0; i < count; i++) this.frames.push({ frame: Buffer.from(bufs[i]!.subarray(offs[i]!, offs[i]! + lens[i]!)), hdr: hdrs?.[i] ?? 0 });
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
