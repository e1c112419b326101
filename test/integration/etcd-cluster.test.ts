import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Topology, sleep } from '../../src/topology/topology.js';
import { ip } from '../../src/netns/run.js';
import { ping, startEtcd, statusJson } from '../helpers/net.js';

/**
 * Issue 3 with etcd: etcd runs on the underlay (inside the underlay namespace, 198.18.0.1), the daemons
 * use it as their cluster store. Two daemons started at once get different subnets; a killed node's
 * lease expires and the other nodes drop its route.
 */
describe('multi-host with etcd as the cluster store', function () {
  this.timeout(300_000);
  const t = new Topology();
  const dataDir = mkdtempSync(join(tmpdir(), 'podnet-etcd-'));
  let etcd: ReturnType<typeof startEtcd> | undefined;
  const store = { kind: 'etcd', endpoints: ['http://198.18.0.1:2379'] };

  before(async () => {
    await t.createUnderlay();
    await ip(['addr', 'add', '198.18.0.1/24', 'dev', 'br0'], t.underlayNs);
    etcd = startEtcd(t.underlayNs, dataDir);
    await etcd.started;
    for (const h of ['h1', 'h2', 'h3']) await t.addHost({ name: h });
  });

  after(async () => {
    await t.destroy();
    etcd?.stop();
    await etcd?.exited;
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('two daemons racing for a subnet get different ones', async () => {
    await Promise.all(['h1', 'h2'].map((h) => t.startDaemon(h, { store, leaseTtl: 3 })));
    const [s1, s2] = await Promise.all(['h1', 'h2'].map(async (h) => (await statusJson(t, h)).subnet));
    expect(s1).to.not.equal(s2);
    await t.startDaemon('h3', { store, leaseTtl: 3 });
    for (const h of ['h1', 'h2', 'h3']) expect((await t.podnet(h, ['pod', 'add', 'a'])).code).to.equal(0);
    const ipOf = async (h: string) => (await statusJson(t, h)).pods[0].ip as string;
    expect(await ping(t, t.podNs('h1', 'a'), await ipOf('h2'))).to.equal(true);
    expect(await ping(t, t.podNs('h3', 'a'), await ipOf('h1'))).to.equal(true);
  });

  it('a killed node\'s lease expires and the other nodes remove its route', async () => {
    const h3ip = (await statusJson(t, 'h3')).pods[0].ip as string;
    const h3under = t.host('h3').underlayIp;
    const peersOf = async (h: string) => ((await statusJson(t, h)).cluster.vxlan.peers as Array<{ underlayIp: string }>).map((p) => p.underlayIp);
    expect(await peersOf('h1')).to.include(h3under);
    await t.stopDaemon('h3', 'SIGKILL');
    let gone = false;
    for (let i = 0; i < 60 && !gone; i++) {
      gone = !(await peersOf('h1')).includes(h3under) && !(await peersOf('h2')).includes(h3under);
      if (!gone) await sleep(250);
    }
    expect(gone).to.equal(true);
    const r = await t.exec(t.podNs('h1', 'a'), 'ping', ['-c', '1', '-W', '2', h3ip]);
    expect(r.stdout).to.match(/Destination Net Unreachable/);
  });
});
