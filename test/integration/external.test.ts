import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { Topology } from '../../src/topology/topology.js';
import { NETTOOL, ping, startIn, statusJson, tcpTransfer } from '../helpers/net.js';

/**
 * Issue 4, the way in and the way out: NodePort (policy Cluster and Local), LoadBalancer IPs announced
 * by ARP, and egress masquerade, between three podnet hosts and an external host on the underlay that
 * knows no route to the pod or service CIDRs.
 */
describe('services from outside, and egress masquerade', function () {
  this.timeout(600_000);
  const t = new Topology();
  const servers: Array<ReturnType<typeof startIn>> = [];
  const ip: Record<string, string> = {};
  const EXT = '198.18.0.99';
  const pool = '198.18.0.200/29';
  let nodePort = 0;
  let web: Record<string, ReturnType<typeof startIn>> = {};
  const ext = () => t.host('ext').netns;
  const nodeIp = (h: string) => t.host(h).underlayIp;

  before(async () => {
    await t.createUnderlay();
    for (const h of ['h1', 'h2', 'h3']) await t.addHost({ name: h });
    await t.addExternal('ext', EXT);
    for (const h of ['h1', 'h2', 'h3']) await t.startDaemon(h, { loadBalancerPool: pool });
    web = {};
    for (const [h, n] of [['h1', 'web1'], ['h2', 'web2']] as const) {
      const r = await t.podnet(h, ['pod', 'add', n, '--label', 'app=web']);
      expect(r.code, r.stderr).to.equal(0);
      ip[n] = r.stdout.trim();
      const s = startIn(t.podNs(h, n), process.execPath, [NETTOOL, 'http', '8080', n]);
      servers.push(s);
      web[n] = s;
    }
    const c = await t.podnet('h3', ['pod', 'add', 'client']);
    ip.client = c.stdout.trim();
    await Promise.all(servers.map((s) => s.started));
  });

  after(async () => {
    for (const s of servers) s.stop();
    await t.destroy();
  });

  const curl = (ns: string, url: string) => t.exec(ns, 'curl', ['-s', '-m', '10', url]);
  const clientsOf = (n: string) => web[n]!.output().split('\n').filter((l) => l.startsWith('client ')).map((l) => l.slice(7));

  it('NodePort reaches the service from the external host through every node\'s IP', async () => {
    const r = await t.podnet('h1', ['service', 'add', 'web', '--type', 'NodePort', '--port', '80:8080', '--selector', 'app=web', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    nodePort = JSON.parse(r.stdout).ports[0].nodePort;
    expect(nodePort).to.be.within(30000, 32767);
    for (const h of ['h1', 'h2', 'h3']) {
      for (let i = 0; i < 4; i++) {
        const res = await curl(ext(), `http://${nodeIp(h)}:${nodePort}/`);
        expect(res.code, `${h}: ${res.stderr}`).to.equal(0);
        expect(res.stdout).to.match(/^web[12] /);
      }
    }
    // Policy Cluster: the server sees the entry node (masqueraded), never the external host.
    expect([...clientsOf('web1'), ...clientsOf('web2')]).to.not.include(EXT);
  });

  it('NodePort with externalTrafficPolicy Local keeps the client IP and uses only local endpoints', async () => {
    const r = await t.podnet('h2', ['service', 'add', 'webl', '--type', 'NodePort', '--port', '80:8080', '--selector', 'app=web', '--external-traffic-policy', 'Local', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const np = JSON.parse(r.stdout).ports[0].nodePort;
    const before = clientsOf('web1').length;
    for (let i = 0; i < 5; i++) {
      const res = await curl(ext(), `http://${nodeIp('h1')}:${np}/`);
      expect(res.stdout.trim()).to.equal(`web1 ${EXT}`);
    }
    expect(clientsOf('web1').slice(before)).to.deep.equal(Array(5).fill(EXT));
    // A node without a local endpoint has nothing to offer under policy Local.
    const none = await t.exec(ext(), 'curl', ['-s', '-m', '5', `http://${nodeIp('h3')}:${np}/`]);
    expect(none.code).to.not.equal(0);
  });

  it('NodePort carries 30 MB each way intact from a client at its default offloads (TSO super-frames in the capture)', async () => {
    // The external host's eth0 keeps veth's defaults (checksum offload, TSO): what podnet captures
    // from it has partial checksums and whole super-frames, which the router completes and cuts.
    const sinkPod = await t.podnet('h2', ['pod', 'add', 'sink', '--label', 'app=sink']);
    expect(sinkPod.code, sinkPod.stderr).to.equal(0);
    const r = await t.podnet('h1', ['service', 'add', 'sink', '--type', 'NodePort', '--port', '9000:9000', '--selector', 'app=sink', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const np = JSON.parse(r.stdout).ports[0].nodePort as number;
    const sink = startIn(t.podNs('h2', 'sink'), process.execPath, [NETTOOL, 'sink', '9000']);
    servers.push(sink);
    await sink.started;
    const n = 30 * 1024 * 1024;
    const sent = await t.exec(ext(), process.execPath, [NETTOOL, 'send', nodeIp('h1'), String(np), String(n)], 300_000);
    expect(sent.code, sent.stderr).to.equal(0);
    await sink.exited;
    const [gotBytes, gotHash] = sink.output().trim().split(' ');
    const [sentBytes, sentHash] = sent.stdout.trim().split(' ');
    expect(Number(gotBytes)).to.equal(n);
    expect(Number(sentBytes)).to.equal(n);
    expect(gotHash).to.equal(sentHash);
    // Download through the same entry node: the web pods' super-frames leave through the uplink split.
    const got = await t.exec(ext(), 'sh', ['-c', `curl -s -m 120 http://${nodeIp('h1')}:${nodePort}/bytes/${n} | sha256sum`], 180_000);
    expect(got.stdout.split(' ')[0]).to.equal(createHash('sha256').update(Buffer.alloc(n, 0x61)).digest('hex'));
    const st = await statusJson(t, 'h1');
    expect(st.router.superFramesSplit, 'super-frames from the capture').to.be.greaterThan(0);
    expect(st.router.checksumsCompleted, 'partial checksums from the capture').to.be.greaterThan(0);
  });

  it('a LoadBalancer IP from the pool is announced by ARP and reachable from the external host', async () => {
    const r = await t.podnet('h1', ['service', 'add', 'weblb', '--type', 'LoadBalancer', '--port', '80:8080', '--selector', 'app=web', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const lb = JSON.parse(r.stdout).loadBalancerIp as string;
    expect(lb).to.match(/^198\.18\.0\.20[0-7]$/);
    // The external host has a route to 198.18.0.0/24 on its link: it ARPs for the LB IP.
    await t.sh(ext(), `ip route replace ${lb}/32 dev eth0`);
    let ok = false;
    for (let i = 0; i < 20 && !ok; i++) {
      const res = await curl(ext(), `http://${lb}/`);
      ok = res.code === 0 && /^web[12] /.test(res.stdout);
      if (!ok) await new Promise((res2) => setTimeout(res2, 250));
    }
    expect(ok).to.equal(true);
    const neigh = await t.sh(ext(), `ip neigh show ${lb}`);
    expect(neigh).to.match(/lladdr ([0-9a-f]{2}:){5}[0-9a-f]{2}/);
  });

  it('an external IP of a service is announced and reaches the service from the external host', async () => {
    const extIp = '198.18.0.210';
    const r = await t.podnet('h2', ['service', 'add', 'webx', '--port', '8088:8080', '--selector', 'app=web', '--external-ip', extIp]);
    expect(r.code, r.stderr).to.equal(0);
    await t.sh(ext(), `ip route replace ${extIp}/32 dev eth0`);
    let ok = false;
    for (let i = 0; i < 20 && !ok; i++) {
      const res = await curl(ext(), `http://${extIp}:8088/`);
      ok = res.code === 0 && /^web[12] /.test(res.stdout);
      if (!ok) await new Promise((res2) => setTimeout(res2, 250));
    }
    expect(ok).to.equal(true);
  });

  it('egress: a pod reaches a server on the external host, which sees the node\'s IP; ping works', async () => {
    const srv = startIn(ext(), process.execPath, [NETTOOL, 'http', '8081', 'ext']);
    servers.push(srv);
    await srv.started;
    const res = await curl(t.podNs('h3', 'client'), `http://${EXT}:8081/`);
    expect(res.code, res.stderr).to.equal(0);
    expect(res.stdout.trim()).to.equal(`ext ${nodeIp('h3')}`);
    expect(await ping(t, t.podNs('h3', 'client'), EXT)).to.equal(true);
    // Pod-to-pod and node-to-pod traffic is never NATed.
    const direct = await curl(t.podNs('h3', 'client'), `http://${ip.web1}:8080/`);
    expect(direct.stdout.trim()).to.equal(`web1 ${ip.client}`);
  });

  it('egress: large transfers both ways keep their SHA-256', async () => {
    // Upload: pod -> external sink.
    const seen = await tcpTransfer(t, t.podNs('h3', 'client'), ext(), EXT, 30 * 1024 * 1024, 7100);
    expect(seen).to.equal(nodeIp('h3'));
    // Download: external server -> pod.
    const n = 30 * 1024 * 1024;
    const got = await t.exec(t.podNs('h3', 'client'), 'sh', ['-c', `curl -s -m 120 http://${EXT}:8081/bytes/${n} | sha256sum`], 180_000);
    const want = createHash('sha256').update(Buffer.alloc(n, 0x61)).digest('hex');
    expect(got.stdout.split(' ')[0]).to.equal(want);
  });

  it('keeps its capture rules over a restart, and removes them from the kernel on node reset', async () => {
    const hostNs = t.host('h3').netns;
    const rules = await t.sh(hostNs, 'iptables-save -t raw | grep PODNET');
    expect(rules).to.match(/PODNET/);
    // A restart (SIGTERM, start) leaves them in place and the new daemon takes the same ones over.
    await t.restartDaemon('h3', 'SIGTERM');
    expect(await t.sh(hostNs, 'iptables-save -t raw | grep PODNET')).to.equal(rules);
    expect(await t.resetDaemon('h3')).to.equal(0);
    expect(await t.sh(hostNs, 'iptables-save -t raw')).to.not.match(/PODNET/);
    const st = await statusJson(t, 'h1');
    expect(st.node).to.equal('h1');
  });
});
