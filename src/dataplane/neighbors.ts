import { U32Map } from '../util/u32map.js';

/**
 * The node's neighbour table: IPv4 -> MAC of every local pod, filled by the control plane when it creates
 * a pod (podnet assigns pod MACs, so the router and TUN ports never need to ARP for them).
 */
export class Neighbors {
  private readonly index = new U32Map(256);
  private macHi = new Int32Array(256);
  private macLo = new Uint32Array(256);
  private free: number[] = [];
  private next = 0;

  /** Slot for `ip`, or -1. Use `hi(slot)`/`lo(slot)` to read the MAC. */
  lookup(ip: number): number {
    return this.index.get(ip);
  }
  hi(slot: number): number {
    return this.macHi[slot]!;
  }
  lo(slot: number): number {
    return this.macLo[slot]!;
  }

  set(ip: number, hi: number, lo: number): void {
    let slot = this.index.get(ip);
    if (slot < 0) {
      slot = this.free.pop() ?? this.next++;
      if (slot >= this.macHi.length) {
        const h = new Int32Array(this.macHi.length * 2);
        h.set(this.macHi);
        const l = new Uint32Array(this.macLo.length * 2);
        l.set(this.macLo);
        this.macHi = h;
        this.macLo = l;
      }
      this.index.set(ip, slot);
    }
    this.macHi[slot] = hi;
    this.macLo[slot] = lo;
  }

  delete(ip: number): void {
    const slot = this.index.get(ip);
    if (slot < 0) return;
    this.index.delete(ip);
    this.free.push(slot);
  }

  get size(): number {
    return this.index.size;
  }
}
