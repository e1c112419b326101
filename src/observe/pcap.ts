/**
 * Capture file writers: classic pcap (microsecond timestamps, one link type) and pcapng (a section
 * header, one interface description with its name and link type, enhanced packet blocks with the
 * direction in `epb_flags`, and an interface statistics block with the packets lost at the end), both
 * little-endian, as tcpdump, tshark and Wireshark read them. Control plane only: each call returns a
 * new Buffer to write.
 */

/** The classic pcap global header (24 bytes). */
export function pcapHeader(linkType: number, snaplen: number): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt32LE(0xa1b2c3d4, 0); // magic: microsecond timestamps
  b.writeUInt16LE(2, 4);
  b.writeUInt16LE(4, 6);
  b.writeInt32LE(0, 8); // thiszone
  b.writeUInt32LE(0, 12); // sigfigs
  b.writeUInt32LE(snaplen, 16);
  b.writeUInt32LE(linkType, 20);
  return b;
}

/** One classic pcap record: 16-byte header and the captured bytes. */
export function pcapRecord(epochMs: number, data: Buffer, origLen: number): Buffer {
  const b = Buffer.alloc(16 + data.length);
  const us = Math.round(epochMs * 1000);
  b.writeUInt32LE(Math.floor(us / 1e6), 0);
  b.writeUInt32LE(us % 1e6, 4);
  b.writeUInt32LE(data.length, 8);
  b.writeUInt32LE(origLen, 12);
  data.copy(b, 16);
  return b;
}

function pad4(n: number): number {
  return (n + 3) & ~3;
}

/** A pcapng option: code, length, value padded to 4 bytes. */
function option(code: number, value: Buffer): Buffer {
  const b = Buffer.alloc(4 + pad4(value.length));
  b.writeUInt16LE(code, 0);
  b.writeUInt16LE(value.length, 2);
  value.copy(b, 4);
  return b;
}

function block(type: number, body: Buffer): Buffer {
  const len = 12 + body.length;
  const b = Buffer.alloc(len);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(len, 4);
  body.copy(b, 8);
  b.writeUInt32LE(len, len - 4);
  return b;
}

const END_OF_OPTIONS = Buffer.alloc(4);

/** pcapng: the section header block and the interface description block (interface 0). */
export function pcapngHeader(linkType: number, snaplen: number, ifName: string, userAppl = 'podnet capture'): Buffer {
  const shbBody = Buffer.concat([
    (() => {
      const h = Buffer.alloc(16);
      h.writeUInt32LE(0x1a2b3c4d, 0); // byte-order magic
      h.writeUInt16LE(1, 4);
      h.writeUInt16LE(0, 6);
      h.writeInt32LE(-1, 8); // section length unknown (64 bits of ones)
      h.writeInt32LE(-1, 12);
      return h;
    })(),
    option(4, Buffer.from(userAppl)), // shb_userappl
    END_OF_OPTIONS,
  ]);
  const idbHead = Buffer.alloc(8);
  idbHead.writeUInt16LE(linkType, 0);
  idbHead.writeUInt16LE(0, 2);
  idbHead.writeUInt32LE(snaplen, 4);
  const idbBody = Buffer.concat([idbHead, option(2, Buffer.from(ifName)), option(9, Buffer.from([6])), END_OF_OPTIONS]); // if_name, if_tsresol 10^-6
  return Buffer.concat([block(0x0a0d0d0a, shbBody), block(1, idbBody)]);
}

function tsWords(epochMs: number): [number, number] {
  const us = Math.round(epochMs * 1000);
  return [Math.floor(us / 2 ** 32), us % 2 ** 32];
}

/** pcapng: an enhanced packet block on interface 0; `dir` 0 inbound, 1 outbound (epb_flags). */
export function pcapngPacket(epochMs: number, data: Buffer, origLen: number, dir: number): Buffer {
  const head = Buffer.alloc(20);
  const [hi, lo] = tsWords(epochMs);
  head.writeUInt32LE(0, 0);
  head.writeUInt32LE(hi, 4);
  head.writeUInt32LE(lo, 8);
  head.writeUInt32LE(data.length, 12);
  head.writeUInt32LE(origLen, 16);
  const flags = Buffer.alloc(4);
  flags.writeUInt32LE(dir === 0 ? 1 : 2, 0); // inbound / outbound
  return block(6, Buffer.concat([head, data, Buffer.alloc(pad4(data.length) - data.length), option(2, flags), END_OF_OPTIONS]));
}

/** pcapng: an interface statistics block for interface 0: packets received and lost (isb_ifrecv, isb_ifdrop). */
export function pcapngStats(epochMs: number, received: number, dropped: number): Buffer {
  const head = Buffer.alloc(12);
  const [hi, lo] = tsWords(epochMs);
  head.writeUInt32LE(0, 0);
  head.writeUInt32LE(hi, 4);
  head.writeUInt32LE(lo, 8);
  const u64 = (n: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(n), 0);
    return b;
  };
  return block(5, Buffer.concat([head, option(4, u64(received)), option(5, u64(dropped)), END_OF_OPTIONS]));
}

/** A capture file being written: classic pcap or pcapng, the same calls. */
export class CaptureFileWriter {
  constructor(
    readonly format: 'pcap' | 'pcapng',
    private readonly write: (b: Buffer) => void,
  ) {}
  header(linkType: number, snaplen: number, ifName: string): void {
    this.write(this.format === 'pcap' ? pcapHeader(linkType, snaplen) : pcapngHeader(linkType, snaplen, ifName));
  }
  packet(epochMs: number, data: Buffer, origLen: number, dir: number): void {
    this.write(this.format === 'pcap' ? pcapRecord(epochMs, data, origLen) : pcapngPacket(epochMs, data, origLen, dir));
  }
  /** pcapng only (classic pcap has no place for it): the totals at the end. */
  stats(epochMs: number, received: number, dropped: number): void {
    if (this.format === 'pcapng') this.write(pcapngStats(epochMs, received, dropped));
  }
}
