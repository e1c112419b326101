/**
 * The virtio-net header (struct virtio_net_hdr, virtio spec 5.1.6) that an IFF_VNET_HDR TAP puts
 * before every frame: what offload work the sender left for "the device" (a partial checksum, TCP
 * segmentation) or what the device already did. Its 16-bit fields are little-endian, as the TUN
 * driver uses them on a little-endian host unless told otherwise with TUNSETVNETBE.
 *
 * Offsets are from the start of the header (`h`), which lies `VNET_HDR_LEN` bytes before the frame.
 */

/** Bytes of the virtio-net header (without the num_buffers field of the mergeable-buffers variant). */
export const VNET_HDR_LEN = 10;

/** flags: the checksum is partial; complete it from csum_start, storing at csum_start + csum_offset. */
export const VNET_F_NEEDS_CSUM = 1;

/** gso_type values (the ECN bit may be or'ed in). */
export const VNET_GSO_NONE = 0;
export const VNET_GSO_TCPV4 = 1;
export const VNET_GSO_ECN = 0x80;

function le16(buf: Buffer, o: number): number {
  return buf[o]! | (buf[o + 1]! << 8);
}
function setLe16(buf: Buffer, o: number, v: number): void {
  buf[o] = v & 0xff;
  buf[o + 1] = (v >> 8) & 0xff;
}

export function vnetFlags(buf: Buffer, h: number): number {
  return buf[h]!;
}
/** gso_type without the ECN bit. */
export function vnetGsoType(buf: Buffer, h: number): number {
  return buf[h + 1]! & ~VNET_GSO_ECN;
}
/** Whether the frame carries work to finish: a partial checksum or segmentation. */
export function vnetPending(buf: Buffer, h: number): boolean {
  return ((buf[h]! & VNET_F_NEEDS_CSUM) | buf[h + 1]!) !== 0;
}
/** gso_size: the payload bytes of each segment. */
export function vnetGsoSize(buf: Buffer, h: number): number {
  return le16(buf, h + 4);
}
export function vnetCsumStart(buf: Buffer, h: number): number {
  return le16(buf, h + 6);
}
export function vnetCsumOffset(buf: Buffer, h: number): number {
  return le16(buf, h + 8);
}

/**
 * Writes a header for a TCP/IPv4 super-frame with a partial checksum: GSO_TCPV4 with segments of
 * `gsoSize` payload bytes, `hdrLen` bytes of headers each segment repeats, the checksum to finish
 * from `csumStart` (the TCP header) with its field at `csumOffset` within it.
 */
export function writeVnetTcpGso(buf: Buffer, h: number, hdrLen: number, gsoSize: number, csumStart: number, csumOffset: number): void {
  buf[h] = VNET_F_NEEDS_CSUM;
  buf[h + 1] = VNET_GSO_TCPV4;
  setLe16(buf, h + 2, hdrLen);
  setLe16(buf, h + 4, gsoSize);
  setLe16(buf, h + 6, csumStart);
  setLe16(buf, h + 8, csumOffset);
}

/**
 * Copies the header at `from` to `to` (the ranges must not overlap) for a frame whose start moves
 * by `delta` bytes (its offsets count from the frame's first byte): +14 when an IP packet of a
 * TUN gets an Ethernet header in front, -14 when it loses it. csum_start moves when the checksum is
 * partial, hdr_len when it is a GSO frame.
 */
export function moveVnetHdr(buf: Buffer, from: number, to: number, delta: number): void {
  for (let i = 0; i < VNET_HDR_LEN; i++) buf[to + i] = buf[from + i]!;
  if ((buf[to]! & VNET_F_NEEDS_CSUM) !== 0) setLe16(buf, to + 6, le16(buf, to + 6) + delta);
  if ((buf[to + 1]! & ~VNET_GSO_ECN) !== VNET_GSO_NONE) {
    const hl = le16(buf, to + 2) + delta;
    setLe16(buf, to + 2, hl > 0 ? hl : 0);
  }
}
