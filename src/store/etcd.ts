/**
 * The cluster store on etcd v3 (through the `etcd3` client). Everything maps onto etcd directly:
 * revisions are etcd's, leases are etcd leases kept alive by the client's keepalive stream,
 * `createIfAbsent` / `compareAndSwap` are transactions comparing the key's create / mod revision, and
 * watches are etcd prefix watches (optionally from a start revision). An optional `prefix` namespaces
 * every key, so several clusters (or test runs) can share one etcd.
 */
import { Etcd3, EtcdLeaseInvalidError, type IKeyValue, type Lease as EtcdLease, type Namespace, type Watcher } from 'etcd3';
import { pino, type Logger } from 'pino';
import { StoreError, StoreErrorCode } from './errors.js';
import type { ClusterStore, DeleteOptions, KeyValue, Lease, PutOptions, Snapshot, Watch, WatchEvent, WatchOptions } from './types.js';

export interface EtcdStoreOptions {
  /** Client URLs, e.g. ['http://127.0.0.1:2379']. */
  endpoints: string[];
  /** Prepended to every key (e.g. '/cluster-a'). Default: none. */
  prefix?: string;
  /** Connection timeout. Default 5000 ms. */
  dialTimeoutMs?: number;
  log?: Logger;
}

/** How long `close()` waits for etcd to acknowledge a watch cancellation before dropping it. */
const CANCEL_TIMEOUT_MS = 2000;

function toKeyValue(kv: IKeyValue): KeyValue {
  const out: KeyValue = {
    key: kv.key.toString(),
    value: kv.value.toString(),
    modRevision: Number(kv.mod_revision),
    createRevision: Number(kv.create_revision),
  };
  if (kv.lease && kv.lease !== '0') out.lease = kv.lease;
  return out;
}

function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) {
    throw new StoreError(StoreErrorCode.InvalidArgument, 'a store key must be a non-empty string');
  }
}

function wrap(err: unknown, what: string): Error {
  if (err instanceof StoreError) return err;
  if (err instanceof EtcdLeaseInvalidError) {
    return new StoreError(StoreErrorCode.LeaseNotFound, `${what}: lease is revoked or expired`, { cause: err });
  }
  return new StoreError(StoreErrorCode.Backend, `${what}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

const withTimeout = <T>(p: Promise<T>, ms: number): Promise<T | undefined> =>
  new Promise((resolve, reject) => {
    const t = setTimeout(() => resolve(undefined), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });

class EtcdLeaseHandle implements Lease {
  constructor(
    readonly inner: EtcdLease,
    readonly id: string,
    readonly ttlSeconds: number,
    private readonly onDone: (l: EtcdLeaseHandle) => void,
  ) {
    inner.on('lost', () => onDone(this));
  }

  on(event: 'lost', cb: (err: Error) => void): void {
    this.inner.on(event, (err) => cb(new StoreError(StoreErrorCode.LeaseLost, `lease ${this.id} lost: ${err.message}`, { cause: err })));
  }

  async revoke(): Promise<void> {
    this.onDone(this);
    try {
      await this.inner.revoke();
    } catch (err) {
      throw wrap(err, `revoke lease ${this.id}`);
    }
  }
}

class EtcdWatch implements Watch {
  private active = true;
  /** Errors before the first 'connected' make `watch()` reject instead of reaching onError. */
  private connectedOnce = false;
  /** Revision after the last delivered event: where to resume after a reconnection. */
  private next: number | undefined;

  constructor(
    private readonly watcher: Watcher,
    private readonly onEvent: (ev: WatchEvent) => void,
    private readonly log: Logger,
    private readonly onDone: (w: EtcdWatch) => void,
    fromRevision: number | undefined,
    onError: ((err: Error) => void) | undefined,
  ) {
    this.next = fromRevision;
    watcher.on('put', (kv) => this.deliver({ type: 'put', kv: toKeyValue(kv) }, Number(kv.mod_revision)));
    watcher.on('delete', (kv) => {
      const revision = Number(kv.mod_revision);
      this.deliver({ type: 'delete', key: kv.key.toString(), revision }, revision);
    });
    watcher.on('connected', (res) => {
      this.connectedOnce = true;
      if (this.next === undefined) this.next = Number(res.header.revision) + 1;
    });
    // The client resumes a dropped watch from the last response's header revision + 1, which skips
    // events when the drop happens in the middle of a replay (etcd sends a long replay in batches whose
    // header revision is the current one). Resume from what we actually delivered instead.
    watcher.on('disconnected', () => {
      if (this.next !== undefined) (watcher.request as { start_revision?: string | number }).start_revision = String(this.next);
    });
    watcher.on('error', (err) => {
      if (!this.active || !this.connectedOnce) return;
      this.active = false;
      this.onDone(this);
      const code = /compact/i.test(err.message) ? StoreErrorCode.Compacted : StoreErrorCode.Backend;
      const e = new StoreError(code, `watch stopped: ${err.message}`, { cause: err });
      if (onError) onError(e);
      else log.warn({ err: e }, 'watch stopped');
    });
  }

  private deliver(ev: WatchEvent, revision: number): void {
    if (!this.active) return;
    this.next = revision + 1;
    try {
      this.onEvent(ev);
    } catch (err) {
      this.log.error({ err }, 'watch callback threw');
    }
  }

  async cancel(): Promise<void> {
    if (!this.active) return;
    this.active = false;
    this.onDone(this);
    try {
      await withTimeout(this.watcher.cancel(), CANCEL_TIMEOUT_MS);
    } catch (err) {
      this.log.debug({ err }, 'watch cancel failed');
    }
  }
}

export class EtcdStore implements ClusterStore {
  private readonly client: Etcd3;
  private readonly ns: Namespace;
  private readonly log: Logger;
  private readonly leases = new Set<EtcdLeaseHandle>();
  private readonly watches = new Set<EtcdWatch>();
  private closed = false;

  constructor(opts: EtcdStoreOptions) {
    if (!Array.isArray(opts.endpoints) || opts.endpoints.length === 0) {
      throw new StoreError(StoreErrorCode.InvalidArgument, 'etcd store needs at least one endpoint');
    }
    this.log = opts.log ?? pino({ name: 'podnet-store', level: 'warn' });
    this.client = new Etcd3({ hosts: opts.endpoints, dialTimeout: opts.dialTimeoutMs ?? 5000 });
    this.ns = opts.prefix ? this.client.namespace(opts.prefix) : this.client;
  }

  async get(key: string): Promise<KeyValue | undefined> {
    checkKey(key);
    const res = await this.call(`get ${key}`, () => this.ns.get(key).exec());
    const kv = res.kvs[0];
    // etcd3 strips the namespace from multi-key reads but not from single-key ones: use the key we asked for.
    return kv ? { ...toKeyValue(kv), key } : undefined;
  }

  async list(prefix: string): Promise<KeyValue[]> {
    return (await this.snapshot(prefix)).kvs;
  }

  async snapshot(prefix: string): Promise<Snapshot> {
    const res = await this.call(`list ${prefix}`, () => this.ns.getAll().prefix(prefix).sort('Key', 'Ascend').exec());
    return { kvs: res.kvs.map(toKeyValue), revision: Number(res.header.revision) };
  }

  async put(key: string, value: string, opts?: PutOptions): Promise<number> {
    checkKey(key);
    const res = await this.call(`put ${key}`, () => this.putOp(key, value, opts).exec());
    return Number(res.header.revision);
  }

  async delete(key: string, opts?: DeleteOptions): Promise<boolean> {
    checkKey(key);
    const expected = opts?.expectedModRevision;
    if (expected === undefined) {
      const res = await this.call(`delete ${key}`, () => this.ns.delete().key(key).exec());
      return Number(res.deleted) > 0;
    }
    const res = await this.call(`compare-and-delete ${key}`, () =>
      this.ns.if(key, 'Mod', '==', expected).then(this.ns.delete().key(key)).commit(),
    );
    return res.succeeded && Number(res.responses[0]?.response_delete_range?.deleted ?? 0) > 0;
  }

  async createIfAbsent(key: string, value: string, opts?: PutOptions): Promise<boolean> {
    checkKey(key);
    const res = await this.call(`create ${key}`, () => this.ns.if(key, 'Create', '==', 0).then(this.putOp(key, value, opts)).commit());
    return res.succeeded;
  }

  async compareAndSwap(key: string, expectedModRevision: number, value: string, opts?: PutOptions): Promise<boolean> {
    checkKey(key);
    const res = await this.call(`compare-and-swap ${key}`, () =>
      this.ns.if(key, 'Mod', '==', expectedModRevision).then(this.putOp(key, value, opts)).commit(),
    );
    return res.succeeded;
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) {
      throw new StoreError(StoreErrorCode.InvalidArgument, `a lease TTL must be a whole number of seconds >= 1, got ${ttlSeconds}`);
    }
    this.checkOpen();
    const inner = this.ns.lease(ttlSeconds);
    inner.on('lost', (err) => this.log.warn({ err }, 'etcd lease lost'));
    let id: string;
    let granted = ttlSeconds;
    try {
      id = await inner.grant();
      // etcd raises TTLs below its minimum (derived from the election timeout): report the real one.
      const ttl = await this.ns.leaseClient.leaseTimeToLive({ ID: id });
      if (Number(ttl.grantedTTL) > 0) granted = Number(ttl.grantedTTL);
    } catch (err) {
      inner.release();
      throw wrap(err, 'grant lease');
    }
    const lease = new EtcdLeaseHandle(inner, id, granted, (l) => this.leases.delete(l));
    this.leases.add(lease);
    return lease;
  }

  async watch(prefix: string, onEvent: (ev: WatchEvent) => void, opts?: WatchOptions): Promise<Watch> {
    this.checkOpen();
    const from = opts?.fromRevision;
    if (from !== undefined && (!Number.isInteger(from) || from < 1)) {
      throw new StoreError(StoreErrorCode.InvalidArgument, `fromRevision must be a whole number >= 1, got ${from}`);
    }
    const builder = this.ns.watch().prefix(prefix);
    if (from !== undefined) builder.startRevision(String(from));
    // Attach the listeners before the watcher connects, so no event can slip past between the
    // 'connected' acknowledgement and our subscription.
    const watcher = builder.watcher();
    const connected = new Promise<void>((resolve, reject) => {
      watcher.once('connected', () => resolve());
      watcher.once('error', reject);
    });
    const w = new EtcdWatch(watcher, onEvent, this.log, (x) => this.watches.delete(x), from, opts?.onError);
    this.watches.add(w);
    try {
      await connected;
    } catch (err) {
      await w.cancel();
      throw wrap(err, `watch ${prefix}`);
    }
    return w;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.watches].map((w) => w.cancel()));
    for (const l of this.leases) l.inner.release(); // stop keepalives; etcd expires the leases
    this.leases.clear();
    this.client.close();
  }

  private putOp(key: string, value: string, opts: PutOptions | undefined) {
    if (typeof value !== 'string') throw new StoreError(StoreErrorCode.InvalidArgument, `value for ${key} must be a string`);
    const op = this.ns.put(key).value(value);
    if (opts?.lease) op.lease(opts.lease.id);
    return op;
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    this.checkOpen();
    try {
      return await fn();
    } catch (err) {
      throw wrap(err, what);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreError(StoreErrorCode.Closed, 'the cluster store is closed');
  }
}
