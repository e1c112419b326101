/** IPv4 CIDR arithmetic for subnet allocation (control plane only; addresses as unsigned 32-bit numbers). */
import { StoreError, StoreErrorCode } from './errors.js';

export interface Cidr {
  /** Network address, host bits zero. */
  readonly base: number;
  readonly prefix: number;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function isIpv4(s: string): boolean {
  return IPV4.test(s);
}

export function ipToNumber(s: string): number {
  if (!isIpv4(s)) throw new StoreError(StoreErrorCode.InvalidArgument, `not an IPv4 address: ${JSON.stringify(s)}`);
  return s.split('.').reduce((acc, part) => acc * 256 + Number(part), 0) >>> 0;
}

export function numberToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join('.');
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Parses "a.b.c.d/n". With `strict`, host bits must be zero; otherwise they are cleared. */
export function parseCidr(s: string, strict = false): Cidr {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(s);
  const prefix = m ? Number(m[2]) : NaN;
  if (!m || !isIpv4(m[1]!) || prefix > 32) {
    throw new StoreError(StoreErrorCode.InvalidArgument, `not an IPv4 CIDR: ${JSON.stringify(s)}`);
  }
  const addr = ipToNumber(m[1]!);
  const base = (addr & mask(prefix)) >>> 0;
  if (strict && base !== addr) {
    throw new StoreError(StoreErrorCode.InvalidArgument, `${s} has host bits set (network is ${numberToIp(base)}/${prefix})`);
  }
  return { base, prefix };
}

export function formatCidr(c: Cidr): string {
  return `${numberToIp(c.base)}/${c.prefix}`;
}

/** Whether `inner` lies entirely inside `outer`. */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  return inner.prefix >= outer.prefix && ((inner.base & mask(outer.prefix)) >>> 0) === outer.base;
}

/** Number of /`subnetPrefix` subnets in `c`. */
export function subnetCount(c: Cidr, subnetPrefix: number): number {
  return 2 ** (subnetPrefix - c.prefix);
}

/** The `i`-th /`subnetPrefix` subnet of `c`, in address order. */
export function nthSubnet(c: Cidr, subnetPrefix: number, i: number): Cidr {
  return { base: (c.base + i * 2 ** (32 - subnetPrefix)) >>> 0, prefix: subnetPrefix };
}
