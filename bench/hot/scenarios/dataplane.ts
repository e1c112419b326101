/**
 * The data plane scenarios that exist today: L2 forwarding, routing + VXLAN encapsulation, VXLAN
 * decapsulation + routing + switching. Each comes in two frame sizes:
 *   64B   - 64-byte Ethernet frames, IPv4/UDP (22 bytes of payload): the per-packet cost.
 *   1400B - 1400-byte Ethernet frames, IPv4/TCP ACK|PSH with DF (1346 bytes of payload): bulk data.
 * Sizes are inner frames, as a TAP pod sends and receives them (a VXLAN datagram is 8 bytes more, the
 * wire frame between nodes 50 more). The node is wired as the daemon's, so these paths include its
 * connection tracking: the switch's bridge hook (`nat.translate` for IPv4 between two pod ports) and the
 * router's `nat.translate` (+ the new-connection decision, which finds no service and tracks nothing).
 */
import { ETH_HLEN, IPV4_MIN_HLEN, ParseError, VXLAN_HLEN, VxlanView, ipv4ToString } from '../../../src/packet/index.js';
import { capturer, expect, expectEthernet, expectInPlace, expectRouted, transportCapturer } from '../checks.js';
import { BATCH, FrameRing, writeFrame, writeVxlanPayload, type L4 } from '../frames.js';
import { buildNode, gatewayMac, NET } from '../node.js';
import { RingWorkload, type Scenario, type Workload } from '../workload.js';

const vx = new VxlanView();

const SIZES: ReadonlyArray<{ variant: string; bytes: number; l4: L4 }> = [
  { variant: '64B', bytes: 64, l4: 'udp' },
  { variant: '1400B', bytes: 1400, l4: 'tcp' },
];

/** `l2_forward`: TAP pod 0 -> TAP pod 1 on one switch, known unicast; the frame is not touched. */
async function l2Forward(bytes: number, l4: L4): Promise<Workload> {
  const node = buildNode();
  const a = node.pods[0]!;
  const b = node.pods[1]!;
  const ring = new FrameRing(BATCH, 0);
  for (let i = 0; i < ring.slots; i++) {
    const f = { srcMac: a.mac, dstMac: b.mac, srcIp: a.ip, dstIp: b.ip, l4, sport: 40000 + i, dport: l4 === 'udp' ? 53 : 8080, ident: i + 1 };
    ring.fill(i, (buf, off) => writeFrame(buf, off, f, bytes));
  }
  ring.seal();
  return new RingWorkload({
    dp: node.dp,
    port: a.port,
    ring,
    frameBytes: bytes,
    counter: () => b.sink.frames,
    drops: node.drops,
    capture: capturer((fn) => (b.sink.inspect = fn === undefined ? undefined : (buf, off, len) => fn({ buf, off, len }))),
    check: (k, out) => {
      expectInPlace(out, ring, ring.frameOffset(k), bytes);
      expect(out.buf.subarray(out.off, out.off + out.len).equals(ring.original(k)), 'the frame was modified');
    },
  });
}

/**
 * `route_vxlan_encap`: TAP pod 0 -> gateway MAC -> router (checksum check, TTL decrement) -> VXLAN to
 * one of 4 peer nodes (destinations round-robin over the peers' subnets): inner Ethernet header to the
 * peer's VTEP MAC and VXLAN header written in the ring's headroom, handed to the (counting) UDP transport.
 */
async function routeVxlanEncap(bytes: number, l4: L4): Promise<Workload> {
  const node = buildNode();
  const a = node.pods[0]!;
  const gw = gatewayMac(NET.gatewayIp);
  // The overlay rewrites the 14 bytes before the IP header, the router the TTL and header checksum.
  const ring = new FrameRing(BATCH, ETH_HLEN + IPV4_MIN_HLEN);
  const peerOf: number[] = [];
  for (let i = 0; i < ring.slots; i++) {
    const p = i % node.peers.length;
    peerOf.push(p);
    const dstIp = (node.peers[p]!.subnetNetwork + 2 + (i >> 2)) >>> 0;
    const f = { srcMac: a.mac, dstMac: gw, srcIp: a.ip, dstIp, l4, sport: 40000 + i, dport: l4 === 'udp' ? 53 : 8080, ident: i + 1 };
    ring.fill(i, (buf, off) => writeFrame(buf, off, f, bytes));
  }
  ring.seal();
  return new RingWorkload({
    dp: node.dp,
    port: a.port,
    ring,
    frameBytes: bytes,
    counter: () => node.transport.datagrams,
    drops: node.drops,
    capture: transportCapturer(node.transport),
    check: (k, out) => {
      const peer = node.peers[peerOf[k]!]!;
      expectInPlace(out, ring, ring.frameOffset(k) - VXLAN_HLEN, VXLAN_HLEN + bytes);
      expect(out.dstIp === peer.underlayIp, `sent to ${ipv4ToString(out.dstIp!)}, expected ${ipv4ToString(peer.underlayIp)}`);
      expect(out.dstPort === NET.vxlanPort, `UDP port ${out.dstPort}`);
      expect(out.srcPort! >= 32768 && out.srcPort! < 61000, `source port ${out.srcPort}`);
      expect(vx.reset(out.buf, out.off, out.len) === ParseError.Ok && vx.vni === NET.vni, 'bad VXLAN header or VNI');
      expect(out.buf.readUInt32BE(out.off) === 0x08000000 && out.buf[out.off + 7] === 0, 'VXLAN reserved bits not zero');
      expectEthernet(out.buf, vx.payloadOffset, vx.payloadLength, peer.vtepMac, NET.vtepMac, 'inner frame');
      expectRouted(out.buf, vx.payloadOffset + ETH_HLEN, bytes - ETH_HLEN, ring.original(k), ETH_HLEN);
    },
  });
}

/**
 * `vxlan_decap_deliver`: VXLAN payloads from a known peer (VNI and sender checked) -> decap -> router
 * (checksum, TTL) -> Ethernet header for the local pod written in place -> switch -> TAP pod 1's queue.
 */
async function vxlanDecapDeliver(bytes: number, l4: L4): Promise<Workload> {
  const node = buildNode();
  const b = node.pods[1]!;
  const peer = node.peers[0]!;
  const gw = gatewayMac(NET.gatewayIp);
  // The router rewrites the inner Ethernet header (after the VXLAN header) and the TTL and checksum.
  const ring = new FrameRing(BATCH, VXLAN_HLEN + ETH_HLEN + IPV4_MIN_HLEN);
  for (let i = 0; i < ring.slots; i++) {
    const srcIp = (peer.subnetNetwork + 2 + (i % 32)) >>> 0;
    const f = { srcMac: peer.vtepMac, dstMac: NET.vtepMac, srcIp, dstIp: b.ip, l4, sport: l4 === 'udp' ? 53 : 8080, dport: 40000 + i, ident: i + 1 };
    ring.fill(i, (buf, off) => writeVxlanPayload(buf, off, NET.vni, f, bytes));
  }
  ring.seal();
  return new RingWorkload({
    dp: node.dp,
    port: node.vxlanIngress,
    ring,
    frameBytes: bytes,
    counter: () => b.sink.frames,
    drops: node.drops,
    capture: capturer((fn) => (b.sink.inspect = fn === undefined ? undefined : (buf, off, len) => fn({ buf, off, len }))),
    check: (k, out) => {
      expectInPlace(out, ring, ring.frameOffset(k) + VXLAN_HLEN, bytes);
      expectEthernet(out.buf, out.off, out.len, b.mac, gw, 'delivered frame');
      expectRouted(out.buf, out.off + ETH_HLEN, bytes - ETH_HLEN, ring.original(k), VXLAN_HLEN + ETH_HLEN);
    },
  });
}

const available = async (): Promise<string | undefined> => undefined;

function family(name: string, description: string, setup: (bytes: number, l4: L4) => Promise<Workload>): Scenario[] {
  return SIZES.map((s) => ({
    name: `${name}/${s.variant}`,
    family: name,
    frame: `${s.bytes} B ${s.l4.toUpperCase()}`,
    description,
    unavailable: available,
    setup: () => setup(s.bytes, s.l4),
  }));
}

export const dataplaneScenarios: Scenario[] = [
  ...family('l2_forward', 'TAP pod -> TAP pod on one switch (known unicast, anti-spoofing, conntrack bridge hook)', l2Forward),
  ...family('route_vxlan_encap', 'TAP pod -> gateway -> router (conntrack, TTL) -> VXLAN encap to a peer node', routeVxlanEncap),
  ...family('vxlan_decap_deliver', 'VXLAN from a known peer -> decap -> router (conntrack, TTL) -> switch -> TAP pod', vxlanDecapDeliver),
];
