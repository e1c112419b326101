/** UDP over IPv4 (RFC 768). */
import { readU16, writeU16 } from './bytes.js';
import { checksum, pseudoHeaderSum, sum16 } from './checksum.js';
import { PacketError, ParseError } from './errors.js';
import { IpProtocol } from './ipv4.js';
import { HeaderView, checkRegion } from './internal.js';

export const UDP_HLEN = 8;

// Field offsets.
const SRC_PORT = 0;
const DST_PORT = 2;
const LENGTH = 4;
const CHECKSUM = 6;

/**
 * Read-only view of a UDP datagram at `buf[off .. off + len)`, where `len` is the IPv4 payload
 * length. `reset`: len >= 8 (`Truncated`), 8 <= length field <= len (`BadLength`). The datagram ends
 * at `off + length` (the length field), not at `off + len`.
 */
export class UdpView extends HeaderView {
  static readonly protocol = 'UDP';

  protected override check(buf: Buffer, off: number, len: number): ParseError {
    if (len < UDP_HLEN) return ParseError.Truncated;
    const length = readU16(buf, off + LENGTH);
    if (length < UDP_HLEN || length > len) return ParseError.BadLength;
    return ParseError.Ok;
  }

  get srcPort(): number {
    return readU16(this.buf, this.off + SRC_PORT);
  }
  get dstPort(): number {
    return readU16(this.buf, this.off + DST_PORT);
  }
  /** The length field: header + payload. */
  get length(): number {
    return readU16(this.buf, this.off + LENGTH);
  }
  get checksum(): number {
    return readU16(this.buf, this.off + CHECKSUM);
  }
  /** Absolute offset of the payload in `buf`. */
  get payloadOffset(): number {
    return this.off + UDP_HLEN;
  }
  /** length - 8. */
  get payloadLength(): number {
    return this.length - UDP_HLEN;
  }
  /** True if the checksum is right or absent (field 0); addresses are the IPv4 header's. */
  verifyChecksum(srcIp: number, dstIp: number): boolean {
    if (this.checksum === 0) return true;
    const length = this.length;
    return sum16(this.buf, this.off, length, pseudoHeaderSum(srcIp, dstIp, IpProtocol.UDP, length)) === 0xffff;
  }
}

/** Writable view; setters write their field only (call `fillChecksum()` afterwards). */
export class UdpViewMut extends UdpView {
  setSrcPort(p: number): void {
    writeU16(this.buf, this.off + SRC_PORT, p);
  }
  setDstPort(p: number): void {
    writeU16(this.buf, this.off + DST_PORT, p);
  }
  setLength(n: number): void {
    writeU16(this.buf, this.off + LENGTH, n);
  }
  setChecksum(c: number): void {
    writeU16(this.buf, this.off + CHECKSUM, c);
  }
  /** Computes the checksum over `length` bytes and the pseudo-header; a computed 0 is sent as 0xffff. */
  fillChecksum(srcIp: number, dstIp: number): void {
    fillUdpChecksum(this.buf, this.off, this.length, srcIp, dstIp);
  }
}

function fillUdpChecksum(buf: Buffer, off: number, length: number, srcIp: number, dstIp: number): void {
  writeU16(buf, off + CHECKSUM, 0);
  const c = checksum(buf, off, length, pseudoHeaderSum(srcIp, dstIp, IpProtocol.UDP, length));
  writeU16(buf, off + CHECKSUM, c === 0 ? 0xffff : c);
}

/**
 * Writes an 8-byte UDP header from numbers (allocation-free). Without addresses the checksum is 0
 * ("none", as VXLAN senders commonly do); with them it covers the header and the `payloadLength`
 * bytes that must already follow it in `buf`. Returns `UDP_HLEN`.
 */
export function writeUdpHeader(
  buf: Buffer,
  off: number,
  srcPort: number,
  dstPort: number,
  payloadLength: number,
  srcIp?: number,
  dstIp?: number,
): number {
  checkRegion(buf, off, UDP_HLEN, 'writeUdpHeader');
  const length = (UDP_HLEN + payloadLength) & 0xffff;
  writeU16(buf, off + SRC_PORT, srcPort);
  writeU16(buf, off + DST_PORT, dstPort);
  writeU16(buf, off + LENGTH, length);
  if (srcIp === undefined || dstIp === undefined) writeU16(buf, off + CHECKSUM, 0);
  else fillUdpChecksum(buf, off, length, srcIp, dstIp);
  return UDP_HLEN;
}

export interface UdpRepr {
  srcPort: number;
  dstPort: number;
  /** Bytes after the header. */
  payloadLength: number;
}

export function parseUdp(view: UdpView): UdpRepr {
  return { srcPort: view.srcPort, dstPort: view.dstPort, payloadLength: view.payloadLength };
}

/** Bytes `emitUdp` writes (the header only). */
export function udpBufferLen(_repr?: UdpRepr): number {
  return UDP_HLEN;
}

/**
 * Writes the header at `buf[off]`; the payload must already follow it. With `srcIp`/`dstIp` (the
 * IPv4 header's, as numbers) the checksum is filled in, otherwise it is 0. Returns `UDP_HLEN`.
 */
export function emitUdp(repr: UdpRepr, buf: Buffer, off: number, srcIp?: number, dstIp?: number): number {
  if (!Number.isInteger(repr.payloadLength) || repr.payloadLength < 0 || repr.payloadLength > 0xffff - UDP_HLEN) {
    throw new PacketError('BadRepr', `UDP: payloadLength ${repr.payloadLength} out of range`);
  }
  return writeUdpHeader(buf, off, repr.srcPort, repr.dstPort, repr.payloadLength, srcIp, dstIp);
}
