/**
 * Scratch frames for packets the data plane creates itself (ARP replies, ICMP messages, copies for
 * flooding to ports that rewrite in place). Slots are handed out during a batch and all returned at its
 * end, after every port has flushed; if a batch runs out, the owner flushes early and starts over.
 */
export class FramePool {
  readonly buffer: Buffer;
  private next = 0;

  constructor(
    readonly slots = 256,
    readonly slotSize = 2048,
    readonly headroom = 128,
  ) {
    this.buffer = Buffer.alloc(slots * slotSize);
  }

  /** Offset of a fresh slot's data start (after the headroom), or -1 when the pool is exhausted. */
  alloc(): number {
    if (this.next >= this.slots) return -1;
    return this.next++ * this.slotSize + this.headroom;
  }

  get capacity(): number {
    return this.slotSize - this.headroom;
  }

  get inUse(): number {
    return this.next;
  }

  reset(): void {
    this.next = 0;
  }
}
