/** ARP for Ethernet/IPv4 only (RFC 826): htype 1, ptype 0x0800, hlen 6, plen 4. */
import { readU16, readU32, writeU16, writeU32 } from './bytes.js';
import { ipv4ToString, macToString, parseIpv4, parseMac, writeMac } from './addr.js';
import { EtherType } from './ethernet.js';
import { ParseError } from './errors.js';
import { HeaderView, checkRegion } from './internal.js';

export const ARP_LEN = 28;

/** Known operations; any other value is kept as a plain number. */
export const ArpOp = { Request: 1, Reply: 2 } as const;
export type ArpOp = (typeof ArpOp)[keyof typeof ArpOp];

const HTYPE_ETHERNET = 1;

// Field offsets.
const HTYPE = 0;
const PTYPE = 2;
const HLEN = 4;
const PLEN = 5;
const OPER = 6;
const SHA = 8;
const SPA = 14;
const THA = 18;
const TPA = 24;

/**
 * Read-only view of an ARP packet at `buf[off .. off + len)` (`len` may include Ethernet padding).
 * `reset` returns `Truncated` below 28 bytes and `Unsupported` for anything but Ethernet/IPv4.
 */
export class ArpView extends HeaderView {
  static readonly protocol = 'ARP';

  protected override check(buf: Buffer, off: number, len: number): ParseError {
    if (len < ARP_LEN) return ParseError.Truncated;
    if (
      readU16(buf, off + HTYPE) !== HTYPE_ETHERNET ||
      readU16(buf, off + PTYPE) !== EtherType.IPv4 ||
      buf[off + HLEN] !== 6 ||
      buf[off + PLEN] !== 4
    ) {
      return ParseError.Unsupported;
    }
    return ParseError.Ok;
  }

  get operation(): number {
    return readU16(this.buf, this.off + OPER);
  }
  get senderMacHi(): number {
    return readU16(this.buf, this.off + SHA);
  }
  get senderMacLo(): number {
    return readU32(this.buf, this.off + SHA + 2);
  }
  get senderIp(): number {
    return readU32(this.buf, this.off + SPA);
  }
  get targetMacHi(): number {
    return readU16(this.buf, this.off + THA);
  }
  get targetMacLo(): number {
    return readU32(this.buf, this.off + THA + 2);
  }
  get targetIp(): number {
    return readU32(this.buf, this.off + TPA);
  }
}

/** Writable view; setters write the field and nothing else. */
export class ArpViewMut extends ArpView {
  setOperation(op: number): void {
    writeU16(this.buf, this.off + OPER, op);
  }
  setSenderMac(hi: number, lo: number): void {
    writeMac(this.buf, this.off + SHA, hi, lo);
  }
  setSenderIp(ip: number): void {
    writeU32(this.buf, this.off + SPA, ip);
  }
  setTargetMac(hi: number, lo: number): void {
    writeMac(this.buf, this.off + THA, hi, lo);
  }
  setTargetIp(ip: number): void {
    writeU32(this.buf, this.off + TPA, ip);
  }
}

/** Writes a complete 28-byte Ethernet/IPv4 ARP packet from numbers (allocation-free). Returns `ARP_LEN`. */
export function writeArp(
  buf: Buffer,
  off: number,
  operation: number,
  senderMacHi: number,
  senderMacLo: number,
  senderIp: number,
  targetMacHi: number,
  targetMacLo: number,
  targetIp: number,
): number {
  checkRegion(buf, off, ARP_LEN, 'writeArp');
  writeU16(buf, off + HTYPE, HTYPE_ETHERNET);
  writeU16(buf, off + PTYPE, EtherType.IPv4);
  buf[off + HLEN] = 6;
  buf[off + PLEN] = 4;
  writeU16(buf, off + OPER, operation);
  writeMac(buf, off + SHA, senderMacHi, senderMacLo);
  writeU32(buf, off + SPA, senderIp);
  writeMac(buf, off + THA, targetMacHi, targetMacLo);
  writeU32(buf, off + TPA, targetIp);
  return ARP_LEN;
}

export interface ArpRepr {
  operation: number;
  senderMac: string;
  senderIp: string;
  targetMac: string;
  targetIp: string;
}

export function parseArp(view: ArpView): ArpRepr {
  return {
    operation: view.operation,
    senderMac: macToString(view.senderMacHi, view.senderMacLo),
    senderIp: ipv4ToString(view.senderIp),
    targetMac: macToString(view.targetMacHi, view.targetMacLo),
    targetIp: ipv4ToString(view.targetIp),
  };
}

/** Bytes `emitArp` writes. */
export function arpBufferLen(_repr?: ArpRepr): number {
  return ARP_LEN;
}

/** Writes the 28-byte packet at `buf[off]`; returns `ARP_LEN`. Throws on bad address strings. */
export function emitArp(repr: ArpRepr, buf: Buffer, off: number): number {
  const sha = parseMac(repr.senderMac);
  const tha = parseMac(repr.targetMac);
  return writeArp(
    buf,
    off,
    repr.operation,
    sha.hi,
    sha.lo,
    parseIpv4(repr.senderIp),
    tha.hi,
    tha.lo,
    parseIpv4(repr.targetIp),
  );
}
