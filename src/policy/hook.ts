/**
 * The policy hook at FORWARD: decides each new connection once, from the compiled tables, seeing the
 * real endpoint (after the services hook's DNAT). Ingress is decided where the destination pod lives,
 * egress where the source pod lives; an accepted connection one of whose local ends a policy selects is
 * tracked, so its later packets and replies pass through conntrack without coming back here.
 */
import { HookVerdict, Ingress, type ConnectionHook, type PacketContext } from '../dataplane/hooks.js';
import { DropReason } from '../util/counters.js';
import { IpProtocol, TcpFlags } from '../packet/index.js';
import { U32Map } from '../util/u32map.js';
import { CompiledPolicies, Decision, Dir } from './compile.js';


export class PolicyHook implements ConnectionHook {
  readonly name = 'policy';
  readonly podToPod = true;
  /** The tables in force: swapped whole by the controller. */
  compiled: CompiledPolicies | undefined;
  /** Node addresses (int32): connections between a pod and its own node are always allowed (as Kubernetes defines). */
  private node32 = new Int32Array(0);
  /** Local pod address -> slot in `denials` (2 per pod: ingress, egress). */
  private readonly slots = new U32Map(64);
  private denials = new Float64Array(64);
  private nextSlot = 0;
  private readonly freeSlots: number[] = [];
  /** Totals of decisions made here (not per packet). */
  evaluated = 0;
  allowed = 0;
  deniedIngress = 0;
  deniedEgress = 0;
  /** Connections picked up mid-stream (a TCP segment without SYN) and allowed because their reverse is. */
  pickedUp = 0;
  /** The last decision's policy index (for the flow log / tests); -1 none. */
  lastPolicy = -1;

  setNodeAddresses(ips: number[]): void {
    this.node32 = Int32Array.from(ips.map((x) => x | 0));
  }

  /** A local pod appeared: its denial counters start at zero. Control plane. */
  addPod(ip: number): void {
    if (this.slots.get(ip) >= 0) return;
    const slot = this.freeSlots.pop() ?? this.nextSlot++;
    if ((slot + 1) * 2 > this.denials.length) {
      const d = new Float64Array(this.denials.length * 2);
      d.set(this.denials);
      this.denials = d;
    }
    this.denials[slot * 2] = 0;
    this.denials[slot * 2 + 1] = 0;
    this.slots.set(ip, slot);
  }

  removePod(ip: number): void {
    const s = this.slots.get(ip);
    if (s < 0) return;
    this.slots.delete(ip);
    this.freeSlots.push(s);
  }

  /** Connections denied for the pod with this address: ingress (to it) and egress (from it). */
  podDenials(ip: number): { ingress: number; egress: number } {
    const s = this.slots.get(ip);
    return s < 0 ? { ingress: 0, egress: 0 } : { ingress: this.denials[s * 2]!, egress: this.denials[s * 2 + 1]! };
  }

  private isNode(ip: number): boolean {
    const n = this.node32;
    for (let i = 0; i < n.length; i++) if (n[i] === ip) return true;
    return false;
  }

  private count(ip: number, dir: Dir): void {
    const s = this.slots.get(ip);
    if (s >= 0) this.denials[s * 2 + dir]! += 1;
  }

  /**
   * Both directions for the connection src -> dst:dport. 0 = allowed and no local end selected,
   * 1 = allowed with a local end that some policy selects (in either direction: its replies must be
   * known to conntrack), -1 = egress denied, -2 = ingress denied. Connections between a pod and its
   * own node are always allowed.
   */
  private judge(c: CompiledPolicies, src: number, dst: number, proto: number, dport: number, fromHost: boolean): number {
    this.lastPolicy = -1;
    const srcSel = c.selectedAny(src);
    const dstSel = c.selectedAny(dst);
    if (!srcSel && !dstSel) return 0;
    // A pod reaching itself (through its own service: hairpin) is never refused: it cannot block itself.
    if (src === dst) return 1;
    if (srcSel) {
      const t = c.target(Dir.Egress, src);
      if (t >= 0 && !this.isNode(dst)) {
        const v = c.decideTarget(Dir.Egress, t, dst, proto, dport);
        if (v === Decision.Denied) return -1;
        this.lastPolicy = v;
      }
    }
    if (dstSel && !fromHost) {
      const t = c.target(Dir.Ingress, dst);
      if (t >= 0 && !this.isNode(src)) {
        const v = c.decideTarget(Dir.Ingress, t, src, proto, dport);
        if (v === Decision.Denied) return -2;
        this.lastPolicy = v;
      }
    }
    return 1;
  }

  newConnection(ctx: PacketContext): HookVerdict {
    const c = this.compiled;
    if (c === undefined) return HookVerdict.Continue;
    if (!c.selectsAny(Dir.Ingress) && !c.selectsAny(Dir.Egress)) return HookVerdict.Continue;
    const src = ctx.src;
    const dst = ctx.finalDst;
    const dport = ctx.finalDport;
    const proto = ctx.proto;
    this.evaluated++;
    const fromHost = ctx.ingress === Ingress.Host;
    let r = this.judge(c, src, dst, proto, dport, fromHost);
    if (r < 0 && proto === IpProtocol.TCP && (ctx.tcpFlags & TcpFlags.SYN) === 0 && ctx.dnatIp === 0) {
      // A segment of a connection opened before a policy selected either end (it was not tracked then):
      // picked up as conntrack's loose mode does, allowed when its reverse direction would be. A new
      // connection always starts with a SYN, so this admits no new connection.
      if (this.judge(c, dst, src, proto, ctx.sport, false) >= 0) {
        this.pickedUp++;
        r = 1;
      }
    }
    if (r >= 0) {
      this.allowed++;
      if (r === 1) ctx.track = true;
      return HookVerdict.Continue;
    }
    if (r === -1) {
      this.deniedEgress++;
      this.count(src, Dir.Egress);
      ctx.dropReason = DropReason.PolicyDeniedEgress;
    } else {
      this.deniedIngress++;
      this.count(dst, Dir.Ingress);
      ctx.dropReason = DropReason.PolicyDeniedIngress;
    }
    return HookVerdict.Drop;
  }

  stats() {
    return { evaluated: this.evaluated, allowed: this.allowed, deniedIngress: this.deniedIngress, deniedEgress: this.deniedEgress, pickedUp: this.pickedUp, tables: this.compiled?.status() };
  }
}
