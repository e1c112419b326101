// Typed wrapper over the addon's batched IPv4 UDP socket (native-bindings/udp.cc, loaded by ./addon.js).
// The addon does the syscalls (recvmmsg, sendmmsg) and the batching; this module owns defaults,
// validation and error types.
//
// Receive: datagrams are read by the addon straight into `rx.buffer`, datagram i of a batch at
// `payloadOffset(i)` = i*slotSize + headroom, its length in `rx.lengths[i]`, its source in
// `rx.srcIps[i]` (host-order number: 10.0.0.1 is 0x0a000001) and `rx.srcPorts[i]`. The headroom before
// each datagram is the caller's. A batch is valid only during the `onBatch` call; the addon reuses the
// slots for the next batch only after the call returns, so the caller may work in place and keep
// references to slots (queued frames) until then.
//
// Send: `sendBatch` gives many datagrams to one sendmmsg. It is synchronous: the kernel has copied the
// data when it returns, so the buffers may be reused at once. Nothing on the send path throws for a
// datagram; failures are counted in stats().

import { isNativeSystemError, loadAddon, type NativeUdpSocket, type NativeUdpStats } from './addon.js';
import { DistinctBuffers } from './batch.js';

export interface UdpSocketOptions {
  /** Ring slots (default 64). */
  slots?: number;
  /** Bytes per slot, headroom included (default 2048). A datagram larger than slotSize - headroom is dropped. */
  slotSize?: number;
  /** Bytes left free before each datagram (default 128). */
  headroom?: number;
  /** Most datagrams per `onBatch` call, read by one recvmmsg (default: `slots`; at most `slots`). */
  batch?: number;
  /** SO_RCVBUF and SO_SNDBUF (default 4 MiB; as root SO_*BUFFORCE, past net.core.*mem_max). 0 keeps the kernel's. */
  bufferBytes?: number;
  /**
   * Receive coalesced runs of datagrams (UDP_GRO, Linux 5.0+; default false): see `UdpRxRing.segSizes`.
   * A slot must then hold a whole run, so slotSize - headroom should be 65536. Where the kernel
   * refuses, `groError` says why and every slot is one datagram.
   */
  gro?: boolean;
}

export interface UdpRxRing {
  readonly buffer: Buffer;
  readonly lengths: Int32Array;
  /** Source IPv4 address of slot i, a host-order number. */
  readonly srcIps: Uint32Array;
  readonly srcPorts: Uint16Array;
  /**
   * With `gro`: slot i holds a run of datagrams of `segSizes[i]` bytes each (the last may be
   * shorter), as the kernel's UDP GRO coalesced them; 0 = one datagram.
   */
  readonly segSizes: Uint16Array;
  readonly slots: number;
  readonly slotSize: number;
  readonly headroom: number;
}

/** A UDP socket's counters (documented in addon.ts). */
export type UdpSocketStats = NativeUdpStats;

/** A failed system call on a UDP socket. `errno` is the positive Linux errno; `address` is "ip:port". */
export class UdpSocketError extends Error {
  override readonly name = 'UdpSocketError';
  readonly code: string;
  readonly errno: number;
  readonly syscall: string;
  readonly address: string;

  constructor(message: string, code: string, errno: number, syscall: string, address: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.errno = errno;
    this.syscall = syscall;
    this.address = address;
  }
}

export const UDP_DEFAULT_SLOTS = 64;
export const UDP_DEFAULT_SLOT_SIZE = 2048;
export const UDP_DEFAULT_HEADROOM = 128;
export const UDP_DEFAULT_BUFFER_BYTES = 4 << 20;

const MAX_SLOTS = 65536;
const MAX_SLOT_SIZE = 1 << 17; // a whole 64 KiB datagram fits, with headroom
const MIN_CAPACITY = 64; // slotSize - headroom
const MAX_RING_BYTES = 1 << 30;
const MAX_BUFFER_BYTES = 1 << 30;

function wrapError(e: unknown): unknown {
  if (!isNativeSystemError(e, 'address')) return e;
  return new UdpSocketError(e.message, e.code, e.errno, e.syscall, e.address, { cause: e });
}

function checkInt(where: string, field: string, value: number, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`UdpSocket.bind(${where}): ${field} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

export class UdpSocket {
  /** Bound address and port (the kernel's choice when port 0 was asked). */
  readonly address: string;
  readonly port: number;
  /** Socket buffer sizes the kernel reports (twice what was set, as Linux does). */
  readonly rcvbuf: number;
  readonly sndbuf: number;
  readonly rx: UdpRxRing;
  /** Whether received slots may hold coalesced runs (`gro` asked and granted). */
  gro = false;
  /** Why UDP_GRO is off although asked for. */
  groError: UdpSocketError | undefined;

  readonly #sock: NativeUdpSocket;
  readonly #slotSize: number;
  readonly #headroom: number;
  readonly #distinct = new DistinctBuffers();
  #fd: number;
  #flowPorts = false;
  #gsoPorts: Uint16Array | undefined;

  private constructor(sock: NativeUdpSocket, bound: { address: string; port: number; fd: number; rcvbuf: number; sndbuf: number }, rx: UdpRxRing) {
    this.#sock = sock;
    this.address = bound.address;
    this.port = bound.port;
    this.rcvbuf = bound.rcvbuf;
    this.sndbuf = bound.sndbuf;
    this.#fd = bound.fd;
    this.rx = rx;
    this.#slotSize = rx.slotSize;
    this.#headroom = rx.headroom;
  }

  /**
   * Creates a non-blocking UDP socket bound to `ip:port` (port 0: the kernel picks; read `port`).
   * Throws UdpSocketError (code EADDRINUSE, EADDRNOTAVAIL, EACCES, EINVAL for a malformed address, ...)
   * when the kernel refuses, RangeError/TypeError for bad arguments.
   */
  static bind(ip: string, port: number, opts: UdpSocketOptions = {}): UdpSocket {
    if (typeof ip !== 'string') throw new TypeError(`UdpSocket.bind: ip must be a string, got ${typeof ip}`);
    const where = `${ip}:${String(port)}`;
    checkInt(where, 'port', port, 0, 65535);
    const slots = checkInt(where, 'slots', opts.slots ?? UDP_DEFAULT_SLOTS, 1, MAX_SLOTS);
    const slotSize = checkInt(where, 'slotSize', opts.slotSize ?? UDP_DEFAULT_SLOT_SIZE, MIN_CAPACITY, MAX_SLOT_SIZE);
    const headroom = checkInt(where, 'headroom', opts.headroom ?? UDP_DEFAULT_HEADROOM, 0, MAX_SLOT_SIZE);
    const batch = checkInt(where, 'batch', opts.batch ?? slots, 1, slots);
    const bufferBytes = checkInt(where, 'bufferBytes', opts.bufferBytes ?? UDP_DEFAULT_BUFFER_BYTES, 0, MAX_BUFFER_BYTES);
    if (slotSize - headroom < MIN_CAPACITY) {
      throw new RangeError(
        `UdpSocket.bind(${where}): headroom ${headroom} leaves ${slotSize - headroom} bytes of a ${slotSize}-byte slot; ` +
          `headroom must be below slotSize by at least ${MIN_CAPACITY}`,
      );
    }
    if (slots * slotSize > MAX_RING_BYTES) {
      throw new RangeError(`UdpSocket.bind(${where}): slots * slotSize = ${slots * slotSize} exceeds ${MAX_RING_BYTES} bytes`);
    }
    const { UdpSocket: Native } = loadAddon();
    const sock = new Native();
    let bound: ReturnType<NativeUdpSocket['bind']>;
    try {
      bound = sock.bind(ip, port, bufferBytes);
    } catch (e) {
      sock.close();
      throw wrapError(e);
    }
    try {
      const buffer = Buffer.alloc(slots * slotSize);
      const lengths = new Int32Array(slots);
      const srcIps = new Uint32Array(slots);
      const srcPorts = new Uint16Array(slots);
      const segSizes = new Uint16Array(slots);
      sock.setRing(buffer, lengths, srcIps, srcPorts, slots, slotSize, headroom, batch);
      let groError: UdpSocketError | undefined;
      if (opts.gro === true) {
        try {
          sock.enableGro(segSizes);
        } catch (e) {
          const err = wrapError(e);
          if (!(err instanceof UdpSocketError)) throw err;
          groError = err;
        }
      }
      const rx: UdpRxRing = Object.freeze({ buffer, lengths, srcIps, srcPorts, segSizes, slots, slotSize, headroom });
      const s = new UdpSocket(sock, bound, rx);
      s.groError = groError;
      s.gro = opts.gro === true && groError === undefined;
      return s;
    } catch (e) {
      sock.close();
      throw wrapError(e);
    }
  }

  /**
   * Lets `sendBatchIndexed` give each datagram its own source port: opens a send-only raw socket
   * (IPPROTO_RAW; needs CAP_NET_RAW) through which such datagrams leave, IPv4 + UDP headers written by
   * the addon (TTL 64, DF clear, UDP checksum 0, as Linux's vxlan sends). Receiving is unchanged.
   * Throws UdpSocketError (EPERM without the capability).
   */
  enableFlowPorts(): void {
    try {
      this.#sock.openFlowSender();
    } catch (e) {
      throw wrapError(e);
    }
    this.#flowPorts = true;
  }

  /**
   * Lets `sendBatchIndexed` hand the kernel runs of equal-size datagrams as one buffer (UDP GSO):
   * opens `count` send-only UDP sockets on ephemeral ports of the bound address, and returns their
   * ports; a run leaves from the socket of the source port it is given, so a flow keeps its port.
   * Throws UdpSocketError when the kernel refuses (no UDP_SEGMENT before Linux 4.18).
   */
  enableGso(count: number): Uint16Array {
    try {
      this.#gsoPorts = this.#sock.openGsoSenders(count);
    } catch (e) {
      throw wrapError(e);
    }
    return this.#gsoPorts;
  }

  /** The GSO sockets' ports (`enableGso`), or undefined. */
  get gsoPorts(): Uint16Array | undefined {
    return this.#gsoPorts;
  }

  /** Whether datagrams can leave from per-datagram source ports (`enableFlowPorts` succeeded). */
  get flowPorts(): boolean {
    return this.#flowPorts;
  }

  /** The file descriptor, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /** Offset in `rx.buffer` where the datagram of `slot` starts: slot*slotSize + headroom. */
  payloadOffset(slot: number): number {
    return slot * this.#slotSize + this.#headroom;
  }

  /**
   * Starts reading. `onBatch(count)` is called once per batch (one recvmmsg, usually); datagrams
   * 0..count-1 are in `rx` and valid only during the call. If the socket fails for good, reading stops
   * and `onError` gets a UdpSocketError; without `onError` it is thrown as an uncaught exception, as is
   * anything `onBatch` throws. Throws if closed or already started.
   */
  start(onBatch: (count: number) => void, onError?: (err: UdpSocketError) => void): void {
    this.#sock.start(onBatch, (e: unknown) => {
      const err = wrapError(e);
      if (onError !== undefined && err instanceof UdpSocketError) onError(err);
      else throw err;
    });
  }

  /** Stops reading; datagrams queue in the kernel (up to the receive buffer). Idempotent. */
  stop(): void {
    this.#sock.stop();
  }

  /**
   * Sends datagram i = `bufs[i].subarray(offs[i], offs[i] + lens[i])` to `dstIps[i]:dstPorts[i]` for
   * i < count, with sendmmsg (one call per 256). Returns how many the kernel took; the others are counted
   * in stats(). The kernel has copied every datagram when it returns: the buffers may be reused at once.
   */
  sendBatch(
    bufs: readonly Buffer[],
    offs: Uint32Array,
    lens: Uint32Array,
    dstIps: Uint32Array,
    dstPorts: Uint16Array | Uint32Array,
    count: number,
  ): number {
    if (!(count <= bufs.length)) throw new RangeError('sendBatch: count exceeds the arrays');
    const d = this.#distinct;
    d.build(bufs, count);
    try {
      return this.#sock.sendBatch(d.bufs, offs, lens, dstIps, dstPorts, count, d.idx);
    } finally {
      d.clear();
    }
  }

  /**
   * `sendBatch` with the buffers given as each distinct buffer once (`bufs`) and an index per datagram
   * (`bufIdx[i]`): what a caller that queues datagrams can build as it goes, with no per-call indexing.
   * With `srcPorts` (and `enableFlowPorts()` done) datagram i leaves from port `srcPorts[i]`; otherwise
   * from the bound port. With `gsoSizes[i]` > 0 (and `enableGso` done), entry i is a run of datagrams
   * of that size, sent as one buffer from the GSO socket of port `srcPorts[i]`.
   */
  sendBatchIndexed(
    bufs: ReadonlyArray<Buffer | undefined>,
    bufIdx: Uint32Array,
    offs: Uint32Array,
    lens: Uint32Array,
    dstIps: Uint32Array,
    dstPorts: Uint16Array | Uint32Array,
    count: number,
    srcPorts?: Uint16Array | Uint32Array,
    gsoSizes?: Uint16Array | Uint32Array,
  ): number {
    return this.#sock.sendBatch(bufs, offs, lens, dstIps, dstPorts, count, bufIdx, srcPorts, gsoSizes);
  }

  stats(): UdpSocketStats {
    return this.#sock.stats();
  }

  /** Stops reading and closes the socket. Idempotent. Later sends return 0 and count as txErrors. */
  close(): void {
    this.#sock.close();
    this.#fd = -1;
  }
}
