/**
 * An open-addressing hash map from unsigned 32-bit keys (IPv4 addresses) to int32 values, stored in typed
 * arrays so lookups and updates allocate nothing (a JS Map would box keys above 2^30). Linear probing;
 * deletion by backward shift, so there are no tombstones and lookups stay short.
 */
export class U32Map {
  private keys: Uint32Array;
  private vals: Int32Array;
  private used: Uint8Array;
  private mask: number;
  private count = 0;

  constructor(initialCapacity = 64) {
    let cap = 16;
    while (cap < initialCapacity * 2) cap <<= 1;
    this.keys = new Uint32Array(cap);
    this.vals = new Int32Array(cap);
    this.used = new Uint8Array(cap);
    this.mask = cap - 1;
  }

  get size(): number {
    return this.count;
  }

  /** An int32 (not `>>> 0`: an unsigned result >= 2^31 is a heap number wherever it is not inlined). */
  private static hash(k: number): number {
    return Math.imul(k ^ (k >>> 16), 0x45d9f3b);
  }

  /**
   * The value for `key`, or -1 when absent (values are expected to be >= 0). The key may be given
   * unsigned or as the int32 with the same bits (`ip | 0`), which the data path prefers: an int32 is
   * always a small integer, so passing it never allocates.
   */
  get(key: number): number {
    const k = key >>> 0;
    let i = U32Map.hash(key) & this.mask;
    while (this.used[i] === 1) {
      if (this.keys[i] === k) return this.vals[i]!;
      i = (i + 1) & this.mask;
    }
    return -1;
  }

  has(key: number): boolean {
    return this.get(key) !== -1;
  }

  set(key: number, value: number): void {
    if ((this.count + 1) * 2 > this.keys.length) this.grow();
    key >>>= 0;
    let i = U32Map.hash(key) & this.mask;
    while (this.used[i] === 1) {
      if (this.keys[i] === key) {
        this.vals[i] = value;
        return;
      }
      i = (i + 1) & this.mask;
    }
    this.used[i] = 1;
    this.keys[i] = key;
    this.vals[i] = value;
    this.count++;
  }

  delete(key: number): boolean {
    key >>>= 0;
    let i = U32Map.hash(key) & this.mask;
    while (this.used[i] === 1) {
      if (this.keys[i] === key) {
        this.removeAt(i);
        return true;
      }
      i = (i + 1) & this.mask;
    }
    return false;
  }

  forEach(fn: (key: number, value: number) => void): void {
    for (let i = 0; i < this.keys.length; i++) if (this.used[i] === 1) fn(this.keys[i]!, this.vals[i]!);
  }

  private removeAt(i: number): void {
    this.used[i] = 0;
    this.count--;
    // Backward-shift the rest of the cluster so every key stays reachable from its home slot.
    let j = (i + 1) & this.mask;
    while (this.used[j] === 1) {
      const home = U32Map.hash(this.keys[j]!) & this.mask;
      // Move j into the hole i if i lies cyclically in [home, j).
      if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
        this.keys[i] = this.keys[j]!;
        this.vals[i] = this.vals[j]!;
        this.used[i] = 1;
        this.used[j] = 0;
        i = j;
      }
      j = (j + 1) & this.mask;
    }
  }

  private grow(): void {
    const oldK = this.keys;
    const oldV = this.vals;
    const oldU = this.used;
    const cap = oldK.length * 2;
    this.keys = new Uint32Array(cap);
    this.vals = new Int32Array(cap);
    this.used = new Uint8Array(cap);
    this.mask = cap - 1;
    this.count = 0;
    for (let i = 0; i < oldK.length; i++) if (oldU[i] === 1) this.set(oldK[i]!, oldV[i]!);
  }
}
