/** IPv4 CIDR arithmetic for subnet allocation (control plane only; addresses as unsigned 32-bit numbers). */
import { StoreError, StoreErrorCode } from './errors.js';
import { ipv4ToString, parseCidr as parseIpv4Cidr, prefixToMask, tryParseIpv4 } from '../packet/addr.js';
import { invalid } from '../util/errors.js';

export interface Cidr {
  /** Network address, host bits zero. */
  readonly base: number;
  readonly prefix: number;
}

export function isIpv4(s: string): boolean {
  return tryParseIpv4(s) >= 0;
}

function mask(prefix: number): number {
  return prefixToMask(prefix);
}

/** Parses "a.b.c.d/n". With `strict`, host bits must be zero; otherwise they are cleared. */
export function parseCidr(s: string, strict = false): Cidr {
  let c: ReturnType<typeof parseIpv4Cidr>;
  try {
    c = parseIpv4Cidr(s);
  } catch {
    throw new StoreError(StoreErrorCode.InvalidArgument, `not an IPv4 CIDR: ${JSON.stringify(s)}`);
  }
  if (strict && c.network !== c.addr) {
    throw new StoreError(StoreErrorCode.InvalidArgument, `${s} has host bits set (network is ${ipv4ToString(c.network)}/${c.prefix})`);
  }
  return { base: c.network, prefix: c.prefix };
}

/** A node's pod subnet as the node lays it out. */
export interface Subnet {
  cidr: string;
  network: number;
  prefix: number;
  mask: number;
  broadcast: number;
  /** `.0`: the host port's address (as flannel gives flannel.1 the subnet's .0/32). */
  hostIp: number;
  /** `.1`: the gateway the userspace router owns. */
  gatewayIp: number;
}

/** A subnet "a.b.c.d/n" (host bits cleared) with its host port and gateway addresses. */
export function parseSubnet(cidr: string): Subnet {
  let c: ReturnType<typeof parseIpv4Cidr>;
  try {
    c = parseIpv4Cidr(cidr);
  } catch {
    throw invalid(`invalid subnet ${cidr}`);
  }
  const { network, prefix, mask } = c;
  const broadcast = (network | (~mask >>> 0)) >>> 0;
  return { cidr: `${ipv4ToString(network)}/${prefix}`, network, prefix, mask, broadcast, hostIp: network, gatewayIp: (network + 1) >>> 0 };
}

export function formatCidr(c: Cidr): string {
  return `${ipv4ToString(c.base)}/${c.prefix}`;
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
