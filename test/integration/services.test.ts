import { expect } from 'chai';
import { Topology } from '../../src/topology/topology.js';
import { NETTOOL, startIn, statusJson } from '../helpers/net.js';

/**
 * Issue 4, inside the cluster: ClusterIP services over endpoints on three podnet hosts, with real
 * servers (HTTP, TCP echo, UDP echo) in pods and clients in other pods.
 */
describe('services: ClusterIP through userspace conntrack NAT', function () {
  this.timeout(600_000);
  const t = new Topology();
  const servers: Array<ReturnType<typeof startIn>> = [];
  const ip: Record<string, string> = {};
  const ns = (node: string, pod: string) => t.podNs(node, pod);

  async function pod(node: string, name: string, labels: string[]): Promise<string> {
    const r = await t.podnet(node, ['pod', 'add', name, ...labels.flatMap((l) => ['--label', l])]);
    expect(r.code, r.stderr).to.equal(0);
    ip[name] = r.stdout.trim();
    return ip[name]!;
  }
  function serve(node: string, podName: string, args: string[]) {
    const s = startIn(ns(node, podName), process.execPath, [NETTOOL, ...args]);
    servers.push(s);
    return s;
  }
  async function service(args: string[]): Promise<string> {
    const r = await t.podnet('h1', ['service', 'add', ...args]);
    expect(r.code, r.stderr).to.equal(0);
    return r.stdout.trim();
  }
  const web: Record<string, ReturnType<typeof startIn>> = {};

  before(async () => {
    await t.createUnderlay();
    for (const h of ['h1', 'h2', 'h3']) await t.addHost({ name: h });
    for (const h of ['h1', 'h2', 'h3']) await t.startDaemon(h);
    for (const [h, n] of [['h1', 'web1'], ['h2', 'web2'], ['h3', 'web3']] as const) {
      await pod(h, n, ['app=web']);
      web[n] = serve(h, n, ['http', '8080', n]);
      serve(h, n, ['echo', '9000']);
    }
    await pod('h1', 'client', ['app=client']);
    await pod('h2', 'client2', ['app=client']);
    await Promise.all(servers.map((s) => s.started));
  });

  after(async () => {
    for (const s of servers) s.stop();
    await t.destroy();
  });

  it('balances 300 requests over endpoints on three hosts; each server sees the client pod\'s own IP', async () => {
    const vip = await service(['web', '--port', '80:8080/tcp', '--port', '9000/tcp', '--selector', 'app=web']);
    expect(vip).to.match(/^10\.(9[6-9]|10\d|11[01])\.\d+\.\d+$/);
    const r = await t.exec(ns('h1', 'client'), process.execPath, [NETTOOL, 'hammer', `http://${vip}/`, '300'], 300_000);
    expect(r.code, r.stderr).to.equal(0);
    const counts = JSON.parse(r.stdout) as Record<string, number>;
    expect(Object.keys(counts).sort()).to.deep.equal(['web1', 'web2', 'web3']);
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).to.equal(300);
    for (const n of ['web1', 'web2', 'web3']) {
      const clients = new Set(web[n]!.output().split('\n').filter((l) => l.startsWith('client ')).map((l) => l.slice(7)));
      expect([...clients]).to.deep.equal([ip.client]);
    }
    // The service is visible from every node, with its endpoints.
    const list = JSON.parse((await t.podnet('h3', ['service', 'list', '--json'])).stdout);
    expect(list[0].endpoints.sort()).to.deep.equal([ip.web1, ip.web2, ip.web3].sort());
  });

  it('carries 200 concurrent TCP connections through a ClusterIP, every byte intact', async () => {
    const vip = JSON.parse((await t.podnet('h1', ['service', 'list', '--json'])).stdout).find((s: any) => s.name === 'web').clusterIp;
    const r = await t.exec(ns('h2', 'client2'), process.execPath, [NETTOOL, 'conns', vip, '9000', '200'], 300_000);
    expect(r.stdout.trim(), r.stderr).to.equal('ok 200 bad 0');
  });

  it('lists tracked connections with state and timeout', async () => {
    const r = await t.podnet('h1', ['conntrack', 'list', '--json']);
    const entries = JSON.parse(r.stdout) as Array<{ protoName: string; state: string; timeout: number; dnat: boolean }>;
    expect(entries.length).to.be.greaterThan(0);
    const e = entries.find((x) => x.protoName === 'tcp' && x.dnat)!;
    expect(e.state).to.match(/TIME_WAIT|ESTABLISHED|CLOSE|FIN_WAIT|LAST_ACK|CLOSE_WAIT/);
    expect(e.timeout).to.be.greaterThan(0);
    const text = (await t.podnet('h1', ['conntrack', 'list'])).stdout;
    expect(text).to.match(/^tcp +6 \d+ \w+ src=/m);
  });

  it('session affinity ClientIP keeps every request of a client on one endpoint', async () => {
    const vip = await service(['sticky', '--port', '80:8080', '--selector', 'app=web', '--session-affinity', 'ClientIP']);
    const r = await t.exec(ns('h1', 'client'), process.execPath, [NETTOOL, 'hammer', `http://${vip}/`, '50']);
    const counts = JSON.parse(r.stdout) as Record<string, number>;
    expect(Object.keys(counts)).to.have.length(1);
    expect(Object.values(counts)[0]).to.equal(50);
  });

  it('a pod reaches itself through its own service (hairpin)', async () => {
    const vip = await service(['self', '--port', '80:8080', '--selector', 'app=web', '--session-affinity', 'ClientIP']);
    // web1 is an endpoint; with affinity and one client, try until it lands on itself at least once.
    const r = await t.exec(ns('h1', 'web1'), process.execPath, [NETTOOL, 'hammer', `http://${vip}/`, '30']);
    const counts = JSON.parse(r.stdout) as Record<string, number>;
    expect(Object.keys(counts).every((k) => k.startsWith('web'))).to.equal(true);
    // Directly: a service whose only endpoint is the caller.
    await pod('h2', 'loner', ['app=loner']);
    serve('h2', 'loner', ['http', '8080', 'loner']);
    await servers[servers.length - 1]!.started;
    const lvip = await service(['loner', '--port', '80:8080', '--selector', 'app=loner']);
    const self = await t.exec(ns('h2', 'loner'), 'curl', ['-s', '-m', '5', `http://${lvip}/`]);
    expect(self.code, self.stderr).to.equal(0);
    expect(self.stdout.trim().split(' ')[0]).to.equal('loner');
  });

  it('a service with no endpoints refuses at once (ICMP port unreachable), not a timeout', async () => {
    const vip = await service(['empty', '--port', '80:8080', '--selector', 'app=nothing']);
    const r = await t.exec(ns('h1', 'client'), 'curl', ['-s', '-m', '20', `http://${vip}/`]);
    expect(r.code).to.equal(7); // curl: could not connect (refused), not 28 (timeout)
    const st = await statusJson(t, 'h1');
    expect(st.router.drops.service_no_endpoints).to.be.greaterThan(0);
  });

  it('UDP service: answers, and after its endpoint is deleted the same client flow moves to a new one', async () => {
    await pod('h2', 'dns1', ['app=dns']);
    await pod('h3', 'dns2', ['app=dns']);
    const u1 = serve('h2', 'dns1', ['udpecho', '5353', 'dns1']);
    const u2 = serve('h3', 'dns2', ['udpecho', '5353', 'dns2']);
    await Promise.all([u1.started, u2.started]);
    const vip = await service(['dns', '--port', '53:5353/udp', '--selector', 'app=dns']);
    const session = startIn(ns('h1', 'client'), process.execPath, [NETTOOL, 'udpsession', vip, '53', '40', '150'], 'dns');
    await session.started;
    await new Promise((r) => setTimeout(r, 1500));
    const first = session.output().trim().split('\n')[0]!.split(':')[0]!;
    expect(first).to.match(/^dns[12]$/);
    // Delete the pod that is answering: its UDP conntrack entries are removed with it.
    const victim = first === 'dns1' ? ['h2', 'dns1'] : ['h3', 'dns2'];
    expect((await t.podnet(victim[0]!, ['pod', 'del', victim[1]!])).code).to.equal(0);
    await session.exited;
    const answers = session.output().trim().split('\n').map((l) => l.split(':')[0]);
    const survivor = first === 'dns1' ? 'dns2' : 'dns1';
    expect(answers[answers.length - 1]).to.equal(survivor);
    expect(answers.filter((a) => a === survivor).length).to.be.greaterThan(5);
  });

  it('a conntrack table limit under a flood of new connections evicts without crashing and counts drops', async () => {
    await t.addHost({ name: 'h4' });
    await t.startDaemon('h4', { conntrackMax: 64 });
    await pod('h4', 'flooder', ['app=flood']);
    const vip = JSON.parse((await t.podnet('h1', ['service', 'list', '--json'])).stdout).find((s: any) => s.name === 'dns').clusterIp;
    // 600 new UDP flows (one source port each) against a 64-entry table.
    const script = `const d=require('dgram');let n=600,open=0;for(let i=0;i<n;i++){const s=d.createSocket('udp4');open++;s.send('x',53,'${vip}',()=>setTimeout(()=>{s.close();if(--open===0)process.exit(0)},200));}`;
    const r = await t.exec(ns('h4', 'flooder'), process.execPath, ['-e', script], 60_000);
    expect(r.code, r.stderr).to.equal(0);
    const st = await statusJson(t, 'h4');
    expect(st.conntrack.entries).to.be.at.most(64);
    expect(st.conntrack.evicted + st.conntrack.dropFull).to.be.greaterThan(0);
    // Still forwarding.
    const ok = await t.exec(ns('h4', 'flooder'), 'curl', ['-s', '-m', '5', `http://${ip.web2}:8080/`]);
    expect(ok.code).to.equal(0);
  });
});
