/**
 * Memory for large typed-array tables that starts on a page boundary, so that fixed-size records
 * laid over it (conntrack's 64-byte entries) each sit in exactly one cache line.
 *
 * An `ArrayBuffer`'s memory comes from malloc, and a large malloc is an mmap'd region after malloc's
 * own 16-byte header: 64-byte records over it straddle two cache lines each, and a lookup that
 * should cost one miss costs two. A `WebAssembly.Memory` is mapped by V8 itself, page-aligned and
 * zero-filled; its buffer is an ordinary (non-detachable by user code) ArrayBuffer. V8 reserves
 * address space (not memory) for each one, so this is for a few large tables: smaller requests, and
 * any environment without WebAssembly, get a plain ArrayBuffer.
 */

/** Below this, a plain ArrayBuffer (the table is small enough to stay in cache anyway). */
export const ALIGNED_MIN_BYTES = 1 << 20;
const WASM_PAGE = 65536;

/** A zero-filled buffer of at least `bytes` bytes, page-aligned when it is large (see above). */
export function pageAlignedBuffer(bytes: number): ArrayBuffer {
  if (bytes >= ALIGNED_MIN_BYTES && typeof WebAssembly === 'object') {
    const pages = Math.ceil(bytes / WASM_PAGE);
    try {
      return new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer;
    } catch {
      // Out of address space for it: alignment is an optimisation, fall through.
    }
  }
  return new ArrayBuffer(bytes);
}
