// Helpers for the addon's batched writes.

/** Distinct-buffer searches stop after this many buffers; later ones are appended (correct, one more lookup). */
const MAX_SEARCH = 8;

/**
 * Turns a per-frame buffer list into each distinct buffer once plus an index per frame, for the addon's
 * indexed batch calls (`writeBatch(..., bufIdx)`, `sendBatch(..., bufIdx)`): the addon then resolves a
 * Buffer once per distinct buffer instead of making two N-API calls per frame. Frames of a batch usually
 * share one or a few buffers (a receive ring, the scratch pool), so the list is short. Reuses its arrays.
 */
export class DistinctBuffers {
  /** Distinct buffers, 0..size-1; entries past `size` are undefined. */
  readonly bufs: Array<Buffer | undefined> = [];
  /** Frame i's buffer is bufs[idx[i]]. */
  idx = new Uint32Array(64);
  size = 0;

  /** Indexes frames 0..count-1 of `frames` (count <= frames.length). */
  build(frames: readonly Buffer[], count: number): void {
    if (this.idx.length < count) this.idx = new Uint32Array(Math.max(count, this.idx.length * 2));
    const idx = this.idx;
    const bufs = this.bufs;
    let size = 0;
    let last: Buffer | undefined;
    let lastJ = -1;
    for (let i = 0; i < count; i++) {
      const b = frames[i]!;
      if (b !== last || lastJ < 0) {
        lastJ = -1;
        const limit = size < MAX_SEARCH ? size : MAX_SEARCH;
        for (let j = 0; j < limit; j++) {
          if (bufs[j] === b) {
            lastJ = j;
            break;
          }
        }
        if (lastJ < 0) {
          bufs[size] = b;
          lastJ = size++;
        }
        last = b;
      }
      idx[i] = lastJ;
    }
    this.size = size;
  }

  /** Drops the references so the buffers can be collected. */
  clear(): void {
    const bufs = this.bufs;
    for (let j = 0; j < this.size; j++) bufs[j] = undefined;
    this.size = 0;
  }
}
