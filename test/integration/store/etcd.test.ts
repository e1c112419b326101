/**
 * Runs the store conformance suite against a real etcd started on loopback (random free ports, temp data
 * dir), plus multi-client checks: racing registrations and lease expiry of a killed daemon.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { EtcdStore } from '../../../src/store/etcd.js';
import { ClusterRegistry, type NodeEvent } from '../../../src/store/registry.js';
import type { ClusterStore } from '../../../src/store/types.js';
import { runConformance } from '../../unit/store/conformance.js';
import { Child } from '../../unit/store/fixtures/spawn.js';
import { silentLogger, waitFor } from '../../unit/store/helpers.js';
import { freePort } from '../../helpers/net.js';

const DEADLINE = 30_000;

function etcdBinary(): string | undefined {
  const r = spawnSync('sh', ['-c', 'command -v etcd'], { encoding: 'utf8' });
  const path = r.stdout.trim();
  return r.status === 0 && path ? path : undefined;
}

describe('EtcdStore against a real etcd', function () {
  let etcd: ChildProcess | undefined;
  let etcdExited: Promise<void> | undefined;
  let dataDir: string | undefined;
  let endpoint = '';
  let etcdLog = '';
  /** Every client of this run lives under its own etcd key prefix. */
  const runPrefix = `/podnet-test-${randomUUID().slice(0, 8)}`;
  const clients: ClusterStore[] = [];
  const client = (): EtcdStore => {
    const s = new EtcdStore({ endpoints: [endpoint], prefix: runPrefix, log: silentLogger() });
    clients.push(s);
    return s;
  };

  let clientPort = 0;
  let peerPort = 0;
  let bin = '';

  /** Starts etcd on the chosen ports and data dir and waits until it reports healthy. */
  async function startEtcd(): Promise<void> {
    const peer = `http://127.0.0.1:${peerPort}`;
    const proc = spawn(
      bin,
      [
        '--name', 'default',
        '--data-dir', join(dataDir!, 'data'),
        '--listen-client-urls', endpoint,
        '--advertise-client-urls', endpoint,
        '--listen-peer-urls', peer,
        '--initial-advertise-peer-urls', peer,
        '--initial-cluster', `default=${peer}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    etcd = proc;
    let exited = false;
    etcdExited = new Promise((resolve) =>
      proc.once('exit', () => {
        exited = true;
        resolve();
      }),
    );
    const keep = (chunk: Buffer) => {
      etcdLog = (etcdLog + chunk.toString()).slice(-16384);
    };
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    await waitFor(
      'etcd to report healthy',
      async () => {
        if (exited) throw new Error(`etcd exited during startup:\n${etcdLog}`);
        try {
          const res = await fetch(`${endpoint}/health`);
          const body = (await res.json()) as { health?: string };
          return body.health === 'true';
        } catch {
          return false;
        }
      },
      DEADLINE,
    );
  }

  async function stopEtcd(signal: NodeJS.Signals): Promise<void> {
    if (etcd && etcd.exitCode === null && etcd.signalCode === null) {
      etcd.kill(signal);
      await etcdExited;
    }
  }

  before(async function () {
    const found = etcdBinary();
    if (!found) {
      this.skip();
      return;
    }
    bin = found;
    dataDir = mkdtempSync(join(tmpdir(), 'podnet-etcd-'));
    [clientPort, peerPort] = [await freePort(), await freePort()];
    endpoint = `http://127.0.0.1:${clientPort}`;
    await startEtcd();
  });

  after(async function () {
    await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
    await stopEtcd('SIGKILL');
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  runConformance('etcd', async () => client(), { leaseTtlSeconds: 1, deadlineMs: DEADLINE });

  describe('etcd specifics', () => {
    const regOpts = { podCidr: '10.244.0.0/16', subnetPrefix: 24, leaseTtlSeconds: 2 };

    it('two daemons with separate clients racing for a subnet get different ones', async () => {
      const a = client();
      const b = client();
      for (let round = 0; round < 10; round++) {
        const root = `/race-${round}-${randomUUID().slice(0, 6)}`;
        const regA = new ClusterRegistry(a, { root, log: silentLogger() });
        const regB = new ClusterRegistry(b, { root, log: silentLogger() });
        const [ra, rb] = await Promise.all([
          regA.registerNode({ name: 'node-a', underlayIp: '10.0.0.1', vtepMac: '02:00:00:00:00:01' }, regOpts),
          regB.registerNode({ name: 'node-b', underlayIp: '10.0.0.2', vtepMac: '02:00:00:00:00:02' }, regOpts),
        ]);
        expect(ra.subnet).to.not.equal(rb.subnet);
        expect([ra.subnet, rb.subnet].sort()).to.deep.equal(['10.244.0.0/24', '10.244.1.0/24']);
        await Promise.all([ra.lease.revoke(), rb.lease.revoke()]);
      }
    });

    it('a killed daemon process loses its lease and its node entry is removed for watchers', async () => {
      const root = `/killed-${randomUUID().slice(0, 6)}`;
      const events: NodeEvent[] = [];
      const watcher = client();
      const w = await new ClusterRegistry(watcher, { root, log: silentLogger() }).watchNodes((ev) => events.push(ev));
      const child = new Child({
        role: 'register',
        root,
        name: 'doomed',
        ttl: 1,
        store: { kind: 'etcd', endpoints: [endpoint], prefix: runPrefix },
      });
      try {
        const reg = await child.waitFor('registration', (m) => m.event === 'registered', DEADLINE);
        await waitFor('the node to be added', () => events.some((e) => e.type === 'added' && e.node.name === 'doomed'), DEADLINE);
        expect(events[0]!.node.subnet).to.equal(reg.subnet);
        await child.kill('SIGKILL');
        await waitFor('the node to be removed', () => events.some((e) => e.type === 'removed' && e.node.name === 'doomed'), DEADLINE);
        expect(await watcher.list(`${root}/subnets/`)).to.deep.equal([]);
      } finally {
        await child.kill();
        await w.cancel();
      }
    });

    it('a client closed without revoking lets its lease expire (keys gone, delete events seen elsewhere)', async () => {
      const root = `/closed-${randomUUID().slice(0, 6)}`;
      const dying = new EtcdStore({ endpoints: [endpoint], prefix: runPrefix, log: silentLogger() });
      const reg = await new ClusterRegistry(dying, { root, log: silentLogger() }).registerNode(
        { name: 'gone', underlayIp: '10.0.0.9', vtepMac: '02:00:00:00:00:09' },
        regOpts,
      );
      const observer = client();
      const deleted: string[] = [];
      const w = await observer.watch(`${root}/`, (ev) => {
        if (ev.type === 'delete') deleted.push(ev.key);
      });
      await dying.close();
      await waitFor('both leased keys to be deleted', () => deleted.length >= 2, DEADLINE);
      expect(deleted.sort()).to.deep.equal([`${root}/nodes/gone`, `${root}/subnets/${reg.subnet.replace('/', '-')}`].sort());
      // The preference survives, so the node would get its subnet back.
      expect(await observer.get(`${root}/node-subnets/gone`)).to.include({ value: JSON.stringify({ subnet: reg.subnet }) });
      await w.cancel();
    });

    it('a watch resumes from the last delivered revision after etcd restarts', async () => {
      const s = client();
      const writer = client();
      const prefix = `/restart-${randomUUID().slice(0, 6)}/`;
      const seen: string[] = [];
      const w = await s.watch(prefix, (ev) => {
        if (ev.type === 'put') seen.push(ev.kv.value);
      });
      await writer.put(`${prefix}k`, 'before');
      await waitFor('the first event', () => seen.length === 1, DEADLINE);
      await stopEtcd('SIGTERM');
      await startEtcd(); // same ports and data dir: the clients reconnect on their own
      // Written as soon as the writer reconnects, possibly before the watch stream has come back.
      await waitFor(
        'the writer to reconnect',
        async () => {
          try {
            await writer.put(`${prefix}k`, 'after-0');
            return true;
          } catch {
            return false;
          }
        },
        DEADLINE,
      );
      for (let i = 1; i < 5; i++) await writer.put(`${prefix}k`, `after-${i}`);
      await waitFor('all later events', () => seen.length >= 6, DEADLINE);
      expect(seen).to.deep.equal(['before', 'after-0', 'after-1', 'after-2', 'after-3', 'after-4']);
      await w.cancel();
    });
  });
});
