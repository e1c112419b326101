/**
 * Header fields at fixed offsets, as free functions over `(buf, off)`: what the data path reads and
 * writes after a view (or the router's one check) has validated the header, without re-pointing a
 * view for every field. They are one-liners V8 inlines, so a call costs what the raw read did; the
 * offsets live here, once, and nowhere outside src/packet.
 *
 * `off` is the start of the header named by the prefix (`ipv4*`: the IPv4 header, `l4*`/`tcp*`/
 * `udp*`/`icmp*`: the transport header, `eth*`: the Ethernet header). Nothing is checked: callers
 * hold a validated header of at least the field's end. Addresses come as int32 (`readI32`: the same
 * bits as the unsigned address, a small integer to V8) unless the name says otherwise.
 */
import { readI32, readU16, writeU16, writeU32 } from './bytes.js';

// ---- Ethernet ---------------------------------------------------------------------------------

/** The first two bytes of the destination MAC (see addr.ts for the hi/lo split). */
export function ethDstHi(buf: Buffer, off: number): number {
  return readU16(buf, off);
}
/** The last four bytes of the destination MAC, as int32. */
export function ethDstLo32(buf: Buffer, off: number): number {
  return readI32(buf, off + 2);
}
export function ethSrcHi(buf: Buffer, off: number): number {
  return readU16(buf, off + 6);
}
export function ethSrcLo32(buf: Buffer, off: number): number {
  return readI32(buf, off + 8);
}
/** Whether the destination MAC is a group (multicast/broadcast) address. */
export function ethDstIsGroup(buf: Buffer, off: number): boolean {
  return (buf[off]! & 0x01) !== 0;
}
export function ethType(buf: Buffer, off: number): number {
  return readU16(buf, off + 12);
}

// ---- IPv4 -------------------------------------------------------------------------------------

export function ipv4Version(buf: Buffer, off: number): number {
  return buf[off]! >> 4;
}
/** Whether this is IPv4 with a 20-byte header (no options). */
export function ipv4IsBasic(buf: Buffer, off: number): boolean {
  return buf[off] === 0x45;
}
/** Header length in bytes (IHL * 4). */
export function ipv4HeaderLen(buf: Buffer, off: number): number {
  return (buf[off]! & 0x0f) << 2;
}
/** The byte after version/IHL: DSCP and ECN. */
export function ipv4Tos(buf: Buffer, off: number): number {
  return buf[off + 1]!;
}
export function ipv4TotalLen(buf: Buffer, off: number): number {
  return readU16(buf, off + 2);
}
export function setIpv4TotalLen(buf: Buffer, off: number, len: number): void {
  writeU16(buf, off + 2, len);
}
export function ipv4Ident(buf: Buffer, off: number): number {
  return readU16(buf, off + 4);
}
export function setIpv4Ident(buf: Buffer, off: number, ident: number): void {
  writeU16(buf, off + 4, ident);
}
/** Flags and fragment offset, the 16-bit word as on the wire. */
export function ipv4FlagsFrag(buf: Buffer, off: number): number {
  return readU16(buf, off + 6);
}
/** Whether DF is set. */
export function ipv4DontFragment(buf: Buffer, off: number): boolean {
  return (buf[off + 6]! & 0x40) !== 0;
}
/** Whether this is a fragment after the first (fragment offset != 0: no transport header). */
export function ipv4IsLaterFragment(buf: Buffer, off: number): boolean {
  return (readU16(buf, off + 6) & 0x1fff) !== 0;
}
/** Whether this is any fragment (MF set or offset != 0). */
export function ipv4IsFragment(buf: Buffer, off: number): boolean {
  return (readU16(buf, off + 6) & 0x3fff) !== 0;
}
export function ipv4Ttl(buf: Buffer, off: number): number {
  return buf[off + 8]!;
}
export function ipv4Protocol(buf: Buffer, off: number): number {
  return buf[off + 9]!;
}
export function ipv4Checksum(buf: Buffer, off: number): number {
  return readU16(buf, off + 10);
}
export function setIpv4Checksum(buf: Buffer, off: number, sum: number): void {
  writeU16(buf, off + 10, sum);
}
export function ipv4Src32(buf: Buffer, off: number): number {
  return readI32(buf, off + 12);
}
export function ipv4Dst32(buf: Buffer, off: number): number {
  return readI32(buf, off + 16);
}
/** Writes the source address (checksum not updated). */
export function setIpv4Src(buf: Buffer, off: number, ip: number): void {
  writeU32(buf, off + 12, ip);
}
/** Writes the destination address (checksum not updated). */
export function setIpv4Dst(buf: Buffer, off: number, ip: number): void {
  writeU32(buf, off + 16, ip);
}

// ---- TCP / UDP (the fields they share) ----------------------------------------------------------

export function l4SrcPort(buf: Buffer, off: number): number {
  return readU16(buf, off);
}
export function l4DstPort(buf: Buffer, off: number): number {
  return readU16(buf, off + 2);
}
/** Both ports as one 32-bit word (source port high), as conntrack keeps them, as int32. */
export function l4Ports32(buf: Buffer, off: number): number {
  return readI32(buf, off);
}
/** Writes both ports from one 32-bit word (source port high). */
export function setL4Ports(buf: Buffer, off: number, ports: number): void {
  writeU32(buf, off, ports);
}
/** Offset of the checksum field from the start of a TCP (16) or UDP (6) header. */
export function l4ChecksumOffset(proto: number): number {
  return proto === 17 ? UDP_CHECKSUM_OFFSET : TCP_CHECKSUM_OFFSET;
}
export const TCP_CHECKSUM_OFFSET = 16;
export const UDP_CHECKSUM_OFFSET = 6;

// ---- TCP ----------------------------------------------------------------------------------------

/** The sequence number as int32 (add to it and write it back with `setTcpSeq`). */
export function tcpSeq32(buf: Buffer, off: number): number {
  return readI32(buf, off + 4);
}
/** Writes the sequence number (any integer: taken modulo 2^32). */
export function setTcpSeq(buf: Buffer, off: number, seq: number): void {
  writeU32(buf, off + 4, seq);
}
/** The acknowledgment number as int32. */
export function tcpAck32(buf: Buffer, off: number): number {
  return readI32(buf, off + 8);
}
/** Data offset in bytes (header length with options). */
export function tcpHeaderLen(buf: Buffer, off: number): number {
  return (buf[off + 12]! >> 4) << 2;
}
export function tcpFlags(buf: Buffer, off: number): number {
  return buf[off + 13]!;
}
export function setTcpFlags(buf: Buffer, off: number, flags: number): void {
  buf[off + 13] = flags;
}
export function setTcpChecksum(buf: Buffer, off: number, sum: number): void {
  writeU16(buf, off + TCP_CHECKSUM_OFFSET, sum);
}

// ---- ICMP ---------------------------------------------------------------------------------------

export function icmpType(buf: Buffer, off: number): number {
  return buf[off]!;
}
export function icmpChecksum(buf: Buffer, off: number): number {
  return readU16(buf, off + 2);
}
export function setIcmpChecksum(buf: Buffer, off: number, sum: number): void {
  writeU16(buf, off + 2, sum);
}
export const ICMP_CHECKSUM_OFFSET = 2;
/** The echo identifier (echo request/reply). */
export function icmpEchoIdent(buf: Buffer, off: number): number {
  return readU16(buf, off + 4);
}
export function setIcmpEchoIdent(buf: Buffer, off: number, ident: number): void {
  writeU16(buf, off + 4, ident);
}
/** Where an ICMP error's quoted IPv4 header starts, from the ICMP header. */
export const ICMP_ERROR_QUOTE_OFFSET = 8;
