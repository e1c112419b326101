/**
 * The data plane's hook points, as netfilter's: the first packet of every connection conntrack does not
 * know runs through the hooks registered at PRE_ROUTING (services: which endpoint), FORWARD (policy:
 * may it pass, seeing the real endpoint) and POST_ROUTING (masquerade), in that order, and the router
 * then applies what they decided as one conntrack entry (as nf_conntrack_confirm does at the end of
 * POST_ROUTING). Later packets of the connection never see the hooks: conntrack carries the decision.
 *
 * Packets bridged between two pods of one node (the switch's br_netfilter-like path) run FORWARD only.
 *
 * This file is the layer contract between the router and what plugs into it (src/services,
 * src/nat/masquerade, src/policy, the flow log): nothing here does I/O or allocates per packet.
 */
import type { DropReason } from '../util/counters.js';

/** Where a routed packet came from: decides what "no route" means and avoids loops. */
export const Ingress = {
  /** From a pod, through the switch to the gateway. */
  Switch: 0,
  /** From the host kernel (the host port). */
  Host: 1,
  /** Decapsulated from another node. */
  Overlay: 2,
  /** Taken off the node's uplink (NodePort, LoadBalancer and external IPs, replies to masquerade). */
  Uplink: 3,
  /** Between two pod ports of the switch (never routed: FORWARD hooks only). */
  Bridge: 4,
} as const;
export type Ingress = (typeof Ingress)[keyof typeof Ingress];

/** Connection mark: the connection enters or leaves through the uplink (NodePort, LB, egress). */
export const MARK_UPLINK = 1;

/** The points hooks register at; chains run in this order. */
export const HookPoint = { PreRouting: 0, Forward: 1, PostRouting: 2 } as const;
export type HookPoint = (typeof HookPoint)[keyof typeof HookPoint];
const POINTS = 3;

/** What a hook says of a new connection. */
export const HookVerdict = {
  /** No objection: the next hook decides (after the last one, the connection is confirmed). */
  Continue: 0,
  /** Refused silently; counted with `ctx.dropReason`. */
  Drop: 1,
  /** Refused, the source told with ICMP destination unreachable (code `ctx.rejectCode`); counted. */
  Reject: 2,
} as const;
export type HookVerdict = (typeof HookVerdict)[keyof typeof HookVerdict];

/**
 * One packet, parsed once (the sk_buff of this data plane): filled by the router (or the bridge path)
 * before the hooks run, read and annotated by them, and passed with the buffer (which it does not
 * hold: a pointer store per packet costs a write barrier, and no hook reads the bytes). One instance
 * per data plane, reused for every packet: nothing is allocated per packet. Addresses are int32 (the same bits as the unsigned ones;
 * `>>> 0` for display). For ICMP echo `sport` is the identifier and `dport` is `type << 8`.
 */
export class PacketContext {
  ipOff = 0;
  ipLen = 0;
  ingress: Ingress = Ingress.Switch;
  /** The coarse clock (seconds) of the batch. */
  now = 0;
  // The original tuple, as the packet arrived (before any NAT).
  proto = 0;
  src = 0;
  dst = 0;
  sport = 0;
  dport = 0;
  /** TCP flags of the first packet (0 for other protocols). */
  tcpFlags = 0;

  // ---- decisions for a new connection, applied by the router once every hook has run ----
  /** DNAT to this address and port (0 = no DNAT; for ICMP echo the port is unused). */
  dnatIp = 0;
  dnatPort = 0;
  /** SNAT to this address (0 = none), with a source port from snatPortMin..snatPortMax. */
  snatIp = 0;
  snatPortMin = 0;
  snatPortMax = 0;
  /** Connection mark bits (MARK_UPLINK: replies leave through the uplink). */
  mark = 0;
  /**
   * Create a conntrack entry even without NAT: later packets, and replies, are then known to belong to
   * an accepted connection (a policy that selects one of the endpoints needs this).
   */
  track = false;
  /** Why a hook refused the connection (with Drop or Reject). */
  dropReason: DropReason = 0 as DropReason;
  /** The ICMP unreachable code a Reject sends (IcmpUnreachCode; set it with every Reject). */
  rejectCode = 3;
  /** Which hook refused it (its `name`), for the flow log and `policy check`; '' otherwise. */
  refusedBy = '';

  /** After the connection is confirmed: its conntrack ref (`entryId * 2 + dir`), -1 when untracked. */
  ctRef = -1;

  /** The destination the connection goes to once DNAT is applied (the real endpoint). */
  get finalDst(): number {
    return this.dnatIp !== 0 ? this.dnatIp : this.dst;
  }
  get finalDport(): number {
    return this.dnatIp !== 0 && this.dnatPort !== 0 ? this.dnatPort : this.dport;
  }

  /**
   * Clears the decisions before the hooks run for a new packet: those the router reads whatever
   * happens. The ports, `dropReason` and `rejectCode` are read only with the decision that sets them
   * (a hook that asks for DNAT sets `dnatPort`, one that refuses sets `dropReason`, a Reject sets
   * `rejectCode`), so they keep the last packet's values meanwhile.
   */
  resetDecisions(): void {
    this.dnatIp = 0;
    this.snatIp = 0;
    this.mark = 0;
    this.track = false;
    this.refusedBy = '';
    this.ctRef = -1;
  }
}

/** Something that decides about new connections at one hook point. */
export interface ConnectionHook {
  /** Short, stable name: shown in the flow log and in `policy check` (e.g. 'services', 'policy'). */
  readonly name: string;
  /**
   * Whether the hook decides about connections to pod addresses (the pod CIDR) that do not come off
   * the uplink: policy does; services (VIPs, node ports) and masquerade (outside addresses) do not.
   * While no registered hook does, traffic between pods skips the hooks altogether (it is untracked,
   * and every one of its packets would otherwise run them).
   */
  readonly podToPod: boolean;
  /** The first packet of a connection conntrack does not know. Must not allocate in steady state. */
  newConnection(ctx: PacketContext): HookVerdict;
}

/**
 * Told of connection decisions, once per new connection (never per packet): the flow log. Called
 * after the router applied the decision: `accepted` for every connection that got a conntrack entry
 * (`ctx.ctRef`), `refused` for every one a hook or NAT refused. Traffic no hook decided anything
 * about is untracked and is not reported: it has no connection, and every one of its packets takes
 * this path, which must stay as cheap as a table lookup.
 */
export interface ConnectionObserver {
  accepted(ctx: PacketContext): void;
  refused(ctx: PacketContext, reason: DropReason): void;
}

/** The registered hooks of one data plane. Registration is control-plane work (it may allocate). */
export class Hooks {
  private readonly chains: ConnectionHook[][] = [];
  /** Every hook, PRE_ROUTING first: what `run` walks (one loop, rebuilt on registration). */
  private all: ConnectionHook[] = [];
  /** How many registered hooks decide about traffic between pods (`podToPod`). */
  podHooks = 0;
  /** Told of every decision (the flow log); undefined costs nothing. */
  observer: ConnectionObserver | undefined;

  constructor() {
    for (let i = 0; i < POINTS; i++) this.chains.push([]);
  }

  /** Adds `hook` at `point` (after those already there); returns a function that removes it. */
  register(point: HookPoint, hook: ConnectionHook): () => void {
    this.chains[point]!.push(hook);
    this.rebuild();
    return () => {
      const chain = this.chains[point]!;
      const i = chain.indexOf(hook);
      if (i >= 0) chain.splice(i, 1);
      this.rebuild();
    };
  }

  private rebuild(): void {
    this.all = this.chains.flat();
    this.podHooks = this.all.filter((h) => h.podToPod).length;
  }

  /** How many hooks `point` has (the bridge path runs only when FORWARD has some). */
  count(point: HookPoint): number {
    return this.chains[point]!.length;
  }

  /** Runs PRE_ROUTING, FORWARD and POST_ROUTING; the first verdict that is not Continue ends it. */
  run(ctx: PacketContext): HookVerdict {
    return runChain(this.all, ctx);
  }

  /** Runs one point's chain (the bridge path: FORWARD only). */
  runPoint(point: HookPoint, ctx: PacketContext): HookVerdict {
    return runChain(this.chains[point]!, ctx);
  }
}

function runChain(chain: ConnectionHook[], ctx: PacketContext): HookVerdict {
  for (let i = 0; i < chain.length; i++) {
    const h = chain[i]!;
    const v = h.newConnection(ctx);
    if (v !== HookVerdict.Continue) {
      if (ctx.refusedBy === '') ctx.refusedBy = h.name;
      return v;
    }
  }
  return HookVerdict.Continue;
}
