/** TCP segment headers over IPv4 (RFC 9293). Options are carried as raw bytes, not interpreted. */
import { readU16, readU32, writeU16, writeU32 } from './bytes.js';
import { checksum, pseudoHeaderSum, sum16 } from './checksum.js';
import { PacketError, ParseError } from './errors.js';
import { IpProtocol } from './ipv4.js';
import { HeaderView } from './internal.js';

export const TCP_MIN_HLEN = 20;
export const TCP_MAX_HLEN = 60;

/** Bits of the flags byte (byte 13). */
export const TcpFlags = { FIN: 1, SYN: 2, RST: 4, PSH: 8, ACK: 16, URG: 32, ECE: 64, CWR: 128 } as const;
export type TcpFlag = (typeof TcpFlags)[keyof typeof TcpFlags];

// Field offsets.
const SRC_PORT = 0;
const DST_PORT = 2;
const SEQ = 4;
const ACK = 8;
const DATA_OFFSET = 12; // high nibble, in 32-bit words
const FLAGS = 13;
const WINDOW = 14;
const CHECKSUM = 16;
const URGENT = 18;

/**
 * Read-only view of a TCP segment at `buf[off .. off + len)`, where `len` is the segment length
 * (IPv4 payload length). `reset`: len >= 20 (`Truncated`), 20 <= data offset <= len
 * (`BadHeaderLength`). The checksum is `verifyChecksum()`'s job.
 */
export class TcpView extends HeaderView {
  static readonly protocol = 'TCP';

  protected override check(buf: Buffer, off: number, len: number): ParseError {
    if (len < TCP_MIN_HLEN) return ParseError.Truncated;
    const hlen = (buf[off + DATA_OFFSET] >> 4) * 4;
    if (hlen < TCP_MIN_HLEN || hlen > len) return ParseError.BadHeaderLength;
    return ParseError.Ok;
  }

  get srcPort(): number {
    return readU16(this.buf, this.off + SRC_PORT);
  }
  get dstPort(): number {
    return readU16(this.buf, this.off + DST_PORT);
  }
  get seq(): number {
    return readU32(this.buf, this.off + SEQ);
  }
  get ack(): number {
    return readU32(this.buf, this.off + ACK);
  }
  /** Header length in bytes (the data-offset field * 4). */
  get dataOffset(): number {
    return (this.buf[this.off + DATA_OFFSET] >> 4) * 4;
  }
  /** The flags byte; test with `TcpFlags`. */
  get flags(): number {
    return this.buf[this.off + FLAGS];
  }
  get window(): number {
    return readU16(this.buf, this.off + WINDOW);
  }
  get checksum(): number {
    return readU16(this.buf, this.off + CHECKSUM);
  }
  get urgent(): number {
    return readU16(this.buf, this.off + URGENT);
  }
  /** Absolute offset of the options in `buf` (they run to `payloadOffset`). */
  get optionsOffset(): number {
    return this.off + TCP_MIN_HLEN;
  }
  get optionsLength(): number {
    return this.dataOffset - TCP_MIN_HLEN;
  }
  /** Absolute offset of the payload in `buf`. */
  get payloadOffset(): number {
    return this.off + this.dataOffset;
  }
  /** len - dataOffset. */
  get payloadLength(): number {
    return this.len - this.dataOffset;
  }
  /** Whether the segment (`len` bytes) and pseudo-header sum to 0xffff. */
  verifyChecksum(srcIp: number, dstIp: number): boolean {
    return sum16(this.buf, this.off, this.len, pseudoHeaderSum(srcIp, dstIp, IpProtocol.TCP, this.len)) === 0xffff;
  }
}

/** Writable view; setters write their field only (call `fillChecksum()` afterwards). */
export class TcpViewMut extends TcpView {
  setSrcPort(p: number): void {
    writeU16(this.buf, this.off + SRC_PORT, p);
  }
  setDstPort(p: number): void {
    writeU16(this.buf, this.off + DST_PORT, p);
  }
  setSeq(seq: number): void {
    writeU32(this.buf, this.off + SEQ, seq);
  }
  setAck(ack: number): void {
    writeU32(this.buf, this.off + ACK, ack);
  }
  /** Header length in bytes (a multiple of 4, 20..60); keeps the reserved bits of the byte. */
  setDataOffset(bytes: number): void {
    const o = this.off + DATA_OFFSET;
    this.buf[o] = (((bytes >>> 2) & 0x0f) << 4) | (this.buf[o] & 0x0f);
  }
  setFlags(flags: number): void {
    this.buf[this.off + FLAGS] = flags & 0xff;
  }
  setWindow(w: number): void {
    writeU16(this.buf, this.off + WINDOW, w);
  }
  setChecksum(c: number): void {
    writeU16(this.buf, this.off + CHECKSUM, c);
  }
  setUrgent(u: number): void {
    writeU16(this.buf, this.off + URGENT, u);
  }
  /** Computes the checksum over the segment (`len` bytes) and the pseudo-header. */
  fillChecksum(srcIp: number, dstIp: number): void {
    const o = this.off;
    writeU16(this.buf, o + CHECKSUM, 0);
    const c = checksum(this.buf, o, this.len, pseudoHeaderSum(srcIp, dstIp, IpProtocol.TCP, this.len));
    writeU16(this.buf, o + CHECKSUM, c);
  }
}

export interface TcpRepr {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  /** The flags byte (`TcpFlags` bits). */
  flags: number;
  window: number;
  /** Default 0. */
  urgent?: number;
  /** Raw option bytes; emitted padded with zeros (End of Option List) to a multiple of 4, at most 40. */
  options?: Buffer;
  /** Bytes after the header. */
  payloadLength: number;
}

/** The repr of a view; `options` is a copy (absent when there are none). */
export function parseTcp(view: TcpView): TcpRepr {
  const repr: TcpRepr = {
    srcPort: view.srcPort,
    dstPort: view.dstPort,
    seq: view.seq,
    ack: view.ack,
    flags: view.flags,
    window: view.window,
    urgent: view.urgent,
    payloadLength: view.payloadLength,
  };
  const n = view.optionsLength;
  if (n > 0) repr.options = Buffer.from(view.buf.subarray(view.optionsOffset, view.optionsOffset + n));
  return repr;
}

/** Bytes `emitTcp` writes: the header including padded options. */
export function tcpBufferLen(repr: TcpRepr): number {
  const n = repr.options?.length ?? 0;
  return TCP_MIN_HLEN + ((n + 3) & ~3);
}

/**
 * Writes the header (with options) at `buf[off]` and the checksum over it, the `payloadLength` bytes
 * that must already follow it in `buf`, and the pseudo-header of `srcIp`/`dstIp`. Returns the header
 * length, `tcpBufferLen(repr)`. Throws `PacketError` for more than 40 bytes of options.
 */
export function emitTcp(repr: TcpRepr, buf: Buffer, off: number, srcIp: number, dstIp: number): number {
  const hlen = tcpBufferLen(repr);
  if (hlen > TCP_MAX_HLEN) {
    throw new PacketError('BadRepr', `TCP: ${repr.options?.length} bytes of options, at most 40 fit`);
  }
  if (!Number.isInteger(repr.payloadLength) || repr.payloadLength < 0 || hlen + repr.payloadLength > 0xffff) {
    throw new PacketError('BadRepr', `TCP: payloadLength ${repr.payloadLength} out of range`);
  }
  const optLen = repr.options?.length ?? 0;
  if (repr.options !== undefined) repr.options.copy(buf, off + TCP_MIN_HLEN);
  buf.fill(0, off + TCP_MIN_HLEN + optLen, off + hlen);
  writeU16(buf, off + SRC_PORT, repr.srcPort);
  writeU16(buf, off + DST_PORT, repr.dstPort);
  writeU32(buf, off + SEQ, repr.seq);
  writeU32(buf, off + ACK, repr.ack);
  buf[off + DATA_OFFSET] = (hlen >>> 2) << 4;
  buf[off + FLAGS] = repr.flags & 0xff;
  writeU16(buf, off + WINDOW, repr.window);
  writeU16(buf, off + CHECKSUM, 0);
  writeU16(buf, off + URGENT, (repr.urgent ?? 0));
  const segLen = hlen + repr.payloadLength;
  writeU16(buf, off + CHECKSUM, checksum(buf, off, segLen, pseudoHeaderSum(srcIp, dstIp, IpProtocol.TCP, segLen)));
  return hlen;
}
