/**
 * NetworkPolicy on new connections (issue 15):
 *
 *   new_connections/clusterip_policy_1k: new_connections/clusterip (every packet the SYN of a new
 *     connection to a ClusterIP, DNAT to an endpoint on another node, VXLAN) with the policy hook at
 *     FORWARD and 1,000 policies over 10,000 pods in its tables. The client pod is selected for egress
 *     by 100 of them (one of which allows its endpoints on 8080) and every endpoint by ingress ones
 *     (decided on their nodes, not here): each connection costs one `decide` (hash probes, no
 *     allocation), and the connection is tracked as every DNATed one is. Compare with
 *     new_connections/clusterip: same frames, same checks.
 */
import { HookPoint } from '../../../src/dataplane/hooks.js';
import { CompiledPolicies, Decision, Dir, type PolicyPod } from '../../../src/policy/compile.js';
import { PolicyHook } from '../../../src/policy/hook.js';
import { validatePolicy, type PolicyRecord } from '../../../src/policy/spec.js';
import { IpProtocol, parseIpv4 } from '../../../src/packet/index.js';
import type { BenchNode } from '../node.js';
import type { Scenario } from '../workload.js';
import { ENDPOINTS, newConnections } from './nat.js';

const PODS = 10_000;
const POLICIES = 1_000;

/** The cluster: the bench node's pods (app=client in ns0), the 32 endpoints (app=web), and the rest. */
export function policyCluster(node: BenchNode): { policies: PolicyRecord[]; pods: PolicyPod[] } {
  const pods: PolicyPod[] = [];
  for (const p of node.pods) pods.push({ name: p.name, node: 'bench', namespace: 'ns0', ip: p.ip, labels: { app: 'client', role: 'client' } });
  ENDPOINTS.forEach((ip, i) => pods.push({ name: `web${i}`, node: `n${ip >>> 8}`, namespace: 'ns0', ip, labels: { app: 'web' } }));
  const base = parseIpv4('10.244.16.0');
  for (let i = pods.length; i < PODS; i++) pods.push({ name: `p${i}`, node: `n${i % 40}`, namespace: `ns${i % 100}`, ip: (base + i) >>> 0, labels: { app: `a${i % 1000}`, tier: `t${i % 7}` } });
  const policies: PolicyRecord[] = [];
  const np = (i: number, namespace: string, spec: unknown) => validatePolicy({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: `p${String(i).padStart(4, '0')}`, namespace }, spec });
  for (let i = 0; i < POLICIES; i++) {
    if (i % 10 === 0) {
      // 100 egress policies selecting the client: to other apps and ports; the last allows the web endpoints.
      const last = i === POLICIES - 10;
      policies.push(
        np(i, 'ns0', {
          podSelector: { matchLabels: { role: 'client' } },
          policyTypes: ['Egress'],
          egress: [{ to: [{ podSelector: { matchLabels: { app: last ? 'web' : `a${i}` } } }], ports: [{ protocol: 'TCP', port: last ? 8080 : 9000 + i, ...(last ? {} : { endPort: 9000 + i + 5 }) }] }],
        }),
      );
    } else if (i % 10 === 1) {
      policies.push(np(i, 'ns0', { podSelector: { matchLabels: { app: 'web' } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }], ports: [{ port: 8080 }] }] }));
    } else {
      policies.push(
        np(i, `ns${i % 100}`, {
          podSelector: { matchLabels: { app: `a${i}` } },
          ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': `ns${(i + 1) % 100}` } }, podSelector: { matchLabels: { tier: `t${i % 7}` } } }, { ipBlock: { cidr: `172.${16 + (i % 16)}.0.0/16`, except: [`172.${16 + (i % 16)}.${i % 256}.0/24`] } }], ports: [{ port: 8000 + (i % 100) }] }],
        }),
      );
    }
  }
  return { policies, pods };
}

export const policyScenarios: Scenario[] = [
  {
    name: 'new_connections/clusterip_policy_1k',
    family: 'new_connections',
    frame: '54 B TCP SYN',
    description: 'as new_connections/clusterip, with the policy hook at FORWARD: 1,000 policies over 10,000 pods, the client egress-selected by 100',
    unavailable: async () => undefined,
    setup: () =>
      newConnections('clusterip', (node) => {
        const { policies, pods } = policyCluster(node);
        const hook = new PolicyHook();
        for (const p of node.pods) hook.addPod(p.ip);
        hook.compiled = new CompiledPolicies({ policies, pods, namespaces: new Map(), localNode: 'bench' });
        // The client really is selected (by 100 policies) and its connections are decided, not waved through.
        const c = hook.compiled;
        if (c.status().egressTargets !== 1) throw new Error('policy scenario: the client pods should share one egress target class');
        if (c.decide(Dir.Egress, node.pods[0]!.ip, ENDPOINTS[0]!, IpProtocol.TCP, 8080) < 0) throw new Error('policy scenario: the endpoints should be allowed');
        if (c.decide(Dir.Egress, node.pods[0]!.ip, ENDPOINTS[0]!, IpProtocol.TCP, 8081) !== Decision.Denied) throw new Error('policy scenario: another port should be denied');
        node.router.hooks.register(HookPoint.Forward, hook);
      }),
  },
];
