import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Topology, sleep } from '../../src/topology/topology.js';
import { ip } from '../../src/netns/run.js';
import { NETTOOL, ping, startEtcd as etcdServer, startIn, statusJson, within } from '../helpers/net.js';

const MB = 1024 * 1024;

/**
 * Issue 11, item 3: the cluster store (etcd, on the underlay) is stopped for 30 s while traffic runs.
 * Forwarding, services and NAT go on with the last known state; `podnet status` says the store is
 * unreachable and since when; when etcd is back the daemons reconnect by themselves, register again
 * (the 30 s outage is far longer than their 3 s lease) and keep their subnets; nothing needs a restart.
 */
describe('store outage: etcd stopped for 30 s does not touch the data path', function () {
  this.timeout(600_000);
  const t = new Topology();
  const dataDir = mkdtempSync(join(tmpdir(), 'podnet-etcd-'));
  let etcd: ReturnType<typeof startIn> | undefined;
  const store = { kind: 'etcd', endpoints: ['http://198.18.0.1:2379'] };
  const servers: Array<ReturnType<typeof startIn>> = [];
  const ipOf: Record<string, string> = {};
  const nodes = ['h1', 'h2', 'h3'];

  function startEtcd() {
    etcd = etcdServer(t.underlayNs, dataDir);
    return etcd.started;
  }

  async function pod(node: string, name: string, labels: string[] = []): Promise<string> {
    const r = await t.podnet(node, ['pod', 'add', name, ...labels.flatMap((l) => ['--label', l])]);
    expect(r.code, r.stderr).to.equal(0);
    ipOf[name] = r.stdout.trim();
    return ipOf[name]!;
  }

  before(async () => {
    await t.createUnderlay();
    await ip(['addr', 'add', '198.18.0.1/24', 'dev', 'br0'], t.underlayNs);
    await startEtcd();
    for (const h of nodes) await t.addHost({ name: h });
    for (const h of nodes) await t.startDaemon(h, { store, leaseTtl: 3 });
    await pod('h1', 'a');
    await pod('h2', 'b');
    await pod('h3', 'web', ['app=web']);
    servers.push(startIn(t.podNs('h3', 'web'), process.execPath, [NETTOOL, 'echo', '9000']));
    await Promise.all(servers.map((s) => s.started));
  });

  afterEach(function () {
    // A failure's evidence: the daemons' warnings and errors, before the topology (and its logs) goes.
    if (this.currentTest?.state !== 'failed') return;
    for (const h of nodes) {
      const lines = t.daemonLog(h).split('\n').filter((l) => l && !l.includes('"level":30'));
      process.stderr.write(`--- ${h} daemon log (warnings and errors, last 30) ---\n${lines.slice(-30).join('\n')}\n`);
    }
  });

  after(async () => {
    for (const s of servers) s.stop();
    await t.destroy();
    etcd?.stop();
    await etcd?.exited;
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('pods, services and a long transfer carry on through the outage; status says since when; all recovers by itself', async () => {
    const r = await t.podnet('h1', ['service', 'add', 'echo', '--port', '9000/tcp', '--selector', 'app=web']);
    expect(r.code, r.stderr).to.equal(0);
    const vip = r.stdout.trim();
    expect((await t.exec(t.podNs('h1', 'a'), process.execPath, [NETTOOL, 'conns', vip, '9000', '5'])).stdout.trim()).to.equal('ok 5 bad 0');
    const before = Object.fromEntries(await Promise.all(nodes.map(async (h) => [h, await statusJson(t, h)] as const)));

    // A transfer that starts before the outage and finishes during it; pings all along.
    const sink = startIn(t.podNs('h2', 'b'), process.execPath, [NETTOOL, 'sink', '5000']);
    servers.push(sink);
    await sink.started;
    const sender = startIn(t.podNs('h1', 'a'), process.execPath, [NETTOOL, 'send', ipOf.b!, '5000', String(100 * MB), String(50 * MB)], 'paused');
    servers.push(sender);
    await sender.started;
    const pinger = startIn(t.podNs('h2', 'b'), 'ping', ['-i', '0.2', '-c', '200', '-W', '2', ipOf.a!], 'PING');
    await pinger.started;

    etcd!.stop();
    await etcd!.exited;
    // Every daemon notices, and says since when.
    for (const h of nodes) {
      let st = await statusJson(t, h);
      for (let i = 0; i < 60 && st.cluster.store.reachable; i++) {
        await sleep(250);
        st = await statusJson(t, h);
      }
      expect(st.cluster.store.reachable, h).to.equal(false);
      expect(Date.parse(st.cluster.store.unreachableSince)).to.be.a('number').and.not.NaN;
    }
    const text = await t.podnet('h1', ['status']);
    expect(text.stdout).to.match(/store etcd UNREACHABLE since \d{4}-\d\d-\d\dT[\d:.]+Z/);

    // While etcd is down: the transfer finishes, new connections to the service and between pods work.
    sender.child.kill('SIGUSR1');
    expect(await within(sender.exited, 120_000, -1), sender.errors()).to.equal(0);
    expect(await within(sink.exited, 60_000, -1), sink.errors()).to.equal(0);
    const [sentBytes, sentHash] = sender.output().trim().split(' ');
    const [gotBytes, gotHash] = sink.output().trim().split(' ');
    expect(Number(gotBytes)).to.equal(100 * MB);
    expect(Number(sentBytes)).to.equal(100 * MB);
    expect(gotHash).to.equal(sentHash);
    const during = await t.exec(t.podNs('h2', 'b'), process.execPath, [NETTOOL, 'conns', vip, '9000', '20']);
    expect(during.stdout.trim(), during.stderr).to.equal('ok 20 bad 0');
    expect(await ping(t, t.podNs('h1', 'a'), ipOf.web!)).to.equal(true);

    // 30 s more of outage (ten times the lease TTL), then etcd comes back with its data.
    await sleep(30_000);
    for (const h of nodes) expect((await statusJson(t, h)).cluster.store.reachable, h).to.equal(false);
    await startEtcd();

    // No restart: the daemons reconnect, register again with the subnets they had, and the store works.
    for (const h of nodes) {
      let st = await statusJson(t, h);
      for (let i = 0; i < 120 && !(st.cluster.store.reachable && !st.cluster.store.leaseLost); i++) {
        await sleep(250);
        st = await statusJson(t, h);
      }
      expect(st.cluster.store.reachable, h).to.equal(true);
      expect(st.cluster.store.reregistrations, h).to.be.at.least(1);
      expect(st.subnet).to.equal(before[h].subnet);
      expect(st.process.pid).to.equal(before[h].process.pid);
      const peers = (st.cluster.vxlan.peers as Array<{ underlayIp: string }>).map((p) => p.underlayIp).sort();
      expect(peers).to.deep.equal(nodes.filter((n) => n !== h).map((n) => t.host(n).underlayIp).sort());
    }
    // Every node and pod is registered again.
    const listed = JSON.parse((await t.podnet('h2', ['nodes', '--json'])).stdout) as Array<{ name: string; subnet: string }>;
    expect(listed.map((n) => `${n.name} ${n.subnet}`).sort()).to.deep.equal(nodes.map((h) => `${h} ${before[h].subnet}`).sort());
    const pods = JSON.parse((await t.podnet('h2', ['pod', 'list', '--all', '--json'])).stdout) as Array<{ name: string }>;
    expect(pods.map((p) => p.name).sort()).to.deep.equal(['a', 'b', 'web']);

    // The watches work again: a service made now is served on another node.
    const r2 = await t.podnet('h3', ['service', 'add', 'echo2', '--port', '9001:9000/tcp', '--selector', 'app=web']);
    expect(r2.code, r2.stderr).to.equal(0);
    const vip2 = r2.stdout.trim();
    let answer = '';
    for (let i = 0; i < 40 && answer !== 'ok 3 bad 0'; i++) {
      answer = (await t.exec(t.podNs('h1', 'a'), process.execPath, [NETTOOL, 'conns', vip2, '9001', '3'])).stdout.trim();
      if (answer !== 'ok 3 bad 0') await sleep(250);
    }
    expect(answer).to.equal('ok 3 bad 0');

    // Not one ping was lost across the whole outage.
    expect(await within(pinger.exited, 120_000, -1)).to.equal(0);
    const m = /(\d+) packets transmitted, (\d+) received/.exec(pinger.output());
    expect(m, pinger.output()).to.not.equal(null);
    expect(Number(m![2])).to.equal(Number(m![1]));
  });
});
