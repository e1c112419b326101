/** IPv4 headers (RFC 791). Options are carried but not interpreted. */
import { readU16, readU32, writeU16, writeU32 } from './bytes.js';
import { ipv4ToString, parseIpv4 as parseIpv4Address } from './addr.js';
import { ipv4HeaderSum, updateChecksum16 } from './checksum.js';
import { PacketError, ParseError } from './errors.js';
import { HeaderView, checkRegion } from './internal.js';

export const IPV4_MIN_HLEN = 20;
export const IPV4_MAX_TOTAL_LENGTH = 0xffff;

/** Known protocol numbers; any other value is kept as a plain number. */
export const IpProtocol = { ICMP: 1, TCP: 6, UDP: 17 } as const;
export type IpProtocol = (typeof IpProtocol)[keyof typeof IpProtocol];

// Field offsets.
const VER_IHL = 0;
const TOS = 1;
const TOTAL_LENGTH = 2;
const IDENT = 4;
const FLAGS_FRAG = 6;
const TTL = 8;
const PROTOCOL = 9;
const CHECKSUM = 10;
const SRC = 12;
const DST = 16;

const FLAG_DF = 0x4000;
const FLAG_MF = 0x2000;
const FRAG_MASK = 0x1fff;

/**
 * Read-only view of an IPv4 packet at `buf[off .. off + len)`. `reset` checks, in order:
 * len >= 20 (`Truncated`), version 4 (`BadVersion`), IHL >= 5 and IHL*4 <= len (`BadHeaderLength`),
 * IHL*4 <= totalLength <= len (`BadTotalLength`). The packet ends at `off + totalLength`: trailing
 * bytes (Ethernet padding) are outside the payload. `len` keeps the value given to `reset`.
 * The header checksum is not checked by `reset`; call `verifyChecksum()`.
 */
export class Ipv4View extends HeaderView {
  static readonly protocol = 'IPv4';

  protected override check(buf: Buffer, off: number, len: number): ParseError {
    if (len < IPV4_MIN_HLEN) return ParseError.Truncated;
    const vihl = buf[off + VER_IHL];
    if (vihl >> 4 !== 4) return ParseError.BadVersion;
    const hlen = (vihl & 0x0f) * 4;
    if (hlen < IPV4_MIN_HLEN || hlen > len) return ParseError.BadHeaderLength;
    const total = readU16(buf, off + TOTAL_LENGTH);
    if (total < hlen || total > len) return ParseError.BadTotalLength;
    return ParseError.Ok;
  }

  get version(): number {
    return this.buf[this.off + VER_IHL] >> 4;
  }
  /** Header length in bytes (IHL * 4). */
  get headerLength(): number {
    return (this.buf[this.off + VER_IHL] & 0x0f) * 4;
  }
  get tos(): number {
    return this.buf[this.off + TOS];
  }
  get totalLength(): number {
    return readU16(this.buf, this.off + TOTAL_LENGTH);
  }
  get ident(): number {
    return readU16(this.buf, this.off + IDENT);
  }
  get dontFragment(): boolean {
    return (readU16(this.buf, this.off + FLAGS_FRAG) & FLAG_DF) !== 0;
  }
  get moreFragments(): boolean {
    return (readU16(this.buf, this.off + FLAGS_FRAG) & FLAG_MF) !== 0;
  }
  /** Fragment offset in bytes (the field counts 8-byte units). */
  get fragmentOffset(): number {
    return (readU16(this.buf, this.off + FLAGS_FRAG) & FRAG_MASK) * 8;
  }
  get ttl(): number {
    return this.buf[this.off + TTL];
  }
  get protocol(): number {
    return this.buf[this.off + PROTOCOL];
  }
  get checksum(): number {
    return readU16(this.buf, this.off + CHECKSUM);
  }
  get src(): number {
    return readU32(this.buf, this.off + SRC);
  }
  get dst(): number {
    return readU32(this.buf, this.off + DST);
  }
  /** Absolute offset of the payload in `buf`. */
  get payloadOffset(): number {
    return this.off + this.headerLength;
  }
  /** totalLength - headerLength. */
  get payloadLength(): number {
    return this.totalLength - this.headerLength;
  }
  /** Whether the header (including options) sums to 0xffff. */
  verifyChecksum(): boolean {
    return ipv4HeaderSum(this.buf, this.off, this.headerLength) === 0xffff;
  }
}

/**
 * Writable view. Setters write their field only and leave the header checksum alone (call
 * `fillChecksum()` afterwards), except `decrementTtl()`, which updates it incrementally.
 * Values are truncated to the field's width.
 */
export class Ipv4ViewMut extends Ipv4View {
  setTos(tos: number): void {
    this.buf[this.off + TOS] = tos & 0xff;
  }
  setTotalLength(n: number): void {
    writeU16(this.buf, this.off + TOTAL_LENGTH, n);
  }
  setIdent(ident: number): void {
    writeU16(this.buf, this.off + IDENT, ident);
  }
  /** `offsetBytes` should be a multiple of 8; its low three bits are dropped. The reserved bit is cleared. */
  setFlagsAndFragment(df: boolean, mf: boolean, offsetBytes: number): void {
    const v = (df ? FLAG_DF : 0) | (mf ? FLAG_MF : 0) | ((offsetBytes >>> 3) & FRAG_MASK);
    writeU16(this.buf, this.off + FLAGS_FRAG, v);
  }
  setTtl(ttl: number): void {
    this.buf[this.off + TTL] = ttl & 0xff;
  }
  setProtocol(p: number): void {
    this.buf[this.off + PROTOCOL] = p & 0xff;
  }
  setChecksum(c: number): void {
    writeU16(this.buf, this.off + CHECKSUM, c);
  }
  setSrc(ip: number): void {
    writeU32(this.buf, this.off + SRC, ip);
  }
  setDst(ip: number): void {
    writeU32(this.buf, this.off + DST, ip);
  }
  /** Recomputes the header checksum over `headerLength` bytes. */
  fillChecksum(): void {
    const o = this.off;
    writeU16(this.buf, o + CHECKSUM, 0);
    writeU16(this.buf, o + CHECKSUM, ~ipv4HeaderSum(this.buf, o, this.headerLength));
  }
  /**
   * TTL - 1 with an RFC 1624 incremental checksum update; returns the new TTL. A TTL of 0 is left
   * unchanged (returns 0). A header whose checksum was wrong stays wrong, as a router should leave it.
   */
  decrementTtl(): number {
    return decrementIpv4Ttl(this.buf, this.off);
  }
}

/**
 * `Ipv4ViewMut.decrementTtl` on the header at `buf[off]`, for a caller that has validated it already
 * (no view to re-point): TTL - 1 with an RFC 1624 update of the checksum; returns the new TTL, and
 * leaves a TTL of 0 alone.
 */
export function decrementIpv4Ttl(buf: Buffer, off: number): number {
  const ttl = buf[off + TTL]!;
  if (ttl === 0) return 0;
  const proto = buf[off + PROTOCOL]!;
  buf[off + TTL] = ttl - 1;
  const c = updateChecksum16(readU16(buf, off + CHECKSUM), (ttl << 8) | proto, ((ttl - 1) << 8) | proto);
  writeU16(buf, off + CHECKSUM, c);
  return ttl - 1;
}

/**
 * Writes a 20-byte IPv4 header (no options, fragment offset 0) with a correct checksum, from
 * numbers (allocation-free; e.g. the VXLAN outer header). `payloadLength` excludes the header.
 * Returns `IPV4_MIN_HLEN`.
 */
export function writeIpv4Header(
  buf: Buffer,
  off: number,
  src: number,
  dst: number,
  protocol: number,
  ttl: number,
  payloadLength: number,
  ident = 0,
  dontFragment = false,
  tos = 0,
): number {
  checkRegion(buf, off, IPV4_MIN_HLEN, 'writeIpv4Header');
  buf[off + VER_IHL] = 0x45;
  buf[off + TOS] = tos & 0xff;
  writeU16(buf, off + TOTAL_LENGTH, IPV4_MIN_HLEN + payloadLength);
  writeU16(buf, off + IDENT, ident);
  writeU16(buf, off + FLAGS_FRAG, dontFragment ? FLAG_DF : 0);
  buf[off + TTL] = ttl & 0xff;
  buf[off + PROTOCOL] = protocol & 0xff;
  writeU16(buf, off + CHECKSUM, 0);
  writeU32(buf, off + SRC, src);
  writeU32(buf, off + DST, dst);
  writeU16(buf, off + CHECKSUM, ~ipv4HeaderSum(buf, off, IPV4_MIN_HLEN));
  return IPV4_MIN_HLEN;
}

/** Plain value form of an IPv4 header. Defaults when emitting: ident 0, dontFragment false, tos 0. */
export interface Ipv4Repr {
  src: string;
  dst: string;
  protocol: number;
  ttl: number;
  /** Bytes after the header. */
  payloadLength: number;
  ident?: number;
  dontFragment?: boolean;
  tos?: number;
}

/** The `Ipv4Repr` of a view (options are dropped; all optional fields are filled in). */
export function parseIpv4Repr(view: Ipv4View): Ipv4Repr {
  return {
    src: ipv4ToString(view.src),
    dst: ipv4ToString(view.dst),
    protocol: view.protocol,
    ttl: view.ttl,
    payloadLength: view.payloadLength,
    ident: view.ident,
    dontFragment: view.dontFragment,
    tos: view.tos,
  };
}

/**
 * `parseIpv4` is both the address parser of `addr.ts` (string -> number) and the `Repr` parser of this
 * module (view -> `Ipv4Repr`), dispatching on the argument, so either reading of the name works from
 * any import path. Prefer `parseIpv4Repr` when you mean the `Repr`.
 */
export function parseIpv4(s: string): number;
export function parseIpv4(view: Ipv4View): Ipv4Repr;
export function parseIpv4(x: string | Ipv4View): number | Ipv4Repr {
  // Anything that is not a view goes to the strict address parser, which throws for non-strings.
  return x instanceof Ipv4View ? parseIpv4Repr(x) : parseIpv4Address(x);
}

/** Bytes `emitIpv4` writes (the header only; the payload is the caller's). */
export function ipv4BufferLen(_repr?: Ipv4Repr): number {
  return IPV4_MIN_HLEN;
}

/**
 * Writes a 20-byte header with a correct checksum at `buf[off]`; returns `IPV4_MIN_HLEN`. Throws
 * `PacketError` on bad address strings or a payload too large for the total-length field.
 */
export function emitIpv4(repr: Ipv4Repr, buf: Buffer, off: number): number {
  if (
    !Number.isInteger(repr.payloadLength) ||
    repr.payloadLength < 0 ||
    repr.payloadLength > IPV4_MAX_TOTAL_LENGTH - IPV4_MIN_HLEN
  ) {
    throw new PacketError('BadRepr', `IPv4: payloadLength ${repr.payloadLength} out of range`);
  }
  return writeIpv4Header(
    buf,
    off,
    parseIpv4Address(repr.src),
    parseIpv4Address(repr.dst),
    repr.protocol,
    repr.ttl,
    repr.payloadLength,
    repr.ident ?? 0,
    repr.dontFragment ?? false,
    repr.tos ?? 0,
  );
}
