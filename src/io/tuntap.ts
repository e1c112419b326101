// Typed wrapper over the native TUN/TAP addon (native-bindings/tuntap.cc, loaded
// by ./addon.js). The addon does the syscalls and the batching; this module owns
// defaults, validation and error types.
//
// Receive: frames are read by the addon straight into `rx.buffer`, frame i of a
// batch at `frameOffset(i)`, its length in `rx.lengths[i]`. The bytes before
// `frameOffset(i)` (the headroom) are the caller's: a router can prepend headers
// in place. A batch is valid only during the `onBatch` call; the next batch
// reuses the same slots.

import { isNativeSystemError, loadAddon, type NativeDevice, type NativeDeviceStats } from './addon.js';
import { DistinctBuffers } from './batch.js';

export type DeviceMode = 'tap' | 'tun';

export interface OpenOptions {
  /**
   * Offloads (IFF_VNET_HDR, checksum offload, IPv4 TSO), TAP or TUN. Every frame read comes with a
   * 10-byte virtio-net header in the `VNET_HDR_LEN` bytes before it (the end of the headroom), and
   * may be a TCP super-frame of up to 64 KB with a partial checksum; frames written take a header
   * too (see `writeBatch`). Default slots are larger then (`OFFLOAD_SLOT_SIZE`, 32 of them). The
   * header's csum_start counts from the frame's first byte: Ethernet on a TAP, IP on a TUN.
   */
  offload?: boolean;
  /** Ring slots (default 64; 32 with `offload`). */
  slots?: number;
  /** Bytes per slot, headroom included (default 2048; `OFFLOAD_SLOT_SIZE` with `offload`). */
  slotSize?: number;
  /** Bytes left free before each frame (default 128). */
  headroom?: number;
  /** Most frames per `onBatch` call (default: `slots`; at most `slots`). */
  batch?: number;
  /**
   * Open the device inside this network namespace (a file such as `/run/netns/NAME`): `name` is
   * looked up there, and created there when absent. This is how a restarted daemon attaches again to
   * a pod's persistent `eth0`, which lives in the pod's namespace.
   */
  netns?: string;
}

export interface RxRing {
  readonly buffer: Buffer;
  readonly lengths: Int32Array;
  readonly slots: number;
  readonly slotSize: number;
  readonly headroom: number;
}

/** Counters of a device (the addon's, documented there). */
export type DeviceStats = NativeDeviceStats;

/** A failed system call on a TUN/TAP device. `errno` is the positive Linux errno. */
export class TunTapError extends Error {
  override readonly name = 'TunTapError';
  readonly code: string;
  readonly errno: number;
  readonly syscall: string;
  readonly device: string;

  constructor(message: string, code: string, errno: number, syscall: string, device: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.errno = errno;
    this.syscall = syscall;
    this.device = device;
  }
}

export const DEFAULT_SLOTS = 64;
export const DEFAULT_SLOT_SIZE = 2048;
export const DEFAULT_HEADROOM = 128;
/** Size of the virtio-net header an offload device puts before every frame (no mergeable buffers). */
export const VNET_HDR_LEN = 10;
/**
 * Slot size of an offload device: a 64 KB super-frame plus the room the data plane needs to split
 * it into MTU-sized segments in place (a header and headroom per segment). Slots are only touched
 * (made resident) as the kernel fills them.
 */
export const OFFLOAD_SLOT_SIZE = 80 * 1024;
const OFFLOAD_SLOTS = 32;

const MAX_SLOTS = 65536;
const MAX_SLOT_SIZE = 1 << 20; // room for a 64 KiB GSO super-packet and more
const MIN_FRAME_CAPACITY = 64; // slotSize - headroom: a minimum Ethernet frame fits
const MAX_RING_BYTES = 1 << 30;

function wrapError(e: unknown): unknown {
  if (!isNativeSystemError(e, 'device')) return e;
  return new TunTapError(e.message, e.code, e.errno, e.syscall, e.device, { cause: e });
}

function checkInt(device: string, field: string, value: number, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`TunTap.open(${device}): ${field} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

interface Geometry {
  slots: number;
  slotSize: number;
  headroom: number;
  batch: number;
}

function geometry(device: string, opts: OpenOptions): Geometry {
  const offload = opts.offload === true;
  const slots = checkInt(device, 'slots', opts.slots ?? (offload ? OFFLOAD_SLOTS : DEFAULT_SLOTS), 1, MAX_SLOTS);
  const slotSize = checkInt(device, 'slotSize', opts.slotSize ?? (offload ? OFFLOAD_SLOT_SIZE : DEFAULT_SLOT_SIZE), MIN_FRAME_CAPACITY, MAX_SLOT_SIZE);
  const headroom = checkInt(device, 'headroom', opts.headroom ?? DEFAULT_HEADROOM, offload ? VNET_HDR_LEN : 0, MAX_SLOT_SIZE);
  const batch = checkInt(device, 'batch', opts.batch ?? slots, 1, slots);
  if (slotSize - headroom < MIN_FRAME_CAPACITY) {
    throw new RangeError(
      `TunTap.open(${device}): headroom ${headroom} leaves ${slotSize - headroom} bytes of a ${slotSize}-byte slot; ` +
        `headroom must be below slotSize by at least ${MIN_FRAME_CAPACITY}`,
    );
  }
  if (slots * slotSize > MAX_RING_BYTES) {
    throw new RangeError(`TunTap.open(${device}): slots * slotSize = ${slots * slotSize} exceeds ${MAX_RING_BYTES} bytes`);
  }
  return { slots, slotSize, headroom, batch };
}

// ---- the device -----------------------------------------------------------------

export class TunTap {
  /** Interface name the kernel gave (differs from the requested one when that was empty or a `%d` pattern). */
  readonly name: string;
  readonly mode: DeviceMode;
  readonly rx: RxRing;
  /** Opened with offloads: a virtio-net header before every frame, both ways (see `OpenOptions.offload`). */
  readonly offload: boolean;

  readonly #dev: NativeDevice;
  readonly #slotSize: number;
  readonly #headroom: number;
  readonly #distinct = new DistinctBuffers();
  #fd: number;
  #persistent = false;

  private constructor(dev: NativeDevice, name: string, mode: DeviceMode, fd: number, rx: RxRing, offload: boolean) {
    this.#dev = dev;
    this.name = name;
    this.mode = mode;
    this.offload = offload;
    this.#fd = fd;
    this.rx = rx;
    this.#slotSize = rx.slotSize;
    this.#headroom = rx.headroom;
  }

  /**
   * Opens `/dev/net/tun` and attaches it to interface `name` (created if absent;
   * `''` lets the kernel pick). Throws TunTapError (code EBUSY, EPERM, EINVAL, ...)
   * when the kernel refuses, RangeError/TypeError for bad arguments.
   */
  static open(name: string, mode: DeviceMode, opts: OpenOptions = {}): TunTap {
    if (typeof name !== 'string') throw new TypeError(`TunTap.open: name must be a string, got ${typeof name}`);
    if (mode !== 'tap' && mode !== 'tun') {
      throw new TypeError(`TunTap.open(${name}): mode must be 'tap' or 'tun', got ${String(mode)}`);
    }
    const g = geometry(name, opts);
    const { Device } = loadAddon();
    const dev = new Device();
    let opened: { name: string; fd: number; vnetHdr: boolean };
    try {
      opened = dev.open(name, mode, { ...(opts.offload === true ? { vnetHdr: true } : {}), ...(opts.netns !== undefined ? { netns: opts.netns } : {}) });
    } catch (e) {
      throw wrapError(e);
    }
    try {
      const buffer = Buffer.alloc(g.slots * g.slotSize);
      const lengths = new Int32Array(g.slots);
      dev.setRing(buffer, lengths, g.slots, g.slotSize, g.headroom, g.batch);
      const rx: RxRing = Object.freeze({ buffer, lengths, slots: g.slots, slotSize: g.slotSize, headroom: g.headroom });
      return new TunTap(dev, opened.name, mode, opened.fd, rx, opened.vnetHdr);
    } catch (e) {
      dev.close();
      throw wrapError(e);
    }
  }

  /** The file descriptor, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /** Offset in `rx.buffer` where the frame of `slot` starts: slot*slotSize + headroom. */
  frameOffset(slot: number): number {
    return slot * this.#slotSize + this.#headroom;
  }

  /**
   * Starts reading. `onBatch(count)` is called once per batch; frames 0..count-1
   * are in `rx` and valid only during the call. If the device fails (it was
   * deleted, its namespace destroyed) reading stops and `onError` gets a
   * TunTapError; without `onError` that error is thrown as an uncaught exception,
   * as is anything `onBatch` throws. Throws if closed or already started.
   */
  start(onBatch: (count: number) => void, onError?: (err: TunTapError) => void): void {
    this.#dev.start(onBatch, (e: unknown) => {
      const err = wrapError(e);
      if (onError !== undefined && err instanceof TunTapError) onError(err);
      else throw err;
    });
  }

  /** Stops reading; frames queue in the kernel (up to the device's txqueuelen). Idempotent. */
  stop(): void {
    this.#dev.stop();
  }

  /**
   * Reads what the device holds right now, as a readable event would (one round: up to a batch, then
   * `onBatch`), without waiting for the event loop to report it. For a caller that has just written
   * to the device: the kernel behind a TAP/TUN handles a written frame within the write, so a reply
   * (an ICMP echo reply, a TCP acknowledgement) is often queued already. false, reading nothing, when
   * not started or when called from this device's own `onBatch`.
   */
  readNow(): boolean {
    return this.#dev.readNow();
  }

  /** Writes one frame (TAP: Ethernet; TUN: IP). false if it was dropped or failed (see stats()). */
  write(buf: Buffer, off: number, len: number): boolean {
    return this.#dev.write(buf, off, len);
  }

  /**
   * Writes frames `bufs[i].subarray(offs[i], offs[i] + lens[i])` for i < count in
   * one native call. On an offload device each frame goes with a virtio-net header: its own, in
   * the `VNET_HDR_LEN` bytes before it, when `hdrs[i]` is 1 (a frame passed on as another offload
   * device read it), else an all-zero one (a plain frame). Returns how many the kernel took; the others are counted in
   * stats() as txDropped (EAGAIN/ENOBUFS) or txErrors. Frames sharing a buffer cost the addon one
   * lookup for that buffer, not one per frame.
   */
  writeBatch(bufs: readonly Buffer[], offs: Uint32Array, lens: Uint32Array, count: number, hdrs?: Uint8Array): number {
    if (!(count <= bufs.length)) throw new RangeError('writeBatch: count exceeds the arrays');
    const d = this.#distinct;
    d.build(bufs, count);
    try {
      return this.#dev.writeBatch(d.bufs, offs, lens, count, d.idx, this.offload ? hdrs : undefined);
    } finally {
      d.clear();
    }
  }

  stats(): DeviceStats {
    return this.#dev.stats();
  }

  /**
   * Persistent (TUNSETPERSIST): the interface, its addresses and routes stay when the fd is closed,
   * by `close()` or by the process dying; its carrier is off until an fd attaches again (`open` with
   * the same name, mode and namespace). Not persistent: the interface goes with its last fd.
   * Throws TunTapError when the kernel refuses, or once closed.
   */
  setPersist(on: boolean): void {
    try {
      this.#dev.setPersist(on);
      this.#persistent = on;
    } catch (e) {
      throw wrapError(e);
    }
  }

  /**
   * Stops reading and closes the fd (the kernel deletes a non-persistent
   * interface). Idempotent. Later writes return false and count as txErrors.
   *
   * A persistent offload device is left without offloads (TUNSETOFFLOAD 0): the stack behind it then
   * sends plain packets until an fd attaches again, so that whatever attaches next can read them —
   * an older release that opens it without virtio-net headers would otherwise be handed 64 KB
   * super-frames for 2 KB slots (a rollback). An offload `open` turns them on again.
   */
  close(): void {
    if (this.#fd >= 0 && this.#persistent && this.offload) {
      try {
        this.#dev.withdrawOffloads();
      } catch {
        /* the device is gone (its namespace destroyed): nothing left to offer offloads to */
      }
    }
    this.#dev.close();
    this.#fd = -1;
  }
}
