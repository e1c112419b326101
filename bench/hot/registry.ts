/**
 * The scenario registry: every scenario `bench:hot` knows, in the order they run.
 *
 * EXTENSION POINT. A new scenario is a `Scenario` (see `workload.ts`): a name `family/variant`, an
 * `unavailable()` probe (return a reason and it is listed as "not available yet" without failing the
 * run) and a `setup()` that returns a `Workload`, usually a `RingWorkload`: a device ring of one
 * port through the real `Dataplane` (with a `prepare` step if the frames must change from batch to
 * batch). Add it to a module under `scenarios/` and list it here.
 *
 * Connection tracking / NAT scenarios (router + src/nat) live in `scenarios/nat.ts`:
 *   clusterip_established/{1k,100k,1M}      conntrack lookup + DNAT + checksum update, N tracked connections
 *   new_connections/{clusterip,masquerade}  conntrack insert + NAT setup (+ source port allocation)
 *
 * Observe variants (`scenarios/observe.ts`): `<base>+capture_other_port` and `<base>+metrics_1s`.
 * NetworkPolicy (`scenarios/policy.ts`):
 *   new_connections/clusterip_policy_1k     the same with the policy hook: 1,000 policies over 10,000 pods
 */
import { dataplaneScenarios } from './scenarios/dataplane.js';
import { natScenarios } from './scenarios/nat.js';
import { observeScenarios } from './scenarios/observe.js';
import { policyScenarios } from './scenarios/policy.js';
import type { Scenario } from './workload.js';

const base = [...dataplaneScenarios, ...natScenarios];
/** Observing (issue 14): the same paths with a capture on another port, with metrics scraped every second. */
export const registry: readonly Scenario[] = [...base, ...observeScenarios(base), ...policyScenarios];

/** Scenarios whose name or family is one of `names` (all when `names` is empty); unknown names throw. */
export function select(names: readonly string[]): Scenario[] {
  if (names.length === 0) return [...registry];
  const unknown = names.filter((n) => !registry.some((s) => s.name === n || s.family === n));
  if (unknown.length > 0) {
    const known = [...new Set(registry.flatMap((s) => [s.family, s.name]))].join(', ');
    throw new Error(`unknown scenario ${unknown.map((n) => JSON.stringify(n)).join(', ')}; known: ${known}`);
  }
  return registry.filter((s) => names.includes(s.name) || names.includes(s.family));
}
