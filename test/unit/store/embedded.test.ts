import { mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import Database from 'better-sqlite3';
import { EmbeddedStore, prefixEnd } from '../../../src/store/embedded.js';
import { StoreErrorCode } from '../../../src/store/errors.js';
import { ClusterRegistry, type NodeEvent } from '../../../src/store/registry.js';
import type { ClusterStore, Watch, WatchEvent, WatchOptions } from '../../../src/store/types.js';
import { runConformance } from './conformance.js';
import { Child } from './fixtures/spawn.js';
import { silentLogger, sleep, waitFor } from './helpers.js';

const DEADLINE = 20_000;

describe('EmbeddedStore', function () {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'podnet-store-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const dbPath = () => join(dir, 'cluster.db');
  const openAt = (path: string, extra: Partial<Parameters<typeof EmbeddedStore.open>[0]> = {}) =>
    EmbeddedStore.open({ path, sweepIntervalMs: 200, log: silentLogger(), ...extra });

  runConformance('embedded', () => openAt(dbPath()), { leaseTtlSeconds: 1, deadlineMs: DEADLINE });

  describe('embedded specifics', () => {
    const stores: EmbeddedStore[] = [];
    const open = async (path: string, extra: Partial<Parameters<typeof EmbeddedStore.open>[0]> = {}) => {
      const s = await openAt(path, extra);
      stores.push(s);
      return s;
    };
    afterEach(async () => {
      await Promise.all(stores.splice(0).map((s) => s.close()));
    });

    it('prefixEnd bounds exactly the keys with the prefix', () => {
      expect(prefixEnd('/a/')).to.equal('/a0');
      expect(prefixEnd('')).to.equal(undefined);
      expect(prefixEnd('a\u{10ffff}')).to.equal('b');
      expect(prefixEnd('\u{d7ff}')).to.equal('\u{e000}');
    });

    it('wakes watchers in another connection through the change notification, not a timer', async () => {
      const path = join(dir, 'notify.db');
      const watcher = await open(path, { recheckIntervalMs: 3_600_000 }); // backstop effectively off
      const writer = await open(path);
      const events: WatchEvent[] = [];
      await watcher.watch('/n/', (ev) => events.push(ev));
      for (let i = 0; i < 5; i++) {
        await writer.put(`/n/${i}`, String(i));
        await waitFor(`event ${i}`, () => events.length === i + 1, DEADLINE);
      }
    });

    it('follows a re-created notify file (deleted while watching, re-created by a newcomer)', async () => {
      const path = join(dir, 'renotify.db');
      const watcher = await open(path, { recheckIntervalMs: 3_600_000, sweepIntervalMs: 50 });
      const events: WatchEvent[] = [];
      await watcher.watch('/r/', (ev) => events.push(ev));
      unlinkSync(`${path}-notify`);
      const newcomer = await open(path, { sweepIntervalMs: 50 }); // creates a new notify file (new inode)
      let i = 0;
      await waitFor(
        'an event written by the newcomer',
        async () => {
          await newcomer.put(`/r/${i++}`, 'x');
          await sleep(50);
          return events.length > 0;
        },
        DEADLINE,
      );
      const n = events.length;
      await newcomer.put('/r/last', 'x');
      await waitFor('the next event', () => events.length === n + 1, DEADLINE);
    });

    it('a watch asking for trimmed history fails with ECOMPACTED', async () => {
      const path = join(dir, 'compact.db');
      const s = await open(path, { retainEvents: 100, sweepIntervalMs: 50 });
      for (let i = 0; i < 300; i++) await s.put(`/c/${i % 7}`, String(i));
      let err: Error | undefined;
      const events: WatchEvent[] = [];
      await waitFor(
        'the event log to be trimmed',
        async () => {
          err = undefined;
          const w = await s.watch('/c/', (ev) => events.push(ev), { fromRevision: 1, onError: (e) => (err = e) });
          await new Promise((r) => setTimeout(r, 30));
          await w.cancel();
          return err !== undefined;
        },
        DEADLINE,
      );
      expect((err as { code?: string }).code).to.equal(StoreErrorCode.Compacted);
      // Recent history is still there.
      const recent: WatchEvent[] = [];
      await s.watch('/c/', (ev) => recent.push(ev), { fromRevision: 290 });
      await waitFor('recent history', () => recent.length === 11, DEADLINE);
    });

    it('after a reboot (new boot id) the first process to open the file drops all leases and their keys', async () => {
      const path = join(dir, 'reboot.db');
      const before = await open(path);
      const lease = await before.grantLease(60);
      await before.put('/b/leased', 'x', { lease });
      await before.put('/b/plain', 'y');
      await before.close(); // the holder "dies" with the machine; its lease would live 60 s more
      const raw = new Database(path);
      raw.prepare("UPDATE meta SET boot_id = 'an-earlier-boot'").run();
      raw.close();
      const after = await open(path);
      expect(await after.get('/b/leased')).to.equal(undefined);
      expect(await after.get('/b/plain')).to.include({ value: 'y' });
      const events: WatchEvent[] = [];
      await after.watch('/b/', (ev) => events.push(ev), { fromRevision: 1 });
      await waitFor('the history', () => events.length === 3, DEADLINE);
      expect(events[2]).to.include({ type: 'delete', key: '/b/leased' });
    });

    it('registry watches resync (emitting the difference) when the underlying watch fails', async () => {
      const s = await open(join(dir, 'resync.db'));
      const failing = new FailingWatchStore(s);
      const reg = new ClusterRegistry(s, { root: '/r', log: silentLogger() });
      const opts = { podCidr: '10.1.0.0/16', subnetPrefix: 24, leaseTtlSeconds: 5 };
      await reg.registerNode({ name: 'a', underlayIp: '10.0.0.1', vtepMac: '02:00:00:00:00:01' }, opts);
      await reg.registerNode({ name: 'b', underlayIp: '10.0.0.2', vtepMac: '02:00:00:00:00:02' }, opts);
      const events: NodeEvent[] = [];
      const w = await new ClusterRegistry(failing, { root: '/r', log: silentLogger() }).watchNodes((ev) => events.push(ev));
      expect(events.map((e) => e.node.name)).to.deep.equal(['a', 'b']);
      await failing.breakWatches(); // changes happen while no watch is running
      await reg.deregisterNode('a');
      await reg.registerNode({ name: 'c', underlayIp: '10.0.0.3', vtepMac: '02:00:00:00:00:03' }, opts);
      failing.fail(new Error('injected'));
      await waitFor('the resync', () => events.length >= 4, DEADLINE);
      expect(events.slice(2).map((e) => [e.type, e.node.name])).to.deep.equal([
        ['removed', 'a'],
        ['added', 'c'],
      ]);
      await reg.registerNode({ name: 'd', underlayIp: '10.0.0.4', vtepMac: '02:00:00:00:00:04' }, opts);
      await waitFor('live events after the resync', () => events.some((e) => e.node.name === 'd'), DEADLINE);
      await w.cancel();
    });

    it('several processes racing on one database file: distinct subnets, no lost update, watcher sees all', async function () {
      const path = join(dir, 'multi.db');
      const root = '/podnet';
      const children: Child[] = [];
      try {
        const watcher = new Child({ role: 'watch', root, store: { kind: 'embedded', path, sweepIntervalMs: 200 } });
        children.push(watcher);
        await watcher.waitFor('the watcher to be ready', (m) => m.event === 'ready', DEADLINE);

        const names = ['node-a', 'node-b', 'node-c', 'node-d', 'node-e', 'node-f'];
        const increments = 25;
        const nodes = names.map(
          (name, i) =>
            new Child({ role: 'register', root, name, host: i + 1, ttl: 1, increments, store: { kind: 'embedded', path, sweepIntervalMs: 200 } }),
        );
        children.push(...nodes);
        const regs = await Promise.all(nodes.map((c) => c.waitFor('registration', (m) => m.event === 'registered', DEADLINE)));
        const subnets = regs.map((m) => String(m.subnet));
        expect(new Set(subnets).size).to.equal(names.length);
        await Promise.all(nodes.map((c) => c.waitFor('the increments', (m) => m.event === 'counted', DEADLINE)));

        const check = await open(path);
        expect((await check.get(`${root}/counter`))?.value).to.equal(String(names.length * increments));
        const reg = new ClusterRegistry(check, { root, log: silentLogger() });
        expect((await reg.listNodes()).map((n) => [n.name, n.subnet])).to.deep.equal(names.map((n, i) => [n, subnets[i]]));

        for (const [i, name] of names.entries()) {
          await watcher.waitFor(`${name} added`, (m) => m.event === 'node' && m.type === 'added' && m.name === name && m.subnet === subnets[i], DEADLINE);
        }

        // A node process dies: its lease expires and the other process's watcher sees it removed.
        await nodes[2]!.kill('SIGKILL');
        await watcher.waitFor('node-c removed', (m) => m.event === 'node' && m.type === 'removed' && m.name === 'node-c', DEADLINE);
        expect((await reg.listNodes()).map((n) => n.name)).to.not.include('node-c');
        for (const c of nodes) expect(c.find((m) => m.event === 'lease-lost'), c.stderr).to.equal(undefined);
      } finally {
        await Promise.all(children.map((c) => c.kill()));
      }
    });
  });
});

/** Wraps a store so a test can stop its watches and report an error to their owners. */
class FailingWatchStore implements ClusterStore {
  private readonly live: Array<{ w: Watch; onError?: (err: Error) => void }> = [];
  constructor(private readonly inner: ClusterStore) {}
  get = (key: string) => this.inner.get(key);
  list = (prefix: string) => this.inner.list(prefix);
  snapshot = (prefix: string) => this.inner.snapshot(prefix);
  put: ClusterStore['put'] = (k, v, o) => this.inner.put(k, v, o);
  delete: ClusterStore['delete'] = (k, o) => this.inner.delete(k, o);
  createIfAbsent: ClusterStore['createIfAbsent'] = (k, v, o) => this.inner.createIfAbsent(k, v, o);
  compareAndSwap: ClusterStore['compareAndSwap'] = (k, r, v, o) => this.inner.compareAndSwap(k, r, v, o);
  grantLease = (ttl: number) => this.inner.grantLease(ttl);
  close = () => this.inner.close();
  async watch(prefix: string, onEvent: (ev: WatchEvent) => void, opts?: WatchOptions): Promise<Watch> {
    const w = await this.inner.watch(prefix, onEvent, opts);
    this.live.push({ w, ...(opts?.onError ? { onError: opts.onError } : {}) });
    return w;
  }
  async breakWatches(): Promise<void> {
    for (const { w } of this.live) await w.cancel();
  }
  fail(err: Error): void {
    for (const { onError } of this.live.splice(0)) onError?.(err);
  }
}
