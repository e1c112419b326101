/**
 * Addresses as numbers. IPv4 addresses are unsigned 32-bit numbers (host order value of the
 * big-endian wire bytes). MAC addresses are a pair: `hi` = the first two bytes (16 bits), `lo` = the
 * last four (unsigned 32 bits), so `52:54:00:aa:00:01` is `{ hi: 0x5254, lo: 0x00aa0001 }`.
 *
 * The string parsers are strict and throw `PacketError`; they are for the edges (config, CLI,
 * `Repr`s), never the data path. The wire layer depends on nothing, so they are written here rather
 * than taken from `ip-address`.
 */
import { readU16, readU32, writeU16, writeU32 } from './bytes.js';
import { PacketError } from './errors.js';

// ---- IPv4 -----------------------------------------------------------------------------------

export function readIpv4(buf: Buffer, off: number): number {
  return readU32(buf, off);
}

export function writeIpv4(buf: Buffer, off: number, ip: number): void {
  writeU32(buf, off, ip);
}

export function ipv4ToString(ip: number): string {
  return `${ip >>> 24}.${(ip >>> 16) & 0xff}.${(ip >>> 8) & 0xff}.${ip & 0xff}`;
}

// Four decimal octets 0..255, no leading zeros (so "010" is never read as octal or decimal by
// accident), no whitespace, nothing else.
const OCTET = '(0|[1-9][0-9]?|1[0-9][0-9]|2[0-4][0-9]|25[0-5])';
const IPV4_RE = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);
const PREFIX_RE = /^(0|[1-9][0-9]?)$/;

function matchIpv4(s: string): number | undefined {
  const m = IPV4_RE.exec(s);
  if (m === null) return undefined;
  return ((+m[1] << 24) | (+m[2] << 16) | (+m[3] << 8) | +m[4]) >>> 0;
}

/** `"10.244.0.1"` -> `0x0af40001`, or -1 when `s` is not a dotted-quad IPv4 address. */
export function tryParseIpv4(s: string): number {
  return (typeof s === 'string' ? matchIpv4(s) : undefined) ?? -1;
}

/** `"10.244.0.1"` -> `0x0af40001`. Throws `PacketError` (code `BadAddress`) naming the input. */
export function parseIpv4(s: string): number {
  const ip = typeof s === 'string' ? matchIpv4(s) : undefined;
  if (ip === undefined) {
    throw new PacketError('BadAddress', `invalid IPv4 address ${JSON.stringify(s)}: expected a.b.c.d`);
  }
  return ip;
}

/** Netmask for a prefix length 0..32, e.g. 24 -> 0xffffff00. */
export function prefixToMask(prefix: number): number {
  return prefix <= 0 ? 0 : prefix >= 32 ? 0xffffffff : (0xffffffff << (32 - prefix)) >>> 0;
}

export interface Cidr {
  /** The address as written (host bits kept). */
  addr: number;
  prefix: number;
  mask: number;
  /** `addr & mask`. */
  network: number;
}

/**
 * `"10.244.1.7/24"` -> `{ addr: 10.244.1.7, prefix: 24, mask: 255.255.255.0, network: 10.244.1.0 }`.
 * The prefix is required. Throws `PacketError` (code `BadCidr`) naming the input.
 */
export function parseCidr(s: string): Cidr {
  const bad = (why: string): PacketError =>
    new PacketError('BadCidr', `invalid IPv4 CIDR ${JSON.stringify(s)}: ${why}`);
  if (typeof s !== 'string') throw bad('not a string');
  const slash = s.indexOf('/');
  if (slash < 0) throw bad('expected a.b.c.d/prefix');
  const addr = matchIpv4(s.slice(0, slash));
  if (addr === undefined) throw bad('bad address part');
  const p = s.slice(slash + 1);
  if (!PREFIX_RE.test(p) || +p > 32) throw bad('prefix must be 0..32');
  const prefix = +p;
  const mask = prefixToMask(prefix);
  return { addr, prefix, mask, network: (addr & mask) >>> 0 };
}

/** Whether `ip` is inside `network`/`mask` (host bits of `network` are ignored). */
export function inSubnet(ip: number, network: number, mask: number): boolean {
  return ((ip ^ network) & mask) === 0;
}

// ---- MAC ------------------------------------------------------------------------------------

export function readMacHi(buf: Buffer, off: number): number {
  return readU16(buf, off);
}

export function readMacLo(buf: Buffer, off: number): number {
  return readU32(buf, off + 2);
}

export function writeMac(buf: Buffer, off: number, hi: number, lo: number): void {
  writeU16(buf, off, hi);
  writeU32(buf, off + 2, lo);
}

function hex2(b: number): string {
  return (b & 0xff).toString(16).padStart(2, '0');
}

/** `(0x5254, 0x00aa0001)` -> `"52:54:00:aa:00:01"` (lower case). */
export function macToString(hi: number, lo: number): string {
  return (
    `${hex2(hi >>> 8)}:${hex2(hi)}:` +
    `${hex2(lo >>> 24)}:${hex2(lo >>> 16)}:${hex2(lo >>> 8)}:${hex2(lo)}`
  );
}

const MAC_RE = /^([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2})$/i;

/**
 * `"52:54:00:AA:00:01"` -> `{ hi: 0x5254, lo: 0x00aa0001 }`. Exactly six two-digit hex groups
 * separated by colons; either case. Throws `PacketError` (code `BadMac`) naming the input.
 */
export function parseMac(s: string): { hi: number; lo: number } {
  const m = typeof s === 'string' ? MAC_RE.exec(s) : null;
  if (m === null) {
    throw new PacketError('BadMac', `invalid MAC address ${JSON.stringify(s)}: expected aa:bb:cc:dd:ee:ff`);
  }
  const b = (i: number): number => parseInt(m[i], 16);
  return {
    hi: (b(1) << 8) | b(2),
    lo: ((b(3) << 24) | (b(4) << 16) | (b(5) << 8) | b(6)) >>> 0,
  };
}

/** The I/G bit (least significant bit of the first byte): multicast, including broadcast. */
export function isMulticastMacHi(hi: number): boolean {
  return (hi & 0x0100) !== 0;
}

export function isBroadcastMac(hi: number, lo: number): boolean {
  return (hi & 0xffff) === 0xffff && lo >>> 0 === 0xffffffff;
}
