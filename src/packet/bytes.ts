/**
 * Big-endian field access by byte indexing, for the data path.
 *
 * Buffer's `readUInt16BE`, `writeUInt32BE` & co check their arguments on every call (about 9 ns a
 * call against about 1 ns for indexing, and they are not inlined), which on a 64-byte packet costs
 * more than the rest of the per-packet work. These helpers index the bytes directly; V8 inlines them.
 * Indexing honours a Buffer's `byteOffset`, as the Buffer methods do.
 *
 * The caller keeps offsets in bounds (views guarantee it after an ok `reset`): unlike the Buffer
 * methods, nothing is checked, so a read past the end gives 0 for the missing bytes and a write past
 * the end is dropped (typed-array semantics), instead of a `RangeError`.
 *
 * `readU32` returns an unsigned number (the wire layer's convention for addresses); `readI32` the
 * same bits as an int32, which V8 always keeps as a small integer: compare and hash with that where
 * a value >= 2^31 would otherwise be boxed (passed on, stored in an object) on the data path.
 */

/** Unsigned 16-bit big-endian value at `buf[off]`. */
export function readU16(buf: Buffer, off: number): number {
  return (buf[off]! << 8) | buf[off + 1]!;
}

/** Unsigned 32-bit big-endian value at `buf[off]`. */
export function readU32(buf: Buffer, off: number): number {
  return ((buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!) >>> 0;
}

/** The 32-bit big-endian value at `buf[off]` as an int32 (same bits as `readU32`). */
export function readI32(buf: Buffer, off: number): number {
  return (buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!;
}

/** Writes the low 16 bits of `v`, big-endian, at `buf[off]`. */
export function writeU16(buf: Buffer, off: number, v: number): void {
  buf[off] = v >>> 8;
  buf[off + 1] = v;
}

/** Writes the low 32 bits of `v` (signed or unsigned), big-endian, at `buf[off]`. */
export function writeU32(buf: Buffer, off: number, v: number): void {
  buf[off] = v >>> 24;
  buf[off + 1] = v >>> 16;
  buf[off + 2] = v >>> 8;
  buf[off + 3] = v;
}
