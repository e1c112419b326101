/**
 * The ClusterStore conformance suite: every backend runs exactly these tests (plus its own extras).
 * The factory must return a new, independent client of the same backing store on each call (a second
 * "daemon"); every test works under its own random key prefix, so the backing store can be shared.
 */
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { ClusterStore, KeyValue, WatchEvent } from '../../../src/store/types.js';
import { ClusterRegistry, type NodeEvent, type NodeRecord, type PodEvent } from '../../../src/store/registry.js';
import { StoreErrorCode, isStoreError } from '../../../src/store/errors.js';
import { memoryLogger, silentLogger, sleep, waitFor } from './helpers.js';

export interface ConformanceOptions {
  /** TTL of the leases the tests grant (keep it short: 1-2 s). */
  leaseTtlSeconds: number;
  /** How long to wait for an expected event before failing (generous; never a timing assertion). */
  deadlineMs: number;
}

export function runConformance(name: string, factory: () => Promise<ClusterStore>, opts: ConformanceOptions): void {
  const { leaseTtlSeconds: ttl, deadlineMs } = opts;

  describe(`ClusterStore conformance: ${name}`, function () {
    const opened: ClusterStore[] = [];
    let store: ClusterStore;
    /** Unique key prefix of the current test, e.g. "/t-1a2b3c4d/". */
    let ns: string;

    const open = async (): Promise<ClusterStore> => {
      const s = await factory();
      opened.push(s);
      return s;
    };
    const collect = () => {
      const events: WatchEvent[] = [];
      return { events, cb: (ev: WatchEvent) => events.push(ev) };
    };
    const keyOf = (ev: WatchEvent) => (ev.type === 'put' ? ev.kv.key : ev.key);
    const revOf = (ev: WatchEvent) => (ev.type === 'put' ? ev.kv.modRevision : ev.revision);
    const expectStoreError = async (p: Promise<unknown>, code: string): Promise<Error> => {
      try {
        await p;
      } catch (err) {
        expect(isStoreError(err), `expected a StoreError, got ${String(err)}`).to.equal(true);
        expect((err as { code: string }).code).to.equal(code);
        return err as Error;
      }
      throw new Error(`expected a rejection with ${code}`);
    };

    beforeEach(async () => {
      ns = `/t-${randomUUID().slice(0, 8)}/`;
      store = await open();
    });
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((s) => s.close().catch(() => undefined)));
    });

    describe('keys', () => {
      it('puts, gets, lists (sorted, by prefix) and deletes', async () => {
        expect(await store.get(`${ns}a`)).to.equal(undefined);
        await store.put(`${ns}b`, 'B');
        const ra = await store.put(`${ns}a`, 'A');
        await store.put(`${ns}a/x`, 'AX');
        await store.put(`${ns.slice(0, -1)}x`, 'outside'); // shares the prefix string minus the slash

        const a = await store.get(`${ns}a`);
        expect(a).to.include({ key: `${ns}a`, value: 'A', modRevision: ra, createRevision: ra });
        expect(a?.lease).to.equal(undefined);
        expect((await store.list(ns)).map((kv) => [kv.key, kv.value])).to.deep.equal([
          [`${ns}a`, 'A'],
          [`${ns}a/x`, 'AX'],
          [`${ns}b`, 'B'],
        ]);
        expect((await store.list(`${ns}a/`)).map((kv) => kv.key)).to.deep.equal([`${ns}a/x`]);
        expect(await store.list(`${ns}zzz`)).to.deep.equal([]);

        expect(await store.delete(`${ns}a`)).to.equal(true);
        expect(await store.delete(`${ns}a`)).to.equal(false);
        expect(await store.get(`${ns}a`)).to.equal(undefined);
        expect((await store.list(ns)).map((kv) => kv.key)).to.deep.equal([`${ns}a/x`, `${ns}b`]);
        await store.delete(`${ns.slice(0, -1)}x`);
      });

      it('advances the revision on every change; createRevision survives updates', async () => {
        const r1 = await store.put(`${ns}k`, '1');
        const r2 = await store.put(`${ns}k`, '2');
        const r3 = await store.put(`${ns}other`, 'x');
        expect(r2).to.be.greaterThan(r1);
        expect(r3).to.be.greaterThan(r2);
        const kv = await store.get(`${ns}k`);
        expect(kv).to.include({ value: '2', createRevision: r1, modRevision: r2 });
        await store.delete(`${ns}k`);
        const r4 = await store.put(`${ns}k`, '3');
        expect(r4).to.be.greaterThan(r3);
        expect(await store.get(`${ns}k`)).to.include({ createRevision: r4, modRevision: r4 });
      });

      it('sees writes of another client immediately', async () => {
        const other = await open();
        const rev = await other.put(`${ns}shared`, 'v');
        expect(await store.get(`${ns}shared`)).to.include({ value: 'v', modRevision: rev });
      });

      it('snapshot() returns the revision it read at', async () => {
        const r1 = await store.put(`${ns}s1`, 'a');
        const snap = await store.snapshot(ns);
        expect(snap.revision).to.be.at.least(r1);
        expect(snap.kvs.map((kv) => kv.key)).to.deep.equal([`${ns}s1`]);
        const r2 = await store.put(`${ns}s2`, 'b');
        expect(r2).to.be.greaterThan(snap.revision);
      });

      it('delete with expectedModRevision deletes only the expected version', async () => {
        const r1 = await store.put(`${ns}c`, '1');
        const r2 = await store.put(`${ns}c`, '2');
        expect(await store.delete(`${ns}c`, { expectedModRevision: r1 })).to.equal(false);
        expect(await store.get(`${ns}c`)).to.include({ value: '2' });
        expect(await store.delete(`${ns}c`, { expectedModRevision: r2 })).to.equal(true);
        expect(await store.get(`${ns}c`)).to.equal(undefined);
      });
    });

    describe('atomic operations', () => {
      it('createIfAbsent: of many concurrent attempts from several clients exactly one wins', async () => {
        const clients = [store, await open(), await open()];
        const results = await Promise.all(
          Array.from({ length: 30 }, (_, i) => clients[i % clients.length]!.createIfAbsent(`${ns}race`, `v${i}`)),
        );
        const winners = results.flatMap((won, i) => (won ? [i] : []));
        expect(winners).to.have.length(1);
        expect((await store.get(`${ns}race`))?.value).to.equal(`v${winners[0]}`);
        expect(await store.createIfAbsent(`${ns}race`, 'again')).to.equal(false);
        await store.delete(`${ns}race`);
        expect(await store.createIfAbsent(`${ns}race`, 'after-delete')).to.equal(true);
      });

      it('compareAndSwap succeeds only on the expected modRevision (0 = absent)', async () => {
        expect(await store.compareAndSwap(`${ns}cas`, 5, 'x')).to.equal(false);
        expect(await store.get(`${ns}cas`)).to.equal(undefined);
        expect(await store.compareAndSwap(`${ns}cas`, 0, 'first')).to.equal(true);
        const kv = (await store.get(`${ns}cas`))!;
        expect(await store.compareAndSwap(`${ns}cas`, 0, 'nope')).to.equal(false);
        expect(await store.compareAndSwap(`${ns}cas`, kv.modRevision + 1000, 'nope')).to.equal(false);
        expect(await store.compareAndSwap(`${ns}cas`, kv.modRevision, 'second')).to.equal(true);
        const kv2 = (await store.get(`${ns}cas`))!;
        expect(kv2).to.include({ value: 'second', createRevision: kv.createRevision });
        expect(kv2.modRevision).to.be.greaterThan(kv.modRevision);
      });

      it('compareAndSwap: concurrent swaps from one base revision have exactly one winner', async () => {
        const clients = [store, await open(), await open()];
        await store.put(`${ns}base`, 'base');
        const base = (await store.get(`${ns}base`))!.modRevision;
        const results = await Promise.all(
          Array.from({ length: 24 }, (_, i) => clients[i % clients.length]!.compareAndSwap(`${ns}base`, base, `w${i}`)),
        );
        expect(results.filter(Boolean)).to.have.length(1);
      });

      it('compareAndSwap loops from several clients lose no increment', async () => {
        const clients = [store, await open(), await open()];
        const increment = async (s: ClusterStore) => {
          for (;;) {
            const kv = await s.get(`${ns}counter`);
            const n = kv ? Number(kv.value) : 0;
            if (await s.compareAndSwap(`${ns}counter`, kv?.modRevision ?? 0, String(n + 1))) return;
          }
        };
        await Promise.all(clients.map(async (s) => {
          for (let i = 0; i < 10; i++) await increment(s);
        }));
        expect((await store.get(`${ns}counter`))?.value).to.equal('30');
      });
    });

    describe('leases', () => {
      it('binds keys to a lease; a put without the lease detaches the key', async () => {
        const lease = await store.grantLease(ttl);
        expect(lease.id).to.be.a('string').and.not.equal('');
        expect(lease.ttlSeconds).to.be.at.least(ttl);
        await store.put(`${ns}leased`, 'x', { lease });
        expect((await store.get(`${ns}leased`))?.lease).to.equal(lease.id);
        await store.put(`${ns}detached`, 'y', { lease });
        await store.put(`${ns}detached`, 'y2');
        expect((await store.get(`${ns}detached`))?.lease).to.equal(undefined);
        await lease.revoke();
        expect(await store.get(`${ns}leased`)).to.equal(undefined);
        expect(await store.get(`${ns}detached`)).to.include({ value: 'y2' });
      });

      it('revoke deletes the lease keys at once, emits delete events, and the lease cannot be used again', async () => {
        const watcher = await open();
        const { events, cb } = collect();
        const w = await watcher.watch(ns, cb);
        const lease = await store.grantLease(ttl);
        let lost = false;
        lease.on('lost', () => (lost = true));
        await store.put(`${ns}l1`, '1', { lease });
        expect(await store.createIfAbsent(`${ns}l2`, '2', { lease })).to.equal(true);
        await store.put(`${ns}keep`, 'k');
        await lease.revoke();
        expect(await store.get(`${ns}l1`)).to.equal(undefined);
        expect(await store.get(`${ns}l2`)).to.equal(undefined);
        expect(await store.get(`${ns}keep`)).to.include({ value: 'k' });
        await waitFor('delete events for l1 and l2', () => events.filter((e) => e.type === 'delete').length >= 2, deadlineMs);
        expect(events.filter((e) => e.type === 'delete').map(keyOf).sort()).to.deep.equal([`${ns}l1`, `${ns}l2`]);
        await expectStoreError(store.put(`${ns}l3`, '3', { lease }), StoreErrorCode.LeaseNotFound);
        await lease.revoke(); // idempotent
        expect(lost).to.equal(false);
        await w.cancel();
      });

      it('a lease nobody keeps alive expires: its keys are deleted and watchers see delete events', async () => {
        const holder = await open();
        const { events, cb } = collect();
        await store.watch(ns, cb);
        const lease = await holder.grantLease(ttl);
        await holder.put(`${ns}ephemeral`, 'x', { lease });
        await holder.put(`${ns}permanent`, 'y');
        await holder.close(); // stops the keepalive without revoking, as if the process died
        await waitFor(
          'the delete event of the expired key',
          () => events.some((e) => e.type === 'delete' && e.key === `${ns}ephemeral`),
          deadlineMs,
        );
        expect(await store.get(`${ns}ephemeral`)).to.equal(undefined);
        expect(await store.get(`${ns}permanent`)).to.include({ value: 'y' });
      });

      it('keeps a held lease alive past its TTL', async () => {
        const lease = await store.grantLease(ttl);
        let lost: Error | undefined;
        lease.on('lost', (err) => (lost = err));
        await store.put(`${ns}alive`, 'x', { lease });
        await sleep(lease.ttlSeconds * 2500);
        expect(lost).to.equal(undefined);
        expect(await store.get(`${ns}alive`)).to.include({ value: 'x', lease: lease.id });
        await lease.revoke();
      });

      it('rejects TTLs that are not whole seconds >= 1', async () => {
        await expectStoreError(store.grantLease(0), StoreErrorCode.InvalidArgument);
        await expectStoreError(store.grantLease(1.5), StoreErrorCode.InvalidArgument);
      });
    });

    describe('watches', () => {
      it('delivers puts and deletes under the prefix in revision order', async () => {
        const { events, cb } = collect();
        const w = await store.watch(ns, cb);
        const writer = await open();
        const r1 = await writer.put(`${ns}a`, '1');
        await writer.put(`${ns.slice(0, -1)}-not-mine`, 'x');
        await writer.put(`${ns}b`, '2');
        await writer.put(`${ns}a`, '3');
        await writer.delete(`${ns}b`);
        await waitFor('4 events', () => events.length >= 4, deadlineMs);
        expect(events.map((e) => [e.type, keyOf(e)])).to.deep.equal([
          ['put', `${ns}a`],
          ['put', `${ns}b`],
          ['put', `${ns}a`],
          ['delete', `${ns}b`],
        ]);
        const revs = events.map(revOf);
        expect([...revs].sort((x, y) => x - y)).to.deep.equal(revs);
        expect(new Set(revs).size).to.equal(revs.length);
        const update = events[2] as { type: 'put'; kv: KeyValue };
        expect(update.kv).to.include({ value: '3', createRevision: r1 });
        await w.cancel();
        await writer.delete(`${ns.slice(0, -1)}-not-mine`);
      });

      it('fromRevision replays history, then continues live', async () => {
        await store.put(`${ns}x1`, 'a');
        const r2 = await store.put(`${ns}x2`, 'b');
        await store.delete(`${ns}x1`);
        const { events, cb } = collect();
        const w = await store.watch(ns, cb, { fromRevision: r2 });
        await waitFor('the replayed events', () => events.length >= 2, deadlineMs);
        const r4 = await store.put(`${ns}x3`, 'c');
        await waitFor('the live event', () => events.length >= 3, deadlineMs);
        expect(events.map((e) => [e.type, keyOf(e)])).to.deep.equal([
          ['put', `${ns}x2`],
          ['delete', `${ns}x1`],
          ['put', `${ns}x3`],
        ]);
        expect(revOf(events[0]!)).to.equal(r2);
        expect(revOf(events[2]!)).to.equal(r4);
        await w.cancel();
      });

      it('snapshot + watch from the next revision misses nothing while another client writes', async () => {
        const writer = await open();
        const writes = (async () => {
          for (let i = 0; i < 40; i++) {
            if (i % 3 === 2) await writer.delete(`${ns}k${i - 1}`);
            else await writer.put(`${ns}k${i}`, `v${i}`);
          }
        })();
        await sleep(5);
        const snap = await store.snapshot(ns);
        const state = new Map(snap.kvs.map((kv) => [kv.key, kv.value]));
        let last = snap.revision;
        const w = await store.watch(
          ns,
          (ev) => {
            expect(revOf(ev)).to.be.greaterThan(last);
            last = revOf(ev);
            if (ev.type === 'put') state.set(ev.kv.key, ev.kv.value);
            else state.delete(ev.key);
          },
          { fromRevision: snap.revision + 1 },
        );
        await writes;
        const final = await store.snapshot(ns);
        await waitFor('the watch to catch up', () => last >= Math.max(...final.kvs.map((kv) => kv.modRevision), snap.revision), deadlineMs);
        await waitFor('state to converge', () => state.size === final.kvs.length, deadlineMs);
        expect([...state.entries()].sort()).to.deep.equal(final.kvs.map((kv) => [kv.key, kv.value]));
        await w.cancel();
      });

      it('cancel stops delivery', async () => {
        const { events, cb } = collect();
        const w = await store.watch(ns, cb);
        await store.put(`${ns}one`, '1');
        await waitFor('the first event', () => events.length === 1, deadlineMs);
        await w.cancel();
        await store.put(`${ns}two`, '2');
        // A marker watch proves the second put was dispatched before we check the cancelled one.
        const marker = collect();
        const m = await store.watch(ns, marker.cb, { fromRevision: (await store.get(`${ns}two`))!.modRevision });
        await waitFor('the marker event', () => marker.events.length === 1, deadlineMs);
        expect(events).to.have.length(1);
        await m.cancel();
        await w.cancel(); // idempotent
      });
    });

    describe('registry', () => {
      const regOpts = () => ({ podCidr: '10.244.0.0/16', subnetPrefix: 24, leaseTtlSeconds: ttl });
      const identity = (name: string, host = 1) => ({ name, underlayIp: `192.168.0.${host}`, vtepMac: `02:00:c0:a8:00:${host.toString(16).padStart(2, '0')}` });
      const registry = (s: ClusterStore, log = silentLogger()) => new ClusterRegistry(s, { root: `${ns}podnet`, log });

      it('concurrent registrations from several daemons never get the same subnet', async () => {
        const regs = [registry(store), registry(await open()), registry(await open())];
        const names = Array.from({ length: 12 }, (_, i) => `node-${i}`);
        const results = await Promise.all(names.map((n, i) => regs[i % regs.length]!.registerNode(identity(n, i + 1), regOpts())));
        const subnets = results.map((r) => r.subnet);
        expect(new Set(subnets).size).to.equal(names.length);
        for (const s of subnets) expect(s).to.match(/^10\.244\.\d{1,3}\.0\/24$/);
        const listed = await regs[0]!.listNodes();
        expect(listed.map((n) => [n.name, n.subnet])).to.deep.equal(
          results.map((r) => [r.node.name, r.subnet]).sort((a, b) => (a[0]! < b[0]! ? -1 : 1)),
        );
      });

      it('fails with an error naming the pod CIDR when it is exhausted', async () => {
        const reg = registry(store);
        const small = { podCidr: '10.99.0.0/28', subnetPrefix: 30, leaseTtlSeconds: ttl };
        const got = [];
        for (let i = 0; i < 4; i++) got.push((await reg.registerNode(identity(`n${i}`, i + 1), small)).subnet);
        expect(got).to.deep.equal(['10.99.0.0/30', '10.99.0.4/30', '10.99.0.8/30', '10.99.0.12/30']);
        const err = await expectStoreError(reg.registerNode(identity('n4', 5), small), StoreErrorCode.Exhausted);
        expect(err.message).to.include('10.99.0.0/28');
        expect(await reg.getNode('n4')).to.equal(undefined);
        await reg.deregisterNode('n1');
        expect((await reg.registerNode(identity('n4', 5), small)).subnet).to.equal('10.99.0.4/30');
      });

      it('rejects invalid node identities and options', async () => {
        const reg = registry(store);
        await expectStoreError(reg.registerNode({ name: 'Bad_Name', underlayIp: '10.0.0.1', vtepMac: '02:00:00:00:00:01' }, regOpts()), StoreErrorCode.InvalidArgument);
        await expectStoreError(reg.registerNode({ name: 'ok', underlayIp: '10.0.0.300', vtepMac: '02:00:00:00:00:01' }, regOpts()), StoreErrorCode.InvalidArgument);
        await expectStoreError(reg.registerNode(identity('ok'), { ...regOpts(), subnetPrefix: 16 }), StoreErrorCode.InvalidArgument);
      });

      it('a node registering again keeps its subnet (while held, and after its lease is gone)', async () => {
        const reg = registry(store);
        const a = await reg.registerNode(identity('a', 1), regOpts());
        const b = await reg.registerNode(identity('b', 2), regOpts());
        const c = await reg.registerNode(identity('c', 3), regOpts());
        expect([a.subnet, b.subnet, c.subnet]).to.deep.equal(['10.244.0.0/24', '10.244.1.0/24', '10.244.2.0/24']);

        // Restart of b while its old registration is still alive (same registry and another daemon).
        const b2 = await reg.registerNode(identity('b', 2), regOpts());
        expect(b2.subnet).to.equal(b.subnet);
        const b3 = await registry(await open()).registerNode(identity('b', 2), regOpts());
        expect(b3.subnet).to.equal(b.subnet);
        await b2.lease.revoke(); // the claim moved to b3's lease: revoking b2 must not free it
        expect(await reg.getNode('b')).to.include({ subnet: b.subnet });

        // Both a and b go away; b comes back first and must not take a's (lower, free) subnet.
        await a.lease.revoke();
        await b3.lease.revoke();
        expect(await reg.getNode('b')).to.equal(undefined);
        const b4 = await reg.registerNode(identity('b', 2), regOpts());
        expect(b4.subnet).to.equal(b.subnet);
        const d = await reg.registerNode(identity('d', 4), regOpts());
        expect(d.subnet).to.equal(a.subnet);
      });

      it('watchNodes emits the current nodes, then additions, updates and removals (including lease expiry)', async () => {
        const reg = registry(store);
        const n1 = await reg.registerNode(identity('n1', 1), regOpts());
        const events: NodeEvent[] = [];
        const w = await registry(await open()).watchNodes((ev) => events.push(ev));
        expect(events).to.deep.equal([{ type: 'added', node: n1.node }]);

        const n2 = await reg.registerNode(identity('n2', 2), regOpts());
        await waitFor('n2 added', () => events.length >= 2, deadlineMs);
        expect(events[1]).to.deep.equal({ type: 'added', node: n2.node });

        const n1b = await reg.registerNode({ ...identity('n1', 1), underlayIp: '192.168.7.7' }, regOpts());
        await waitFor('n1 updated', () => events.length >= 3, deadlineMs);
        expect(events[2]).to.deep.equal({ type: 'updated', node: n1b.node });
        expect(n1b.subnet).to.equal(n1.subnet);

        await reg.deregisterNode('n2');
        await waitFor('n2 removed', () => events.length >= 4, deadlineMs);
        expect(events[3]).to.deep.equal({ type: 'removed', node: n2.node });

        const dying = await open();
        const n3 = await registry(dying).registerNode(identity('n3', 3), regOpts());
        await waitFor('n3 added', () => events.some((e) => e.type === 'added' && e.node.name === 'n3'), deadlineMs);
        await dying.close(); // the daemon dies without deregistering
        await waitFor('n3 removed after its lease expired', () => events.some((e) => e.type === 'removed' && e.node.name === 'n3'), deadlineMs);
        expect(events.find((e) => e.type === 'removed' && e.node.name === 'n3')?.node).to.deep.equal(n3.node);
        expect((await reg.listNodes()).map((n) => n.name)).to.deep.equal(['n1']);
        await w.cancel();
      });

      it('skips and logs malformed records instead of failing', async () => {
        const { log, records } = memoryLogger();
        const reg = registry(store, log);
        const good = await reg.registerNode(identity('good', 1), regOpts());
        await store.put(`${ns}podnet/nodes/garbage`, '{not json');
        await store.put(`${ns}podnet/nodes/partial`, JSON.stringify({ name: 'partial', underlayIp: '10.0.0.1' }));
        const misfiled: NodeRecord = { name: 'elsewhere', underlayIp: '10.0.0.2', vtepMac: '02:00:00:00:00:02', subnet: '10.244.9.0/24' };
        await store.put(`${ns}podnet/nodes/misfiled`, JSON.stringify(misfiled));

        expect(await reg.listNodes()).to.deep.equal([good.node]);
        const events: NodeEvent[] = [];
        const w = await reg.watchNodes((ev) => events.push(ev));
        await store.put(`${ns}podnet/nodes/later`, '[]');
        const other = await reg.registerNode(identity('other', 2), regOpts());
        await waitFor('the valid addition', () => events.length >= 2, deadlineMs);
        expect(events).to.deep.equal([
          { type: 'added', node: good.node },
          { type: 'added', node: other.node },
        ]);
        const skipped = records.filter((r) => String(r.msg).includes('malformed')).map((r) => r.key);
        for (const k of ['garbage', 'partial', 'misfiled', 'later']) expect(skipped).to.include(`${ns}podnet/nodes/${k}`);
        await w.cancel();
      });

      it('pods: put, get, list, watch and delete', async () => {
        const reg = registry(store);
        const p1 = { name: 'web-1', node: 'n1', ip: '10.244.0.2', mac: '02:00:0a:f4:00:02', labels: { app: 'web' } };
        const p2 = { name: 'db-1', node: 'n2', ip: '10.244.1.2', mac: '02:00:0a:f4:01:02', labels: {} };
        await reg.putPod(p1);
        await reg.putPod(p2);
        expect(await reg.getPod('n1', 'web-1')).to.deep.equal(p1);
        expect(await reg.listPods()).to.deep.equal([p1, p2]);
        expect(await reg.listPods('n2')).to.deep.equal([p2]);

        const events: PodEvent[] = [];
        const w = await registry(await open()).watchPods((ev) => events.push(ev));
        expect(events.map((e) => [e.type, e.pod.name])).to.deep.equal([
          ['added', 'web-1'],
          ['added', 'db-1'],
        ]);
        const p3 = { name: 'web-2', node: 'n1', ip: '10.244.0.3', mac: '02:00:0a:f4:00:03', labels: { app: 'web' } };
        await reg.putPod(p3);
        await reg.putPod({ ...p1, labels: { app: 'web', tier: 'front' } });
        await reg.putPod({ ...p1, labels: { app: 'web', tier: 'front' } }); // unchanged: no event
        expect(await reg.deletePod('n2', 'db-1')).to.equal(true);
        expect(await reg.deletePod('n2', 'db-1')).to.equal(false);
        await waitFor('3 pod changes', () => events.length >= 5, deadlineMs);
        await sleep(50);
        expect(events.slice(2)).to.deep.equal([
          { type: 'added', pod: p3 },
          { type: 'updated', pod: { ...p1, labels: { app: 'web', tier: 'front' } } },
          { type: 'removed', pod: p2 },
        ]);
        await expectStoreError(reg.putPod({ ...p1, ip: 'not-an-ip' }), StoreErrorCode.InvalidArgument);
        await expectStoreError(reg.putPod({ ...p1, node: 'a/b' }), StoreErrorCode.InvalidArgument);
        await w.cancel();
      });
    });
  });
}
