import { parseSubnet, type Subnet } from '../store/subnet.js';
import { ipv4ToString, parseIpv4 } from '../packet/addr.js';
import { PodnetError, ErrorCode } from '../util/errors.js';
import { readJsonIfExists, writeFileAtomic } from '../util/fsutil.js';

interface IpamState {
  subnet: string;
  allocations: Record<string, string>; // ip -> owner (pod name)
}

/**
 * Address management for one node's pod subnet. Hands out the lowest free address; `.0` (host port),
 * `.1` (gateway) and the broadcast address are never given out. Every change is written to disk
 * atomically before it is reported, so a restarted daemon sees the same allocations.
 */
export class Ipam {
  readonly subnet: Subnet;
  private readonly byIp = new Map<number, string>();

  constructor(
    subnetCidr: string,
    private readonly path: string | undefined,
  ) {
    this.subnet = parseSubnet(subnetCidr);
    const saved = path ? readJsonIfExists<IpamState>(path) : undefined;
    if (saved && saved.subnet === this.subnet.cidr) {
      for (const [ip, owner] of Object.entries(saved.allocations)) this.byIp.set(parseIpv4(ip), owner);
    }
  }

  /** Allocates an address for `owner`; `preferred` is honoured if it is free and in the subnet. */
  allocate(owner: string, preferred?: string): string {
    const existing = this.lookup(owner);
    if (existing) return existing;
    if (preferred !== undefined) {
      const p = parseIpv4(preferred);
      if (this.usable(p) && !this.byIp.has(p)) return this.take(p, owner);
    }
    for (let ip = this.subnet.network + 2; ip < this.subnet.broadcast; ip++) {
      if (!this.byIp.has(ip)) return this.take(ip, owner);
    }
    throw new PodnetError(ErrorCode.Exhausted, `subnet ${this.subnet.cidr} is exhausted: all ${this.capacity()} pod addresses are in use`);
  }

  release(owner: string): boolean {
    for (const [ip, o] of this.byIp) {
      if (o === owner) {
        this.byIp.delete(ip);
        this.save();
        return true;
      }
    }
    return false;
  }

  lookup(owner: string): string | undefined {
    for (const [ip, o] of this.byIp) if (o === owner) return ipv4ToString(ip);
    return undefined;
  }

  capacity(): number {
    return Math.max(0, this.subnet.broadcast - this.subnet.network - 2);
  }

  used(): number {
    return this.byIp.size;
  }

  private usable(ip: number): boolean {
    return ip > this.subnet.network + 1 && ip < this.subnet.broadcast;
  }

  private take(ip: number, owner: string): string {
    this.byIp.set(ip, owner);
    this.save();
    return ipv4ToString(ip);
  }

  private save(): void {
    if (!this.path) return;
    const allocations: Record<string, string> = {};
    for (const [ip, o] of [...this.byIp].sort((a, b) => a[0] - b[0])) allocations[ipv4ToString(ip)] = o;
    writeFileAtomic(this.path, JSON.stringify({ subnet: this.subnet.cidr, allocations } satisfies IpamState, null, 2));
  }
}
