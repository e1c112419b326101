/**
 * The embedded cluster store: one SQLite database file (WAL mode) that every podnet daemon on a machine
 * opens by path. It needs no server, and it gives the same semantics as etcd for what podnet uses:
 *
 * - Every write runs in a `BEGIN IMMEDIATE` transaction, so writers are serialised by SQLite's write lock
 *   (other processes wait on the busy timeout) and one store-wide revision counter (table `meta`) is
 *   advanced inside the same transaction as the change. Commit order is therefore revision order.
 * - Each change appends a row to the `events` table (the event log). Watches read that log after the
 *   last revision they delivered. They never poll the data: a writer touches a notify file
 *   (`<path>-notify`, one byte rewritten in place) after each commit, and every process watching the
 *   store has an `fs.watch` (inotify) on that file. A slow re-check timer (`recheckIntervalMs`) is only a
 *   backstop for a missed notification.
 * - Leases are rows with an expiry time on CLOCK_MONOTONIC (`process.hrtime`), which every process of
 *   the machine shares and which wall-clock steps (NTP) do not move. Because that clock restarts at
 *   boot, the database records the kernel's boot id; the first process to open it after a reboot drops
 *   every lease (their holders died with the old boot), with delete events for their keys. Where there is
 *   no boot id (/proc missing) the wall clock is used instead. The holder refreshes its lease every TTL/3. Any process deletes expired leases and their keys, writing delete
 *   events: at the start of every write transaction, and from a sweep timer (`sweepIntervalMs`) when the
 *   store is otherwise idle. A refresh never revives a lease that has already expired.
 * - The event log is trimmed to the last `retainEvents` revisions; a watch that asks for older history
 *   fails with `ECOMPACTED`, like an etcd watch on a compacted revision.
 *
 * Requires a local filesystem (SQLite WAL needs shared memory between the processes: no NFS).
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, statSync, watch as fsWatch, writeSync, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { pino, type Logger } from 'pino';
import { StoreError, StoreErrorCode } from './errors.js';
import type { ClusterStore, DeleteOptions, KeyValue, Lease, PutOptions, Snapshot, Watch, WatchEvent, WatchOptions } from './types.js';

export interface EmbeddedStoreOptions {
  /** Database file, e.g. /var/lib/podnet/cluster.db. Its directory is created if missing. */
  path: string;
  /** How long a statement waits for another process's write lock before SQLITE_BUSY. Default 5000 ms. */
  busyTimeoutMs?: number;
  /** Interval of the expired-lease sweep. Default 1000 ms. */
  sweepIntervalMs?: number;
  /** Backstop re-check of the event log for watches, in case an inotify event was missed. Default 5000 ms. */
  recheckIntervalMs?: number;
  /** Number of recent revisions kept in the event log. Default 10000. */
  retainEvents?: number;
  log?: Logger;
}

const SCHEMA_VERSION = 2;
const SCHEMA = `
  CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL,
    compacted INTEGER NOT NULL,
    boot_id TEXT NOT NULL DEFAULT ''
  );
  INSERT OR IGNORE INTO meta (id, revision, compacted) VALUES (1, 0, 0);
  CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL,
    lease TEXT
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS kv_by_lease ON kv (lease) WHERE lease IS NOT NULL;
  CREATE TABLE IF NOT EXISTS events (
    rev INTEGER PRIMARY KEY,
    type TEXT NOT NULL CHECK (type IN ('put', 'delete')),
    key TEXT NOT NULL,
    value TEXT,
    create_rev INTEGER,
    lease TEXT
  );
  CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY,
    ttl_ms INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS leases_by_expiry ON leases (expires_at);
`;

interface KvRow {
  key: string;
  value: string;
  create_rev: number;
  mod_rev: number;
  lease: string | null;
}
interface EventRow {
  rev: number;
  type: 'put' | 'delete';
  key: string;
  value: string | null;
  create_rev: number | null;
  lease: string | null;
}
interface MetaRow {
  revision: number;
  compacted: number;
}

/** State of one write transaction: the revision counter as it advances, and the transaction's clock. */
interface WriteTx {
  rev: number;
  readonly startRev: number;
  readonly now: number;
}

const EVENT_BATCH = 1000;
const BUSY_RETRIES = 8;
const NOTIFY_BYTE = Buffer.from([0x2a]);

/** The kernel's boot id, or undefined where /proc does not provide it. */
function readBootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

const monotonicMs = () => Number(process.hrtime.bigint() / 1_000_000n);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^SQLITE_(BUSY|LOCKED)/.test(code);
}

/**
 * The smallest string greater than every string starting with `prefix` (code point order, which is
 * also the byte order of UTF-8 that SQLite compares with), or undefined if there is none.
 */
export function prefixEnd(prefix: string): string | undefined {
  const cps = Array.from(prefix);
  while (cps.length > 0) {
    const last = cps.pop()!.codePointAt(0)!;
    if (last < 0x10ffff) {
      const next = last === 0xd7ff ? 0xe000 : last + 1; // skip the surrogate range
      return cps.join('') + String.fromCodePoint(next);
    }
  }
  return undefined;
}

function toKeyValue(r: KvRow): KeyValue {
  const kv: KeyValue = { key: r.key, value: r.value, modRevision: r.mod_rev, createRevision: r.create_rev };
  if (r.lease !== null) kv.lease = r.lease;
  return kv;
}

function toWatchEvent(r: EventRow): WatchEvent {
  if (r.type === 'delete') return { type: 'delete', key: r.key, revision: r.rev };
  const kv: KeyValue = { key: r.key, value: r.value ?? '', modRevision: r.rev, createRevision: r.create_rev ?? r.rev };
  if (r.lease !== null) kv.lease = r.lease;
  return { type: 'put', kv };
}

function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) {
    throw new StoreError(StoreErrorCode.InvalidArgument, 'a store key must be a non-empty string');
  }
}

function checkTtl(ttlSeconds: number): void {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) {
    throw new StoreError(StoreErrorCode.InvalidArgument, `a lease TTL must be a whole number of seconds >= 1, got ${ttlSeconds}`);
  }
}

function prepareStatements(db: Database.Database) {
  return {
    meta: db.prepare<[], MetaRow>('SELECT revision, compacted FROM meta WHERE id = 1'),
    setRevision: db.prepare<[number]>('UPDATE meta SET revision = ? WHERE id = 1'),
    setCompacted: db.prepare<[number]>('UPDATE meta SET compacted = ? WHERE id = 1'),
    getKv: db.prepare<[string], KvRow>('SELECT key, value, create_rev, mod_rev, lease FROM kv WHERE key = ?'),
    listAll: db.prepare<[], KvRow>('SELECT key, value, create_rev, mod_rev, lease FROM kv ORDER BY key'),
    listRange: db.prepare<[string, string], KvRow>(
      'SELECT key, value, create_rev, mod_rev, lease FROM kv WHERE key >= ? AND key < ? ORDER BY key',
    ),
    listFrom: db.prepare<[string], KvRow>('SELECT key, value, create_rev, mod_rev, lease FROM kv WHERE key >= ? ORDER BY key'),
    upsertKv: db.prepare<[string, string, number, number, string | null]>(
      'INSERT OR REPLACE INTO kv (key, value, create_rev, mod_rev, lease) VALUES (?, ?, ?, ?, ?)',
    ),
    deleteKv: db.prepare<[string]>('DELETE FROM kv WHERE key = ?'),
    keysOfLease: db.prepare<[string], { key: string }>('SELECT key FROM kv WHERE lease = ? ORDER BY key'),
    addEvent: db.prepare<[number, string, string, string | null, number | null, string | null]>(
      'INSERT INTO events (rev, type, key, value, create_rev, lease) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    eventsFrom: db.prepare<[number, number], EventRow>(
      'SELECT rev, type, key, value, create_rev, lease FROM events WHERE rev >= ? ORDER BY rev LIMIT ?',
    ),
    trimEvents: db.prepare<[number]>('DELETE FROM events WHERE rev <= ?'),
    addLease: db.prepare<[string, number, number]>('INSERT INTO leases (id, ttl_ms, expires_at) VALUES (?, ?, ?)'),
    leaseAlive: db.prepare<[string, number], { one: number }>('SELECT 1 AS one FROM leases WHERE id = ? AND expires_at > ?'),
    refreshLease: db.prepare<[number, string, number]>('UPDATE leases SET expires_at = ? WHERE id = ? AND expires_at > ?'),
    deleteLease: db.prepare<[string]>('DELETE FROM leases WHERE id = ?'),
    expiredLeases: db.prepare<[number], { id: string }>('SELECT id FROM leases WHERE expires_at <= ? ORDER BY expires_at'),
    anyExpired: db.prepare<[number], { one: number }>('SELECT 1 AS one FROM leases WHERE expires_at <= ? LIMIT 1'),
  };
}

class EmbeddedLease implements Lease {
  private readonly events = new EventEmitter();
  private timer: NodeJS.Timeout | undefined;
  private done = false;
  /** Expiry (epoch ms) of the last successful refresh; past it we can no longer claim the lease. */
  private expiresAt: number;

  constructor(
    private readonly store: EmbeddedStore,
    readonly id: string,
    readonly ttlSeconds: number,
    expiresAt: number,
  ) {
    this.expiresAt = expiresAt;
    this.timer = setInterval(() => void this.refresh(), Math.max(100, Math.floor((ttlSeconds * 1000) / 3)));
  }

  on(event: 'lost', cb: (err: Error) => void): void {
    this.events.on(event, cb);
  }

  async revoke(): Promise<void> {
    this.stop();
    await this.store.revokeLease(this.id);
  }

  /** Stops refreshing without revoking (the store is closing). */
  stop(): void {
    this.done = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async refresh(): Promise<void> {
    if (this.done) return;
    let alive: boolean;
    try {
      const expiresAt = await this.store.refreshLease(this.id, this.ttlSeconds * 1000);
      alive = expiresAt !== undefined;
      if (expiresAt !== undefined) this.expiresAt = expiresAt;
    } catch (err) {
      if (this.done) return;
      this.store.log.warn({ err, lease: this.id }, 'lease refresh failed');
      alive = this.store.now() < this.expiresAt;
    }
    if (!alive && !this.done) {
      this.stop();
      this.store.forgetLease(this);
      this.events.emit('lost', new StoreError(StoreErrorCode.LeaseLost, `lease ${this.id} expired or was revoked`));
    }
  }
}

class EmbeddedWatch implements Watch {
  active = true;
  constructor(
    private readonly store: EmbeddedStore,
    readonly prefix: string,
    readonly onEvent: (ev: WatchEvent) => void,
    readonly onError: ((err: Error) => void) | undefined,
    /** The next revision this watch has to deliver. */
    public next: number,
  ) {}

  async cancel(): Promise<void> {
    this.active = false;
    this.store.removeWatch(this);
  }
}

export class EmbeddedStore implements ClusterStore {
  readonly log: Logger;
  private readonly stmt: ReturnType<typeof prepareStatements>;
  private readonly inTx: Database.Transaction<(body: () => unknown) => unknown>;
  private readonly notifyPath: string;
  private notifyFd: number;
  private notifyWatcher: FSWatcher | undefined;
  private readonly watches = new Set<EmbeddedWatch>();
  private readonly leases = new Set<EmbeddedLease>();
  private pumpScheduled = false;
  private sweepTimer: NodeJS.Timeout;
  private recheckTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly bootId = readBootId();
  private readonly recheckIntervalMs: number;
  private readonly retainEvents: number;

  /** Opens (creating if needed) the store at `opts.path`. Safe to call from several processes at once. */
  static async open(opts: EmbeddedStoreOptions): Promise<EmbeddedStore> {
    const log = opts.log ?? pino({ name: 'podnet-store', level: 'warn' });
    mkdirSync(dirname(opts.path), { recursive: true, mode: 0o700 });
    for (let attempt = 0; ; attempt++) {
      let db: Database.Database | undefined;
      try {
        db = new Database(opts.path, { timeout: opts.busyTimeoutMs ?? 5000 });
        const mode = db.pragma('journal_mode = WAL', { simple: true });
        if (String(mode).toLowerCase() !== 'wal') {
          throw new StoreError(StoreErrorCode.Backend, `${opts.path}: SQLite cannot use WAL mode here (got ${String(mode)})`);
        }
        db.pragma('synchronous = NORMAL');
        db.transaction(() => {
          const version = db!.pragma('user_version', { simple: true }) as number;
          if (version > SCHEMA_VERSION) {
            throw new StoreError(StoreErrorCode.Backend, `${opts.path}: schema version ${version} is newer than this podnet (${SCHEMA_VERSION})`);
          }
          db!.exec(SCHEMA);
          const cols = db!.prepare<[], { name: string }>('PRAGMA table_info(meta)').all();
          if (!cols.some((c) => c.name === 'boot_id')) db!.exec("ALTER TABLE meta ADD COLUMN boot_id TEXT NOT NULL DEFAULT ''");
          if (version < SCHEMA_VERSION) db!.pragma(`user_version = ${SCHEMA_VERSION}`);
        }).immediate();
        const store = new EmbeddedStore(db, opts, log);
        try {
          await store.dropLeasesOfEarlierBoot();
        } catch (err) {
          await store.close();
          throw err;
        }
        return store;
      } catch (err) {
        db?.close();
        if (isBusy(err) && attempt < BUSY_RETRIES) {
          await sleep(20 + Math.random() * 80 * (attempt + 1));
          continue;
        }
        if (err instanceof StoreError) throw err;
        throw new StoreError(StoreErrorCode.Backend, `cannot open cluster store ${opts.path}: ${(err as Error).message}`, { cause: err });
      }
    }
  }

  private constructor(
    private readonly db: Database.Database,
    opts: EmbeddedStoreOptions,
    log: Logger,
  ) {
    this.log = log;
    this.recheckIntervalMs = opts.recheckIntervalMs ?? 5000;
    this.retainEvents = Math.max(100, opts.retainEvents ?? 10_000);
    this.stmt = prepareStatements(db);
    this.inTx = db.transaction((body: () => unknown) => body());
    this.notifyPath = `${opts.path}-notify`;
    closeSync(openSync(this.notifyPath, 'a', 0o600));
    this.notifyFd = openSync(this.notifyPath, 'r+');
    this.sweepTimer = setInterval(() => void this.sweep(), opts.sweepIntervalMs ?? 1000);
  }

  /** The lease clock (ms): CLOCK_MONOTONIC when the boot id is known, else the wall clock. */
  readonly now: () => number = this.bootId !== undefined ? monotonicMs : Date.now;

  /** After a reboot the monotonic clock restarted and every lease holder is gone: drop their leases. */
  async dropLeasesOfEarlierBoot(): Promise<void> {
    const bootId = this.bootId ?? 'wall-clock';
    await this.write((tx) => {
      const stored = this.db.prepare<[], { boot_id: string }>('SELECT boot_id FROM meta WHERE id = 1').get()!.boot_id;
      if (stored === bootId) return;
      const ids = this.db.prepare<[], { id: string }>('SELECT id FROM leases').all();
      for (const { id } of ids) this.deleteLeaseIn(tx, id);
      this.db.prepare<[string]>('UPDATE meta SET boot_id = ? WHERE id = 1').run(bootId);
      if (stored !== '' && ids.length > 0) this.log.info({ dropped: ids.length }, 'machine rebooted since the last use: dropped all leases');
    });
  }

  isClosed(): boolean {
    return this.closed;
  }

  // ---- reads ----

  async get(key: string): Promise<KeyValue | undefined> {
    checkKey(key);
    return this.read(() => {
      const row = this.stmt.getKv.get(key);
      return row ? toKeyValue(row) : undefined;
    });
  }

  async list(prefix: string): Promise<KeyValue[]> {
    return (await this.snapshot(prefix)).kvs;
  }

  async snapshot(prefix: string): Promise<Snapshot> {
    return this.read(() =>
      this.inTx.deferred(() => {
        const revision = this.stmt.meta.get()!.revision;
        return { kvs: this.rowsWithPrefix(prefix).map(toKeyValue), revision };
      }),
    ) as Promise<Snapshot>;
  }

  private rowsWithPrefix(prefix: string): KvRow[] {
    if (prefix === '') return this.stmt.listAll.all();
    const end = prefixEnd(prefix);
    if (end !== undefined) return this.stmt.listRange.all(prefix, end);
    return this.stmt.listFrom.all(prefix).filter((r) => r.key.startsWith(prefix));
  }

  // ---- writes ----

  async put(key: string, value: string, opts?: PutOptions): Promise<number> {
    checkKey(key);
    return this.write((tx) => this.putIn(tx, key, value, opts?.lease));
  }

  async delete(key: string, opts?: DeleteOptions): Promise<boolean> {
    checkKey(key);
    const expected = opts?.expectedModRevision;
    return this.write((tx) => {
      if (expected !== undefined && (this.stmt.getKv.get(key)?.mod_rev ?? 0) !== expected) return false;
      return this.deleteIn(tx, key);
    });
  }

  async createIfAbsent(key: string, value: string, opts?: PutOptions): Promise<boolean> {
    checkKey(key);
    return this.write((tx) => {
      if (this.stmt.getKv.get(key)) return false;
      this.putIn(tx, key, value, opts?.lease);
      return true;
    });
  }

  async compareAndSwap(key: string, expectedModRevision: number, value: string, opts?: PutOptions): Promise<boolean> {
    checkKey(key);
    return this.write((tx) => {
      const cur = this.stmt.getKv.get(key);
      if ((cur?.mod_rev ?? 0) !== expectedModRevision) return false;
      this.putIn(tx, key, value, opts?.lease);
      return true;
    });
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    checkTtl(ttlSeconds);
    const id = randomBytes(8).toString('hex');
    const expiresAt = await this.write((tx) => {
      const at = tx.now + ttlSeconds * 1000;
      this.stmt.addLease.run(id, ttlSeconds * 1000, at);
      return at;
    });
    const lease = new EmbeddedLease(this, id, ttlSeconds, expiresAt);
    this.leases.add(lease);
    return lease;
  }

  /** Extends a live lease; undefined if it is gone or already expired (it is never revived). */
  async refreshLease(id: string, ttlMs: number): Promise<number | undefined> {
    return this.write((tx) => {
      const at = tx.now + ttlMs;
      return this.stmt.refreshLease.run(at, id, tx.now).changes > 0 ? at : undefined;
    });
  }

  forgetLease(lease: EmbeddedLease): void {
    this.leases.delete(lease);
  }

  async revokeLease(id: string): Promise<void> {
    for (const l of this.leases) if (l.id === id) this.leases.delete(l);
    await this.write((tx) => this.deleteLeaseIn(tx, id));
  }

  // ---- watches ----

  async watch(prefix: string, onEvent: (ev: WatchEvent) => void, opts?: WatchOptions): Promise<Watch> {
    this.checkOpen();
    const from = opts?.fromRevision;
    if (from !== undefined && (!Number.isInteger(from) || from < 1)) {
      throw new StoreError(StoreErrorCode.InvalidArgument, `fromRevision must be a whole number >= 1, got ${from}`);
    }
    const next = from ?? (await this.read(() => this.stmt.meta.get()!.revision)) + 1;
    const w = new EmbeddedWatch(this, prefix, onEvent, opts?.onError, next);
    this.watches.add(w);
    this.ensureNotifyWatcher();
    if (!this.recheckTimer) {
      this.recheckTimer = setInterval(() => {
        this.ensureNotifyWatcher();
        this.schedulePump();
      }, this.recheckIntervalMs);
    }
    if (from !== undefined) this.schedulePump();
    return w;
  }

  removeWatch(w: EmbeddedWatch): void {
    this.watches.delete(w);
    if (this.watches.size === 0) this.stopWatching();
  }

  private stopWatching(): void {
    this.notifyWatcher?.close();
    this.notifyWatcher = undefined;
    if (this.recheckTimer) clearInterval(this.recheckTimer);
    this.recheckTimer = undefined;
  }

  /**
   * If the notify file was deleted or replaced, writers and watchers could end up on different inodes
   * and notifications would stop reaching us: re-create it and follow the new inode.
   */
  private reopenNotifyFileIfReplaced(): void {
    try {
      let pathIno: number | undefined;
      try {
        pathIno = statSync(this.notifyPath).ino;
      } catch {
        pathIno = undefined;
      }
      if (pathIno === fstatSync(this.notifyFd).ino) return;
      this.log.warn({ path: this.notifyPath }, 'change notification file was replaced; reopening it');
      closeSync(openSync(this.notifyPath, 'a', 0o600));
      const fd = openSync(this.notifyPath, 'r+');
      closeSync(this.notifyFd);
      this.notifyFd = fd;
      this.notifyWatcher?.close();
      this.notifyWatcher = undefined;
    } catch (err) {
      this.log.warn({ err, path: this.notifyPath }, 'cannot reopen the change notification file');
    }
  }

  private ensureNotifyWatcher(): void {
    if (this.notifyWatcher || this.closed || this.watches.size === 0) return;
    try {
      const fsw = fsWatch(this.notifyPath, () => this.schedulePump());
      fsw.on('error', (err) => {
        this.log.warn({ err, path: this.notifyPath }, 'change notification watcher failed; re-creating on the next re-check');
        fsw.close();
        if (this.notifyWatcher === fsw) this.notifyWatcher = undefined;
      });
      this.notifyWatcher = fsw;
    } catch (err) {
      this.log.warn({ err, path: this.notifyPath }, 'cannot watch the change notification file; relying on the re-check timer');
    }
  }

  private schedulePump(): void {
    if (this.pumpScheduled || this.closed || this.watches.size === 0) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      try {
        this.pump();
      } catch (err) {
        if (this.closed) return;
        // Most likely SQLITE_BUSY beyond the busy timeout: try again shortly.
        this.log.warn({ err }, 'reading the event log failed; retrying');
        setTimeout(() => this.schedulePump(), 100);
      }
    });
  }

  /** Delivers logged events after each watch's position. Runs synchronously (better-sqlite3 is sync). */
  private pump(): void {
    for (;;) {
      if (this.closed || this.watches.size === 0) return;
      const { meta, rows, minNext } = this.inTx.deferred(() => {
        const meta = this.stmt.meta.get()!;
        let minNext = Infinity;
        for (const w of this.watches) if (w.next > meta.compacted) minNext = Math.min(minNext, w.next);
        const rows = minNext <= meta.revision ? this.stmt.eventsFrom.all(minNext, EVENT_BATCH) : [];
        return { meta, rows, minNext };
      }) as { meta: MetaRow; rows: EventRow[]; minNext: number };

      for (const w of [...this.watches]) {
        if (w.next <= meta.compacted) {
          this.failWatch(
            w,
            new StoreError(StoreErrorCode.Compacted, `watch on "${w.prefix}" needs revision ${w.next}, but history before ${meta.compacted + 1} was compacted`),
          );
        }
      }
      if (rows.length === 0) return;
      if (rows[0]!.rev !== minNext) {
        // Cannot happen: revisions are dense and trimmed only below meta.compacted.
        this.log.error({ expected: minNext, got: rows[0]!.rev }, 'event log has a gap');
      }
      for (const row of rows) {
        const ev = toWatchEvent(row);
        for (const w of this.watches) {
          if (!w.active || row.rev < w.next || !row.key.startsWith(w.prefix)) continue;
          try {
            w.onEvent(ev);
          } catch (err) {
            this.log.error({ err, prefix: w.prefix }, 'watch callback threw');
          }
        }
      }
      const last = rows[rows.length - 1]!.rev;
      for (const w of this.watches) if (w.next <= last) w.next = last + 1;
      if (rows.length < EVENT_BATCH) return;
    }
  }

  private failWatch(w: EmbeddedWatch, err: StoreError): void {
    w.active = false;
    this.removeWatch(w);
    if (w.onError) {
      try {
        w.onError(err);
      } catch (cbErr) {
        this.log.error({ err: cbErr }, 'watch error callback threw');
      }
    } else {
      this.log.warn({ err, prefix: w.prefix }, 'watch stopped');
    }
  }

  // ---- lease sweep and event log trimming ----

  private async sweep(): Promise<void> {
    if (this.closed) return;
    this.reopenNotifyFileIfReplaced();
    this.ensureNotifyWatcher();
    try {
      const due = await this.read(() => this.stmt.anyExpired.get(this.now()));
      if (due) await this.write(() => undefined); // every write transaction expires due leases first
      const meta = await this.read(() => this.stmt.meta.get()!);
      if (meta.revision - meta.compacted > this.retainEvents + Math.max(100, this.retainEvents >> 2)) {
        await this.write(() => {
          const m = this.stmt.meta.get()!;
          const cut = m.revision - this.retainEvents;
          if (cut <= m.compacted) return;
          this.stmt.trimEvents.run(cut);
          this.stmt.setCompacted.run(cut);
        });
      }
    } catch (err) {
      if (!this.closed) this.log.warn({ err }, 'lease sweep failed');
    }
  }

  // ---- transactions ----

  private putIn(tx: WriteTx, key: string, value: string, lease: Lease | undefined): number {
    if (typeof value !== 'string') throw new StoreError(StoreErrorCode.InvalidArgument, `value for ${key} must be a string`);
    const leaseId = lease ? lease.id : null;
    if (leaseId !== null && !this.stmt.leaseAlive.get(leaseId, tx.now)) {
      throw new StoreError(StoreErrorCode.LeaseNotFound, `lease ${leaseId} is revoked or expired`);
    }
    const cur = this.stmt.getKv.get(key);
    const rev = ++tx.rev;
    const createRev = cur ? cur.create_rev : rev;
    this.stmt.upsertKv.run(key, value, createRev, rev, leaseId);
    this.stmt.addEvent.run(rev, 'put', key, value, createRev, leaseId);
    return rev;
  }

  private deleteIn(tx: WriteTx, key: string): boolean {
    if (this.stmt.deleteKv.run(key).changes === 0) return false;
    this.stmt.addEvent.run(++tx.rev, 'delete', key, null, null, null);
    return true;
  }

  private deleteLeaseIn(tx: WriteTx, id: string): void {
    for (const { key } of this.stmt.keysOfLease.all(id)) this.deleteIn(tx, key);
    this.stmt.deleteLease.run(id);
  }

  /**
   * Runs `body` in a BEGIN IMMEDIATE transaction after deleting expired leases (and their keys), then
   * wakes watchers everywhere if the revision moved. Retries when another process holds the write lock
   * beyond the busy timeout.
   */
  private async write<T>(body: (tx: WriteTx) => T): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      this.checkOpen();
      try {
        const { result, changed } = this.inTx.immediate(() => {
          const startRev = this.stmt.meta.get()!.revision;
          const tx: WriteTx = { rev: startRev, startRev, now: this.now() };
          for (const { id } of this.stmt.expiredLeases.all(tx.now)) this.deleteLeaseIn(tx, id);
          const result = body(tx);
          if (tx.rev !== tx.startRev) this.stmt.setRevision.run(tx.rev);
          return { result, changed: tx.rev !== tx.startRev };
        }) as { result: T; changed: boolean };
        if (changed) this.notify();
        return result;
      } catch (err) {
        if (isBusy(err) && attempt < BUSY_RETRIES) {
          await sleep(10 + Math.random() * 40 * (attempt + 1));
          continue;
        }
        throw this.wrap(err);
      }
    }
  }

  private async read<T>(body: () => T): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      this.checkOpen();
      try {
        return body();
      } catch (err) {
        if (isBusy(err) && attempt < BUSY_RETRIES) {
          await sleep(10 + Math.random() * 40 * (attempt + 1));
          continue;
        }
        throw this.wrap(err);
      }
    }
  }

  private wrap(err: unknown): Error {
    if (err instanceof StoreError) return err;
    return new StoreError(StoreErrorCode.Backend, `cluster store: ${(err as Error).message}`, { cause: err });
  }

  /** Tells every process watching this store (including this one) that the event log grew. */
  private notify(): void {
    try {
      writeSync(this.notifyFd, NOTIFY_BYTE, 0, 1, 0);
    } catch (err) {
      this.log.warn({ err, path: this.notifyPath }, 'cannot touch the change notification file');
    }
    this.schedulePump();
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreError(StoreErrorCode.Closed, 'the cluster store is closed');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweepTimer);
    for (const l of this.leases) l.stop();
    this.leases.clear();
    for (const w of this.watches) w.active = false;
    this.watches.clear();
    this.stopWatching();
    closeSync(this.notifyFd);
    this.db.close();
  }
}
