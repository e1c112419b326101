// Helpers shared by the view classes; not part of the public API (not re-exported by index.ts).
import { PacketError, ParseError } from './errors.js';

/** The buffer a view points at before its first `reset`. */
export const EMPTY_BUFFER: Buffer = Buffer.alloc(0);

/** Whether `[off, off + len)` is a well-formed region inside `buf`. */
export function regionOk(buf: Buffer, off: number, len: number): boolean {
  return off >= 0 && len >= 0 && off + len <= buf.length;
}

/**
 * Throws RangeError unless `[off, off + len)` lies inside `buf`: the header builders (`writeXxx`)
 * check once, since their byte stores (`bytes.ts`) would silently drop what falls outside.
 */
export function checkRegion(buf: Buffer, off: number, len: number, what: string): void {
  if (!(off >= 0 && off + len <= buf.length)) {
    throw new RangeError(`${what}: ${len} bytes at offset ${off} do not fit a buffer of ${buf.length}`);
  }
}

/**
 * What every header view shares: the region it points at, `reset` to re-point it (allocation-free,
 * returns a `ParseError`), and the throwing `parse` for tests and the edges. A subclass says only what
 * makes the bytes a valid header of its kind (`check`), and names its protocol for error messages.
 */
export abstract class HeaderView {
  buf: Buffer = EMPTY_BUFFER;
  off = 0;
  len = 0;

  /** Points the view at `buf[off .. off + len)`; the region is stored even when the result is not Ok. */
  reset(buf: Buffer, off: number, len: number): ParseError {
    this.buf = buf;
    this.off = off;
    this.len = len;
    if (!regionOk(buf, off, len)) return ParseError.Truncated;
    return this.check(buf, off, len);
  }

  /** Whether the (in-bounds) region holds a valid header of this kind. */
  protected abstract check(buf: Buffer, off: number, len: number): ParseError;

  /** Checked constructor for tests and the edges: throws `PacketError` instead of returning a code. */
  static parse<T extends HeaderView>(this: (new () => T) & { readonly protocol: string }, buf: Buffer, off = 0, len = buf.length - off): T {
    const v = new this();
    const e = v.reset(buf, off, len);
    if (e !== ParseError.Ok) throw PacketError.fromParse(this.protocol, e, off, len);
    return v;
  }
}
