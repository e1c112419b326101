import { expect } from 'chai';
import { PerformanceObserver, performance, type PerformanceEntry } from 'node:perf_hooks';
import v8 from 'node:v8';
import { copyBytes } from '../../../src/io/copy.js';
import { loadAddon } from '../../../src/io/addon.js';
import { useNativeSegmentOps } from '../../../src/packet/segment.js';
import { FramePool } from '../../../src/dataplane/pool.js';
import { TcpCoalescer, type GroSink } from '../../../src/dataplane/gro.js';
import { SEGMENT_HEADROOM, TcpSplitter, VNET_HDR_LEN } from '../../../src/dataplane/offload.js';
import { OverlayResult, type Router } from '../../../src/dataplane/router.js';
import { podGsoMaxSegments, VxlanOverlay, type UdpTransport } from '../../../src/dataplane/vxlan.js';
import {
  completePartialChecksum,
  emitTcp,
  ETH_HLEN,
  EtherType,
  IpProtocol,
  Ipv4View,
  ParseError,
  parseIpv4,
  parseMac,
  pseudoHeaderSum,
  sum16,
  TcpFlags,
  TcpView,
  VXLAN_FLAG_I,
  VXLAN_HLEN,
  VxlanView,
  vxlanRco,
  writeEthernetHeader,
  writeIpv4Header,
  writeUdpHeader,
} from '../../../src/packet/index.js';

const A = parseIpv4('10.244.0.2');
const B = parseIpv4('10.244.1.2');
const LOCAL_VTEP = parseMac('0a:5a:c6:12:00:0b');
const PEER_VTEP = parseMac('0a:5a:c6:12:00:0c');
const PEER_UNDERLAY = parseIpv4('198.18.0.12');
const TCP_HLEN = 32; // with a timestamp option, as Linux sends
const OPTIONS = Buffer.from('0101080a0000000100000002', 'hex');
const { ACK, PSH, SYN } = TcpFlags;
const ENCAP = VXLAN_HLEN + ETH_HLEN;

function payloadBytes(n: number, seed = 7): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 13 + seed) & 0xff;
  return b;
}

/** An IPv4/TCP packet at `ip` (header + options + payload) with a full, right TCP checksum. */
function writeTcp(buf: Buffer, ip: number, payload: Buffer, opts: { seq?: number; flags?: number; src?: number; dst?: number; srcPort?: number } = {}): number {
  const src = opts.src ?? A;
  const dst = opts.dst ?? B;
  payload.copy(buf, ip + 20 + TCP_HLEN);
  emitTcp(
    { srcPort: opts.srcPort ?? 40000, dstPort: 5201, seq: opts.seq ?? 1000, ack: 77, flags: opts.flags ?? ACK, window: 500, options: OPTIONS, payloadLength: payload.length },
    buf,
    ip + 20,
    src,
    dst,
  );
  writeIpv4Header(buf, ip, src, dst, IpProtocol.TCP, 64, TCP_HLEN + payload.length, 0x1234, true);
  return 20 + TCP_HLEN + payload.length;
}

const ipv = new Ipv4View();
const tcpv = new TcpView();

function checkTcp(buf: Buffer, ip: number, len: number) {
  expect(ipv.reset(buf, ip, len)).to.equal(ParseError.Ok);
  expect(ipv.verifyChecksum(), 'IP checksum').to.equal(true);
  expect(tcpv.reset(buf, ipv.payloadOffset, ipv.payloadLength)).to.equal(ParseError.Ok);
  expect(tcpv.verifyChecksum(ipv.src, ipv.dst), 'TCP checksum').to.equal(true);
  return { seq: tcpv.seq >>> 0, flags: tcpv.flags, payload: Buffer.from(buf.subarray(tcpv.payloadOffset, tcpv.payloadOffset + tcpv.payloadLength)) };
}

describe('packet: completePartialChecksum', () => {
  it('completes a TCP checksum left as the pseudo-header sum, to the value a full computation gives', () => {
    const buf = Buffer.alloc(2000, 0xa5);
    const len = writeTcp(buf, 0, payloadBytes(1000));
    const right = buf.readUInt16BE(20 + 16);
    buf.writeUInt16BE(pseudoHeaderSum(A, B, IpProtocol.TCP, len - 20), 20 + 16); // as CHECKSUM_PARTIAL leaves it
    expect(completePartialChecksum(buf, 0, len, 20, IpProtocol.TCP)).to.equal(true);
    expect(buf.readUInt16BE(20 + 16)).to.equal(right);
  });

  it('leaves full checksums, corrupt ones, UDP without a checksum and fragments alone', () => {
    const buf = Buffer.alloc(2000, 0xa5);
    const len = writeTcp(buf, 0, payloadBytes(1000));
    const right = buf.readUInt16BE(36);
    expect(completePartialChecksum(buf, 0, len, 20, IpProtocol.TCP)).to.equal(false);
    buf.writeUInt16BE(right ^ 0x0101, 36); // corrupt: the receiver must see it and drop it
    expect(completePartialChecksum(buf, 0, len, 20, IpProtocol.TCP)).to.equal(false);
    expect(buf.readUInt16BE(36)).to.equal(right ^ 0x0101);
    const udp = Buffer.alloc(100, 0);
    writeIpv4Header(udp, 0, A, B, IpProtocol.UDP, 64, 8 + 10);
    writeUdpHeader(udp, 20, 1000, 2000, 10);
    expect(completePartialChecksum(udp, 0, 38, 20, IpProtocol.UDP)).to.equal(false);
    // A first fragment's checksum covers bytes that are not here.
    const frag = Buffer.alloc(2000, 0xa5);
    writeTcp(frag, 0, payloadBytes(500));
    frag.writeUInt16BE(pseudoHeaderSum(A, B, IpProtocol.TCP, 500 + TCP_HLEN), 36);
    frag[6] |= 0x20; // MF
    expect(completePartialChecksum(frag, 0, 20 + TCP_HLEN + 500, 20, IpProtocol.TCP)).to.equal(false);
  });

  it('completes a partial UDP checksum to one that verifies', () => {
    const buf = Buffer.alloc(100, 0);
    writeIpv4Header(buf, 0, A, B, IpProtocol.UDP, 64, 8 + 4);
    writeUdpHeader(buf, 20, 1000, 2000, 4);
    buf.write('ping', 28);
    buf.writeUInt16BE(pseudoHeaderSum(A, B, IpProtocol.UDP, 12), 26);
    expect(completePartialChecksum(buf, 0, 32, 20, IpProtocol.UDP)).to.equal(true);
    expect(sum16(buf, 20, 12, pseudoHeaderSum(A, B, IpProtocol.UDP, 12))).to.equal(0xffff);
  });
});

describe('dataplane/offload: TcpSplitter', () => {
  it('cuts a super-frame that came without offload metadata into MSS segments in scratch frames, all checksums right', () => {
    const data = payloadBytes(10_000);
    const buf = Buffer.alloc(20_000, 0xa5);
    const len = writeTcp(buf, 0, data, { seq: 0xfffff000, flags: ACK | PSH });
    buf.writeUInt16BE(pseudoHeaderSum(A, B, IpProtocol.TCP, len - 20), 36); // partial, as GSO leaves it
    const pool = new FramePool();
    const sp = new TcpSplitter();
    const mss = 1450 - 20 - TCP_HLEN;
    const n = sp.split(buf, 0, len, mss, pool);
    expect(n).to.equal(Math.ceil(10_000 / mss));
    const parts: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const s = checkTcp(pool.buffer, sp.segOff[i]!, sp.segLen[i]!);
      expect(sp.segOff[i]! % pool.slotSize, 'headroom before each segment').to.be.at.least(SEGMENT_HEADROOM);
      expect(s.seq).to.equal((0xfffff000 + i * mss) >>> 0);
      expect(s.flags).to.equal(i === n - 1 ? ACK | PSH : ACK);
      parts.push(s.payload);
    }
    expect(Buffer.concat(parts).equals(data)).to.equal(true);
  });

  it('refuses what GSO never makes: UDP super-frames and fragments', () => {
    const buf = Buffer.alloc(20_000, 0);
    writeIpv4Header(buf, 0, A, B, IpProtocol.UDP, 64, 8 + 5000);
    const sp = new TcpSplitter();
    expect(sp.split(buf, 0, 5028, 1400, new FramePool())).to.equal(0);
  });
});

/** A transport that keeps what it was given. */
class CaptureTransport implements UdpTransport {
  readonly runs: Array<{ bytes: Buffer; segSize: number; dstIp: number; srcPort: number }> = [];
  readonly singles: Array<{ bytes: Buffer; srcPort: number }> = [];
  readonly sourcePorts = new Uint16Array([40001, 40002, 40003, 40004]);
  send(buf: Buffer, off: number, len: number, _dstIp: number, _dstPort: number, srcPort: number): boolean {
    this.singles.push({ bytes: Buffer.from(buf.subarray(off, off + len)), srcPort });
    return true;
  }
  sendSegmented(buf: Buffer, off: number, len: number, segSize: number, dstIp: number, _dstPort: number, srcPort: number): boolean {
    this.runs.push({ bytes: Buffer.from(buf.subarray(off, off + len)), segSize, dstIp, srcPort });
    return true;
  }
}

/** A router stand-in that records what the overlay hands it. */
function recordingRouter() {
  const got = { plain: [] as Buffer[], supers: [] as Array<{ ip: Buffer; mss: number; vnet: Buffer; room: number }> };
  const router = {
    fromOverlay: (buf: Buffer, off: number, len: number) => got.plain.push(Buffer.from(buf.subarray(off, off + len))),
    fromOverlaySuper: (buf: Buffer, off: number, len: number, mss: number, room: number) =>
      got.supers.push({ ip: Buffer.from(buf.subarray(off, off + len)), mss, vnet: Buffer.from(buf.subarray(off - ETH_HLEN - VNET_HDR_LEN, off - ETH_HLEN)), room }),
  } as unknown as Router;
  return { router, got };
}

function overlay(transport: UdpTransport, router: Router, local = LOCAL_VTEP) {
  const o = new VxlanOverlay(
    { vni: 1, port: 8472, localVtepMacHi: local.hi, localVtepMacLo: local.lo, innerMtu: 1450, subnetMask: 0xffffff00 },
    transport,
    router,
  );
  return o;
}

describe('dataplane/vxlan: super-frames through the tunnel (UDP GSO out, GRO in)', () => {
  const HEAD = 128;
  const mss = 1450 - 20 - TCP_HLEN;

  function superFrame(payloadLen: number) {
    const buf = Buffer.alloc(HEAD + 80 * 1024, 0xa5);
    const data = payloadBytes(payloadLen);
    const len = writeTcp(buf, HEAD, data, { seq: 0xfffffff0 });
    return { buf, data, len };
  }

  it('lays a super-frame out in place as one run of VXLAN datagrams a kernel peer takes as they are', () => {
    const t = new CaptureTransport();
    const { router } = recordingRouter();
    const o = overlay(t, router);
    o.setPeer({ subnetNetwork: parseIpv4('10.244.1.0'), underlayIp: PEER_UNDERLAY, vtepMacHi: PEER_VTEP.hi, vtepMacLo: PEER_VTEP.lo });
    const { buf, data, len } = superFrame(20_000);
    expect(o.sendSegmented(buf, HEAD, len, B, mss, 80 * 1024)).to.equal(OverlayResult.Sent);
    expect(t.runs).to.have.length(1);
    const run = t.runs[0]!;
    expect(run.segSize).to.equal(ENCAP + 20 + TCP_HLEN + mss);
    expect(run.dstIp).to.equal(PEER_UNDERLAY);
    expect([...t.sourcePorts]).to.include(run.srcPort);
    const n = Math.ceil(20_000 / mss);
    expect(run.bytes.length).to.equal((n - 1) * run.segSize + ENCAP + 20 + TCP_HLEN + (20_000 - (n - 1) * mss));
    const vx = new VxlanView();
    const parts: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const d = i * run.segSize;
      const l = Math.min(run.segSize, run.bytes.length - d);
      expect(vx.reset(run.bytes, d, l)).to.equal(ParseError.Ok);
      expect(vx.vni).to.equal(1);
      expect(run.bytes.readUInt16BE(d + VXLAN_HLEN + 12)).to.equal(EtherType.IPv4);
      const s = checkTcp(run.bytes, d + ENCAP, l - ENCAP);
      expect(s.seq).to.equal((0xfffffff0 + i * mss) >>> 0);
      parts.push(s.payload);
    }
    expect(Buffer.concat(parts).equals(data)).to.equal(true);
    expect(o.encapsulated).to.equal(n);
  });

  it('sends a 64 KB super-frame as two runs, none over one UDP payload (65507 bytes)', () => {
    const t = new CaptureTransport();
    const o = overlay(t, recordingRouter().router);
    o.setPeer({ subnetNetwork: parseIpv4('10.244.1.0'), underlayIp: PEER_UNDERLAY, vtepMacHi: PEER_VTEP.hi, vtepMacLo: PEER_VTEP.lo });
    const { buf, len } = superFrame(65_000);
    expect(o.sendSegmented(buf, HEAD, len, B, mss, 80 * 1024)).to.equal(OverlayResult.Sent);
    expect(t.runs.length).to.equal(2);
    for (const r of t.runs) expect(r.bytes.length).to.be.at.most(65_507);
    expect(t.runs[0]!.srcPort).to.equal(t.runs[1]!.srcPort);
  });

  it('sends at most 64 datagrams per run (UDP_MAX_SEGMENTS: older kernels refuse more), small segments included', () => {
    const t = new CaptureTransport();
    const o = overlay(t, recordingRouter().router);
    o.setPeer({ subnetNetwork: parseIpv4('10.244.1.0'), underlayIp: PEER_UNDERLAY, vtepMacHi: PEER_VTEP.hi, vtepMacLo: PEER_VTEP.lo });
    // 536-byte segments (a pod MTU of 576): 90 of them would fit one UDP payload.
    const { buf, len } = superFrame(100 * 536);
    expect(o.sendSegmented(buf, HEAD, len, B, 536, 80 * 1024)).to.equal(OverlayResult.Sent);
    expect(t.runs.map((r) => Math.ceil(r.bytes.length / r.segSize))).to.deep.equal([64, 36]);
  });

  it('podGsoMaxSegments: a pod super-frame of full-size segments fits one run, as sendSegmented cuts them', () => {
    expect(podGsoMaxSegments(1450)).to.equal(44); // 44 * (1450 + 22) = 64768 <= 65507 < 45 * 1472
    expect(podGsoMaxSegments(1500)).to.equal(43);
    expect(podGsoMaxSegments(8950)).to.equal(7);
    expect(podGsoMaxSegments(576)).to.equal(64);
    // A 44-segment super-frame at MTU 1450 leaves as one run; 45 segments would take two.
    for (const [segs, runs] of [[44, 1], [45, 2]] as const) {
      const t = new CaptureTransport();
      const o = overlay(t, recordingRouter().router);
      o.setPeer({ subnetNetwork: parseIpv4('10.244.1.0'), underlayIp: PEER_UNDERLAY, vtepMacHi: PEER_VTEP.hi, vtepMacLo: PEER_VTEP.lo });
      const { buf, len } = superFrame(segs * mss);
      expect(o.sendSegmented(buf, HEAD, len, B, mss, 80 * 1024)).to.equal(OverlayResult.Sent);
      expect(t.runs, `${segs} segments`).to.have.length(runs);
    }
  });

  it('keeps one outer source port per flow, whether its datagrams go alone or in runs', () => {
    const t = new CaptureTransport();
    const o = overlay(t, recordingRouter().router);
    o.setPeer({ subnetNetwork: parseIpv4('10.244.1.0'), underlayIp: PEER_UNDERLAY, vtepMacHi: PEER_VTEP.hi, vtepMacLo: PEER_VTEP.lo });
    const { buf, len } = superFrame(10_000);
    o.sendSegmented(buf, HEAD, len, B, mss, 80 * 1024);
    const small = Buffer.alloc(HEAD + 200, 0);
    const slen = writeTcp(small, HEAD, Buffer.alloc(0));
    expect(o.send(small, HEAD, slen, B)).to.equal(OverlayResult.Sent);
    expect(t.singles[0]!.srcPort).to.equal(t.runs[0]!.srcPort);
  });

  /** A super-frame of `payload` bytes sent as one run, and a receiving overlay with the run in a receive slot. */
  function sentRun(payload: number, rco = false) {
    const t = new CaptureTransport();
    const o = overlay(t, recordingRouter().router);
    o.setPeer({ subnetNetwork: parseIpv4('10.244.1.0'), underlayIp: PEER_UNDERLAY, vtepMacHi: PEER_VTEP.hi, vtepMacLo: PEER_VTEP.lo, rco });
    const { buf, data, len } = superFrame(payload);
    o.sendSegmented(buf, HEAD, len, B, mss, 80 * 1024);
    const run = t.runs[0]!;
    // Receiver side: the run in a receive slot, as UDP_GRO delivers it (its VTEP is the sender's peer MAC).
    const { router, got } = recordingRouter();
    const r = overlay(new CaptureTransport(), router, PEER_VTEP);
    r.setPeer({ subnetNetwork: parseIpv4('10.244.0.0'), underlayIp: parseIpv4('198.18.0.11'), vtepMacHi: LOCAL_VTEP.hi, vtepMacLo: LOCAL_VTEP.lo });
    const slot = Buffer.alloc(HEAD + 65_536, 0x5a);
    run.bytes.copy(slot, HEAD);
    const receive = () => r.receiveRun(slot, HEAD, run.bytes.length, run.segSize, parseIpv4('198.18.0.11'), slot.length);
    return { run, data, slot, got, receive, r };
  }

  it('a run with one datagram corrupted on the way: its checksum fails and it passes on alone, the rest joined', () => {
    const { run, slot, got, receive } = sentRun(5 * mss);
    slot[HEAD + 2 * run.segSize + 100]! ^= 0x01; // one payload bit of the third datagram
    receive();
    // Segments 0-1 join, 2 goes alone (for the pod to refuse), 3-4 join.
    expect(got.supers.map((x) => x.ip.length - 20 - TCP_HLEN)).to.deep.equal([2 * mss, 2 * mss]);
    expect(got.plain).to.have.length(1);
    expect(tcpv.reset(got.plain[0]!, 20, got.plain[0]!.length - 20)).to.equal(ParseError.Ok);
    expect(tcpv.seq >>> 0).to.equal((0xfffffff0 + 2 * mss) >>> 0);
  });

  it('a run received back is checked and joined into one super-frame with a GSO header, bytes intact', () => {
    const { data, got, receive, r } = sentRun(30_000);
    receive();
    expect(got.plain).to.have.length(0);
    expect(got.supers).to.have.length(1);
    const s = got.supers[0]!;
    expect(s.mss).to.equal(mss);
    expect(ipv.reset(s.ip, 0, s.ip.length)).to.equal(ParseError.Ok);
    expect(ipv.totalLength).to.equal(20 + TCP_HLEN + 30_000);
    expect(ipv.verifyChecksum()).to.equal(true);
    expect(tcpv.reset(s.ip, 20, s.ip.length - 20)).to.equal(ParseError.Ok);
    expect(tcpv.seq >>> 0).to.equal(0xfffffff0);
    expect(s.ip.subarray(20 + TCP_HLEN).equals(data)).to.equal(true);
    // A partial checksum and a virtio-net header asking for it and for TSO into mss segments.
    expect(s.ip.readUInt16BE(20 + 16)).to.equal(pseudoHeaderSum(A, B, IpProtocol.TCP, TCP_HLEN + 30_000));
    expect(s.vnet[0]).to.equal(1); // NEEDS_CSUM
    expect(s.vnet[1]).to.equal(1); // GSO_TCPV4
    expect(s.vnet.readUInt16LE(4)).to.equal(mss);
    expect(s.vnet.readUInt16LE(6)).to.equal(ETH_HLEN + 20);
    expect(s.vnet.readUInt16LE(8)).to.equal(16);
    expect(r.gro.superFrames).to.equal(1);
    expect(r.gro.segments).to.equal(Math.ceil(30_000 / mss));
    expect(r.decapsulated).to.equal(Math.ceil(30_000 / mss)); // each datagram counted, those joined in one call too
  });

  it('to a peer that takes RCO: every datagram has the C bit and start 34 (TCP), its TCP checksum partial', () => {
    const t = new CaptureTransport();
    const o = overlay(t, recordingRouter().router);
    o.setPeer({ subnetNetwork: parseIpv4('10.244.1.0'), underlayIp: PEER_UNDERLAY, vtepMacHi: PEER_VTEP.hi, vtepMacLo: PEER_VTEP.lo, rco: true });
    const { buf, data, len } = superFrame(20_000);
    expect(o.sendSegmented(buf, HEAD, len, B, mss, 80 * 1024)).to.equal(OverlayResult.Sent);
    const run = t.runs[0]!;
    const n = Math.ceil(20_000 / mss);
    const parts: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const d = i * run.segSize;
      const l = Math.min(run.segSize, run.bytes.length - d);
      expect(run.bytes[d]! & VXLAN_FLAG_I).to.equal(VXLAN_FLAG_I);
      expect(vxlanRco(run.bytes, d), 'RCO byte: start 34 / 2, TCP').to.equal(17);
      expect(new VxlanView().reset(run.bytes, d, l)).to.equal(ParseError.Ok);
      const ip = d + ENCAP;
      const tcpLen = l - ENCAP - 20;
      // What the receiver finds: the pseudo-header sum, which finished gives the full checksum.
      expect(run.bytes.readUInt16BE(ip + 20 + 16)).to.equal(pseudoHeaderSum(A, B, IpProtocol.TCP, tcpLen));
      expect(completePartialChecksum(run.bytes, ip, l - ENCAP, 20, IpProtocol.TCP)).to.equal(true);
      parts.push(checkTcp(run.bytes, ip, l - ENCAP).payload);
    }
    expect(Buffer.concat(parts).equals(data)).to.equal(true);
    expect(o.rcoSent).to.equal(n);
  });

  it('an RCO run joins without summing its payloads (the outer UDP checksum covered them), bytes intact', () => {
    const { data, got, receive, r } = sentRun(30_000, true);
    const plainRun = sentRun(30_000, false);
    // What the receiver sums: no region of the RCO run (its segments are not checked), and its
    // continuations found without a look at their payloads; the same run without RCO has each checked.
    const addon = loadAddon();
    let summedRegions = 0;
    const verified: number[] = [];
    const joined: number[] = [];
    useNativeSegmentOps({
      moveSums: (buf, src, srcStride, dst, dstStride, size, last, n, sums) => {
        if (sums !== null) summedRegions += n;
        addon.moveSums(buf, src, srcStride, dst, dstStride, size, last, n, sums);
      },
      replicate: addon.replicate,
      segmentHeaders: addon.segmentHeaders,
      continuations: (buf, off, stride, n, last, ipAt, hdrLen, mss, verify) => {
        const k = addon.continuations(buf, off, stride, n, last, ipAt, hdrLen, mss, verify);
        verified.push(verify);
        joined.push(k);
        return k;
      },
    });
    const segments = Math.ceil(30_000 / mss);
    try {
      receive();
      expect(summedRegions).to.equal(0);
      expect(verified).to.deep.equal([0]);
      expect(joined).to.deep.equal([segments - 1]); // one call found every continuation
      plainRun.receive();
      expect(verified).to.deep.equal([0, 1]);
      expect(joined).to.deep.equal([segments - 1, segments - 1]);
      expect(plainRun.got.supers).to.have.length(1);
    } finally {
      useNativeSegmentOps({ moveSums: addon.moveSums, replicate: addon.replicate, segmentHeaders: addon.segmentHeaders, continuations: addon.continuations });
    }
    expect(got.plain).to.have.length(0);
    expect(got.supers).to.have.length(1);
    const s = got.supers[0]!;
    expect(s.ip.subarray(20 + TCP_HLEN).equals(data)).to.equal(true);
    expect(s.ip.readUInt16BE(20 + 16)).to.equal(pseudoHeaderSum(A, B, IpProtocol.TCP, TCP_HLEN + 30_000));
    expect(s.vnet[0]).to.equal(1); // NEEDS_CSUM: the pod's kernel takes it as the kernel's own VXLAN would hand it
    expect(r.rcoReceived).to.equal(Math.ceil(30_000 / mss));
    expect(r.drops.toJSON()).to.deep.equal({});
  });

  it('an RCO datagram passed on alone keeps the pseudo-header sum, for the router to finish', () => {
    const { run, slot, got, r } = sentRun(3 * mss, true);
    // The last datagram alone, as a run of one.
    const d = 2 * run.segSize;
    r.receive(slot, HEAD + d, run.bytes.length - d, parseIpv4('198.18.0.11'));
    expect(got.plain).to.have.length(1);
    const p = got.plain[0]!;
    expect(p.readUInt16BE(20 + 16)).to.equal(pseudoHeaderSum(A, B, IpProtocol.TCP, p.length - 20));
    expect(completePartialChecksum(p, 0, p.length, 20, IpProtocol.TCP)).to.equal(true);
    checkTcp(p, 0, p.length);
    expect(r.rcoReceived).to.equal(1);
  });

  it('drops an RCO datagram whose checksum start or field is not its inner TCP or UDP checksum', () => {
    const { run, slot, got, r } = sentRun(2 * mss, true);
    const one = (mutate: (o: number) => void) => {
      const copy = Buffer.from(slot);
      mutate(HEAD);
      r.receive(slot, HEAD, run.segSize, parseIpv4('198.18.0.11'));
      copy.copy(slot);
    };
    one((o) => (slot[o + 7] = 18)); // start 36: inside the TCP header
    one((o) => (slot[o + 7] = 17 | 0x80)); // UDP's field in a TCP packet
    one((o) => (slot[o + 7] = 10)); // start 20: inside the IPv4 header
    expect(got.plain).to.have.length(0);
    expect(r.drops.toJSON()).to.deep.equal({ vxlan_bad_rco: 3 });
    r.receive(slot, HEAD, run.segSize, parseIpv4('198.18.0.11'));
    expect(got.plain).to.have.length(1);
  });
});

describe('dataplane/gro: TcpCoalescer follows Linux GRO rules', () => {
  const mss = 1000;
  const stride = 1200;
  const HEAD = 64;

  /** k inner Ethernet frames, one every `stride` bytes, and a coalescer recording its output. */
  function setup() {
    const buf = Buffer.alloc(HEAD + 64 * stride, 0);
    const out = { plain: [] as number[], supers: [] as Array<{ len: number; mss: number; payload: Buffer; flags: number }> };
    const sink: GroSink = {
      plain: (_b, _o, l) => out.plain.push(l),
      superFrame: (b, o, l, m) => out.supers.push({ len: l, mss: m, payload: Buffer.from(b.subarray(o + 20 + TCP_HLEN, o + l)), flags: b[o + 20 + 13]! }),
    };
    const g = new TcpCoalescer(sink);
    const write = (i: number, payload: Buffer, opts: Parameters<typeof writeTcp>[3] = {}) => {
      const e = HEAD + i * stride;
      writeEthernetHeader(buf, e, LOCAL_VTEP.hi, LOCAL_VTEP.lo, PEER_VTEP.hi, PEER_VTEP.lo, EtherType.IPv4);
      return { e, len: ETH_HLEN + writeTcp(buf, e + ETH_HLEN, payload, opts) };
    };
    const put = (i: number, payload: Buffer, opts: Parameters<typeof writeTcp>[3] = {}) => {
      const f = write(i, payload, opts);
      g.add(buf, f.e, f.len, buf.length);
    };
    return { buf, out, g, put, write };
  }

  it('joins in-order full segments, PSH on the last kept and ending the super-frame', () => {
    const { buf, out, g, put } = setup();
    const parts = [0, 1, 2, 3].map((i) => payloadBytes(mss, i));
    parts.forEach((p, i) => put(i, p, { seq: 5000 + i * mss, flags: i === 3 ? ACK | PSH : ACK }));
    g.flush(buf);
    expect(out.plain).to.deep.equal([]);
    expect(out.supers).to.have.length(1);
    expect(out.supers[0]!.payload.equals(Buffer.concat(parts))).to.equal(true);
    expect(out.supers[0]!.flags).to.equal(ACK | PSH);
    expect(out.supers[0]!.mss).to.equal(mss);
  });

  it('ends a super-frame at a gap in sequence numbers, another flow, or a short segment', () => {
    const { buf, out, g, put } = setup();
    put(0, payloadBytes(mss), { seq: 0 });
    put(1, payloadBytes(mss), { seq: mss });
    put(2, payloadBytes(mss), { seq: 5 * mss }); // gap: starts a new one
    put(3, payloadBytes(mss), { seq: 6 * mss, srcPort: 40001 }); // another flow
    put(4, payloadBytes(mss), { seq: 7 * mss, srcPort: 40001 });
    put(5, payloadBytes(300), { seq: 8 * mss, srcPort: 40001 }); // short: last of its super-frame
    put(6, payloadBytes(mss), { seq: 8 * mss + 300, srcPort: 40001 });
    g.flush(buf);
    expect(out.supers.map((s) => s.len - 20 - TCP_HLEN)).to.deep.equal([2 * mss, 2 * mss + 300]);
    expect(out.plain).to.deep.equal([20 + TCP_HLEN + mss, 20 + TCP_HLEN + mss]);
  });

  it('passes on, in order and alone, what must not join: SYN, a bad TCP checksum, no payload', () => {
    const { buf, out, g, put, write } = setup();
    put(0, payloadBytes(mss), { seq: 0 });
    put(1, payloadBytes(mss), { seq: mss });
    put(2, payloadBytes(mss), { seq: 2 * mss, flags: SYN | ACK });
    put(3, Buffer.alloc(0), { seq: 3 * mss });
    const bad = write(4, payloadBytes(mss), { seq: 3 * mss });
    buf[bad.e + ETH_HLEN + 20 + TCP_HLEN + 10] ^= 0xff; // corrupted on the way: for the pod to refuse
    g.add(buf, bad.e, bad.len, buf.length);
    put(5, payloadBytes(mss), { seq: 4 * mss });
    put(6, payloadBytes(mss), { seq: 5 * mss });
    g.flush(buf);
    expect(out.supers.map((s) => s.len - 20 - TCP_HLEN)).to.deep.equal([2 * mss, 2 * mss]);
    expect(out.plain).to.deep.equal([20 + TCP_HLEN + mss, 20 + TCP_HLEN, 20 + TCP_HLEN + mss]);
  });
});

describe('dataplane/vxlan: GSO out and GRO in allocate nothing per packet', () => {
  for (const rco of [false, true]) it(`10k super-frames laid out as runs and joined again${rco ? ' with RCO' : ''}: no garbage collection, no young-generation growth`, async function () {
    this.timeout(120_000);
    const HEAD = 128;
    const mss = 1450 - 20 - TCP_HLEN;
    const template = Buffer.alloc(HEAD + 80 * 1024, 0xa5);
    const len = writeTcp(template, HEAD, payloadBytes(60_000));
    const work = Buffer.alloc(template.length);
    const slot = Buffer.alloc(80 * 1024); // as the daemon's VXLAN receive slots
    let supers = 0;
    let plain = 0;
    let joined = 0;
    const router = {
      fromOverlay: () => void plain++,
      fromOverlaySuper: (_b: Buffer, _o: number, l: number) => void ((supers++, (joined += l))),
    } as unknown as Router;
    const rx = overlay({ send: () => true }, router, PEER_VTEP);
    rx.setPeer({ subnetNetwork: parseIpv4('10.244.0.0'), underlayIp: parseIpv4('198.18.0.11'), vtepMacHi: LOCAL_VTEP.hi, vtepMacLo: LOCAL_VTEP.lo });
    const from = parseIpv4('198.18.0.11');
    // The wire: every run goes straight into the receiver's slot (the addon's memmove: no view objects).
    const wire: UdpTransport = {
      sourcePorts: new Uint16Array([40001, 40002]),
      send: () => true,
      sendSegmented: (buf, off, l, segSize) => {
        copyBytes(slot, HEAD, buf, off, l);
        rx.receiveRun(slot, HEAD, l, segSize, from, slot.length);
        return true;
      },
    };
    const tx = overlay(wire, recordingRouter().router);
    tx.setPeer({ subnetNetwork: parseIpv4('10.244.1.0'), underlayIp: PEER_UNDERLAY, vtepMacHi: PEER_VTEP.hi, vtepMacLo: PEER_VTEP.lo, rco });
    const round = (n: number) => {
      for (let i = 0; i < n; i++) {
        copyBytes(work, 0, template, 0, HEAD + len);
        tx.sendSegmented(work, HEAD, len, B, mss, 80 * 1024);
      }
    };
    // Warm up until the JIT has optimized the path: with one native call per super-frame (not per
    // segment), 500 rounds left some of it interpreted, whose arithmetic allocates heap numbers.
    round(3000);
    expect(plain).to.equal(0);
    const gcs: PerformanceEntry[] = [];
    const obs = new PerformanceObserver((list) => gcs.push(...list.getEntries()));
    obs.observe({ entryTypes: ['gc'] });
    await new Promise((r) => setTimeout(r, 20));
    gcs.length = 0;
    supers = 0;
    joined = 0;
    const t0 = performance.now();
    const h0 = youngUsed();
    round(10_000);
    const h1 = youngUsed();
    const t1 = performance.now();
    await new Promise((r) => setTimeout(r, 50));
    obs.disconnect();
    expect(gcs.filter((e) => e.startTime >= t0 && e.startTime <= t1), 'garbage collections').to.have.length(0);
    expect(h1 - h0, 'young generation growth over ~430k segments (bytes)').to.be.below(256 * 1024);
    expect(plain).to.equal(0);
    // Each super-frame of 60000 bytes (one run of 43 datagrams) comes back whole, every byte there.
    expect(joined).to.equal(10_000 * (60_000 + 20 + TCP_HLEN));
    expect(supers).to.equal(10_000);
    expect(tx.rcoSent > 0).to.equal(rco);
  });
});

function youngUsed(): number {
  let n = 0;
  for (const s of v8.getHeapSpaceStatistics()) {
    if (s.space_name === 'new_space' || s.space_name === 'new_large_object_space') n += s.space_used_size;
  }
  return n;
}
