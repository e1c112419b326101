/** Ethernet II frames (no FCS). VLAN tags are not parsed: 0x8100 is just another EtherType. */
import { readU16, readU32, writeU16 } from './bytes.js';
import { isBroadcastMac, macToString, parseMac, writeMac } from './addr.js';
import { ParseError } from './errors.js';
import { HeaderView, checkRegion } from './internal.js';

export const ETH_HLEN = 14;

/** Known EtherTypes; any other value is kept as a plain number. */
export const EtherType = { IPv4: 0x0800, ARP: 0x0806, IPv6: 0x86dd, VLAN: 0x8100 } as const;
export type EtherType = (typeof EtherType)[keyof typeof EtherType];

// Field offsets.
const DST = 0;
const SRC = 6;
const ETHERTYPE = 12;

/**
 * Read-only view of an Ethernet frame at `buf[off .. off + len)`. Reusable: `reset` re-points it and
 * returns a `ParseError` (0 = ok); after an ok `reset` no accessor can fail. After a failed `reset`
 * the accessors are meaningless (but `buf`/`off`/`len` are stored: see index.ts).
 */
export class EthernetView extends HeaderView {
  static readonly protocol = 'Ethernet';

  protected override check(_buf: Buffer, _off: number, len: number): ParseError {
    if (len < ETH_HLEN) return ParseError.Truncated;
    return ParseError.Ok;
  }

  get dstHi(): number {
    return readU16(this.buf, this.off + DST);
  }
  get dstLo(): number {
    return readU32(this.buf, this.off + DST + 2);
  }
  get srcHi(): number {
    return readU16(this.buf, this.off + SRC);
  }
  get srcLo(): number {
    return readU32(this.buf, this.off + SRC + 2);
  }
  get etherType(): number {
    return readU16(this.buf, this.off + ETHERTYPE);
  }
  /** Destination is ff:ff:ff:ff:ff:ff. */
  get isBroadcast(): boolean {
    return isBroadcastMac(this.dstHi, this.dstLo);
  }
  /** Destination has the group bit set (true for broadcast too). */
  get isMulticast(): boolean {
    return (this.buf[this.off + DST] & 0x01) !== 0;
  }
  /** Absolute offset of the payload in `buf`. */
  get payloadOffset(): number {
    return this.off + ETH_HLEN;
  }
  get payloadLength(): number {
    return this.len - ETH_HLEN;
  }
}

/** Writable view; setters write the field and nothing else. */
export class EthernetViewMut extends EthernetView {
  setDst(hi: number, lo: number): void {
    writeMac(this.buf, this.off + DST, hi, lo);
  }
  setSrc(hi: number, lo: number): void {
    writeMac(this.buf, this.off + SRC, hi, lo);
  }
  setEtherType(t: number): void {
    writeU16(this.buf, this.off + ETHERTYPE, t);
  }
}

/**
 * Writes a 14-byte Ethernet header from numbers (allocation-free; for the data path).
 * Returns `ETH_HLEN`.
 */
export function writeEthernetHeader(
  buf: Buffer,
  off: number,
  dstHi: number,
  dstLo: number,
  srcHi: number,
  srcLo: number,
  etherType: number,
): number {
  checkRegion(buf, off, ETH_HLEN, 'writeEthernetHeader');
  writeMac(buf, off + DST, dstHi, dstLo);
  writeMac(buf, off + SRC, srcHi, srcLo);
  writeU16(buf, off + ETHERTYPE, etherType);
  return ETH_HLEN;
}

/** Plain value form of an Ethernet header, for building frames and in tests. */
export interface EthernetRepr {
  dst: string;
  src: string;
  etherType: number;
}

export function parseEthernet(view: EthernetView): EthernetRepr {
  return {
    dst: macToString(view.dstHi, view.dstLo),
    src: macToString(view.srcHi, view.srcLo),
    etherType: view.etherType,
  };
}

/** Bytes `emitEthernet` writes. */
export function ethernetBufferLen(_repr?: EthernetRepr): number {
  return ETH_HLEN;
}

/** Writes the header at `buf[off]`; returns bytes written (`ETH_HLEN`). Throws on a bad MAC string. */
export function emitEthernet(repr: EthernetRepr, buf: Buffer, off: number): number {
  const dst = parseMac(repr.dst);
  const src = parseMac(repr.src);
  return writeEthernetHeader(buf, off, dst.hi, dst.lo, src.hi, src.lo, repr.etherType);
}
