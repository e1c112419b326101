/** `podnet policy ...` and `podnet namespace ...`: NetworkPolicy from Kubernetes YAML/JSON, and namespace labels. */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { apiCall } from '../api/client.js';
import { parseLabelArgs } from '../daemon/pods.js';
import { PodnetError } from '../util/errors.js';
import { formatTable } from '../util/table.js';
import { parsePolicyText, type LabelSelector, type PolicyPeer, type PolicyRecord, type PolicyRule } from '../policy/spec.js';
import type { CheckResult } from '../policy/controller.js';

function print(json: boolean, data: unknown, table: () => string): void {
  process.stdout.write(json ? JSON.stringify(data, null, 2) + '\n' : table());
}

function selectorText(s: LabelSelector): string {
  const parts = Object.entries(s.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of s.matchExpressions ?? []) {
    if (e.operator === 'Exists') parts.push(e.key);
    else if (e.operator === 'DoesNotExist') parts.push(`!${e.key}`);
    else parts.push(`${e.key} ${e.operator === 'In' ? 'in' : 'notin'} (${e.values!.join(',')})`);
  }
  return parts.length === 0 ? '<all>' : parts.join(',');
}

function peerText(p: PolicyPeer): string {
  if (p.ipBlock) return `ip ${p.ipBlock.cidr}${p.ipBlock.except?.length ? ` except ${p.ipBlock.except.join(',')}` : ''}`;
  const ns = p.namespaceSelector ? `ns(${selectorText(p.namespaceSelector)})` : '';
  const pod = p.podSelector ? `pod(${selectorText(p.podSelector)})` : '';
  return [ns, pod].filter(Boolean).join('+');
}

function ruleText(r: PolicyRule): string {
  const peers = r.peers ? r.peers.map(peerText).join(' | ') : 'any';
  const ports = r.ports.length === 0 ? 'any port' : r.ports.map((p) => `${p.port ?? '*'}${p.endPort ? `-${p.endPort}` : ''}/${p.protocol}`).join(',');
  return `${peers} on ${ports}`;
}

function describeDir(isolated: boolean, rules: PolicyRule[]): string {
  if (!isolated) return '-';
  if (rules.length === 0) return 'deny all';
  return rules.map(ruleText).join('; ');
}

/** `NAME` with `-n NS`, or `NS/NAME`. */
function splitRef(ref: string, ns: string | undefined): { namespace: string; name: string } {
  const i = ref.indexOf('/');
  if (i >= 0) return { namespace: ref.slice(0, i), name: ref.slice(i + 1) };
  return { namespace: ns ?? 'default', name: ref };
}

export function addPolicyCommands(program: Command, socket: () => string): void {
  const policy = program.command('policy').alias('netpol').description('Kubernetes NetworkPolicy (networking.k8s.io/v1), enforced by every node on its pods');
  policy
    .command('add')
    .alias('apply')
    .description('create or replace the NetworkPolicies of a Kubernetes YAML or JSON file (several documents, or a List)')
    .requiredOption('-f, --file <file>', 'the YAML or JSON file ("-" for standard input)')
    .option('--json', 'print JSON')
    .action(async (o: { file: string; json?: boolean }) => {
      let text: string;
      try {
        text = readFileSync(o.file === '-' ? 0 : o.file, 'utf8');
      } catch (err) {
        throw new PodnetError('EINVALID', `invalid --file ${o.file}: ${(err as Error).message}`);
      }
      const records = parsePolicyText(text, o.file);
      // The daemon validates again: what reaches the store is what it accepts.
      const objects = records.map((r) => toObject(r));
      const res = await apiCall<Array<{ namespace: string; name: string; action: string }>>(socket(), 'POST', '/v1/policies', { policies: objects });
      print(!!o.json, res, () => res.map((r) => `networkpolicy ${r.namespace}/${r.name} ${r.action}\n`).join(''));
    });
  policy
    .command('list')
    .alias('ls')
    .description('list the policies of the cluster')
    .option('-n, --namespace <ns>', 'only this namespace')
    .option('--json', 'print JSON')
    .action(async (o: { namespace?: string; json?: boolean }) => {
      const q = o.namespace ? `?namespace=${encodeURIComponent(o.namespace)}` : '';
      const list = await apiCall<PolicyRecord[]>(socket(), 'GET', `/v1/policies${q}`);
      print(!!o.json, list, () =>
        formatTable(
          ['NAMESPACE', 'NAME', 'POD-SELECTOR', 'INGRESS', 'EGRESS'],
          list.map((p) => [p.namespace, p.name, selectorText(p.podSelector), describeDir(p.ingressIsolated, p.ingress), describeDir(p.egressIsolated, p.egress)]),
        ),
      );
    });
  policy
    .command('del <name>')
    .alias('delete')
    .description('delete a policy (NAME with -n, or NAMESPACE/NAME); new connections see the change at once')
    .option('-n, --namespace <ns>', 'its namespace (default: default)')
    .option('--json', 'print the deleted policy as JSON')
    .action(async (ref: string, o: { namespace?: string; json?: boolean }) => {
      const { namespace, name } = splitRef(ref, o.namespace);
      const p = await apiCall<PolicyRecord>(socket(), 'DELETE', `/v1/policies/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`);
      print(!!o.json, p, () => `networkpolicy ${p.namespace}/${p.name} deleted\n`);
    });
  policy
    .command('check')
    .description('would a new connection be allowed, and by which policy? (exit status 0 allowed, 3 denied)')
    .requiredOption('--from <pod>', 'the client: POD, NAMESPACE/POD or an IPv4 address')
    .requiredOption('--to <pod[:port[/proto]]>', 'the server: POD, NAMESPACE/POD or IP, with PORT and tcp|udp|sctp (no port: as a ping)')
    .option('--json', 'print JSON')
    .action(async (o: { from: string; to: string; json?: boolean }) => {
      const r = await apiCall<CheckResult>(socket(), 'POST', '/v1/policy/check', { from: o.from, to: o.to });
      const dir = (what: string, d: CheckResult['ingress']) =>
        !d ? '' : d.selectedBy.length === 0 ? `  ${what}: not isolated (no policy selects the pod)\n` : `  ${what}: ${d.allowed ? `allowed by ${d.allowedBy}` : 'denied'} (selected by ${d.selectedBy.join(', ')})\n`;
      print(!!o.json, r, () => `${r.allowed ? 'allowed' : 'denied'}: ${r.from} -> ${r.to}${r.port !== undefined ? `:${r.port}` : ''}/${r.protocol}\n${dir('egress', r.egress)}${dir('ingress', r.ingress)}`);
      if (!r.allowed) process.exitCode = 3;
    });
  policy
    .command('status')
    .description("this node's policy tables and decisions")
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const s = await apiCall<Record<string, unknown>>(socket(), 'GET', '/v1/policy/status');
      print(!!o.json, s, () => JSON.stringify(s, null, 2) + '\n');
    });

  const ns = program.command('namespace').alias('ns').description('namespace labels (what NetworkPolicy namespaceSelectors match; every namespace has kubernetes.io/metadata.name)');
  ns.command('label <name> <labels...>')
    .description('set the labels of a namespace (k=v ..., replacing its labels)')
    .action(async (name: string, labels: string[]) => {
      const r = await apiCall<{ name: string; labels: Record<string, string> }>(socket(), 'POST', '/v1/namespaces', { name, labels: parseLabelArgs(labels) });
      process.stdout.write(`namespace ${r.name} labelled\n`);
    });
  ns.command('list')
    .alias('ls')
    .description('namespaces with labels or pods')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const list = await apiCall<Array<{ name: string; labels: Record<string, string>; pods: number }>>(socket(), 'GET', '/v1/namespaces');
      print(!!o.json, list, () => formatTable(['NAME', 'PODS', 'LABELS'], list.map((n) => [n.name, String(n.pods), Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-'])));
    });
  ns.command('unlabel <name>')
    .description("remove a namespace's labels")
    .action(async (name: string) => {
      await apiCall(socket(), 'DELETE', `/v1/namespaces/${encodeURIComponent(name)}`);
    });
}

/** A record back as the Kubernetes object it was read from (what the API takes). */
export function toObject(r: PolicyRecord): Record<string, unknown> {
  const types = [...(r.ingressIsolated ? ['Ingress'] : []), ...(r.egressIsolated ? ['Egress'] : [])];
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: r.name, namespace: r.namespace },
    spec: {
      podSelector: r.podSelector,
      policyTypes: types,
      ...(r.ingressIsolated ? { ingress: r.ingress.map((x) => ({ ...(x.peers ? { from: x.peers } : {}), ...(x.ports.length ? { ports: x.ports } : {}) })) } : {}),
      ...(r.egressIsolated ? { egress: r.egress.map((x) => ({ ...(x.peers ? { to: x.peers } : {}), ...(x.ports.length ? { ports: x.ports } : {}) })) } : {}),
    },
  };
}
