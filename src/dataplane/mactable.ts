/**
 * The switch's forwarding database: MAC (hi16, lo32) -> port index, with aging. Typed arrays with
 * linear probing, fixed capacity (a full table stops learning and counts it; forwarding then floods).
 * Aged entries are treated as absent by lookups and reused by inserts, so aging needs no timer.
 */
export class MacTable {
  private readonly hi: Int32Array; // -1 = never used
  private readonly lo: Uint32Array;
  private readonly port: Int32Array;
  private readonly seen: Float64Array; // seconds (coarse clock); -Infinity = removed, Infinity = static
  private readonly mask: number;
  private live = 0;

  constructor(
    readonly capacity = 4096,
    public agingSeconds = 300,
  ) {
    let cap = 16;
    while (cap < capacity * 2) cap <<= 1;
    this.hi = new Int32Array(cap).fill(-1);
    this.lo = new Uint32Array(cap);
    this.port = new Int32Array(cap);
    this.seen = new Float64Array(cap).fill(-Infinity);
    this.mask = cap - 1;
  }

  private static hash(hi: number, lo: number): number {
    return Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b) >>> 13;
  }

  /** Port index for the MAC (`lo` unsigned or int32), or -1 if unknown or aged out. */
  lookup(hi: number, lo: number, now: number): number {
    let i = MacTable.hash(hi, lo) & this.mask;
    for (;;) {
      const h = this.hi[i]!;
      if (h === -1) return -1;
      if (h === hi && this.lo[i] === lo >>> 0) {
        return now - this.seen[i]! <= this.agingSeconds ? this.port[i]! : -1;
      }
      i = (i + 1) & this.mask;
    }
  }

  /** Learns or refreshes (`lo` unsigned or int32); returns false when the table is full (nothing learned). */
  learn(hi: number, lo: number, portIndex: number, now: number): boolean {
    lo >>>= 0;
    let i = MacTable.hash(hi, lo) & this.mask;
    let reuse = -1;
    for (;;) {
      const h = this.hi[i]!;
      if (h === -1) break;
      if (h === hi && this.lo[i] === lo) {
        if (this.seen[i] === Infinity && now !== Infinity) return true; // static entries are not moved
        if (this.seen[i] === -Infinity) this.live++; // was removed: live again
        this.port[i] = portIndex;
        this.seen[i] = now;
        return true;
      }
      if (reuse < 0 && now - this.seen[i]! > this.agingSeconds) reuse = i;
      i = (i + 1) & this.mask;
    }
    if (reuse >= 0) {
      if (this.seen[reuse] !== -Infinity) this.live--; // reusing an aged (still counted) entry
      i = reuse;
    } else if (this.live >= this.capacity && this.sweep(now) === 0) {
      return false;
    }
    this.hi[i] = hi;
    this.lo[i] = lo;
    this.port[i] = portIndex;
    this.seen[i] = now;
    this.live++;
    return true;
  }

  /** Forgets aged entries (only when the table is full, so it is rare); returns how many. */
  private sweep(now: number): number {
    let n = 0;
    for (let i = 0; i < this.hi.length; i++) {
      const s = this.seen[i]!;
      if (this.hi[i] !== -1 && s !== -Infinity && now - s > this.agingSeconds) {
        this.seen[i] = -Infinity;
        this.live--;
        n++;
      }
    }
    return n;
  }

  /** Forgets every MAC learned on a port (port removed). */
  flushPort(portIndex: number): void {
    for (let i = 0; i < this.hi.length; i++) {
      if (this.hi[i] !== -1 && this.seen[i] !== -Infinity && this.port[i] === portIndex) {
        this.seen[i] = -Infinity;
        this.live--;
      }
    }
  }

  entries(now: number): Array<{ hi: number; lo: number; port: number; age: number }> {
    const out = [];
    for (let i = 0; i < this.hi.length; i++) {
      const s = this.seen[i]!;
      if (this.hi[i] !== -1 && now - s <= this.agingSeconds) out.push({ hi: this.hi[i]!, lo: this.lo[i]!, port: this.port[i]!, age: now - s });
    }
    return out;
  }
}
