import { XorShift32 } from '../util/random.js';
import { U32Map } from '../util/u32map.js';

/**
 * One port of one service as the data plane sees it: where it listens (VIP ports, node port) and the
 * endpoints behind it. Built by the control plane (allocation is fine there) and swapped in whole.
 */
export interface ServicePortSpec {
  service: string;
  proto: number; // IpProtocol.TCP / UDP
  port: number;
  targetPort: number;
  nodePort: number; // 0 = none
  /** Endpoint pod IPs (numbers) and which of them run on this node. */
  endpoints: number[];
  localEndpoints: number[];
  sessionAffinity: boolean;
  affinityTimeout: number;
  policyLocal: boolean;
}

/** The service VIPs (cluster IPs, external IPs, LoadBalancer IPs) and the ports on each. */
export interface ServiceTableSpec {
  vips: Array<{ vip: number; ports: ServicePortSpec[] }>;
}

class PortSlot {
  // Endpoint addresses as int32 (same bits as the unsigned ones): what `pick` returns, a small
  // integer whatever the address, so passing it on never allocates.
  readonly endpoints: Int32Array;
  readonly localEndpoints: Int32Array;
  // Session affinity: client IP -> entry; entries hold the endpoint and when the choice expires.
  private readonly affinity = new U32Map(16);
  private affEndpoint = new Int32Array(16);
  private affExpires = new Float64Array(16);
  private affNext = 0;
  /** Endpoint choice: an integer PRNG (`Math.random()` would box a double per new connection). */
  private readonly rng = new XorShift32();

  constructor(readonly spec: ServicePortSpec) {
    this.endpoints = Int32Array.from(spec.endpoints, (ip) => ip | 0);
    this.localEndpoints = Int32Array.from(spec.localEndpoints, (ip) => ip | 0);
  }

  /**
   * An endpoint for a new connection from `client` (unsigned or int32), as an int32 (`>>> 0` for the
   * unsigned address), or 0 when there is none.
   */
  pick(client: number, now: number, localOnly: boolean): number {
    const eps = localOnly ? this.localEndpoints : this.endpoints;
    const n = eps.length;
    if (n === 0) return 0;
    if (!this.spec.sessionAffinity) return eps[this.rng.below(n)]!;
    const a = this.affinity.get(client);
    if (a >= 0 && this.affExpires[a]! > now) {
      const ep = this.affEndpoint[a]!;
      for (let i = 0; i < n; i++) {
        if (eps[i] === ep) {
          this.affExpires[a] = now + this.spec.affinityTimeout;
          return ep;
        }
      }
    }
    const ep = eps[this.rng.below(n)]!;
    let slot = a;
    if (slot < 0) {
      slot = this.affNext++;
      if (slot >= this.affEndpoint.length) this.growAffinity();
      this.affinity.set(client, slot);
    }
    this.affEndpoint[slot] = ep;
    this.affExpires[slot] = now + this.spec.affinityTimeout;
    return ep;
  }

  private growAffinity(): void {
    const e = new Int32Array(this.affEndpoint.length * 2);
    e.set(this.affEndpoint);
    const x = new Float64Array(this.affExpires.length * 2);
    x.set(this.affExpires);
    this.affEndpoint = e;
    this.affExpires = x;
  }

  /** Keeps the affinity choices of a previous table for the same service port. */
  inheritAffinity(prev: PortSlot): void {
    prev.affinity.forEach((client, slot) => {
      const mine = this.affNext++;
      if (mine >= this.affEndpoint.length) this.growAffinity();
      this.affinity.set(client, mine);
      this.affEndpoint[mine] = prev.affEndpoint[slot]!;
      this.affExpires[mine] = prev.affExpires[slot]!;
    });
  }
}

/**
 * Lookup structure for new connections: VIP (and protocol/port) -> service port, node port -> service
 * port, and endpoint choice (random, or sticky per client with ClientIP affinity). Typed-array maps, so
 * lookups allocate nothing.
 */
export class ServiceTable {
  private readonly byVip = new U32Map(64);
  private readonly vipStart: number[] = [];
  private readonly vipCount: number[] = [];
  private readonly slots: PortSlot[] = [];
  private readonly byNodePort = new U32Map(64);

  constructor(spec: ServiceTableSpec = { vips: [] }, previous?: ServiceTable) {
    const seen = new Map<string, PortSlot>();
    for (const v of spec.vips) {
      const start = this.slots.length;
      for (const p of v.ports) {
        // One slot per service port, shared by every VIP of the service (affinity is per service port).
        const key = `${p.service}/${p.proto}/${p.port}`;
        let slot = seen.get(key);
        if (!slot) {
          slot = new PortSlot(p);
          const old = previous?.findSlot(p.service, p.proto, p.port);
          if (old && p.sessionAffinity) slot.inheritAffinity(old);
          seen.set(key, slot);
          if (p.nodePort > 0) this.byNodePort.set((p.proto << 16) | p.nodePort, this.slots.length);
        }
        this.slots.push(slot);
      }
      this.byVip.set(v.vip, this.vipStart.length);
      this.vipStart.push(start);
      this.vipCount.push(this.slots.length - start);
    }
  }

  private findSlot(service: string, proto: number, port: number): PortSlot | undefined {
    return this.slots.find((s) => s.spec.service === service && s.spec.proto === proto && s.spec.port === port);
  }

  /** Is `ip` (unsigned or int32) a service VIP of this table? */
  isVip(ip: number): boolean {
    return this.byVip.get(ip) >= 0;
  }

  /** Slot index of the service port at `vip:port/proto` (`vip` unsigned or int32), or -1. */
  lookupVip(vip: number, proto: number, port: number): number {
    const v = this.byVip.get(vip);
    if (v < 0) return -1;
    const start = this.vipStart[v]!;
    const end = start + this.vipCount[v]!;
    for (let i = start; i < end; i++) {
      const s = this.slots[i]!.spec;
      if (s.port === port && s.proto === proto) return i;
    }
    return -1;
  }

  /** Slot index of the service port with this node port, or -1. */
  lookupNodePort(proto: number, nodePort: number): number {
    return this.byNodePort.get((proto << 16) | nodePort);
  }

  targetPort(slot: number): number {
    return this.slots[slot]!.spec.targetPort;
  }

  policyLocal(slot: number): boolean {
    return this.slots[slot]!.spec.policyLocal;
  }

  /** An endpoint of the service port for a new connection from `client`, as an int32; 0 when none. */
  pick(slot: number, client: number, now: number, localOnly: boolean): number {
    return this.slots[slot]!.pick(client, now, localOnly);
  }
}
