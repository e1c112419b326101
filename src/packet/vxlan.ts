/** VXLAN (RFC 7348): an 8-byte header in a UDP datagram, carrying an inner Ethernet frame. */
import { writeU32 } from './bytes.js';
import { ParseError } from './errors.js';
import { HeaderView, checkRegion } from './internal.js';

export const VXLAN_HLEN = 8;
/** The "VNI valid" flag; the only flag RFC 7348 defines. */
export const VXLAN_FLAG_I = 0x08;
/**
 * Remote checksum offload (RCO, draft-herbert-vxlan-rco; Linux's `remcsumtx`/`remcsumrx`): the C bit,
 * in the second byte of the flags word (bit 21 of it). With it set, the reserved byte after the VNI
 * says where the inner packet's L4 checksum starts (`(byte & 0x7f) << 1` bytes from the inner
 * Ethernet header) and which field it goes to (bit 0x80: UDP's, at +6; clear: TCP's, at +16); the
 * field itself holds the pseudo-header sum, as a CHECKSUM_PARTIAL packet's does, and the receiver
 * finishes it (the outer UDP checksum covers the bytes).
 */
export const VXLAN_FLAG_RCO = 0x20;
/** The RCO byte's UDP bit (clear: the TCP checksum field). */
export const VXLAN_RCO_UDP = 0x80;
/** Largest checksum start RCO can say (7 bits of start / 2). */
export const VXLAN_RCO_MAX_START = 0x7f << 1;

/** Bytes VXLAN adds in front of an inner IP packet: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const VXLAN_OVERHEAD = 50;
/** UDP port Linux (and flannel) use by default. */
export const VXLAN_PORT_LINUX = 8472;
/** IANA-assigned UDP port. */
export const VXLAN_PORT_IANA = 4789;

// Field offsets.
const FLAGS = 0;
const VNI = 4; // 24 bits, then a reserved byte

/**
 * Read-only view of a VXLAN header at `buf[off .. off + len)` (the UDP payload). `reset`: len >= 8
 * (`Truncated`), I flag set (`BadFlags`). Reserved bits are ignored on receipt, as RFC 7348 says.
 */
export class VxlanView extends HeaderView {
  static readonly protocol = 'VXLAN';

  protected override check(buf: Buffer, off: number, len: number): ParseError {
    if (len < VXLAN_HLEN) return ParseError.Truncated;
    if ((buf[off + FLAGS] & VXLAN_FLAG_I) === 0) return ParseError.BadFlags;
    return ParseError.Ok;
  }

  /** The flags byte. */
  get flags(): number {
    return this.buf[this.off + FLAGS];
  }
  /** The 24-bit VXLAN network identifier. */
  get vni(): number {
    const b = this.buf;
    const o = this.off + VNI;
    return (b[o]! << 16) | (b[o + 1]! << 8) | b[o + 2]!;
  }
  /** Absolute offset of the inner Ethernet frame in `buf`. */
  get payloadOffset(): number {
    return this.off + VXLAN_HLEN;
  }
  get payloadLength(): number {
    return this.len - VXLAN_HLEN;
  }
}

/** The RCO byte (the reserved byte after the VNI) of the VXLAN header at `off`, or -1 when its C bit is clear. */
export function vxlanRco(buf: Buffer, off: number): number {
  return (buf[off + 1]! & VXLAN_FLAG_RCO) === 0 ? -1 : buf[off + VNI + 3]!;
}

/** The RCO byte for a checksum starting `start` bytes into the inner frame (even, at most 254), of TCP or UDP. */
export function vxlanRcoByte(start: number, udp: boolean): number {
  return ((start >>> 1) & 0x7f) | (udp ? VXLAN_RCO_UDP : 0);
}

/** Where an RCO byte (`vxlanRco`) says the checksum starts, in bytes from the inner Ethernet header. */
export function vxlanRcoStart(rco: number): number {
  return (rco & 0x7f) << 1;
}

/** Sets the C bit and the RCO byte of the VXLAN header at `off` (see `vxlanRcoByte`). */
export function setVxlanRco(buf: Buffer, off: number, start: number, udp: boolean): void {
  buf[off + 1] = buf[off + 1]! | VXLAN_FLAG_RCO;
  buf[off + VNI + 3] = vxlanRcoByte(start, udp);
}

/** Writable view. */
export class VxlanViewMut extends VxlanView {
  /** Writes the VNI (24 bits) and keeps the reserved byte after it. */
  setVni(vni: number): void {
    const o = this.off + VNI;
    writeU32(this.buf, o, ((vni & 0xffffff) << 8) | this.buf[o + 3]!);
  }
  setFlags(flags: number): void {
    this.buf[this.off + FLAGS] = flags & 0xff;
  }
}

/** Writes an 8-byte header with the I flag, the 24-bit `vni` and every reserved bit zero. Returns `VXLAN_HLEN`. */
export function writeVxlanHeader(buf: Buffer, off: number, vni: number): number {
  checkRegion(buf, off, VXLAN_HLEN, 'writeVxlanHeader');
  writeU32(buf, off + FLAGS, VXLAN_FLAG_I << 24);
  writeU32(buf, off + VNI, (vni & 0xffffff) << 8);
  return VXLAN_HLEN;
}

export interface VxlanRepr {
  vni: number;
}

export function parseVxlan(view: VxlanView): VxlanRepr {
  return { vni: view.vni };
}

/** Bytes `emitVxlan` writes. */
export function vxlanBufferLen(_repr?: VxlanRepr): number {
  return VXLAN_HLEN;
}

export function emitVxlan(repr: VxlanRepr, buf: Buffer, off: number): number {
  return writeVxlanHeader(buf, off, repr.vni);
}
