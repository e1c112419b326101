import type { Logger } from 'pino';
import type { ClusterStore, Watch } from '../store/types.js';
import type { ClusterRegistry, Collection } from '../store/registry.js';
import { exists, notFound } from '../util/errors.js';
import { describeIngress, ingressRecordSchema, validateSpec, type IngressRecord, type IngressView } from './record.js';
import { IngressProxy, type ServiceLookup } from './proxy.js';

export interface IngressListen {
  address: string;
  httpPort: number;
  httpsPort: number;
}

export interface IngressControllerOptions {
  store: ClusterStore;
  registry: ClusterRegistry;
  services: ServiceLookup;
  log: Logger;
  /** Where this node serves the ingress; without it the node keeps the records but serves nothing. */
  listen?: IngressListen;
}

/**
 * Ingresses in the cluster store (collection `ingresses`), served by every node: each daemon watches the
 * collection and swaps the new rules and certificates into its IngressProxy as they change, with no
 * restart and without touching connections already open.
 */
export class IngressController {
  readonly ingresses: Collection<IngressRecord>;
  private readonly records = new Map<string, IngressRecord>();
  private watch: Watch | undefined;
  private proxy: IngressProxy | undefined;
  private applyPending = false;

  constructor(private readonly o: IngressControllerOptions) {
    this.ingresses = o.registry.collection({ kind: 'ingress', dir: 'ingresses', schema: ingressRecordSchema, keyOf: (i) => i.name });
  }

  async start(): Promise<void> {
    if (this.o.listen) {
      this.proxy = new IngressProxy({ ...this.o.listen, services: this.o.services, log: this.o.log });
      await this.proxy.start();
    }
    this.watch = await this.ingresses.watch((ev) => {
      if (ev.type === 'removed') this.records.delete(ev.record.name);
      else this.records.set(ev.record.name, ev.record);
      this.scheduleApply();
    });
    this.apply();
  }

  async stop(): Promise<void> {
    await this.watch?.cancel();
    this.watch = undefined;
    await this.proxy?.stop();
    this.proxy = undefined;
  }

  /** Coalesces a burst of watch events (the initial listing) into one rebuild. */
  private scheduleApply(): void {
    if (this.applyPending) return;
    this.applyPending = true;
    queueMicrotask(() => {
      this.applyPending = false;
      this.apply();
    });
  }

  private apply(): void {
    this.proxy?.update([...this.records.values()]);
  }

  // ---- API ----

  /** Creates an ingress, or replaces it when the body says `replace: true` (one write: no gap in service). */
  async create(input: unknown): Promise<IngressView> {
    const { record, replace } = validateSpec(input);
    const valid = ingressRecordSchema.parse(record);
    if (replace) {
      await this.ingresses.put(valid);
    } else if (!(await this.o.store.createIfAbsent(this.ingresses.keyOf(valid), JSON.stringify(valid)))) {
      throw exists(`ingress ${valid.name} already exists (use --replace to change it)`);
    }
    return describeIngress(valid);
  }

  async delete(name: string): Promise<IngressView> {
    const r = await this.ingresses.get(name).catch(() => undefined);
    if (!r) throw notFound(`ingress ${name} not found`);
    await this.ingresses.delete(name);
    return describeIngress(r);
  }

  async list(): Promise<IngressView[]> {
    return (await this.ingresses.list()).map(describeIngress);
  }

  /** This node's listeners and counters. */
  status() {
    return this.proxy ? { serving: true, ...this.proxy.status() } : { serving: false };
  }
}
