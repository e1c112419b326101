/**
 * Synthetic but valid frames, built with the wire layer's writers, in a receive ring laid out like the
 * device layer's (`src/io/tuntap.ts` defaults: 64 slots of 2048 bytes, 128 bytes of headroom).
 */
import type { RxRingLike } from '../../src/dataplane/dataplane.js';
import { DEFAULT_HEADROOM, DEFAULT_SLOTS, DEFAULT_SLOT_SIZE } from '../../src/io/tuntap.js';
import {
  emitTcp,
  ETH_HLEN,
  EtherType,
  IpProtocol,
  IPV4_MIN_HLEN,
  TCP_MIN_HLEN,
  TcpFlags,
  UDP_HLEN,
  VXLAN_HLEN,
  writeEthernetHeader,
  writeIpv4Header,
  writeUdpHeader,
  writeVxlanHeader,
} from '../../src/packet/index.js';
import type { Mac } from './node.js';

export const BATCH = DEFAULT_SLOTS;

export type L4 = 'udp' | 'tcp';

export interface FlowFrame {
  srcMac: Mac;
  dstMac: Mac;
  srcIp: number;
  dstIp: number;
  l4: L4;
  sport: number;
  dport: number;
  /** IPv4 identification (and TCP sequence seed). */
  ident: number;
  ttl?: number;
  /** TCP flags (default ACK|PSH). */
  tcpFlags?: number;
}

/** Smallest frame each L4 fits in: Ethernet + IPv4 + UDP or TCP header. */
export function minFrameBytes(l4: L4): number {
  return ETH_HLEN + IPV4_MIN_HLEN + (l4 === 'udp' ? UDP_HLEN : TCP_MIN_HLEN);
}

/**
 * Writes an Ethernet/IPv4/UDP-or-TCP frame of exactly `frameBytes` at `buf[off]`: payload first (the
 * checksums cover it), then headers with correct IPv4 and L4 checksums. TCP segments are ACK|PSH (unless
 * `tcpFlags` says otherwise) with DF, UDP datagrams have no DF. Returns `frameBytes`.
 */
export function writeFrame(buf: Buffer, off: number, f: FlowFrame, frameBytes: number): number {
  const hdr = minFrameBytes(f.l4);
  if (frameBytes < hdr) throw new RangeError(`a ${f.l4} frame needs at least ${hdr} bytes, not ${frameBytes}`);
  const ipOff = off + ETH_HLEN;
  const l4Off = ipOff + IPV4_MIN_HLEN;
  const payloadOff = off + hdr;
  const payload = frameBytes - hdr;
  for (let i = 0; i < payload; i++) buf[payloadOff + i] = (i * 7 + f.ident) & 0xff;
  writeEthernetHeader(buf, off, f.dstMac.hi, f.dstMac.lo, f.srcMac.hi, f.srcMac.lo, EtherType.IPv4);
  if (f.l4 === 'udp') {
    writeUdpHeader(buf, l4Off, f.sport, f.dport, payload, f.srcIp, f.dstIp);
    writeIpv4Header(buf, ipOff, f.srcIp, f.dstIp, IpProtocol.UDP, f.ttl ?? 64, UDP_HLEN + payload, f.ident, false);
  } else {
    emitTcp(
      { srcPort: f.sport, dstPort: f.dport, seq: Math.imul(f.ident, 1460) >>> 0, ack: 0x10000 + f.ident, flags: f.tcpFlags ?? (TcpFlags.ACK | TcpFlags.PSH), window: 502, payloadLength: payload },
      buf,
      l4Off,
      f.srcIp,
      f.dstIp,
    );
    writeIpv4Header(buf, ipOff, f.srcIp, f.dstIp, IpProtocol.TCP, f.ttl ?? 64, TCP_MIN_HLEN + payload, f.ident, true);
  }
  return frameBytes;
}

/** A VXLAN UDP payload as a peer sends it: VXLAN header (I flag, `vni`) + inner frame. Returns its length. */
export function writeVxlanPayload(buf: Buffer, off: number, vni: number, inner: FlowFrame, frameBytes: number): number {
  writeVxlanHeader(buf, off, vni);
  return VXLAN_HLEN + writeFrame(buf, off + VXLAN_HLEN, inner, frameBytes);
}

/**
 * A receive ring as `Dataplane.receiveRing` takes it, plus a pristine copy of every slot in the same
 * buffer so that the bytes the data path rewrites in place (TTL, checksum, Ethernet/VXLAN headers) can be
 * put back before the next batch with one `copyWithin` per frame (a memmove, no allocation).
 * The buffer is pre-filled with junk (0xa5) so nothing relies on zeroed memory.
 */
export class FrameRing implements RxRingLike {
  readonly buffer: Buffer;
  readonly lengths: Int32Array;
  readonly slotSize = DEFAULT_SLOT_SIZE;
  readonly headroom = DEFAULT_HEADROOM;
  /** Byte distance from a slot to its pristine copy. */
  private readonly pristine: number;
  private sealed = false;

  constructor(
    readonly slots: number,
    /** Bytes from the start of each frame that `restore()` puts back (0: the path never writes to them). */
    readonly restoreBytes: number,
  ) {
    this.pristine = slots * this.slotSize;
    this.buffer = Buffer.alloc(2 * this.pristine, 0xa5);
    this.lengths = new Int32Array(slots);
  }

  frameOffset(i: number): number {
    return i * this.slotSize + this.headroom;
  }

  /** Fills slot `i` with `write(buf, off)`, which returns the frame length. */
  fill(i: number, write: (buf: Buffer, off: number) => number): void {
    if (this.sealed) throw new Error('FrameRing: fill after seal');
    const len = write(this.buffer, this.frameOffset(i));
    if (len > this.slotSize - this.headroom) throw new RangeError(`frame of ${len} bytes does not fit a ${this.slotSize}-byte slot`);
    this.lengths[i] = len;
  }

  /** Takes the pristine copy of every slot; call once all slots are filled. */
  seal(): void {
    this.buffer.copy(this.buffer, this.pristine, 0, this.pristine);
    this.sealed = true;
  }

  /** The pristine bytes of frame `i` (a view; for verification, not the data path). */
  original(i: number): Buffer {
    const o = this.pristine + this.frameOffset(i);
    return this.buffer.subarray(o, o + this.lengths[i]!);
  }

  /** Puts back the first `restoreBytes` of the first `count` frames. The cost is measured separately. */
  restore(count: number): void {
    const buf = this.buffer;
    const n = this.restoreBytes;
    const p = this.pristine;
    const step = this.slotSize;
    for (let i = 0, off = this.headroom; i < count; i++, off += step) buf.copyWithin(off, off + p, off + p + n);
  }

  /** Puts back every byte of every slot (after verification, which may look at anything). */
  restoreAll(): void {
    this.buffer.copy(this.buffer, 0, this.pristine, 2 * this.pristine);
  }
}
