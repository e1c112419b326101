/** ICMPv4 (RFC 792; next-hop MTU from RFC 1191). */
import { readU16, readU32, writeU16, writeU32 } from './bytes.js';
import { checksum, sum16 } from './checksum.js';
import { ParseError } from './errors.js';
import { HeaderView } from './internal.js';

export const ICMP_HLEN = 8;

/**
 * Most bytes of the offending packet an ICMP error quotes: RFC 1812 4.3.2.3 says as much as fits in
 * 576 bytes, i.e. 576 - 20 (IPv4) - 8 (ICMP). Linux does the same.
 */
export const ICMP_ERROR_MAX_QUOTE = 548;

/** Known types; any other value is kept as a plain number. */
export const IcmpType = { EchoReply: 0, DestUnreachable: 3, EchoRequest: 8, TimeExceeded: 11 } as const;
export type IcmpType = (typeof IcmpType)[keyof typeof IcmpType];

/** Codes of `DestUnreachable`. */
export const IcmpUnreachCode = {
  Net: 0,
  Host: 1,
  Protocol: 2,
  Port: 3,
  FragNeeded: 4,
  AdminProhibited: 13,
} as const;
export type IcmpUnreachCode = (typeof IcmpUnreachCode)[keyof typeof IcmpUnreachCode];

/** Codes of `TimeExceeded`. */
export const IcmpTimeExceededCode = { TtlExceeded: 0, FragReassembly: 1 } as const;
export type IcmpTimeExceededCode = (typeof IcmpTimeExceededCode)[keyof typeof IcmpTimeExceededCode];

// Field offsets.
const TYPE = 0;
const CODE = 1;
const CHECKSUM = 2;
const IDENT = 4; // echo; "unused" in errors
const SEQ = 6; // echo; next-hop MTU in frag-needed

/**
 * Read-only view of an ICMP message at `buf[off .. off + len)`, where `len` is the IPv4 payload
 * length. `reset` only checks len >= 8 (`Truncated`); the checksum is `verifyChecksum()`'s job.
 * `ident`/`seq` are the echo fields; for other types they read the same bytes (4-5 and 6-7).
 */
export class IcmpView extends HeaderView {
  static readonly protocol = 'ICMP';

  protected override check(_buf: Buffer, _off: number, len: number): ParseError {
    if (len < ICMP_HLEN) return ParseError.Truncated;
    return ParseError.Ok;
  }

  get type(): number {
    return this.buf[this.off + TYPE];
  }
  get code(): number {
    return this.buf[this.off + CODE];
  }
  get checksum(): number {
    return readU16(this.buf, this.off + CHECKSUM);
  }
  get ident(): number {
    return readU16(this.buf, this.off + IDENT);
  }
  get seq(): number {
    return readU16(this.buf, this.off + SEQ);
  }
  /** Bytes 4-7 as one unsigned 32-bit number (ident/seq of an echo; unused/next-hop MTU of an error). */
  get restOfHeader(): number {
    return readU32(this.buf, this.off + IDENT);
  }
  /** Next-hop MTU of a DestUnreachable/FragNeeded message (bytes 6-7). */
  get nextHopMtu(): number {
    return readU16(this.buf, this.off + SEQ);
  }
  /** Absolute offset of the data after the 8-byte header (echo data, or the quoted packet of an error). */
  get payloadOffset(): number {
    return this.off + ICMP_HLEN;
  }
  get payloadLength(): number {
    return this.len - ICMP_HLEN;
  }
  /** Whether the whole message (`len` bytes) sums to 0xffff. */
  verifyChecksum(): boolean {
    return sum16(this.buf, this.off, this.len) === 0xffff;
  }
}

/** Writable view; setters write their field only (call `fillChecksum()` afterwards). */
export class IcmpViewMut extends IcmpView {
  setType(t: number): void {
    this.buf[this.off + TYPE] = t & 0xff;
  }
  setCode(c: number): void {
    this.buf[this.off + CODE] = c & 0xff;
  }
  setChecksum(c: number): void {
    writeU16(this.buf, this.off + CHECKSUM, c);
  }
  setIdent(id: number): void {
    writeU16(this.buf, this.off + IDENT, id);
  }
  setSeq(seq: number): void {
    writeU16(this.buf, this.off + SEQ, seq);
  }
  setNextHopMtu(mtu: number): void {
    writeU16(this.buf, this.off + SEQ, mtu);
  }
  /** Writes bytes 4-7 as one 32-bit number (e.g. 0 for TimeExceeded, the MTU for FragNeeded). */
  setRestOfHeader(v: number): void {
    writeU32(this.buf, this.off + IDENT, v);
  }
  /** Recomputes the checksum over the whole message (`len` bytes). */
  fillChecksum(): void {
    const o = this.off;
    writeU16(this.buf, o + CHECKSUM, 0);
    writeU16(this.buf, o + CHECKSUM, checksum(this.buf, o, this.len));
  }
}

/**
 * Plain value form of an ICMP header. For echo request/reply `ident`/`seq` are what they say; for
 * other types they are the two 16-bit halves of bytes 4-7 (for FragNeeded, `seq` is the next-hop MTU).
 * The payload (echo data) is not part of the repr: it stays in the buffer.
 */
export interface IcmpRepr {
  type: number;
  code: number;
  ident: number;
  seq: number;
  /** Bytes after the 8-byte header. */
  payloadLength: number;
}

export function parseIcmp(view: IcmpView): IcmpRepr {
  return {
    type: view.type,
    code: view.code,
    ident: view.ident,
    seq: view.seq,
    payloadLength: view.payloadLength,
  };
}

/** Bytes `emitIcmp` writes (the header only). */
export function icmpBufferLen(_repr?: IcmpRepr): number {
  return ICMP_HLEN;
}

/**
 * Writes the 8-byte header at `buf[off]` and a checksum over it and the `payloadLength` bytes that
 * must already follow it in `buf` (write the echo data first). Returns `ICMP_HLEN`.
 */
export function emitIcmp(repr: IcmpRepr, buf: Buffer, off: number): number {
  buf[off + TYPE] = repr.type & 0xff;
  buf[off + CODE] = repr.code & 0xff;
  writeU16(buf, off + CHECKSUM, 0);
  writeU16(buf, off + IDENT, repr.ident);
  writeU16(buf, off + SEQ, repr.seq);
  writeU16(buf, off + CHECKSUM, checksum(buf, off, ICMP_HLEN + repr.payloadLength));
  return ICMP_HLEN;
}

/** Total length of the ICMP error `emitIcmpError` writes for an offending packet of `originalLength` bytes. */
export function icmpErrorLen(originalLength: number): number {
  return ICMP_HLEN + Math.min(originalLength, ICMP_ERROR_MAX_QUOTE);
}

/**
 * Writes a complete ICMP error message at `buf[off]`: type, code, bytes 4-5 zero, bytes 6-7
 * `nextHopMtu` (pass 0 except for DestUnreachable/FragNeeded), then the start of `original` — the
 * offending IPv4 packet from its header on, without link-layer padding (e.g.
 * `frame.subarray(ip.off, ip.off + ip.totalLength)`) — quoted up to `ICMP_ERROR_MAX_QUOTE` bytes, and
 * the checksum. `original` may overlap `buf` (the quote is copied first, with memmove semantics).
 * Returns the bytes written, `icmpErrorLen(original.length)`.
 */
export function emitIcmpError(
  type: number,
  code: number,
  nextHopMtu: number,
  original: Buffer,
  buf: Buffer,
  off: number,
): number {
  const quote = Math.min(original.length, ICMP_ERROR_MAX_QUOTE);
  original.copy(buf, off + ICMP_HLEN, 0, quote);
  buf[off + TYPE] = type & 0xff;
  buf[off + CODE] = code & 0xff;
  writeU16(buf, off + CHECKSUM, 0);
  writeU16(buf, off + IDENT, 0);
  writeU16(buf, off + SEQ, nextHopMtu);
  const total = ICMP_HLEN + quote;
  writeU16(buf, off + CHECKSUM, checksum(buf, off, total));
  return total;
}
