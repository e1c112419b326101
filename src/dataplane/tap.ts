/**
 * Where a packet capture (`podnet capture`, src/observe) plugs into the data plane. Every capture
 * point is one field that is `undefined` unless a capture runs there, checked once per batch (a
 * device's receive ring, a transmit queue's flush) or once per frame where frames come one at a
 * time (the gateway, the VXLAN socket); nothing else is on the path when no capture runs.
 *
 * A tap copies what it keeps into its own preallocated ring and returns at once: it never throws,
 * never blocks, never allocates per frame; when its ring is full it counts the frame as lost.
 */

/** Direction of a captured frame, seen from the capture point (the switch port, the socket, the uplink). */
export const TapDir = {
  /** Into the data plane: what a pod sent, what arrived from another node or off the uplink. */
  In: 0,
  /** Out of the data plane: what a pod is sent, what leaves for another node or out of the uplink. */
  Out: 1,
} as const;
export type TapDir = (typeof TapDir)[keyof typeof TapDir];

/** Takes frames of one capture point (Ethernet or IP, as the point carries them). */
export interface FrameTap {
  frame(buf: Buffer, off: number, len: number, dir: TapDir): void;
}

/**
 * Takes UDP payloads of the VXLAN socket (VXLAN header and inner frame) with the outer addresses the
 * data plane knows (int32 or unsigned; the local address is the tap's own): `peerIp:peerPort` is the
 * other node's side, `localPort` ours.
 */
export interface DatagramTap {
  datagram(buf: Buffer, off: number, len: number, dir: TapDir, peerIp: number, peerPort: number, localPort: number): void;
}
