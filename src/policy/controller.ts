/**
 * NetworkPolicy's control plane: policies and namespace labels live in the cluster store; every node
 * watches them and the pods, compiles the tables for its own pods and swaps them into its hook.
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Watch } from '../store/types.js';
import type { ClusterRegistry, Collection, PodRecord } from '../store/registry.js';
import { HookPoint } from '../dataplane/hooks.js';
import type { Router } from '../dataplane/router.js';
import { IpProtocol } from '../packet/index.js';
import { parseIpv4, ipv4ToString } from '../packet/addr.js';
import { invalid, notFound } from '../util/errors.js';
import { CompiledPolicies, explain, type Explanation, type PolicyPod } from './compile.js';
import type { PolicyHook } from './hook.js';
import { policyKey, policyRecordSchema, validatePolicy, type PolicyRecord } from './spec.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

export const namespaceRecordSchema = z.object({
  name: z.string().regex(DNS_LABEL, 'must be a DNS label'),
  labels: z.record(z.string().regex(LABEL_KEY, 'must be a label key'), z.string().regex(LABEL_VALUE, 'must be a label value')),
});
export type NamespaceRecord = z.infer<typeof namespaceRecordSchema>;

export interface PolicyControllerOptions {
  registry: ClusterRegistry;
  node: string;
  log: Logger;
}

export interface CheckResult extends Explanation {
  from: string;
  to: string;
  protocol: string;
  port?: number;
}

export function toPolicyPod(p: PodRecord): PolicyPod {
  return { name: p.name, node: p.node, namespace: p.namespace ?? 'default', ip: parseIpv4(p.ip), labels: p.labels, ...(p.namedPorts ? { namedPorts: p.namedPorts } : {}) };
}

export class PolicyController {
  readonly policies: Collection<PolicyRecord>;
  readonly namespaces: Collection<NamespaceRecord>;
  private readonly pol = new Map<string, PolicyRecord>();
  private readonly pods = new Map<string, PodRecord>();
  private readonly ns = new Map<string, Record<string, string>>();
  private watches: Watch[] = [];
  private hook: PolicyHook | undefined;
  private router: Router | undefined;
  private unregister: (() => void) | undefined;
  private pending: NodeJS.Immediate | undefined;
  /** Figures of the last compilation (status). */
  compiles = 0;
  lastCompileMs = 0;
  lastError: string | undefined;

  constructor(private readonly o: PolicyControllerOptions) {
    this.policies = o.registry.collection({ kind: 'network policy', dir: 'networkpolicies', schema: policyRecordSchema, keyOf: (p) => policyKey(p) });
    this.namespaces = o.registry.collection({ kind: 'namespace', dir: 'namespaces', schema: namespaceRecordSchema, keyOf: (n) => n.name });
  }

  /** Follows the store and programs `hook` on `router` (none: API only). */
  async start(router: Router | undefined, hook: PolicyHook | undefined): Promise<void> {
    this.router = router;
    this.hook = hook;
    this.watches.push(
      await this.policies.watch((ev) => {
        const k = policyKey(ev.record);
        if (ev.type === 'removed') this.pol.delete(k);
        else this.pol.set(k, ev.record);
        this.schedule();
      }),
      await this.namespaces.watch((ev) => {
        if (ev.type === 'removed') this.ns.delete(ev.record.name);
        else this.ns.set(ev.record.name, ev.record.labels);
        this.schedule();
      }),
      await this.o.registry.watchPods((ev) => {
        const k = `${ev.pod.node}/${ev.pod.name}`;
        if (ev.type === 'removed') this.pods.delete(k);
        else this.pods.set(k, ev.pod);
        this.schedule();
      }),
    );
    this.rebuild();
  }

  async stop(): Promise<void> {
    if (this.pending) clearImmediate(this.pending);
    this.pending = undefined;
    for (const w of this.watches) await w.cancel();
    this.watches = [];
    this.unregister?.();
    this.unregister = undefined;
  }

  /** Coalesces bursts of watch events (the initial listing, many pods at once) into one compilation. */
  private schedule(): void {
    if (this.pending) return;
    this.pending = setImmediate(() => {
      this.pending = undefined;
      this.rebuild();
    });
  }

  /**
   * Compiles the tables for this node's pods and swaps them in (one reference: a new connection sees
   * the old tables or the new). The hook is registered at FORWARD only while a policy selects a pod
   * of this node. Connections already tracked keep going (see docs/ARCHITECTURE.md).
   */
  private rebuild(): void {
    const hook = this.hook;
    const router = this.router;
    if (!hook || !router) return;
    const t0 = performance.now();
    let compiled: CompiledPolicies;
    try {
      compiled = new CompiledPolicies({ policies: [...this.pol.values()], pods: [...this.pods.values()].map(toPolicyPod), namespaces: this.ns, localNode: this.o.node });
    } catch (err) {
      // The previous tables stay in force.
      this.lastError = (err as Error).message;
      this.o.log.error({ err: this.lastError }, 'network policies could not be compiled; the previous tables stay in force');
      return;
    }
    this.lastError = undefined;
    this.lastCompileMs = performance.now() - t0;
    this.compiles++;
    hook.compiled = compiled;
    const active = compiled.selectsAny(0) || compiled.selectsAny(1);
    if (active && !this.unregister) this.unregister = router.hooks.register(HookPoint.Forward, hook);
    else if (!active && this.unregister) {
      this.unregister();
      this.unregister = undefined;
    }
    this.o.log.debug({ ...compiled.status(), ms: Math.round(this.lastCompileMs) }, 'network policies compiled');
  }

  // ---- API ----

  /** Creates or replaces policies (as `kubectl apply`): one put each, so a change is one watch event. */
  async apply(input: unknown): Promise<Array<{ namespace: string; name: string; action: 'created' | 'configured' }>> {
    const list = (input as { policies?: unknown })?.policies;
    if (!Array.isArray(list) || list.length === 0) throw invalid('policies: must be a non-empty list of NetworkPolicy objects');
    const records = list.map((o, i) => {
      try {
        return validatePolicy(o);
      } catch (err) {
        throw list.length > 1 ? invalid(`object ${i + 1}: ${(err as Error).message}`) : err;
      }
    });
    const out: Array<{ namespace: string; name: string; action: 'created' | 'configured' }> = [];
    for (const r of records) {
      const existed = await this.policies.get(policyKey(r));
      await this.policies.put(r);
      out.push({ namespace: r.namespace, name: r.name, action: existed ? 'configured' : 'created' });
    }
    return out;
  }

  async list(namespace?: string): Promise<PolicyRecord[]> {
    const all = await this.policies.list();
    return all.filter((p) => namespace === undefined || p.namespace === namespace).sort((a, b) => (policyKey(a) < policyKey(b) ? -1 : 1));
  }

  async delete(namespace: string, name: string): Promise<PolicyRecord> {
    const k = `${namespace}/${name}`;
    const p = await this.policies.get(k).catch(() => undefined);
    if (!p) throw notFound(`network policy ${k} not found`);
    await this.policies.delete(k);
    return p;
  }

  async setNamespace(input: unknown): Promise<NamespaceRecord> {
    const r = namespaceRecordSchema.safeParse(input);
    if (!r.success) throw invalid(`invalid namespace: ${r.error.issues.map((i) => `${i.path.join('.') || '(namespace)'}: ${i.message}`).join('; ')}`);
    await this.namespaces.put(r.data);
    return r.data;
  }

  async listNamespaces(): Promise<Array<NamespaceRecord & { pods: number }>> {
    const labelled = new Map((await this.namespaces.list()).map((n) => [n.name, n.labels]));
    const pods = await this.o.registry.listPods();
    const names = new Set([...labelled.keys(), ...pods.map((p) => p.namespace ?? 'default'), 'default']);
    return [...names].sort().map((name) => ({ name, labels: labelled.get(name) ?? {}, pods: pods.filter((p) => (p.namespace ?? 'default') === name).length }));
  }

  async deleteNamespace(name: string): Promise<void> {
    if (!(await this.namespaces.delete(name))) throw notFound(`namespace ${name} has no labels to remove`);
  }

  /**
   * `policy check`: would a new connection from `from` to `to` (a pod, `NAMESPACE/POD`, or for `to`
   * an address) on `port`/`protocol` be allowed, and by which policy? From the store as it is now.
   */
  async check(q: { from?: unknown; to?: unknown }): Promise<CheckResult> {
    if (typeof q.from !== 'string' || q.from === '') throw invalid('--from: must be a pod (NAME or NAMESPACE/NAME) or an IPv4 address');
    if (typeof q.to !== 'string' || q.to === '') throw invalid('--to: must be POD[:PORT[/PROTO]] or IP[:PORT[/PROTO]]');
    const m = /^([^:]+)(?::(\d{1,5})(?:\/(tcp|udp|sctp))?|:?\/?(tcp|udp|sctp|icmp))?$/i.exec(q.to);
    if (!m) throw invalid(`--to ${JSON.stringify(q.to)}: expected POD[:PORT[/tcp|udp|sctp]]`);
    const port = m[2] !== undefined ? Number(m[2]) : undefined;
    if (port !== undefined && (port < 1 || port > 65535)) throw invalid(`--to ${q.to}: port ${port} is not in 1-65535`);
    const protoName = (m[3] ?? m[4] ?? (port !== undefined ? 'tcp' : 'icmp')).toUpperCase();
    const proto = protoName === 'TCP' ? IpProtocol.TCP : protoName === 'UDP' ? IpProtocol.UDP : protoName === 'SCTP' ? 132 : IpProtocol.ICMP;
    const pods = (await this.o.registry.listPods()).map(toPolicyPod);
    const policies = await this.policies.list();
    const namespaces = new Map((await this.namespaces.list()).map((n) => [n.name, n.labels]));
    const from = resolveEnd(pods, q.from, '--from');
    const to = resolveEnd(pods, m[1]!, '--to');
    if (typeof from === 'number' && typeof to === 'number') throw invalid('--from and --to: at least one must be a pod');
    const e = explain(policies, namespaces, from, to, proto, port ?? 0);
    const name = (x: PolicyPod | number) => (typeof x === 'number' ? ipv4ToString(x) : `${x.namespace}/${x.name}`);
    return { from: name(from), to: name(to), protocol: protoName, ...(port !== undefined ? { port } : {}), ...e };
  }

  status() {
    return { ...this.hook?.stats(), registered: this.unregister !== undefined, compiles: this.compiles, lastCompileMs: Math.round(this.lastCompileMs * 10) / 10, ...(this.lastError ? { lastError: this.lastError } : {}) };
  }
}

/** A pod by NAME or NAMESPACE/NAME (unique in the cluster), or an IPv4 address (a pod's, or outside). */
function resolveEnd(pods: PolicyPod[], ref: string, flag: string): PolicyPod | number {
  if (/^\d+\.\d+\.\d+\.\d+$/.test(ref)) {
    let ip: number;
    try {
      ip = parseIpv4(ref);
    } catch {
      throw invalid(`${flag} ${ref}: not an IPv4 address`);
    }
    return pods.find((p) => p.ip >>> 0 === ip >>> 0) ?? ip;
  }
  const slash = ref.indexOf('/');
  const ns = slash >= 0 ? ref.slice(0, slash) : undefined;
  const name = slash >= 0 ? ref.slice(slash + 1) : ref;
  const found = pods.filter((p) => p.name === name && (ns === undefined || p.namespace === ns));
  if (found.length === 0) throw notFound(`${flag} ${ref}: no such pod in the cluster`);
  if (found.length > 1) throw invalid(`${flag} ${ref}: ${found.length} pods have that name (${found.map((p) => `${p.namespace}/${p.name} on ${p.node}`).join(', ')}): give NAMESPACE/NAME`);
  return found[0]!;
}
