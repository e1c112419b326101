/**
 * The iptables rules that keep the host kernel away from the traffic the uplink takes off the wire.
 *
 * Everything lives in the `raw` table, in two chains of our own so removal is exact:
 * - `PODNET-UPLINK`, jumped to from PREROUTING for packets in on the uplink interface: DROP TCP/UDP to
 *   the node IP in the NodePort and masquerade ranges, and everything to an announced IP. raw
 *   PREROUTING runs before connection tracking and before the routing decision, so the kernel neither
 *   answers these packets (no RST, no ICMP port unreachable) nor forwards them; libpcap has already
 *   seen them by then. ICMP to the node is left alone: the host needs it.
 * - `PODNET-UPLINK-OUT`, jumped to from OUTPUT for packets out on the uplink: CT --notrack for what
 *   podnet sends from those addresses and ports (its replies and masqueraded egress, written with our
 *   own headers on a raw socket), so the host's conntrack and nat table (a catch-all MASQUERADE, say,
 *   possibly --random-fully) never track or rewrite packets whose flows podnet tracks itself.
 *
 * Each step of an install registers its removal on an `Undo` stack: a failure half-way removes what
 * was added, and `remove()` unwinds the whole stack (jumps deleted, chains flushed and deleted).
 */
import type { Logger } from 'pino';

import { run, Undo } from '../netns/run.js';
import { ErrorCode, PodnetError } from '../util/errors.js';
import { announcedRuleSpecs, nodeRuleSpecs } from './filter.js';

export const UPLINK_CHAIN = 'PODNET-UPLINK';
export const UPLINK_OUT_CHAIN = 'PODNET-UPLINK-OUT';

interface Hook {
  builtin: 'PREROUTING' | 'OUTPUT';
  chain: string;
  ifFlag: '-i' | '-o';
}
const IN_HOOK: Hook = { builtin: 'PREROUTING', chain: UPLINK_CHAIN, ifFlag: '-i' };
const OUT_HOOK: Hook = { builtin: 'OUTPUT', chain: UPLINK_OUT_CHAIN, ifFlag: '-o' };
const HOOKS = [IN_HOOK, OUT_HOOK] as const;

export interface UplinkRulesOptions {
  /** The iptables command (default `iptables`, whichever backend it is). */
  iptables: string;
  iface: string;
  nodeIp: string;
  nodePortRange: readonly [number, number];
  masqueradePortRange: readonly [number, number];
  log?: Logger;
}

export class UplinkRules {
  /** Removal of everything installed and still owned, newest first. */
  private readonly owned: Undo;
  private removed = false;

  private constructor(
    private readonly opts: UplinkRulesOptions,
    owned: Undo,
  ) {
    this.owned = owned;
  }

  private static ipt(iptables: string, args: readonly string[]) {
    return run(iptables, ['-w', '-t', 'raw', ...args]);
  }
  private ipt(args: readonly string[]) {
    return UplinkRules.ipt(this.opts.iptables, args);
  }

  /**
   * Installs both chains and their jumps (inserted first in PREROUTING / OUTPUT, so an earlier ACCEPT
   * cannot bypass them). Chains of ours left by a process that died without cleaning up are removed
   * first; if a rule podnet did not make refers to them, nothing is changed and the install fails.
   */
  static async install(opts: UplinkRulesOptions): Promise<UplinkRules> {
    // Chains a previous daemon of this node left in place on purpose (a restart keeps them, so the
    // host kernel never answers traffic meant for podnet, e.g. with a RST on a node port): taken
    // over with their contents replaced in one transaction, never removed first.
    const adopted = await UplinkRules.adopt(opts).catch(() => undefined);
    if (adopted) return new UplinkRules(opts, adopted);
    try {
      await UplinkRules.removeStale(opts);
    } catch (err) {
      if (err instanceof PodnetError && err.code === ErrorCode.Precondition) throw err;
      throw new PodnetError(codeOf(err), `uplink ${opts.iface}: removing iptables rules left by an earlier run failed: ${(err as Error).message}`);
    }
    const undo = new Undo();
    const ipt = (args: readonly string[]) => UplinkRules.ipt(opts.iptables, args);
    try {
      const specs = nodeRuleSpecs(opts.nodeIp, opts.nodePortRange, opts.masqueradePortRange);
      for (const [hook, rules] of [
        [IN_HOOK, specs.in],
        [OUT_HOOK, specs.out],
      ] as const) {
        await ipt(['-N', hook.chain]);
        undo.push(`chain ${hook.chain}`, () => dropChain(opts.iptables, hook.chain));
        for (const spec of rules) await ipt(['-A', hook.chain, ...spec]);
        const jump = [hook.ifFlag, opts.iface, '-j', hook.chain];
        await ipt(['-I', hook.builtin, '1', ...jump]);
        undo.push(`jump ${hook.builtin} -> ${hook.chain}`, () => ipt(['-D', hook.builtin, ...jump]));
      }
    } catch (err) {
      await undo.unwind((what, e) => opts.log?.error({ err: e }, `uplink ${opts.iface}: could not remove ${what} after a failed install`));
      throw new PodnetError(codeOf(err), `uplink ${opts.iface}: installing iptables rules failed: ${(err as Error).message}`);
    }
    return new UplinkRules(opts, undo);
  }

  /**
   * Adds the rules for one announced IP; their removal goes on `undo` (the caller's operation), and
   * they are owned by the chains afterwards (flushed on `remove()`).
   */
  async addAnnounced(ip: string, undo: Undo): Promise<void> {
    const s = announcedRuleSpecs(ip);
    await this.ipt(['-A', UPLINK_CHAIN, ...s.in]);
    undo.push(`${UPLINK_CHAIN} rule for ${ip}`, () => this.ipt(['-D', UPLINK_CHAIN, ...s.in]));
    await this.ipt(['-A', UPLINK_OUT_CHAIN, ...s.out]);
    undo.push(`${UPLINK_OUT_CHAIN} rule for ${ip}`, () => this.ipt(['-D', UPLINK_OUT_CHAIN, ...s.out]));
  }

  /** Deletes the rules for one announced IP. Failures are logged, not thrown: `remove()` flushes anyway. */
  async removeAnnounced(ip: string): Promise<void> {
    const s = announcedRuleSpecs(ip);
    for (const [chain, spec] of [
      [UPLINK_CHAIN, s.in],
      [UPLINK_OUT_CHAIN, s.out],
    ] as const) {
      try {
        await this.ipt(['-D', chain, ...spec]);
      } catch (err) {
        this.opts.log?.warn({ err }, `uplink ${this.opts.iface}: could not delete the ${chain} rule for ${ip}`);
      }
    }
  }

  /**
   * When both chains exist and both jumps to them are in place, rewrites the chains' rules with
   * `iptables-restore --noflush` (one atomic commit: a chain named in it is flushed and refilled in
   * the same transaction) and returns their removal; otherwise undefined and nothing is changed.
   */
  private static async adopt(opts: UplinkRulesOptions): Promise<Undo | undefined> {
    for (const h of HOOKS) {
      await UplinkRules.ipt(opts.iptables, ['-S', h.chain]);
      await UplinkRules.ipt(opts.iptables, ['-C', h.builtin, h.ifFlag, opts.iface, '-j', h.chain]);
    }
    const specs = nodeRuleSpecs(opts.nodeIp, opts.nodePortRange, opts.masqueradePortRange);
    const lines = [
      '*raw',
      `:${UPLINK_CHAIN} - [0:0]`,
      `:${UPLINK_OUT_CHAIN} - [0:0]`,
      ...specs.in.map((spec) => `-A ${UPLINK_CHAIN} ${spec.join(' ')}`),
      ...specs.out.map((spec) => `-A ${UPLINK_OUT_CHAIN} ${spec.join(' ')}`),
      'COMMIT',
      '',
    ];
    await run(`${opts.iptables}-restore`, ['-w', '--noflush'], { input: lines.join('\n') });
    const undo = new Undo();
    for (const h of HOOKS) {
      undo.push(`chain ${h.chain}`, () => dropChain(opts.iptables, h.chain));
      const jump = [h.ifFlag, opts.iface, '-j', h.chain];
      undo.push(`jump ${h.builtin} -> ${h.chain}`, () => UplinkRules.ipt(opts.iptables, ['-D', h.builtin, ...jump]));
    }
    opts.log?.info({ interface: opts.iface }, 'uplink: iptables rules of the previous run taken over');
    return undo;
  }

  /** Forgets the rules without removing them: they stay for the next daemon of this node (`adopt`). */
  keep(): void {
    this.removed = true;
  }

  /** Removes every rule and chain installed. Idempotent; throws once, listing what could not be removed. */
  async remove(): Promise<void> {
    if (this.removed) return;
    this.removed = true;
    const failed: string[] = [];
    await this.owned.unwind((what, err) => failed.push(`${what}: ${(err as Error).message}`));
    if (failed.length > 0) {
      throw new PodnetError(ErrorCode.Command, `uplink ${this.opts.iface}: could not remove ${failed.join('; ')}`);
    }
  }

  private static async removeStale(opts: UplinkRulesOptions): Promise<void> {
    const { stdout } = await UplinkRules.ipt(opts.iptables, ['-S']);
    const lines = stdout.split('\n').map((l) => l.trim());
    const existing = new Set(lines.filter((l) => l.startsWith('-N ')).map((l) => l.slice(3)));
    const stale = HOOKS.filter((h) => existing.has(h.chain));
    if (stale.length === 0) return;
    const ours = new Set<string>(HOOKS.map((h) => h.chain));
    const staleNames = new Set(stale.map((h) => h.chain));
    const jumps: string[][] = [];
    const foreign: string[] = [];
    for (const line of lines) {
      if (!line.startsWith('-A ')) continue;
      const tok = line.split(/\s+/);
      const targets = tok.some((t, i) => (t === '-j' || t === '-g') && staleNames.has(tok[i + 1] ?? ''));
      if (!targets) continue;
      const from = tok[1] ?? '';
      if ((from === 'PREROUTING' || from === 'OUTPUT') && !line.includes('"')) jumps.push(['-D', ...tok.slice(1)]);
      else if (!ours.has(from)) foreign.push(line);
    }
    const names = stale.map((h) => h.chain).join(', ');
    if (foreign.length > 0) {
      throw new PodnetError(
        ErrorCode.Precondition,
        `uplink ${opts.iface}: iptables raw chain(s) ${names} exist and are used by rules podnet did not make (${foreign.join('; ')}); remove those rules first`,
      );
    }
    opts.log?.warn({ chains: names }, `uplink ${opts.iface}: removing iptables rules left by an earlier podnet run`);
    for (const args of jumps) await UplinkRules.ipt(opts.iptables, args);
    for (const h of stale) await dropChain(opts.iptables, h.chain);
  }
}

async function dropChain(iptables: string, chain: string): Promise<void> {
  await run(iptables, ['-w', '-t', 'raw', '-F', chain]);
  await run(iptables, ['-w', '-t', 'raw', '-X', chain]);
}

function codeOf(err: unknown): ErrorCode {
  return err instanceof PodnetError ? err.code : ErrorCode.Command;
}
