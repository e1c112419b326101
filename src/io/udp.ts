import dgram from 'node:dgram';

import { ipv4ToString, tryParseIpv4 } from '../packet/addr.js';
import { UdpSocket, UdpSocketError, type UdpRxRing, type UdpSocketOptions, type UdpSocketStats } from './udpsocket.js';

/**
 * VXLAN transport on Node's `dgram`: one UDP socket bound to the VXLAN port. The source port is the
 * socket's (receivers accept any). `dgram` may keep a reference to a buffer it could not send at once,
 * so outgoing packets are copied first: the data plane reuses its buffers after each batch.
 */
export class DgramTransport {
  private readonly sock: dgram.Socket;
  private readonly names = new Map<number, string>();
  sent = 0;
  sendErrors = 0;

  private constructor(sock: dgram.Socket) {
    this.sock = sock;
  }

  static async bind(port: number, address: string | undefined, onMessage: (buf: Buffer, srcIp: number, srcPort: number) => void): Promise<DgramTransport> {
    const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(port, address, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    const t = new DgramTransport(sock);
    sock.on('message', (msg, rinfo) => onMessage(msg, tryParseIpv4(rinfo.address) >>> 0, rinfo.port));
    sock.on('error', () => t.sendErrors++);
    return t;
  }

  send(buf: Buffer, off: number, len: number, dstIp: number, dstPort: number, _srcPort: number): boolean {
    let name = this.names.get(dstIp);
    if (name === undefined) {
      name = ipv4ToString(dstIp);
      this.names.set(dstIp, name);
    }
    const copy = Buffer.allocUnsafe(len);
    buf.copy(copy, 0, off, off + len);
    this.sock.send(copy, 0, len, dstPort, name, (err) => {
      if (err) this.sendErrors++;
    });
    this.sent++;
    return true;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.sock.close(() => resolve()));
  }
}

export interface NativeUdpTransportOptions extends UdpSocketOptions {
  /** Datagrams `send` queues before it flushes by itself (default 256, one sendmmsg). */
  txQueue?: number;
  /**
   * Flush what is still queued in a microtask at the end of the current JS callback (default true): a
   * safety net so nothing waits for the next batch, not a substitute for calling flush() at the end of
   * each batch.
   */
  autoFlush?: boolean;
  /** The socket failed for good and stopped reading (without it, the error is an uncaught exception). */
  onError?: (err: UdpSocketError) => void;
  /**
   * Send each datagram from the source port `send` is given (default false): opens a raw socket for
   * sending (UdpSocket.enableFlowPorts). When the kernel refuses it (no CAP_NET_RAW), datagrams leave
   * from the bound port and `flowPortsError` says why.
   */
  flowPorts?: boolean;
  /**
   * UDP GSO send sockets to open (default 0: none): with them `sendSegmented` hands the kernel a run
   * of equal-size datagrams as one buffer. Their ephemeral ports are the transport's `sourcePorts`:
   * with GSO every datagram of a flow, run or not, leaves from one of them. When the kernel refuses
   * (no UDP_SEGMENT), `gsoError` says why and `sendSegmented` is unavailable.
   */
  gsoSockets?: number;
}

const DEFAULT_TX_QUEUE = 256;
/** Distinct-buffer searches in send() stop after this many; later buffers are appended (correct, one more lookup). */
const MAX_BUF_SEARCH = 8;

/**
 * VXLAN transport on the addon's batched UDP socket (native-bindings/udp.cc): recvmmsg into a receive
 * ring and sendmmsg from the caller's buffers, no copy in JavaScript and no allocation per packet.
 *
 * Receive: `onBatch(ring, count)` is called once per batch. Datagram i (the VXLAN header and inner
 * frame) is `ring.buffer[payloadOffset(i), payloadOffset(i) + ring.lengths[i])`, payloadOffset(i) =
 * i*slotSize + headroom, from `ring.srcIps[i]:ring.srcPorts[i]`. Process it in place: the headroom and
 * the slot are the caller's until `onBatch` returns (the router may write headers before the inner
 * packet and queue frames by reference), and the addon reads the next batch into the same slots only
 * after that, so every queue holding slot references must be flushed before `onBatch` returns.
 *
 * Send: `send()` queues a reference (buffer, offset, length, destination), no copy, and returns true;
 * `flush()` hands the queue to sendmmsg (one system call per 256 datagrams). Unlike DgramTransport, the
 * bytes must therefore stay untouched until `flush()`: call it once at the end of every data-plane batch,
 * before that batch's buffers (a receive ring, the scratch pool) are reused. A full queue is flushed
 * first. sendmmsg copies the data, so after `flush()` everything may be reused. Datagrams the kernel
 * refuses at flush are counted in `stats()` (txDropped, txErrors), not reported by `send()`.
 *
 * Source port: with `flowPorts`, each datagram leaves from the port `send` is given (VXLAN's per-flow
 * port, RFC 7348 section 5, so the underlay's ECMP hashing spreads the flows between two nodes as it
 * does for Linux's vxlan); the addon then sends through a raw socket with the IPv4 + UDP headers it
 * writes. Without it (or when the raw socket is refused) they leave from the bound port, which every
 * receiver accepts too, as DgramTransport does.
 */
export class NativeUdpTransport {
  readonly socket: UdpSocket;
  readonly rx: UdpRxRing;

  private readonly cap: number;
  private readonly autoFlush: boolean;
  private readonly bufs: Array<Buffer | undefined> = [];
  private nbufs = 0;
  private lastBuf: Buffer | undefined;
  private lastIdx = 0;
  private readonly idx: Uint32Array;
  private readonly offs: Uint32Array;
  private readonly lens: Uint32Array;
  private readonly dstIps: Uint32Array;
  private readonly dstPorts: Uint16Array;
  private readonly srcPorts: Uint16Array;
  private readonly gsoSizes: Uint16Array;
  /** Why per-flow source ports are off although asked for (the raw socket was refused). */
  flowPortsError: UdpSocketError | undefined;
  /** Why UDP GSO is off although asked for. */
  gsoError: UdpSocketError | undefined;
  /** Runs handed to the kernel as one buffer (`sendSegmented`), and the datagrams in them. */
  gsoRuns = 0;
  gsoDatagrams = 0;
  private count = 0;
  private flushQueued = false;
  private closed = false;
  private readonly flushTask = (): void => {
    this.flushQueued = false;
    this.flush();
  };

  private constructor(socket: UdpSocket, cap: number, autoFlush: boolean) {
    this.socket = socket;
    this.rx = socket.rx;
    this.cap = cap;
    this.autoFlush = autoFlush;
    this.idx = new Uint32Array(cap);
    this.offs = new Uint32Array(cap);
    this.lens = new Uint32Array(cap);
    this.dstIps = new Uint32Array(cap);
    this.dstPorts = new Uint16Array(cap);
    this.srcPorts = new Uint16Array(cap);
    this.gsoSizes = new Uint16Array(cap);
  }

  /**
   * Binds `address:port` (default 0.0.0.0) and starts reading; `onBatch(ring, count)` gets every batch.
   * Throws UdpSocketError (EADDRINUSE, EADDRNOTAVAIL, ...) when the kernel refuses.
   */
  static async bind(
    port: number,
    address: string | undefined,
    onBatch: (ring: UdpRxRing, count: number) => void,
    opts: NativeUdpTransportOptions = {},
  ): Promise<NativeUdpTransport> {
    const cap = opts.txQueue ?? DEFAULT_TX_QUEUE;
    if (!Number.isInteger(cap) || cap < 1 || cap > 65536) {
      throw new RangeError(`NativeUdpTransport.bind: txQueue must be an integer in [1, 65536], got ${String(cap)}`);
    }
    const socket = UdpSocket.bind(address ?? '0.0.0.0', port, opts);
    const t = new NativeUdpTransport(socket, cap, opts.autoFlush ?? true);
    if (opts.flowPorts) {
      try {
        socket.enableFlowPorts();
      } catch (e) {
        if (!(e instanceof UdpSocketError)) {
          socket.close();
          throw e;
        }
        t.flowPortsError = e;
      }
    }
    if ((opts.gsoSockets ?? 0) > 0 && t.flowPortsError === undefined) {
      try {
        socket.enableGso(opts.gsoSockets!);
      } catch (e) {
        if (!(e instanceof UdpSocketError)) {
          socket.close();
          throw e;
        }
        t.gsoError = e;
      }
    }
    const ring = socket.rx;
    try {
      socket.start((count) => onBatch(ring, count), opts.onError);
    } catch (e) {
      socket.close();
      throw e;
    }
    return t;
  }

  /** Bound address and port. */
  get address(): string {
    return this.socket.address;
  }

  get port(): number {
    return this.socket.port;
  }

  /** Offset of datagram `slot` in `rx.buffer`. */
  payloadOffset(slot: number): number {
    return this.socket.payloadOffset(slot);
  }

  /** Whether datagrams leave from their per-flow source ports. */
  get flowPorts(): boolean {
    return this.socket.flowPorts;
  }

  /**
   * The source ports datagrams leave from when a flow must keep one port whether its datagrams go
   * alone or in runs: the GSO sockets' ports (undefined without GSO: any port, see `send`).
   */
  get sourcePorts(): Uint16Array | undefined {
    return this.socket.gsoPorts;
  }

  /** Datagrams queued for the next flush. */
  get queued(): number {
    return this.count;
  }

  /**
   * Queues `buf[off, off+len)` for `dstIp:dstPort` (host-order number), from `srcPort` when `flowPorts`
   * (see the class comment). The bytes must stay untouched until flush(). false only once closed.
   */
  send(buf: Buffer, off: number, len: number, dstIp: number, dstPort: number, srcPort: number): boolean {
    if (this.closed) return false;
    this.queue(buf, off, len, dstIp, dstPort, srcPort, 0);
    return true;
  }

  /**
   * Queues a run of datagrams of `segSize` bytes each (the last may be shorter) laid end to end in
   * `buf[off, off+len)`, to leave as one buffer that the kernel cuts (UDP GSO), from `srcPort`, which
   * must be one of `sourcePorts`. Like `send`, the bytes must stay untouched until flush(). false
   * when closed or without GSO (then send the datagrams one by one).
   */
  sendSegmented(buf: Buffer, off: number, len: number, segSize: number, dstIp: number, dstPort: number, srcPort: number): boolean {
    if (this.closed || this.socket.gsoPorts === undefined) return false;
    this.queue(buf, off, len, dstIp, dstPort, srcPort, len > segSize ? segSize : 0);
    this.gsoRuns++;
    this.gsoDatagrams += Math.ceil(len / segSize);
    return true;
  }

  /** One entry of the send queue (`gso` 0: a single datagram). */
  private queue(buf: Buffer, off: number, len: number, dstIp: number, dstPort: number, srcPort: number, gso: number): void {
    if (this.count === this.cap) this.flush();
    if (buf !== this.lastBuf || this.nbufs === 0) this.indexBuffer(buf);
    const i = this.count++;
    this.idx[i] = this.lastIdx;
    this.offs[i] = off;
    this.lens[i] = len;
    this.dstIps[i] = dstIp;
    this.dstPorts[i] = dstPort;
    this.srcPorts[i] = srcPort;
    this.gsoSizes[i] = gso;
    if (this.autoFlush && !this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flushTask);
    }
  }

  private indexBuffer(buf: Buffer): void {
    const bufs = this.bufs;
    const n = this.nbufs;
    const limit = n < MAX_BUF_SEARCH ? n : MAX_BUF_SEARCH;
    let j = 0;
    while (j < limit && bufs[j] !== buf) j++;
    if (j === limit) {
      bufs[n] = buf;
      j = n;
      this.nbufs = n + 1;
    }
    this.lastBuf = buf;
    this.lastIdx = j;
  }

  /** Sends everything queued (sendmmsg; the kernel copies it). Returns how many the kernel took. */
  flush(): number {
    const count = this.count;
    if (count === 0) return 0;
    const sent = this.socket.sendBatchIndexed(this.bufs, this.idx, this.offs, this.lens, this.dstIps, this.dstPorts, count, this.srcPorts, this.socket.gsoPorts !== undefined ? this.gsoSizes : undefined);
    const bufs = this.bufs;
    for (let j = 0; j < this.nbufs; j++) bufs[j] = undefined;
    this.nbufs = 0;
    this.lastBuf = undefined;
    this.count = 0;
    return sent;
  }

  stats(): UdpSocketStats {
    return this.socket.stats();
  }

  /** Sends what is queued, stops reading and closes the socket. Idempotent. */
  close(): Promise<void> {
    if (!this.closed) {
      this.flush();
      this.closed = true;
      this.socket.close();
    }
    return Promise.resolve();
  }
}
