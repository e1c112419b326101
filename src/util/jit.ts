/**
 * V8 settings for the data plane's process (the daemon, and bench:hot, which measures the same code).
 *
 * Inlining. TurboFan stops inlining into an optimised function once the callees it has inlined add
 * up to `--max-inlined-bytecode-size-cumulative` bytes of bytecode (920 by default). A packet's trip
 * is a chain of small functions across layers (wire accessors, switch, router, NAT, conntrack, hooks,
 * VXLAN), written small on purpose; at the default budget the chain is cut into real calls partway.
 * Measured in instructions per packet (callgrind, a fixed workload, `node --predictable`, repeatable to
 * 0.1%): 3000 takes route_vxlan_encap/64B from 4522 to 3355 (-26%) and new_connections/clusterip
 * from 10670 to 8966 (-16%); 1840 gets only part of that. The cost is compile time and code size
 * for the few functions hot enough to be optimised.
 *
 * Tier-up. V8 optimises a function once it has run `--interrupt-budget` bytes of bytecode (66 KB by
 * default) and at least `--minimum-invocations-after-ic-update` calls (500) since its type feedback
 * last changed. Under a bulk stream that takes milliseconds; under sparse traffic (a ping every
 * 10 ms: one frame per pass, a pass per hop) it takes minutes, because each pass runs each function
 * once and every rarely-seen frame kind (ARP, a new flow) moves some feedback and restarts the 500.
 * Until then the path runs as baseline code, two to four times slower than optimised, on caches gone
 * cold in the idle time between pings. Measured on fresh daemons of the demo cluster, six runs of
 * 200 pings at 10 ms: 0.73 0.69 0.60 0.65 0.58 0.57 ms average RTT at the defaults, 0.79 0.63 0.51
 * 0.46 0.35 0.32 ms with the values below. A lower budget (4096 and 5) optimised as early but
 * with thinner feedback, and then deoptimised and re-optimised. The flags only change when code is
 * optimised, not what it computes.
 *
 * A flag given on node's own command line (`node --interrupt-budget=... podnet daemon`) wins over
 * these: an operator's or a benchmark's A/B run can set any of them.
 */
import { setFlagsFromString } from 'node:v8';

/** The inlining budget the data plane is measured and run with. */
export const INLINE_BUDGET = 3000;

/** The V8 flags set at start, unless node's command line already sets the same flag. */
export const DATA_PLANE_V8_FLAGS: readonly string[] = [
  `--max-inlined-bytecode-size-cumulative=${INLINE_BUDGET}`,
  '--interrupt-budget=16384',
  '--minimum-invocations-after-ic-update=20',
];

/** The flag's name (`--interrupt-budget` of `--interrupt-budget=16384`), with `_` and `-` the same. */
function flagName(arg: string): string {
  return arg.split('=')[0]!.replace(/_/g, '-');
}

/** The DATA_PLANE_V8_FLAGS that node's command line (`execArgv`) does not set itself. */
export function jitFlagsFor(execArgv: readonly string[]): string[] {
  const given = new Set(execArgv.filter((a) => a.startsWith('--')).map(flagName));
  return DATA_PLANE_V8_FLAGS.filter((f) => !given.has(flagName(f)));
}

let done = false;

/** Applies jitFlagsFor(process.execArgv); call once at process start, before the data plane runs. Idempotent. */
export function tuneJitForDataPlane(): void {
  if (done) return;
  done = true;
  for (const f of jitFlagsFor(process.execArgv)) setFlagsFromString(f);
}
