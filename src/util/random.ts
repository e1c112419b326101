/**
 * xorshift32 (Marsaglia): a small, fast PRNG whose state and output stay small integers, for choices on
 * the data path (an endpoint for a new connection, where a NAT port search starts). `Math.random()`
 * returns a double, which V8 boxes when it is passed on or stored; this never allocates. Not for
 * anything that must be unpredictable to an attacker.
 */
export class XorShift32 {
  private s: number;

  /** `seed` 0 (or absent) picks a random seed. */
  constructor(seed = 0) {
    this.s = seed | 0 || (Math.floor(Math.random() * 0x7fffffff) | 0) || 1;
  }

  /** The next value, a non-negative 31-bit integer. */
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x;
    return x >>> 1;
  }

  /** An integer in [0, n) for 0 < n <= 2^31 (modulo bias below n / 2^31). */
  below(n: number): number {
    return this.next() % n;
  }
}
