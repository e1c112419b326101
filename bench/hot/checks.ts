/** Output checks shared by the scenarios (verification batches only: they may allocate). */
import {
  EthernetView,
  EtherType,
  IpProtocol,
  Ipv4View,
  ParseError,
  TcpView,
  UdpView,
  macToString,
} from '../../src/packet/index.js';
import type { FrameRing } from './frames.js';
import type { CountingTransport, Mac } from './node.js';
import type { Captured } from './workload.js';

const eth = new EthernetView();
const ip = new Ipv4View();
const origIp = new Ipv4View();
const udp = new UdpView();
const tcp = new TcpView();

export function expect(cond: boolean, what: string): void {
  if (!cond) throw new Error(what);
}

export function expectMac(hi: number, lo: number, want: Mac, what: string): void {
  expect(hi === want.hi && lo >>> 0 === want.lo >>> 0, `${what} is ${macToString(hi, lo)}, expected ${macToString(want.hi, want.lo)}`);
}

/** The output is the ring's own memory (zero-copy) at the expected offset and length. */
export function expectInPlace(out: Captured, ring: FrameRing, off: number, len: number): void {
  expect(out.buf === ring.buffer, 'the frame is not the receive ring memory (copied?)');
  expect(out.off === off && out.len === len, `frame at ${out.off}+${out.len}, expected ${off}+${len}`);
}

/** Checks an Ethernet frame's header against the expected MACs and IPv4 EtherType. */
export function expectEthernet(buf: Buffer, off: number, len: number, dst: Mac, src: Mac, what: string): void {
  expect(eth.reset(buf, off, len) === ParseError.Ok, `${what}: bad Ethernet header`);
  expectMac(eth.dstHi, eth.dstLo, dst, `${what} destination MAC`);
  expectMac(eth.srcHi, eth.srcLo, src, `${what} source MAC`);
  expect(eth.etherType === EtherType.IPv4, `${what} EtherType 0x${eth.etherType.toString(16)}`);
}

/**
 * A routed packet: valid header checksum, TTL one less than the original's, every other byte of the
 * packet (addresses, L4 header and payload) unchanged, L4 checksum still valid.
 */
export function expectRouted(buf: Buffer, ipOff: number, ipLen: number, orig: Buffer, origIpOff: number): void {
  expect(ip.reset(buf, ipOff, ipLen) === ParseError.Ok, 'bad IPv4 header');
  expect(origIp.reset(orig, origIpOff, orig.length - origIpOff) === ParseError.Ok, 'bad original IPv4 header');
  expect(ip.verifyChecksum(), 'IPv4 header checksum wrong');
  expect(ip.ttl === origIp.ttl - 1, `TTL ${ip.ttl}, expected ${origIp.ttl - 1}`);
  expect(ip.totalLength === origIp.totalLength, 'total length changed');
  const a = buf.subarray(ipOff, ipOff + ip.totalLength);
  const b = orig.subarray(origIpOff, origIpOff + origIp.totalLength);
  for (let i = 0; i < a.length; i++) {
    if (i === 8 || i === 10 || i === 11) continue; // TTL and header checksum
    expect(a[i] === b[i], `byte ${i} of the IPv4 packet changed (0x${b[i]!.toString(16)} -> 0x${a[i]!.toString(16)})`);
  }
  if (ip.protocol === IpProtocol.UDP) {
    expect(udp.reset(buf, ip.payloadOffset, ip.payloadLength) === ParseError.Ok, 'bad UDP header');
    expect(udp.checksum !== 0 && udp.verifyChecksum(ip.src, ip.dst), 'UDP checksum wrong');
  } else {
    expect(ip.protocol === IpProtocol.TCP, `unexpected protocol ${ip.protocol}`);
    expect(tcp.reset(buf, ip.payloadOffset, ip.payloadLength) === ParseError.Ok, 'bad TCP header');
    expect(tcp.verifyChecksum(ip.src, ip.dst), 'TCP checksum wrong');
  }
}

/** Switches a sink/transport's `inspect` hook on (collecting into a fresh array) or off. */
export function capturer(set: (fn: ((out: Captured) => void) | undefined) => void): (on: boolean) => Captured[] {
  return (on) => {
    const seen: Captured[] = [];
    set(on ? (out) => seen.push(out) : undefined);
    return seen;
  };
}

/** Captures what the overlay hands to the (counting) UDP transport. */
export function transportCapturer(t: CountingTransport): (on: boolean) => Captured[] {
  return capturer(
    (fn) => (t.inspect = fn === undefined ? undefined : (buf, off, len, dstIp, dstPort, srcPort) => fn({ buf, off, len, dstIp, dstPort, srcPort })),
  );
}

