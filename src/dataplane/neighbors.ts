import { U32Map } from '../util/u32map.js';

/**
 * The node's neighbour table: IPv4 -> MAC of every local pod, filled by the control plane when it creates
 * a pod (podnet assigns pod MACs, so the router and TUN ports never need to ARP for them).
 */
export class Neighbors {
  private readonly index = new U32Map(256);
  private macHi = new Int32Array(256);
  private macLo = new Uint32Array(256);
  /** Per slot, the switch port the MAC was last found on (-1: not looked up yet); a cache the router checks. */
  private portIdx = new Int32Array(256).fill(-1);
  private free: number[] = [];
  private next = 0;

  /** Slot for `ip` (unsigned, or int32 with the same bits), or -1. Use `hi(slot)`/`lo(slot)` to read the MAC. */
  lookup(ip: number): number {
    return this.index.get(ip);
  }
  hi(slot: number): number {
    return this.macHi[slot]!;
  }
  lo(slot: number): number {
    return this.macLo[slot]!;
  }
  /**
   * The switch port index last recorded for the slot's MAC, or -1. A hint: the port may have gone
   * and its index been reused since, so check the port's MAC before using it (the router does).
   */
  portIndex(slot: number): number {
    return this.portIdx[slot]!;
  }
  setPortIndex(slot: number, index: number): void {
    this.portIdx[slot] = index;
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
        const p = new Int32Array(this.portIdx.length * 2).fill(-1);
        p.set(this.portIdx);
        this.macHi = h;
        this.macLo = l;
        this.portIdx = p;
      }
      this.index.set(ip, slot);
    }
    this.macHi[slot] = hi;
    this.macLo[slot] = lo;
    this.portIdx[slot] = -1;
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
