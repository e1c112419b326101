/**
 * Internet checksum (RFC 1071) and incremental update (RFC 1624).
 *
 * All functions work on 16-bit ones'-complement values held in ordinary numbers. "Sum" means the
 * folded ones'-complement sum (not complemented); "checksum" means its complement, the value that
 * goes into a header. A region whose checksum field is correct sums to 0xffff.
 */

/**
 * Folds a non-negative sum (which may exceed 32 bits; e.g. `sum16` results and a pseudo-header sum
 * added up) to 16 bits with end-around carry.
 */
export function foldSum(sum: number): number {
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

/** An implementation of `sum16` in native code (the addon's), used for regions of NATIVE_SUM_MIN bytes or more. */
export type Sum16Fn = (buf: Buffer, off: number, len: number, initial: number) => number;
let nativeSum16: Sum16Fn | undefined;
/** Below this a call into native code costs more than the loop it saves (headers, small packets). */
const NATIVE_SUM_MIN = 128;

/**
 * Lets `sum16` hand long regions (a segment's payload) to `fn`, which must return exactly what the
 * JavaScript loop does (the addon's sum16 adds 64-bit words: about ten times faster). The wire layer
 * depends on nothing; the process that has the addon (`io/addon.ts`) installs it. undefined: back to
 * JavaScript alone.
 */
export function useNativeSum16(fn: Sum16Fn | undefined): void {
  nativeSum16 = fn;
}

/**
 * Ones'-complement sum of `len` bytes of `buf` from `off`, as big-endian 16-bit words, added to
 * `initial` (a non-negative partial sum, e.g. from `pseudoHeaderSum`) and folded to 16 bits. An odd
 * trailing byte is padded with a zero low byte. The result is 0 only if every word (and `initial`)
 * is 0; any other multiple of 0xffff gives 0xffff.
 *
 * Throws RangeError if the region lies outside `buf` (a caller bug, not a packet error).
 */
export function sum16(buf: Buffer, off: number, len: number, initial = 0): number {
  if (off < 0 || len < 0 || off + len > buf.length) {
    throw new RangeError(`sum16: region ${off}+${len} outside buffer of ${buf.length}`);
  }
  if (len >= NATIVE_SUM_MIN && nativeSum16 !== undefined) return nativeSum16(buf, off, len, initial > 0xffff ? foldSum(initial) : initial);
  // Indexing a Buffer honours its byteOffset; each step adds at most 0x1fffe, so `sum` stays far
  // below 2^53 for any buffer Node can allocate.
  let sum = initial;
  const end4 = off + (len & ~3);
  let i = off;
  for (; i < end4; i += 4) {
    sum += ((buf[i] << 8) | buf[i + 1]) + ((buf[i + 2] << 8) | buf[i + 3]);
  }
  const end = off + len;
  if (i + 1 < end) {
    sum += (buf[i] << 8) | buf[i + 1];
    i += 2;
  }
  if (i < end) sum += buf[i] << 8;
  return foldSum(sum);
}

/**
 * Folded ones'-complement sum of an IPv4 header of `hlen` bytes (20..60, a multiple of 4) at
 * `buf[off]`: `sum16(buf, off, hlen)` for the one region every routed packet needs, with the 20 bytes
 * of a header without options added as ten words and no argument checks (the caller has validated
 * the header, e.g. by an ok `Ipv4View.reset`). 0xffff when a stored checksum is right.
 */
export function ipv4HeaderSum(buf: Buffer, off: number, hlen: number): number {
  let s =
    ((buf[off]! << 8) | buf[off + 1]!) +
    ((buf[off + 2]! << 8) | buf[off + 3]!) +
    ((buf[off + 4]! << 8) | buf[off + 5]!) +
    ((buf[off + 6]! << 8) | buf[off + 7]!) +
    ((buf[off + 8]! << 8) | buf[off + 9]!) +
    ((buf[off + 10]! << 8) | buf[off + 11]!) +
    ((buf[off + 12]! << 8) | buf[off + 13]!) +
    ((buf[off + 14]! << 8) | buf[off + 15]!) +
    ((buf[off + 16]! << 8) | buf[off + 17]!) +
    ((buf[off + 18]! << 8) | buf[off + 19]!);
  for (let i = off + 20; i < off + hlen; i += 2) s += (buf[i]! << 8) | buf[i + 1]!; // options
  // At most 30 words of 0xffff: two end-around carries fold it to 16 bits.
  s = (s & 0xffff) + (s >>> 16);
  return (s & 0xffff) + (s >>> 16);
}

/** The Internet checksum of a region: `~sum16(...) & 0xffff`. */
export function checksum(buf: Buffer, off: number, len: number, initial = 0): number {
  return ~sum16(buf, off, len, initial) & 0xffff;
}

/**
 * Folded sum of the IPv4 pseudo-header used by TCP and UDP (RFC 793, RFC 768): source and
 * destination address, zero byte + protocol, and the transport length. Pass it as `initial`.
 */
export function pseudoHeaderSum(srcIp: number, dstIp: number, proto: number, length: number): number {
  return foldSum(
    (srcIp >>> 16) +
      (srcIp & 0xffff) +
      (dstIp >>> 16) +
      (dstIp & 0xffff) +
      (proto & 0xff) +
      (length & 0xffff),
  );
}

/**
 * RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), the header checksum after one 16-bit word changes from
 * `oldWord` to `newWord`. Unlike the older eqn. 2 (RFC 1141) this never produces 0xffff where a full
 * recomputation gives 0x0000: the result equals a full recomputation whenever the covered data is
 * not all zero, which holds for IPv4 (version nibble) and for TCP/UDP (pseudo-header protocol).
 * For UDP, whose checksum field uses 0 for "none", use `updateUdpChecksum16`.
 */
export function updateChecksum16(csum: number, oldWord: number, newWord: number): number {
  let s = (~csum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** `updateChecksum16` for a 32-bit field (an IPv4 address, a TCP sequence number): both halves. */
export function updateChecksum32(csum: number, oldVal: number, newVal: number): number {
  let s =
    (~csum & 0xffff) +
    (~(oldVal >>> 16) & 0xffff) +
    (~oldVal & 0xffff) +
    (newVal >>> 16) +
    (newVal & 0xffff);
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/**
 * UDP flavour of `updateChecksum16` (RFC 768): a checksum field of 0 means "no checksum" and stays
 * 0; a computed 0 is transmitted as 0xffff.
 */
export function updateUdpChecksum16(csum: number, oldWord: number, newWord: number): number {
  if ((csum & 0xffff) === 0) return 0;
  const r = updateChecksum16(csum, oldWord, newWord);
  return r === 0 ? 0xffff : r;
}

/** UDP flavour of `updateChecksum32`; see `updateUdpChecksum16`. */
export function updateUdpChecksum32(csum: number, oldVal: number, newVal: number): number {
  if ((csum & 0xffff) === 0) return 0;
  const r = updateChecksum32(csum, oldVal, newVal);
  return r === 0 ? 0xffff : r;
}

/**
 * Finishes a TCP or UDP checksum that its sender left to "the device" (Linux's CHECKSUM_PARTIAL):
 * the field holds the folded pseudo-header sum and the rest was to be added by a NIC. A real NIC
 * does that on the wire, but a packet that crosses a veth, or comes from a VM's virtio-net with
 * checksum offload, reaches a socket or a packet capture with the field still unfinished, and a user
 * space receiver is told nothing about it (a UDP socket has no flag for it; libpcap drops
 * PACKET_AUXDATA's TP_STATUS_CSUMNOTREADY). So the rule is the field's own value: one equal to the
 * pseudo-header sum of the packet is a partial checksum, and gets the data added (one pass over
 * the L4 bytes, only for such packets); any other value is left for the receiver to verify, as the
 * kernel leaves it. A full checksum equals that sum by chance once in 65536 packets: then the data
 * is summed again and the same correct value is written back, so the rule never breaks a packet.
 *
 * `ipOff` is a validated IPv4 header of `ihl` bytes, `ipLen` the packet's total length, `proto` its
 * protocol. Fragments are left alone (their checksum covers bytes that are not all here). Returns
 * true when it completed a checksum.
 */
export function completePartialChecksum(buf: Buffer, ipOff: number, ipLen: number, ihl: number, proto: number): boolean {
  let field: number;
  if (proto === 6) field = 16;
  else if (proto === 17) field = 6;
  else return false;
  const l4 = ipOff + ihl;
  const l4Len = ipLen - ihl;
  if (l4Len < field + 2 || ((buf[ipOff + 6]! & 0x3f) | buf[ipOff + 7]!) !== 0) return false; // short, MF or offset
  const f = l4 + field;
  const stored = (buf[f]! << 8) | buf[f + 1]!;
  if (stored === 0) return false; // UDP without a checksum (TCP: 0 is never a partial sum)
  const src = (buf[ipOff + 12]! << 24) | (buf[ipOff + 13]! << 16) | (buf[ipOff + 14]! << 8) | buf[ipOff + 15]!;
  const dst = (buf[ipOff + 16]! << 24) | (buf[ipOff + 17]! << 16) | (buf[ipOff + 18]! << 8) | buf[ipOff + 19]!;
  if (stored !== pseudoHeaderSum(src, dst, proto, l4Len)) return false;
  // The field holds the pseudo-header sum: summing the segment with it in place adds exactly that.
  let c = ~sum16(buf, l4, l4Len) & 0xffff;
  if (c === 0 && proto === 17) c = 0xffff; // 0 means "no checksum" in UDP
  buf[f] = c >>> 8;
  buf[f + 1] = c & 0xff;
  return true;
}
