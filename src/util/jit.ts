/**
 * V8 settings for the data plane's process (the daemon, and bench:hot, which measures the same code).
 *
 * TurboFan stops inlining into an optimised function once the callees it has inlined add up to
 * `--max-inlined-bytecode-size-cumulative` bytes of bytecode (920 by default). A packet's trip is a
 * chain of small functions across layers (wire accessors, switch, router, NAT, conntrack, hooks,
 * VXLAN), written small on purpose; at the default budget the chain is cut into real calls partway.
 * Measured in instructions per packet (callgrind, a fixed workload, `node --predictable`, repeatable to
 * 0.1%): 3000 takes route_vxlan_encap/64B from 4522 to 3355 (-26%) and new_connections/clusterip
 * from 10670 to 8966 (-16%); 1840 gets only part of that. The cost is compile time and code size
 * for the few functions hot enough to be optimised.
 */
import { setFlagsFromString } from 'node:v8';

/** The inlining budget the data plane is measured and run with. */
export const INLINE_BUDGET = 3000;

let done = false;

/** Raises TurboFan's inlining budget; call once at process start, before the data plane runs. Idempotent. */
export function tuneJitForDataPlane(): void {
  if (done) return;
  done = true;
  setFlagsFromString(`--max-inlined-bytecode-size-cumulative=${INLINE_BUDGET}`);
}
