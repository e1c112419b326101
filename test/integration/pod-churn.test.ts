import { expect } from 'chai';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Topology } from '../../src/topology/topology.js';
import { apiCall } from '../../src/api/client.js';
import { listNetns } from '../../src/netns/run.js';
import { NETTOOL, startIn, statusJson, tcpTransfer, within } from '../helpers/net.js';

const MB = 1024 * 1024;
const CYCLES = 200;

/**
 * Issue 11: 200 pod add/delete cycles on a node under load leave nothing behind. Everything a pod
 * can leave is counted before and after: namespaces, devices, routes and iptables rules in the
 * node's namespace, the daemon's TUN/TAP file descriptors, conntrack entries, MAC table entries, IPAM
 * addresses and pod records in the cluster store. Meanwhile a 400 MB transfer, pings every 20 ms and
 * a 20 MB transfer every 40 cycles run through the node, and every tenth pod makes a connection
 * through a ClusterIP (so it has conntrack entries of its own, DNATed, when it is deleted).
 */
describe('pod churn: 200 add/delete cycles under load leak nothing', function () {
  this.timeout(900_000);
  const t = new Topology();
  const servers: Array<ReturnType<typeof startIn>> = [];
  const ipOf: Record<string, string> = {};
  const sock = () => join(t.runDir, 'h1.sock');

  before(async () => {
    await t.createUnderlay();
    for (const h of ['h1', 'h2']) await t.addHost({ name: h });
    for (const h of ['h1', 'h2']) await t.startDaemon(h);
    for (const [h, p, labels] of [['h1', 'steady', []], ['h2', 'web', ['app=web']], ['h2', 'sink', []]] as const) {
      const r = await t.podnet(h, ['pod', 'add', p, ...labels.flatMap((l) => ['--label', l])]);
      expect(r.code, r.stderr).to.equal(0);
      ipOf[p] = r.stdout.trim();
    }
    servers.push(startIn(t.podNs('h2', 'web'), process.execPath, [NETTOOL, 'echo', '9000']));
    await Promise.all(servers.map((s) => s.started));
  });

  after(async () => {
    for (const s of servers) s.stop();
    await t.destroy();
  });

  /** Everything of h1 that a pod could leave behind. */
  async function inventory() {
    const hostNs = t.host('h1').netns;
    const st = await statusJson(t, 'h1');
    const pid = st.process.pid as number;
    const ipam = JSON.parse(readFileSync(join(t.host('h1').stateDir, 'h1', 'ipam.json'), 'utf8')) as { allocations: Record<string, string> };
    const records = JSON.parse((await t.podnet('h1', ['pod', 'list', '--all', '--json'])).stdout) as Array<{ node: string; name: string }>;
    return {
      namespaces: (await listNetns()).filter((n) => n.startsWith(`${t.prefix}h1-`)).sort(),
      links: (await t.sh(hostNs, 'ip -br link | cut -d" " -f1 | sort')).trim(),
      routes: (await t.sh(hostNs, 'ip route; ip route show table all | wc -l')).trim(),
      rules: (await t.sh(hostNs, 'ip rule; iptables-save | grep -v "^#" | sed "s/\\[[0-9]*:[0-9]*\\]//"')).trim(),
      // The daemon's TUN/TAP file descriptors (one per pod and one for podnet0).
      tunFds: readdirSync(`/proc/${pid}/fd`).filter((fd) => {
        try {
          return readlinkSync(`/proc/${pid}/fd/${fd}`) === '/dev/net/tun';
        } catch {
          return false;
        }
      }).length,
      macEntries: st.switch.macEntries as number,
      ipamUsed: st.ipam.used as number,
      ipam: ipam.allocations,
      records: records.filter((r) => r.node === 'h1').map((r) => r.name).sort(),
    };
  }

  it('leaves no device, namespace, route, rule, fd, conntrack entry, MAC entry, address or record behind', async () => {
    const r = await t.podnet('h1', ['service', 'add', 'echo', '--port', '9000/tcp', '--selector', 'app=web']);
    expect(r.code, r.stderr).to.equal(0);
    const vip = r.stdout.trim();
    const before = await inventory();

    // The load: a long transfer from h1's steady pod to a pod on h2, all through the churn.
    const sink = startIn(t.podNs('h2', 'sink'), process.execPath, [NETTOOL, 'sink', '5000']);
    servers.push(sink);
    await sink.started;
    const sender = startIn(t.podNs('h1', 'steady'), process.execPath, [NETTOOL, 'send', ipOf.sink!, '5000', String(400 * MB), String(1 * MB)], 'paused');
    servers.push(sender);
    await sender.started;
    sender.child.kill('SIGUSR1');
    // And pings every 20 ms from the steady pod to h2 for as long as the churn lasts.
    const pinger = startIn(t.podNs('h1', 'steady'), 'ping', ['-i', '0.02', '-W', '1', ipOf.web!], 'PING');
    servers.push(pinger);
    await pinger.started;

    const churnIps = new Set<string>();
    for (let i = 0; i < CYCLES; i++) {
      const name = `churn${i}`;
      const device = i % 3 === 2 ? 'tun' : 'tap';
      const info = await apiCall<{ ip: string; netns: string }>(sock(), 'POST', '/v1/pods', { name, device, labels: { cycle: String(i) } });
      churnIps.add(info.ip);
      if (i % 10 === 0) {
        const c = await t.exec(info.netns, process.execPath, [NETTOOL, 'conns', vip, '9000', '2']);
        expect(c.stdout.trim(), `cycle ${i}: ${c.stderr}`).to.equal('ok 2 bad 0');
      }
      await apiCall(sock(), 'DELETE', `/v1/pods/${name}`);
      // More traffic through the node between the cycles: a 20 MB transfer every 40 cycles.
      if (i % 40 === 39) expect(await tcpTransfer(t, t.podNs('h1', 'steady'), t.podNs('h2', 'web'), ipOf.web!, 20 * MB, 5100 + i)).to.equal(ipOf.steady);
    }
    pinger.stop();

    expect(await within(sender.exited, 300_000, -1), sender.errors()).to.equal(0);
    expect(await within(sink.exited, 60_000, -1), sink.errors()).to.equal(0);
    expect(sink.output().trim().split(' ').slice(0, 2)).to.deep.equal(sender.output().trim().split(' '));

    const after = await inventory();
    expect(after).to.deep.equal(before);
    // No tracked connection refers to an address a churned pod had.
    const ct = JSON.parse((await t.podnet('h1', ['conntrack', 'list', '--json'])).stdout) as Array<{ original: { src: string; dst: string }; reply: { src: string; dst: string } }>;
    const stale = ct.filter((e) => [e.original.src, e.original.dst, e.reply.src, e.reply.dst].some((a) => churnIps.has(a)));
    expect(stale).to.deep.equal([]);
    // The steady pod and the node still work.
    const again = await t.exec(t.podNs('h1', 'steady'), process.execPath, [NETTOOL, 'conns', vip, '9000', '5']);
    expect(again.stdout.trim(), again.stderr).to.equal('ok 5 bad 0');
  });
});
