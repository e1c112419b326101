// Test helpers for the wire layer (not a test file itself).

/** Hex with any whitespace, and `#` comments to end of line, removed. */
export function hex(s: string): Buffer {
  const clean = s.replace(/#[^\n]*/g, '').replace(/\s+/g, '');
  if (!/^([0-9a-f]{2})*$/i.test(clean)) throw new Error(`bad hex: ${clean}`);
  return Buffer.from(clean, 'hex');
}

/** A buffer of `n` junk bytes (0xa5), so code assuming zeroed memory fails. */
export function junk(n: number): Buffer {
  return Buffer.alloc(n, 0xa5);
}

export interface Placement {
  name: string;
  buf: Buffer;
  off: number;
}

/**
 * The same bytes in three places: a Buffer of their own at offset 0, at an odd offset inside a larger
 * junk-filled Buffer, and inside a Buffer that is a subarray (non-zero byteOffset) of a larger one,
 * again at a non-zero offset.
 */
export function placements(bytes: Buffer): Placement[] {
  const own = Buffer.from(bytes);
  const big = junk(bytes.length + 64);
  bytes.copy(big, 37);
  const parent = junk(bytes.length + 128);
  const sub = parent.subarray(13, 13 + bytes.length + 40);
  bytes.copy(sub, 7);
  if (sub.byteOffset === 0) throw new Error('subarray placement has byteOffset 0');
  return [
    { name: 'own buffer at offset 0', buf: own, off: 0 },
    { name: 'offset 37 in a larger buffer', buf: big, off: 37 },
    { name: `offset 7 in a subarray (byteOffset ${sub.byteOffset})`, buf: sub, off: 7 },
  ];
}

/** xorshift32: small deterministic PRNG for randomized tests. */
export class Prng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 1;
  }
  /** Unsigned 32-bit. */
  u32(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  /** Integer in [0, n). */
  below(n: number): number {
    return this.u32() % n;
  }
  u16(): number {
    return this.u32() & 0xffff;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}
