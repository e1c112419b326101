/**
 * The capture ring: what a running capture keeps between the data plane (the producer, inside a
 * batch) and the daemon's stream to the CLI (the consumer, on a timer). Both run on the one event
 * loop thread, so nothing here needs atomics.
 *
 * Bounded twice: a byte buffer the frames are copied into back to back (each cut at the snap length),
 * and a table of `entries` records (offset, captured and original length, time, direction). A frame
 * that finds either full is counted in `lost` and dropped from the capture: the data plane never
 * waits for a reader. Nothing is allocated per frame (the copy is the addon's memmove, the time the
 * addon's clock stored into a Float64Array).
 */
import { copyBytes, stampTime } from '../io/copy.js';
import { classifyEthernet, classifyIp, PacketFields, type Matcher } from './filter.js';
import type { DatagramTap, FrameTap, TapDir } from '../dataplane/tap.js';
import { checksum, writeU16, writeU32 } from '../packet/index.js';

/** pcap link types (LINKTYPE_*) of the capture points. */
export const LinkType = { Ethernet: 1, Raw: 101 } as const;
export type LinkType = (typeof LinkType)[keyof typeof LinkType];

export interface CaptureRingOptions {
  /** Bytes kept of each frame (default 65535). */
  snaplen?: number;
  /** Size of the byte buffer (default 8 MiB). */
  bytes?: number;
  /** Records (default 16384, rounded up to a power of two). */
  entries?: number;
  /** Frames matched after which the capture takes no more (default: no limit). */
  limit?: number;
  /** Which frames to keep (default: all). */
  filter?: Matcher;
  /** The frames' framing: Ethernet or IP (VXLAN datagrams are stored as IP with a made-up outer header). */
  linkType: LinkType;
  /** Our underlay address (host order), the local side of VXLAN datagrams. */
  localIp?: number;
}

const UDP_HDRS = 28;

export class CaptureRing implements FrameTap, DatagramTap {
  readonly snaplen: number;
  readonly linkType: LinkType;
  readonly data: Buffer;
  private readonly mask: number;
  readonly offs: Uint32Array;
  readonly caps: Uint32Array;
  readonly origs: Uint32Array;
  readonly dirs: Uint8Array;
  /** Epoch milliseconds (the addon's clock: a store, no boxed double). */
  readonly times: Float64Array;
  private head = 0;
  private tail = 0;
  /** Where the next frame's bytes go (the end of the newest record's). */
  private wr = 0;
  private readonly limit: number;
  private readonly filter: Matcher | undefined;
  private readonly fields = new PacketFields();
  private readonly localIp: number;
  /** Frames the filter took (kept or lost). */
  matched = 0;
  /** Frames the filter refused. */
  filtered = 0;
  /** Frames the filter took but the ring had no room for (a slow reader). */
  lost = 0;

  constructor(opts: CaptureRingOptions) {
    this.snaplen = Math.max(64, Math.min(opts.snaplen ?? 65535, 262144));
    const bytes = Math.max(opts.bytes ?? 8 << 20, this.snaplen);
    let n = 1;
    while (n < (opts.entries ?? 16384)) n <<= 1;
    this.mask = n - 1;
    this.data = Buffer.alloc(bytes);
    this.offs = new Uint32Array(n);
    this.caps = new Uint32Array(n);
    this.origs = new Uint32Array(n);
    this.dirs = new Uint8Array(n);
    this.times = new Float64Array(n);
    this.limit = opts.limit ?? Infinity;
    this.filter = opts.filter;
    this.linkType = opts.linkType;
    this.localIp = (opts.localIp ?? 0) | 0;
  }

  /** Records waiting for the reader. */
  get pending(): number {
    return this.tail - this.head;
  }

  /** Whether the limit is reached: nothing more will be taken. */
  get full(): boolean {
    return this.matched >= this.limit;
  }

  /** A frame of a capture point (FrameTap). */
  frame(buf: Buffer, off: number, len: number, dir: TapDir): void {
    if (this.matched >= this.limit) return;
    const f = this.filter;
    if (f !== undefined) {
      if (this.linkType === LinkType.Ethernet) classifyEthernet(this.fields, buf, off, len);
      else classifyIp(this.fields, buf, off, len);
      if (!f(this.fields)) {
        this.filtered++;
        return;
      }
    }
    this.matched++;
    const at = this.reserve(len < this.snaplen ? len : this.snaplen);
    if (at < 0) return;
    const i = (this.tail - 1) & this.mask;
    copyBytes(this.data, at, buf, off, this.caps[i]!);
    this.origs[i] = len;
    this.dirs[i] = dir;
  }

  /**
   * A VXLAN datagram (DatagramTap): stored as the IPv4 + UDP packet it was on the underlay, with the
   * outer header written here (TTL 64, UDP checksum 0, as Linux's vxlan sends).
   */
  datagram(buf: Buffer, off: number, len: number, dir: TapDir, peerIp: number, peerPort: number, localPort: number): void {
    if (this.matched >= this.limit) return;
    const src = dir === 0 ? peerIp | 0 : this.localIp;
    const dst = dir === 0 ? this.localIp : peerIp | 0;
    const sport = dir === 0 ? peerPort : localPort;
    const dport = dir === 0 ? localPort : peerPort;
    const f = this.filter;
    if (f !== undefined) {
      const x = this.fields;
      x.l3 = 1;
      x.proto = 17;
      x.src = src;
      x.dst = dst;
      x.sport = sport;
      x.dport = dport;
      if (!f(x)) {
        this.filtered++;
        return;
      }
    }
    this.matched++;
    const total = len + UDP_HDRS;
    const at = this.reserve(total < this.snaplen ? total : this.snaplen);
    if (at < 0) return;
    const i = (this.tail - 1) & this.mask;
    const d = this.data;
    // IPv4 header (20 bytes) and UDP header (8 bytes).
    d[at] = 0x45;
    d[at + 1] = 0;
    writeU16(d, at + 2, total & 0xffff);
    writeU32(d, at + 4, 0);
    d[at + 8] = 64;
    d[at + 9] = 17;
    writeU16(d, at + 10, 0);
    writeU32(d, at + 12, src);
    writeU32(d, at + 16, dst);
    writeU16(d, at + 10, checksum(d, at, 20));
    writeU16(d, at + 20, sport);
    writeU16(d, at + 22, dport);
    writeU16(d, at + 24, (len + 8) & 0xffff);
    writeU16(d, at + 26, 0);
    const cap = this.caps[i]!;
    if (cap > UDP_HDRS) copyBytes(d, at + UDP_HDRS, buf, off, cap - UDP_HDRS);
    this.origs[i] = total;
    this.dirs[i] = dir;
  }

  /**
   * Makes room for `cap` bytes and a record (the newest, at `tail - 1`, with its offset, length and
   * time set): returns the offset, or -1 when the ring is full (counted in `lost`).
   */
  private reserve(cap: number): number {
    const n = this.mask + 1;
    if (this.tail - this.head >= n) {
      this.lost++;
      return -1;
    }
    const size = this.data.length;
    let at: number;
    if (this.tail === this.head) {
      at = 0;
    } else {
      const rd = this.offs[this.head & this.mask]!;
      const wr = this.wr;
      if (wr > rd) {
        // In use: [rd, wr). Free: [wr, size) and [0, rd).
        if (wr + cap <= size) at = wr;
        else if (cap <= rd) at = 0;
        else at = -1;
      } else {
        // Wrapped: in use [rd, size) and [0, wr). Free: [wr, rd).
        at = wr + cap <= rd ? wr : -1;
      }
    }
    if (at < 0) {
      this.lost++;
      return -1;
    }
    const i = this.tail & this.mask;
    this.offs[i] = at;
    this.caps[i] = cap;
    stampTime(this.times, i);
    this.tail++;
    this.wr = at + cap;
    return at;
  }

  /**
   * The oldest record, for the reader: calls `fn(data, off, cap, orig, dir, epochMs)` for up to
   * `max` records and frees them; returns how many. (Control plane: `fn` may allocate.)
   */
  drain(max: number, fn: (data: Buffer, off: number, cap: number, orig: number, dir: number, epochMs: number) => void): number {
    let k = 0;
    while (this.head < this.tail && k < max) {
      const i = this.head & this.mask;
      fn(this.data, this.offs[i]!, this.caps[i]!, this.origs[i]!, this.dirs[i]!, this.times[i]!);
      this.head++;
      k++;
    }
    if (this.head === this.tail) this.wr = 0;
    return k;
  }
}
