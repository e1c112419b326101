/**
 * Typed cluster records on top of a ClusterStore, modelled on flannel's subnet manager.
 *
 * Key layout (root defaults to /podnet):
 *   <root>/subnets/<net>-<prefix>   a node's claim on a pod subnet, bound to the node's lease
 *                                   value: {"node","underlayIp","vtepMac"}
 *   <root>/nodes/<name>             NodeRecord, bound to the node's lease
 *   <root>/node-subnets/<name>      {"subnet"}: the subnet the node last held (no lease), so a node that
 *                                   re-registers gets it back if it is still ours or free
 *   <root>/pods/<node>/<name>       PodRecord
 *
 * A node's registration lives as long as its lease: when the daemon dies and stops refreshing it, the
 * subnet claim and the node record disappear together and every watcher sees the node removed.
 *
 * Records are JSON, validated with zod when written (invalid input throws EINVALID) and when read
 * (a malformed record from the store is logged and skipped, never fatal). `Collection<T>` holds the
 * generic list/watch/put/delete logic, so a new record kind (services, ingresses) is a schema, a key
 * function and a few one-line methods.
 */
import { z } from 'zod';
import { pino, type Logger } from 'pino';
import { StoreError, StoreErrorCode } from './errors.js';
import { cidrContains, formatCidr, isIpv4, nthSubnet, parseCidr, subnetCount, type Cidr } from './subnet.js';
import type { ClusterStore, KeyValue, Lease, PutOptions, Watch } from './types.js';

// ---- record types ----

export interface NodeRecord {
  name: string;
  /** Address other nodes send VXLAN to. */
  underlayIp: string;
  /** MAC of the node's VTEP (the inner source MAC of its VXLAN frames). */
  vtepMac: string;
  /** The node's pod subnet, e.g. "10.244.3.0/24". */
  subnet: string;
  /** It takes VXLAN remote checksum offload (RCO); absent (older daemons, kernel nodes without remcsumrx): no. */
  rco?: boolean;
}

export interface PodRecord {
  name: string;
  node: string;
  ip: string;
  mac: string;
  labels: Record<string, string>;
  /** Its Kubernetes namespace (NetworkPolicy); absent in records of older daemons: `default`. */
  namespace?: string;
  /** Named container ports (NetworkPolicy's named ports). */
  namedPorts?: Array<{ name: string; port: number; protocol: 'TCP' | 'UDP' | 'SCTP' }>;
}

export type RecordEventType = 'added' | 'updated' | 'removed';
/** For 'removed', `record` is the last version seen. */
export interface RecordEvent<T> {
  type: RecordEventType;
  record: T;
}
export interface NodeEvent {
  type: RecordEventType;
  node: NodeRecord;
}
export interface PodEvent {
  type: RecordEventType;
  pod: PodRecord;
}

// ---- schemas ----

/** One path component of a key: DNS-subdomain-like, so it can never contain "/". */
export const nameSchema = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'must be 1-253 lowercase letters, digits, "-" or ".", starting and ending with a letter or digit');
const ipv4Schema = z.string().refine(isIpv4, 'must be an IPv4 address such as 192.168.1.10');
const macSchema = z.string().regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/, 'must be a MAC address such as 02:00:0a:f4:01:00');
const cidrSchema = z.string().refine((s) => {
  try {
    parseCidr(s, true);
    return true;
  } catch {
    return false;
  }
}, 'must be an IPv4 CIDR such as 10.244.1.0/24');

export const nodeRecordSchema = z.object({
  name: nameSchema,
  underlayIp: ipv4Schema,
  vtepMac: macSchema,
  subnet: cidrSchema,
  rco: z.boolean().optional(),
});

export const podRecordSchema = z.object({
  name: nameSchema,
  node: nameSchema,
  ip: ipv4Schema,
  mac: macSchema,
  labels: z.record(z.string().min(1), z.string()),
  namespace: z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'must be a DNS label').optional(),
  namedPorts: z.array(z.object({ name: z.string(), port: z.number().int().min(1).max(65535), protocol: z.enum(['TCP', 'UDP', 'SCTP']) })).optional(),
});

const nodeIdentitySchema = nodeRecordSchema.omit({ subnet: true });
const subnetClaimSchema = z.object({ node: nameSchema, underlayIp: ipv4Schema, vtepMac: macSchema });
const subnetPreferenceSchema = z.object({ subnet: cidrSchema });

function describeIssues(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.length ? i.path.join('.') : '(record)'}: ${i.message}`).join('; ');
}

function validate<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new StoreError(StoreErrorCode.InvalidArgument, `invalid ${what}: ${describeIssues(r.error)}`);
  return r.data;
}

// ---- generic collection ----

export interface CollectionSpec<T> {
  /** Singular name for messages, e.g. "node". */
  kind: string;
  /** Directory under the root, e.g. "nodes". */
  dir: string;
  schema: z.ZodType<T>;
  /** Key relative to the directory: one or more `nameSchema` components joined by "/". */
  keyOf(record: T): string;
}

/**
 * A directory of typed JSON records. `watch` delivers the current records as 'added' first, then every
 * change, without gaps (snapshot revision + watch from the next revision). If the underlying watch
 * fails (e.g. its history was compacted) it re-reads the snapshot, emits the difference and resumes.
 */
export class Collection<T> {
  readonly prefix: string;

  constructor(
    private readonly store: ClusterStore,
    root: string,
    private readonly spec: CollectionSpec<T>,
    private readonly log: Logger,
  ) {
    this.prefix = `${root}/${spec.dir}/`;
  }

  keyOf(record: T): string {
    return this.prefix + this.spec.keyOf(record);
  }

  /** Validates and writes `record`; returns the revision. */
  async put(record: T, opts?: PutOptions): Promise<number> {
    const valid = validate(this.spec.schema, record, this.spec.kind);
    return this.store.put(this.keyOf(valid), JSON.stringify(valid), opts);
  }

  async get(relKey: string): Promise<T | undefined> {
    const kv = await this.store.get(this.prefix + relKey);
    return kv ? this.parse(kv) : undefined;
  }

  async delete(relKey: string): Promise<boolean> {
    return this.store.delete(this.prefix + relKey);
  }

  /** Valid records under `relPrefix` (default: all), sorted by key. */
  async list(relPrefix = ''): Promise<T[]> {
    const kvs = await this.store.list(this.prefix + relPrefix);
    const out: T[] = [];
    for (const kv of kvs) {
      const rec = this.parse(kv);
      if (rec !== undefined) out.push(rec);
    }
    return out;
  }

  /** The record stored in `kv`, or undefined (logged) if it is malformed or stored under the wrong key. */
  parse(kv: KeyValue): T | undefined {
    let json: unknown;
    try {
      json = JSON.parse(kv.value);
    } catch {
      this.log.warn({ key: kv.key, reason: 'not JSON' }, `skipping malformed ${this.spec.kind} record`);
      return undefined;
    }
    const r = this.spec.schema.safeParse(json);
    if (!r.success) {
      this.log.warn({ key: kv.key, reason: describeIssues(r.error) }, `skipping malformed ${this.spec.kind} record`);
      return undefined;
    }
    if (this.keyOf(r.data) !== kv.key) {
      this.log.warn({ key: kv.key, reason: `record belongs at ${this.keyOf(r.data)}` }, `skipping malformed ${this.spec.kind} record`);
      return undefined;
    }
    return r.data;
  }

  async watch(cb: (ev: RecordEvent<T>) => void): Promise<Watch> {
    const cache = new Map<string, { record: T; value: string }>();
    let current: Watch | undefined;
    let stopped = false;

    const emit = (type: RecordEventType, record: T) => {
      try {
        cb({ type, record });
      } catch (err) {
        this.log.error({ err, kind: this.spec.kind }, 'watch callback threw');
      }
    };
    const apply = (kv: KeyValue) => {
      const prev = cache.get(kv.key);
      if (prev && prev.value === kv.value) return;
      const record = this.parse(kv);
      if (record === undefined) {
        // A record that became malformed is no longer usable: treat it as gone.
        if (prev) {
          cache.delete(kv.key);
          emit('removed', prev.record);
        }
        return;
      }
      cache.set(kv.key, { record, value: kv.value });
      emit(prev ? 'updated' : 'added', record);
    };
    const remove = (key: string) => {
      const prev = cache.get(key);
      if (!prev) return;
      cache.delete(key);
      emit('removed', prev.record);
    };

    const start = async (): Promise<void> => {
      const snap = await this.store.snapshot(this.prefix);
      if (stopped) return;
      const present = new Set(snap.kvs.map((kv) => kv.key));
      for (const key of [...cache.keys()]) if (!present.has(key)) remove(key);
      for (const kv of snap.kvs) apply(kv);
      const w = await this.store.watch(
        this.prefix,
        (ev) => {
          if (stopped) return;
          if (ev.type === 'put') apply(ev.kv);
          else remove(ev.key);
        },
        { fromRevision: snap.revision + 1, onError: (err) => void resync(err) },
      );
      if (stopped) await w.cancel();
      else current = w;
    };
    const resync = async (err: Error): Promise<void> => {
      current = undefined;
      for (let attempt = 0; !stopped; attempt++) {
        this.log.warn({ err, kind: this.spec.kind, attempt }, 'watch interrupted; re-reading and resuming');
        try {
          await start();
          return;
        } catch (e) {
          err = e as Error;
          await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** attempt)));
        }
      }
    };

    await start();
    return {
      cancel: async () => {
        stopped = true;
        const w = current;
        current = undefined;
        await w?.cancel();
      },
    };
  }
}

// ---- registry ----

export interface NodeIdentity {
  name: string;
  underlayIp: string;
  vtepMac: string;
  /** See `NodeRecord.rco`. */
  rco?: boolean;
}

export interface RegisterOptions {
  /** The cluster's pod CIDR, e.g. "10.244.0.0/16". */
  podCidr: string;
  /** Prefix length of each node's subnet, e.g. 24. */
  subnetPrefix: number;
  /** TTL of the node's lease; the store keeps it alive while the daemon runs. */
  leaseTtlSeconds: number;
}

export interface NodeRegistration {
  node: NodeRecord;
  subnet: string;
  /** Keep it: when it emits 'lost' the registration is gone and the node must register again. */
  lease: Lease;
}

export interface RegistryOptions {
  /** Key root. Default "/podnet". */
  root?: string;
  log?: Logger;
}

export class ClusterRegistry {
  readonly root: string;
  readonly nodes: Collection<NodeRecord>;
  readonly pods: Collection<PodRecord>;
  private readonly log: Logger;
  /** Leases of the nodes this registry registered, to revoke on re-registration / deregistration. */
  private readonly ownLeases = new Map<string, Lease>();

  constructor(
    private readonly store: ClusterStore,
    opts: RegistryOptions = {},
  ) {
    const root = opts.root ?? '/podnet';
    if (!/^(\/[^/]+)+$/.test(root)) {
      throw new StoreError(StoreErrorCode.InvalidArgument, `registry root must look like /podnet (no trailing slash), got ${JSON.stringify(root)}`);
    }
    this.root = root;
    this.log = opts.log ?? pino({ name: 'podnet-registry', level: 'warn' });
    this.nodes = this.collection({ kind: 'node', dir: 'nodes', schema: nodeRecordSchema, keyOf: (n) => n.name });
    this.pods = this.collection({ kind: 'pod', dir: 'pods', schema: podRecordSchema, keyOf: (p) => `${p.node}/${p.name}` });
  }

  /** A typed record directory under this registry's root (how services/ingresses get added). */
  collection<T>(spec: CollectionSpec<T>): Collection<T> {
    return new Collection(this.store, this.root, spec, this.log);
  }

  private subnetKey(c: Cidr): string {
    return `${this.root}/subnets/${formatCidr(c).replace('/', '-')}`;
  }

  private preferenceKey(name: string): string {
    return `${this.root}/node-subnets/${name}`;
  }

  // ---- nodes ----

  /**
   * Registers a node: grants its lease, claims a pod subnet atomically and writes the node record, both
   * bound to the lease. Subnets are tried in address order; a node that registers again under the same
   * name first gets the subnet it held before, if that is still its own or free. Throws EEXHAUSTED
   * (naming the CIDR) when every subnet is held by other nodes.
   */
  async registerNode(identity: NodeIdentity, opts: RegisterOptions): Promise<NodeRegistration> {
    const id = validate(nodeIdentitySchema, identity, 'node');
    const cidr = parseCidr(opts.podCidr);
    if (!Number.isInteger(opts.subnetPrefix) || opts.subnetPrefix <= cidr.prefix || opts.subnetPrefix > 30) {
      throw new StoreError(
        StoreErrorCode.InvalidArgument,
        `subnetPrefix must be a whole number longer than the pod CIDR's /${cidr.prefix} and at most 30, got ${opts.subnetPrefix}`,
      );
    }
    const lease = await this.store.grantLease(opts.leaseTtlSeconds);
    try {
      const subnet = formatCidr(await this.claimSubnet(id, cidr, opts.subnetPrefix, lease));
      await this.store.put(this.preferenceKey(id.name), JSON.stringify({ subnet }));
      const node: NodeRecord = { ...id, subnet };
      await this.nodes.put(node, { lease });
      const previous = this.ownLeases.get(id.name);
      this.ownLeases.set(id.name, lease);
      // The new lease now owns both keys, so revoking the old one deletes nothing.
      if (previous) await previous.revoke().catch((err) => this.log.warn({ err, node: id.name }, 'revoking the previous lease failed'));
      this.log.info({ node: id.name, subnet, lease: lease.id }, 'node registered');
      return { node, subnet, lease };
    } catch (err) {
      await lease.revoke().catch(() => undefined);
      throw err;
    }
  }

  private async claimSubnet(id: NodeIdentity, cidr: Cidr, subnetPrefix: number, lease: Lease): Promise<Cidr> {
    const claim = JSON.stringify({ node: id.name, underlayIp: id.underlayIp, vtepMac: id.vtepMac });
    const holder = (kv: KeyValue): string | undefined => {
      try {
        const r = subnetClaimSchema.safeParse(JSON.parse(kv.value));
        return r.success ? r.data.node : undefined;
      } catch {
        return undefined;
      }
    };
    const fits = (c: Cidr) => c.prefix === subnetPrefix && cidrContains(cidr, c);

    // 1. The subnet this node held before (persisted preference), if it is still ours or free.
    const prefKv = await this.store.get(this.preferenceKey(id.name));
    let preferred: Cidr | undefined;
    if (prefKv) {
      try {
        const p = subnetPreferenceSchema.safeParse(JSON.parse(prefKv.value));
        if (p.success) preferred = parseCidr(p.data.subnet, true);
      } catch {
        /* ignore a malformed preference */
      }
    }
    const held = await this.store.list(`${this.root}/subnets/`);
    const candidates: Cidr[] = [];
    if (preferred && fits(preferred)) candidates.push(preferred);
    // 2. Any subnet still claimed under this node's name (e.g. the preference was never written).
    for (const kv of held) {
      if (holder(kv) !== id.name) continue;
      let c: Cidr;
      try {
        c = parseCidr(kv.key.slice(`${this.root}/subnets/`.length).replace('-', '/'), true);
      } catch {
        continue;
      }
      if (fits(c) && !candidates.some((x) => x.base === c.base)) candidates.push(c);
    }
    for (const c of candidates) {
      const key = this.subnetKey(c);
      const kv = await this.store.get(key);
      if (!kv) {
        if (await this.store.createIfAbsent(key, claim, { lease })) return c;
      } else if (holder(kv) === id.name) {
        // Ours from an earlier registration: move the claim onto the new lease.
        if (await this.store.compareAndSwap(key, kv.modRevision, claim, { lease })) return c;
      }
    }

    // 3. The first free subnet in address order.
    const taken = new Set(held.map((kv) => kv.key));
    const count = subnetCount(cidr, subnetPrefix);
    for (let i = 0; i < count; i++) {
      const c = nthSubnet(cidr, subnetPrefix, i);
      const key = this.subnetKey(c);
      if (taken.has(key)) continue;
      if (await this.store.createIfAbsent(key, claim, { lease })) return c;
    }
    throw new StoreError(
      StoreErrorCode.Exhausted,
      `pod CIDR ${formatCidr(cidr)} is exhausted: all ${count} /${subnetPrefix} subnets are held by other nodes`,
    );
  }

  /**
   * Removes a node from the cluster: revokes its lease if this registry registered it, and deletes its
   * node record and subnet claim (only if the claim is still the node's). Its subnet preference stays,
   * so the node gets the same subnet back if it rejoins before another node takes it.
   */
  async deregisterNode(name: string): Promise<void> {
    validate(nameSchema, name, 'node name');
    const lease = this.ownLeases.get(name);
    if (lease) {
      this.ownLeases.delete(name);
      await lease.revoke();
    }
    const kv = await this.store.get(this.nodes.prefix + name);
    if (!kv) return;
    const node = this.nodes.parse(kv);
    if (node) {
      const key = this.subnetKey(parseCidr(node.subnet));
      const claim = await this.store.get(key);
      if (claim) {
        let holder: string | undefined;
        try {
          holder = subnetClaimSchema.parse(JSON.parse(claim.value)).node;
        } catch {
          holder = undefined;
        }
        if (holder === name) await this.store.delete(key, { expectedModRevision: claim.modRevision });
      }
    }
    await this.store.delete(kv.key, { expectedModRevision: kv.modRevision });
  }

  async getNode(name: string): Promise<NodeRecord | undefined> {
    return this.nodes.get(validate(nameSchema, name, 'node name'));
  }

  async listNodes(): Promise<NodeRecord[]> {
    return this.nodes.list();
  }

  /** Emits every current node as 'added', then changes, until the returned watch is cancelled. */
  async watchNodes(cb: (ev: NodeEvent) => void): Promise<Watch> {
    return this.nodes.watch((ev) => cb({ type: ev.type, node: ev.record }));
  }

  // ---- pods ----

  /** Creates or replaces a pod record. Pass `lease` to make it disappear with its owner. */
  async putPod(pod: PodRecord, opts?: PutOptions): Promise<number> {
    return this.pods.put(pod, opts);
  }

  async deletePod(node: string, name: string): Promise<boolean> {
    validate(nameSchema, node, 'node name');
    validate(nameSchema, name, 'pod name');
    return this.pods.delete(`${node}/${name}`);
  }

  async getPod(node: string, name: string): Promise<PodRecord | undefined> {
    validate(nameSchema, node, 'node name');
    validate(nameSchema, name, 'pod name');
    return this.pods.get(`${node}/${name}`);
  }

  /** All pods, or only those of `node`. */
  async listPods(node?: string): Promise<PodRecord[]> {
    if (node === undefined) return this.pods.list();
    validate(nameSchema, node, 'node name');
    return this.pods.list(`${node}/`);
  }

  /** Emits every current pod as 'added', then changes, until the returned watch is cancelled. */
  async watchPods(cb: (ev: PodEvent) => void): Promise<Watch> {
    return this.pods.watch((ev) => cb({ type: ev.type, pod: ev.record }));
  }
}
