// Packet builders and checkers for the NAT tests (not a test file itself).
import { expect } from 'chai';
import {
  emitIcmp,
  emitIcmpError,
  emitTcp,
  IcmpType,
  IcmpView,
  IpProtocol,
  ipv4ToString,
  Ipv4View,
  parseIpv4,
  sum16,
  TcpView,
  UdpView,
  writeIpv4Header,
  writeUdpHeader,
} from '../../../src/packet/index.js';

export const ip = (s: string): number => parseIpv4(s);

/** An IPv4 packet at `buf[off .. off + len)`, with junk (0xa5) around it. */
export interface Pkt {
  buf: Buffer;
  off: number;
  len: number;
}

const HEAD = 37; // odd offset, so nothing assumes alignment

function alloc(len: number): Pkt {
  return { buf: Buffer.alloc(HEAD + len + 11, 0xa5), off: HEAD, len };
}

function fill(buf: Buffer, from: number, n: number, seed: number): void {
  for (let i = 0; i < n; i++) buf[from + i] = (i * 31 + seed) & 0xff;
}

export function tcp(
  src: string,
  dst: string,
  sport: number,
  dport: number,
  flags: number,
  opts: { payload?: number; seq?: number; ack?: number } = {},
): Pkt {
  const payload = opts.payload ?? 0;
  const p = alloc(20 + 20 + payload);
  fill(p.buf, p.off + 40, payload, sport);
  emitTcp(
    { srcPort: sport, dstPort: dport, seq: opts.seq ?? 1000, ack: opts.ack ?? 0, flags, window: 64240, payloadLength: payload },
    p.buf,
    p.off + 20,
    ip(src),
    ip(dst),
  );
  writeIpv4Header(p.buf, p.off, ip(src), ip(dst), IpProtocol.TCP, 64, 20 + payload, 0x4242, true);
  return p;
}

export function udp(src: string, dst: string, sport: number, dport: number, opts: { payload?: number; noChecksum?: boolean; df?: boolean } = {}): Pkt {
  const payload = opts.payload ?? 24;
  const p = alloc(20 + 8 + payload);
  fill(p.buf, p.off + 28, payload, dport);
  if (opts.noChecksum) writeUdpHeader(p.buf, p.off + 20, sport, dport, payload);
  else writeUdpHeader(p.buf, p.off + 20, sport, dport, payload, ip(src), ip(dst));
  writeIpv4Header(p.buf, p.off, ip(src), ip(dst), IpProtocol.UDP, 64, 8 + payload, 0x1111, opts.df ?? false);
  return p;
}

export function echo(src: string, dst: string, type: number, id: number, seq = 1, payload = 32): Pkt {
  const p = alloc(20 + 8 + payload);
  fill(p.buf, p.off + 28, payload, seq);
  emitIcmp({ type, code: 0, ident: id, seq, payloadLength: payload }, p.buf, p.off + 20);
  writeIpv4Header(p.buf, p.off, ip(src), ip(dst), IpProtocol.ICMP, 64, 8 + payload, 0x2222);
  return p;
}

/** An ICMP error from `from` to `to` quoting `original` (as a router would, up to 548 bytes). */
export function icmpError(from: string, to: string, type: number, code: number, mtu: number, original: Pkt): Pkt {
  const quoted = original.buf.subarray(original.off, original.off + original.len);
  const icmpLen = 8 + Math.min(quoted.length, 548);
  const p = alloc(20 + icmpLen);
  emitIcmpError(type, code, mtu, quoted, p.buf, p.off + 20);
  writeIpv4Header(p.buf, p.off, ip(from), ip(to), IpProtocol.ICMP, 64, icmpLen, 0x3333);
  return p;
}

export interface Seen {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  /** TCP flags; ICMP type. */
  flags: number;
  /** For ICMP errors: the quoted packet. */
  inner?: Seen;
}

/**
 * Parses the packet with the views, asserts every checksum it carries is valid (IPv4 header, TCP,
 * UDP unless 0, ICMP; for ICMP errors also the quoted IPv4 header and, when the whole original is
 * quoted, its TCP/UDP checksum) and returns what a receiver would see. ICMP: sport = identifier.
 */
export function seen(p: Pkt): Seen {
  const v = Ipv4View.parse(p.buf, p.off, p.len);
  expect(v.verifyChecksum(), 'IPv4 header checksum').to.equal(true);
  const base = { src: ipv4ToString(v.src), dst: ipv4ToString(v.dst) };
  const l4 = v.payloadOffset;
  const l4len = v.payloadLength;
  if (v.protocol === IpProtocol.TCP) {
    const t = TcpView.parse(p.buf, l4, l4len);
    expect(t.verifyChecksum(v.src, v.dst), 'TCP checksum').to.equal(true);
    return { ...base, sport: t.srcPort, dport: t.dstPort, flags: t.flags };
  }
  if (v.protocol === IpProtocol.UDP) {
    const u = UdpView.parse(p.buf, l4, l4len);
    expect(u.verifyChecksum(v.src, v.dst), 'UDP checksum').to.equal(true);
    return { ...base, sport: u.srcPort, dport: u.dstPort, flags: 0 };
  }
  expect(v.protocol).to.equal(IpProtocol.ICMP);
  const c = IcmpView.parse(p.buf, l4, l4len);
  expect(c.verifyChecksum(), 'ICMP checksum').to.equal(true);
  if (c.type === IcmpType.EchoRequest || c.type === IcmpType.EchoReply) {
    return { ...base, sport: c.ident, dport: 0, flags: c.type };
  }
  // An error: check the quote.
  const e = c.payloadOffset;
  const ehl = (p.buf[e]! & 0x0f) * 4;
  expect(sum16(p.buf, e, ehl), 'quoted IPv4 header checksum').to.equal(0xffff);
  const eSrc = p.buf.readUInt32BE(e + 12);
  const eDst = p.buf.readUInt32BE(e + 16);
  const eProto = p.buf[e + 9]!;
  const eTotal = p.buf.readUInt16BE(e + 2);
  const quoted = c.payloadLength;
  const el4 = e + ehl;
  const inner: Seen = { src: ipv4ToString(eSrc), dst: ipv4ToString(eDst), sport: 0, dport: 0, flags: 0 };
  if (eProto === IpProtocol.TCP || eProto === IpProtocol.UDP) {
    inner.sport = p.buf.readUInt16BE(el4);
    inner.dport = p.buf.readUInt16BE(el4 + 2);
    if (quoted >= eTotal) {
      // The whole original is there: its L4 checksum must still be right.
      if (eProto === IpProtocol.TCP) {
        expect(TcpView.parse(p.buf, el4, eTotal - ehl).verifyChecksum(eSrc, eDst), 'quoted TCP checksum').to.equal(true);
      } else {
        expect(UdpView.parse(p.buf, el4, eTotal - ehl).verifyChecksum(eSrc, eDst), 'quoted UDP checksum').to.equal(true);
      }
    }
  } else if (eProto === IpProtocol.ICMP) {
    inner.sport = p.buf.readUInt16BE(el4 + 4);
    inner.flags = p.buf[el4]!;
    if (quoted >= eTotal) expect(sum16(p.buf, el4, eTotal - ehl), 'quoted ICMP checksum').to.equal(0xffff);
  }
  return { ...base, sport: 0, dport: 0, flags: c.type, inner };
}

/** `a.b.c.d:port` of the source and destination, for compact assertions. */
export function flow(s: Seen): string {
  return `${s.src}:${s.sport} > ${s.dst}:${s.dport}`;
}
