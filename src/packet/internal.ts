// Helpers shared by the view classes; not part of the public API (not re-exported by index.ts).

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
