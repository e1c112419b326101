// The native addon (native-bindings/*.cc, built to build/Release/podnet_tuntap.node): its whole JS
// surface, typed, and its loader. This is the only module that loads it; src/io/tuntap.ts and
// src/io/udpsocket.ts wrap it with defaults, validation and error classes.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Counters of a TUN/TAP device. */
export interface NativeDeviceStats {
  /** Frames delivered to onBatch. */
  rxFrames: number;
  /** onBatch calls. */
  rxBatches: number;
  /** Frames lost on read: larger than `slotSize - headroom` (never delivered truncated), or a failed read. */
  rxErrors: number;
  /** Frames the kernel accepted. */
  txFrames: number;
  /** Frames refused with EAGAIN/ENOBUFS (device queue full). */
  txDropped: number;
  /** Frames refused otherwise: kernel errors (EINVAL for a runt, EIO when down), out-of-bounds off/len, closed device. */
  txErrors: number;
}

export interface NativeDevice {
  /** `netns`: a namespace file (/run/netns/NAME) to open /dev/net/tun in (the interface is looked up or created there). */
  open(name: string, mode: 'tap' | 'tun', flags: { vnetHdr?: boolean; netns?: string }): { name: string; fd: number; vnetHdr: boolean };
  /** TUNSETPERSIST: the interface stays when the fd closes (true) or goes with it (false). */
  setPersist(on: boolean): void;
  /** TUNSETOFFLOAD 0 on an offload device (no-op on others): the stack behind it gets no offloads. */
  withdrawOffloads(): void;
  setRing(ring: Buffer, lengths: Int32Array, slots: number, slotSize: number, headroom: number, batch: number): void;
  start(onBatch: (count: number) => void, onError: (err: unknown) => void): void;
  stop(): void;
  /** One read round now, onBatch called as for a readable event; false (nothing read) when not started or inside its own onBatch. */
  readNow(): boolean;
  write(buf: Buffer, off: number, len: number): boolean;
  /**
   * With `bufIdx`, frame i's buffer is `bufs[bufIdx[i]]` and `bufs` lists each distinct buffer once.
   * With `hdrs` (a vnetHdr device), `hdrs[i] = 1` when frame i's virtio-net header is in the 10
   * bytes before it; otherwise a zero header goes out with it.
   */
  writeBatch(
    bufs: ReadonlyArray<Buffer | undefined>,
    offs: Uint32Array,
    lens: Uint32Array,
    count: number,
    bufIdx?: Uint32Array,
    hdrs?: Uint8Array,
  ): number;
  stats(): NativeDeviceStats;
  close(): void;
}

/** Counters of a UDP socket (`UdpSocket.stats()`; udpsocket.ts exports it as UdpSocketStats). */
export interface NativeUdpStats {
  /** Datagrams delivered to onBatch. */
  rxFrames: number;
  /** onBatch calls. */
  rxBatches: number;
  /** Datagrams lost on receive: truncated (see rxTruncated, included here) or a failed recvmmsg/poll. */
  rxErrors: number;
  /** Datagrams larger than `slotSize - headroom`: dropped, never delivered truncated. */
  rxTruncated: number;
  /** recvmmsg system calls. */
  rxCalls: number;
  /** Datagrams the kernel accepted. */
  txFrames: number;
  /** Datagrams not sent because the send buffer was full (EAGAIN/ENOBUFS): the refused one and the rest of its call. */
  txDropped: number;
  /** Datagrams refused otherwise: out-of-bounds off/len, not a Buffer, kernel errors (EMSGSIZE, EINVAL, ENETUNREACH, ...), closed socket. */
  txErrors: number;
  /** sendmmsg system calls. */
  txCalls: number;
}

export interface NativeUdpSocket {
  /** Binds `ip:port` (port 0: the kernel picks one); `bufferBytes` > 0 sets SO_RCVBUF/SO_SNDBUF (FORCE as root). */
  bind(ip: string, port: number, bufferBytes: number): { address: string; port: number; fd: number; rcvbuf: number; sndbuf: number };
  setRing(
    ring: Buffer,
    lengths: Int32Array,
    srcIps: Uint32Array,
    srcPorts: Uint16Array | Uint32Array,
    slots: number,
    slotSize: number,
    headroom: number,
    batch: number,
  ): void;
  start(onBatch: (count: number) => void, onError: (err: unknown) => void): void;
  stop(): void;
  /** Opens the send-only raw socket that lets `sendBatch` choose each datagram's source port (CAP_NET_RAW). */
  openFlowSender(): void;
  /**
   * Opens `count` send-only UDP sockets on ephemeral ports of the bound address that take UDP_SEGMENT
   * (UDP GSO, Linux 4.18+); returns their ports. Throws an errno-coded error when the kernel refuses.
   */
  openGsoSenders(count: number): Uint16Array;
  /**
   * Turns on UDP_GRO: a received slot may hold a run of datagrams of one flow, all but the last of
   * the size written to `segSizes[slot]` (0: one datagram). After setRing, before start.
   */
  enableGro(segSizes: Uint16Array): void;
  /**
   * With `bufIdx`, datagram i's buffer is `bufs[bufIdx[i]]` and `bufs` lists each distinct buffer once.
   * With `srcPorts` and an open flow sender, datagram i leaves from port `srcPorts[i]`. With
   * `gsoSizes[i]` > 0, `lens[i]` bytes are a run of datagrams of that size (the last may be shorter),
   * sent as one buffer through the GSO socket whose port is `srcPorts[i]`.
   */
  sendBatch(
    bufs: ReadonlyArray<Buffer | undefined>,
    offs: Uint32Array,
    lens: Uint32Array,
    dstIps: Uint32Array,
    dstPorts: Uint16Array | Uint32Array,
    count: number,
    bufIdx?: Uint32Array,
    srcPorts?: Uint16Array | Uint32Array,
    gsoSizes?: Uint16Array | Uint32Array,
  ): number;
  stats(): NativeUdpStats;
  close(): void;
}

export interface NativeAddon {
  Device: new () => NativeDevice;
  UdpSocket: new () => NativeUdpSocket;
  /** The file at `path` (created 0600 if absent) sized to `bytes` and mapped MAP_SHARED; errno-coded Error (with `path`). */
  mapShared(path: string, bytes: number): ArrayBuffer;
  /** memmove of `len` bytes from `src[srcOff]` to `dst[dstOff]`; RangeError outside either buffer. */
  copyBytes(dst: Buffer, dstOff: number, src: Buffer, srcOff: number, len: number): void;
  /** `times[i]` = the wall clock in milliseconds (CLOCK_REALTIME, sub-millisecond digits); allocates nothing. */
  stampTime(times: Float64Array, i: number): void;
  /**
   * Makes `words` (an Int32Array of length >= 2 over its own ArrayBuffer) the process's coarse clock:
   * [0] whole ms and [1] whole seconds, written before every reader's onBatch and by `refreshClock`.
   * The first bind puts the origin `elapsedMs` before now; binding again moves the words, not the origin.
   */
  bindClock(words: Int32Array, elapsedMs: number): void;
  /** The bound clock's words = now (no allocation). */
  refreshClock(): void;
  /** RFC 1071 sum of `buf[off, off+len)` plus `initial` (<= 0xffff), folded: what packet/checksum's sum16 returns. */
  sum16(buf: Buffer, off: number, len: number, initial: number): number;
  /** Strided regions of `buf` moved and summed in one call; see packet/segment's `SegmentOps.moveSums`. */
  moveSums(buf: Buffer, src: number, srcStride: number, dst: number, dstStride: number, size: number, last: number, n: number, sums: Uint32Array | null): void;
  /** `buf[from, from + len)` copied to `dst + i*stride` for `i < count`; see `SegmentOps.replicate`. */
  replicate(buf: Buffer, from: number, len: number, dst: number, stride: number, count: number): void;
  /** Every segment's headers of a super-frame laid out in place; see `SegmentOps.segmentHeaders`. */
  segmentHeaders(buf: Buffer, ip0: number, stride: number, n: number, ihl: number, doff: number, mss: number, last: number, ident: number, seq: number, tflags: number, sums: Uint32Array | null): void;
  /** How many datagrams of a run continue the first's TCP segment; see `SegmentOps.continuations`. */
  continuations(buf: Buffer, off: number, stride: number, n: number, last: number, ipAt: number, hdrLen: number, mss: number, verify: number): number;
}

import { useNativeSum16 } from '../packet/checksum.js';
import { coarseClock } from '../util/clock.js';
import { useNativeSegmentOps } from '../packet/segment.js';

const ADDON_FILE = join('build', 'Release', 'podnet_tuntap.node');

let addon: NativeAddon | undefined;

/** Finds build/Release/podnet_tuntap.node from src/io (ts) or dist/src/io (compiled). */
export function loadAddon(): NativeAddon {
  if (addon !== undefined) return addon;
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, '..', '..', ADDON_FILE), join(here, '..', '..', '..', ADDON_FILE)];
  const path = candidates.find((p) => existsSync(p));
  if (path === undefined) {
    throw new Error(`podnet_tuntap addon not found (looked at ${candidates.join(', ')}); run \`npm run build:native\``);
  }
  addon = createRequire(import.meta.url)(path) as NativeAddon;
  // Every checksum of a long region (segment payloads) in this process now runs in native code.
  useNativeSum16(addon.sum16);
  useNativeSegmentOps({ moveSums: addon.moveSums, replicate: addon.replicate, segmentHeaders: addon.segmentHeaders, continuations: addon.continuations });
  // The data plane's clock is kept by the addon's readers from now on, without a timer (util/clock.ts).
  coarseClock.useNative({ bindClock: addon.bindClock, refreshClock: addon.refreshClock });
  return addon;
}

/** An errno-coded Error from the addon: code, errno, syscall and a string `subject` field (device, address). */
export function isNativeSystemError<K extends string>(
  e: unknown,
  subject: K,
): e is Error & { code: string; errno: number; syscall: string } & Record<K, string> {
  if (!(e instanceof Error)) return false;
  const r = e as unknown as Record<string, unknown>;
  return (
    typeof r['code'] === 'string' &&
    typeof r['errno'] === 'number' &&
    typeof r['syscall'] === 'string' &&
    typeof r[subject] === 'string'
  );
}
