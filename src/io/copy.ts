// Copying part of one Buffer into another without allocating.
//
// `src.copy(dst, dstOff, srcOff, srcEnd)` and `dst.set(src.subarray(...))` both create a view of the
// source range (a new object of ~100 bytes) on every call, the one allocation left on a path that
// must copy (a captured frame into a frame with headroom). The addon's memmove does not.

import { loadAddon } from './addon.js';

let native: ((dst: Buffer, dstOff: number, src: Buffer, srcOff: number, len: number) => void) | undefined;

/** Copies `src[srcOff, srcOff + len)` to `dst[dstOff]` (memmove). Throws RangeError outside either buffer. */
export function copyBytes(dst: Buffer, dstOff: number, src: Buffer, srcOff: number, len: number): void {
  if (native === undefined) native = loadAddon().copyBytes;
  native(dst, dstOff, src, srcOff, len);
}

let stamp: ((times: Float64Array, i: number) => void) | undefined;

/** `times[i]` = the wall clock in epoch milliseconds, sub-millisecond precision, without allocating (a capture's timestamps). */
export function stampTime(times: Float64Array, i: number): void {
  if (stamp === undefined) stamp = loadAddon().stampTime;
  stamp(times, i);
}
