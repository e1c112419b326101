import {
  ArpOp,
  emitIcmp,
  ETH_HLEN,
  EtherType,
  IcmpType,
  IpProtocol,
  parseIpv4,
  parseMac,
  writeArp,
  writeEthernetHeader,
  writeIpv4Header,
  writeUdpHeader,
} from '../../src/packet/index.js';
import type { FrameSink } from '../../src/dataplane/port.js';

/** Frames are built with headroom, as device rings deliver them. */
export const HEADROOM = 128;

export interface Frame {
  buf: Buffer;
  off: number;
  len: number;
}

function frame(len: number): Frame {
  const buf = Buffer.alloc(HEADROOM + len, 0xa5);
  return { buf, off: HEADROOM, len };
}

export function arpRequest(srcMac: string, srcIp: string, targetIp: string): Frame {
  const f = frame(ETH_HLEN + 28);
  const s = parseMac(srcMac);
  writeEthernetHeader(f.buf, f.off, 0xffff, 0xffffffff, s.hi, s.lo, EtherType.ARP);
  writeArp(f.buf, f.off + ETH_HLEN, ArpOp.Request, s.hi, s.lo, parseIpv4(srcIp), 0, 0, parseIpv4(targetIp));
  return f;
}

export function icmpEcho(opts: { srcMac: string; dstMac: string; src: string; dst: string; ttl?: number; payload?: number; ident?: number; seq?: number; df?: boolean }): Frame {
  const payload = opts.payload ?? 56;
  const f = frame(ETH_HLEN + 20 + 8 + payload);
  const s = parseMac(opts.srcMac);
  const d = parseMac(opts.dstMac);
  writeEthernetHeader(f.buf, f.off, d.hi, d.lo, s.hi, s.lo, EtherType.IPv4);
  const ipOff = f.off + ETH_HLEN;
  for (let i = 0; i < payload; i++) f.buf[ipOff + 28 + i] = i & 0xff;
  emitIcmp({ type: IcmpType.EchoRequest, code: 0, ident: opts.ident ?? 7, seq: opts.seq ?? 1, payloadLength: payload }, f.buf, ipOff + 20);
  writeIpv4Header(f.buf, ipOff, parseIpv4(opts.src), parseIpv4(opts.dst), IpProtocol.ICMP, opts.ttl ?? 64, 8 + payload, 0x1234, opts.df ?? false);
  return f;
}

/** A bare IPv4/ICMP echo packet (what a TUN device delivers), with headroom before it. */
export function ipIcmpEcho(opts: { src: string; dst: string; ttl?: number; payload?: number }): Frame {
  const f = icmpEcho({ ...opts, srcMac: '00:00:00:00:00:00', dstMac: '00:00:00:00:00:00' });
  return { buf: f.buf, off: f.off + ETH_HLEN, len: f.len - ETH_HLEN };
}

export function udpFrame(opts: { srcMac: string; dstMac: string; src: string; dst: string; sport: number; dport: number; payload?: number; ttl?: number }): Frame {
  const payload = opts.payload ?? 32;
  const f = frame(ETH_HLEN + 20 + 8 + payload);
  const s = parseMac(opts.srcMac);
  const d = parseMac(opts.dstMac);
  writeEthernetHeader(f.buf, f.off, d.hi, d.lo, s.hi, s.lo, EtherType.IPv4);
  const ipOff = f.off + ETH_HLEN;
  for (let i = 0; i < payload; i++) f.buf[ipOff + 28 + i] = (i * 7) & 0xff;
  writeIpv4Header(f.buf, ipOff, parseIpv4(opts.src), parseIpv4(opts.dst), IpProtocol.UDP, opts.ttl ?? 64, 8 + payload);
  writeUdpHeader(f.buf, ipOff + 20, opts.sport, opts.dport, payload, parseIpv4(opts.src), parseIpv4(opts.dst));
  return f;
}

/** The device boundary for unit tests: records a copy of every frame "written to the device". */
export class RecordingSink implements FrameSink {
  frames: Buffer[] = [];
  refuse = false;
  writeBatch(bufs: Buffer[], offs: Uint32Array, lens: Uint32Array, count: number): number {
    if (this.refuse) return 0;
    for (let i = 0; i < count; i++) this.frames.push(Buffer.from(bufs[i]!.subarray(offs[i]!, offs[i]! + lens[i]!)));
    return count;
  }
  take(): Buffer[] {
    const f = this.frames;
    this.frames = [];
    return f;
  }
}
