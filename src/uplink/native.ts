/**
 * Typed access to the two native packages the uplink uses: `cap` (libpcap capture + injection) and
 * `raw-socket` (a raw IPv4 socket). Both are CommonJS without type declarations; they are loaded
 * lazily with `createRequire`, so importing the uplink on a machine where they are not built fails
 * only when an uplink is opened, and no ambient `declare module` leaks into the rest of the program.
 *
 * Two things about `cap` 0.2.1 (src/binding.cc) shape this module:
 * - The binding calls `this.emit('packet', nbytes, truncated)` for every packet. EventEmitter's
 *   `emit(type, ...args)` allocates an argument array per call, so `Capture` overrides `emit` with
 *   fixed parameters. The binding looks `emit` up on the new object while it is being constructed, so
 *   the override must live on a subclass prototype (setting it on the instance afterwards is too late).
 * - A `Cap` object must never be garbage-collected: its destructor calls `uv_poll_stop` on a poll
 *   handle that was never initialised when `open()` failed (this aborts the process), and after a
 *   successful `open()` + `close()` the poll handle is stopped but never `uv_close`d, so freeing it
 *   leaves a dangling entry in libuv's handle queue. Every `Cap` made here is therefore kept in
 *   `pinned` for the life of the process (a few hundred bytes each; the libpcap socket and its ring
 *   are released by `close()`).
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** `cap.Cap` as the binding defines it (only what the uplink uses). */
interface CapHandle {
  /** Opens `device` with a BPF `filter`; returns the link type ('ETHERNET', ...). Throws on failure. */
  open(device: string, filter: string, bufSize: number, buffer: Buffer): string;
  /** Stops capturing and closes the libpcap handle; false when it was not open. */
  close(): boolean;
  /** `pcap_sendpacket(buffer[0 .. nBytes))`; throws with libpcap's message on failure. */
  send(buffer: Buffer, nBytes?: number): void;
  emit(type: string | symbol, ...args: unknown[]): boolean;
}
type CapCtor = new () => CapHandle;

/** `raw-socket`'s native `SocketWrap` (the high-level `Socket` queues each send in a new object). */
interface RawSocketWrap {
  /** Synchronous `sendto`; calls `cb(bytes)` before returning, throws `Error(strerror)` on failure. */
  send(buf: Buffer, offset: number, length: number, address: string, cb: (bytes: number) => void): void;
}
export interface RawSocket {
  readonly wrap: RawSocketWrap;
  setOption(level: number, option: number, value: number): void;
  close(): void;
  on(event: 'error' | 'close', fn: (err?: Error) => void): void;
}
interface RawSocketModule {
  createSocket(opts: { protocol: number; addressFamily?: number }): RawSocket;
  SocketLevel: { SOL_SOCKET: number; IPPROTO_IP: number };
  SocketOption: { SO_SNDBUF: number; IP_HDRINCL: number };
}

/** Called by `Capture` for every packet: `nbytes` were copied into the buffer given to `open`. */
export type FrameHandler = (nbytes: number, truncated: boolean) => void;

/** A libpcap capture on one device. */
export interface Capture {
  readonly linkType: string;
  send(buffer: Buffer, nBytes: number): void;
  close(): void;
}

let capCtor: CapCtor | undefined;
let captureClass: (new (onFrame: FrameHandler) => CapHandle & { onFrame: FrameHandler }) | undefined;
let rawModule: RawSocketModule | undefined;
const pinned: CapHandle[] = [];

function loadCapture() {
  if (captureClass === undefined) {
    capCtor = (require('cap') as { Cap: CapCtor }).Cap;
    captureClass = class extends capCtor {
      onFrame: FrameHandler;
      constructor(onFrame: FrameHandler) {
        super();
        this.onFrame = onFrame;
      }
      override emit(type: string | symbol, nbytes?: unknown, truncated?: unknown): boolean {
        if (type === 'packet') this.onFrame(nbytes as number, truncated as boolean);
        return true;
      }
    };
  }
  return captureClass;
}

/**
 * Opens a capture on `device` with `filter`; every packet is copied into `rxBuf` (which must stay
 * alive and unchanged in size) and reported to `onFrame`. Throws the binding's error message.
 */
export function openCapture(device: string, filter: string, bufSize: number, rxBuf: Buffer, onFrame: FrameHandler): Capture {
  const Cls = loadCapture();
  const cap = new Cls(onFrame);
  pinned.push(cap);
  // On failure the handle is left as it is: closing it would hit the uninitialised poll handle.
  const linkType = cap.open(device, filter, bufSize, rxBuf);
  let open = true;
  return {
    linkType,
    send: (buffer, nBytes) => cap.send(buffer, nBytes),
    close: () => {
      if (open) {
        open = false;
        cap.close();
      }
    },
  };
}

export const IPPROTO_RAW = 255;

/** A raw IPv4 socket with IPPROTO_RAW (IP_HDRINCL implied): sends only, never receives. */
export function openRawSocket(): { sock: RawSocket; mod: RawSocketModule } {
  rawModule ??= require('raw-socket') as RawSocketModule;
  const sock = rawModule.createSocket({ protocol: IPPROTO_RAW });
  return { sock, mod: rawModule };
}
