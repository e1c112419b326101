/**
 * The cluster store: a small etcd-like key/value interface that every podnet component uses for shared
 * cluster state (nodes, subnets, pods, later services and ingresses). Two implementations sit behind it:
 * `EmbeddedStore` (SQLite file shared by the daemons of one machine) and `EtcdStore` (etcd v3).
 *
 * Semantics follow etcd v3, reduced to what podnet needs:
 * - Every successful mutation advances one store-wide revision counter. A key remembers the revision
 *   that created it (`createRevision`) and the one that last changed it (`modRevision`).
 * - A key may be bound to a lease. When the lease is revoked or expires, its keys are deleted and
 *   watchers see ordinary `delete` events. Each `put` sets the key's lease anew: a put without a lease
 *   detaches the key from any lease it had.
 * - Watches deliver events in revision order, for keys under a prefix, from a start revision on.
 *   `snapshot()` returns the revision it read at, so `snapshot` + `watch({ fromRevision: rev + 1 })`
 *   sees every change exactly once (no gap, no duplicate).
 *
 * Values are strings; podnet writes JSON through the typed helpers in `registry.ts`.
 */

/** One stored key. */
export interface KeyValue {
  key: string;
  value: string;
  /** Revision of the last change to this key. */
  modRevision: number;
  /** Revision at which this key was created (unchanged by later puts). */
  createRevision: number;
  /** Id of the lease the key is bound to, if any. */
  lease?: string;
}

/** A change seen by a watch. Several events may share a revision (etcd deletes a lease's keys at once). */
export type WatchEvent = { type: 'put'; kv: KeyValue } | { type: 'delete'; key: string; revision: number };

/** Keys under a prefix (sorted by key) and the store revision they were read at. */
export interface Snapshot {
  kvs: KeyValue[];
  revision: number;
}

/**
 * A time-to-live grant. The store keeps it alive (refreshing it well before the TTL runs out) until it is
 * revoked or the store is closed. Closing the store does not revoke: the lease then expires after its TTL,
 * exactly as if the process had been killed.
 */
export interface Lease {
  readonly id: string;
  /** The TTL the backend granted (etcd may round a short TTL up to its minimum). */
  readonly ttlSeconds: number;
  /** Deletes the lease and every key bound to it. Idempotent; does not emit 'lost'. */
  revoke(): Promise<void>;
  /**
   * 'lost': the lease can no longer be kept alive (it expired while we could not refresh it, or the
   * backend no longer knows it). Its keys are gone or about to be; the holder must re-register.
   */
  on(event: 'lost', cb: (err: Error) => void): void;
}

/** A running watch. */
export interface Watch {
  /** Stops delivery. Idempotent; no callback runs after it resolves. */
  cancel(): Promise<void>;
}

export interface PutOptions {
  /** Bind the key to this lease (it must be alive). Without it the key is bound to no lease. */
  lease?: Lease;
}

export interface DeleteOptions {
  expectedModRevision?: number;
}

export interface WatchOptions {
  /** Deliver events with revision >= this (replaying history). Default: only changes after `watch` resolves. */
  fromRevision?: number;
  /**
   * The watch stopped and will deliver nothing more (e.g. `fromRevision` is older than the retained
   * history: code `ECOMPACTED`). The owner should re-read with `snapshot()` and watch again.
   * Without this handler such errors are logged.
   */
  onError?: (err: Error) => void;
}

export interface ClusterStore {
  /** The key's current value, or undefined. */
  get(key: string): Promise<KeyValue | undefined>;
  /** Keys starting with `prefix`, sorted by key. */
  list(prefix: string): Promise<KeyValue[]>;
  /** Like `list`, plus the revision the read happened at (to start a gap-free watch at `revision + 1`). */
  snapshot(prefix: string): Promise<Snapshot>;
  /** Creates or replaces `key`; returns the revision of the change. */
  put(key: string, value: string, opts?: PutOptions): Promise<number>;
  /**
   * Deletes `key`; true if this call deleted it. With `expectedModRevision`, deletes only if the key's
   * modRevision is that value (atomic compare-and-delete, e.g. to release a claim only if still ours).
   */
  delete(key: string, opts?: DeleteOptions): Promise<boolean>;
  /** Atomically creates `key` if it does not exist; true if this call created it. */
  createIfAbsent(key: string, value: string, opts?: PutOptions): Promise<boolean>;
  /**
   * Atomically replaces `key` if its modRevision is `expectedModRevision` (0 means "the key must not
   * exist"); true if this call wrote it. Like `put`, the write sets the key's lease to `opts.lease` or none.
   */
  compareAndSwap(key: string, expectedModRevision: number, value: string, opts?: PutOptions): Promise<boolean>;
  /** Grants a lease that the store keeps alive (see `Lease`). `ttlSeconds` is a whole number >= 1. */
  grantLease(ttlSeconds: number): Promise<Lease>;
  /**
   * Calls `onEvent` for every change to keys starting with `prefix`, in revision order. Events are
   * pushed by the backend (etcd watch stream, or a change notification for the embedded store), never
   * found by polling the data.
   */
  watch(prefix: string, onEvent: (ev: WatchEvent) => void, opts?: WatchOptions): Promise<Watch>;
  /** Cancels watches, stops keeping leases alive (without revoking them) and disconnects. Idempotent. */
  close(): Promise<void>;
}
