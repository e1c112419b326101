import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, Topology } from '../../src/topology/topology.js';
import { NETTOOL, ping, RAWSEND, startIn, within } from '../helpers/net.js';

/**
 * Issue 14, items 2 and 3: `podnet capture` read back with tshark, and `podnet flows`, on two hosts
 * built as namespaces: a ClusterIP service over a web pod on h1, a client on h1, a pod b on h2.
 */
describe('observe: podnet capture and podnet flows', function () {
  this.timeout(300_000);
  const t = new Topology();
  const dir = mkdtempSync(join(tmpdir(), 'podnet-observe-'));
  const ip: Record<string, string> = {};
  const servers: Array<ReturnType<typeof startIn>> = [];
  let vip = '';
  const EXT = '198.18.0.99';

  /** Starts `podnet capture ...` against h's daemon; resolves once the capture is attached. */
  function capture(host: string, args: string[]) {
    const child = spawn(process.execPath, [CLI, '--run-dir', t.runDir, '--node', host, 'capture', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
    const started = new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (err.includes('capturing on')) resolve();
      });
      void exited.then((c) => reject(new Error(`capture exited ${c} before it started: ${err}`)));
    });
    return { started, exited, out: () => out, err: () => err, kill: () => child.kill('SIGKILL') };
  }

  async function finish(c: ReturnType<typeof capture>): Promise<void> {
    const code = await within(c.exited, 60_000, -1);
    if (code === -1) c.kill();
    expect(code, c.err()).to.equal(0);
  }

  async function tshark(file: string, fields: string[], extra: string[] = []): Promise<string[][]> {
    const r = await t.exec(t.host('h1').netns, 'tshark', ['-r', file, ...extra, '-T', 'fields', ...fields.flatMap((f) => ['-e', f])]);
    expect(r.code, r.stderr).to.equal(0);
    return r.stdout.trim().split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
  }

  before(async () => {
    await t.createUnderlay();
    await t.addHost({ name: 'h1' });
    await t.addHost({ name: 'h2' });
    await t.addExternal('ext', EXT);
    await t.startDaemon('h1');
    await t.startDaemon('h2');
    for (const [h, p, labels] of [['h1', 'web', ['--label', 'app=web']], ['h1', 'client', []], ['h2', 'b', []], ['h1', 'tun', ['--device', 'tun']]] as const) {
      const r = await t.podnet(h, ['pod', 'add', p, ...labels]);
      expect(r.code, r.stderr).to.equal(0);
      ip[p] = r.stdout.trim();
    }
    const s = startIn(t.podNs('h1', 'web'), process.execPath, [NETTOOL, 'http', '8080', 'web']);
    servers.push(s);
    await s.started;
    const e = startIn(t.host('ext').netns, process.execPath, [NETTOOL, 'http', '8080', 'ext']);
    servers.push(e);
    await e.started;
    const r = await t.podnet('h1', ['service', 'add', 'web', '--port', '80:8080/tcp', '--selector', 'app=web']);
    expect(r.code, r.stderr).to.equal(0);
    vip = r.stdout.trim();
    expect(await ping(t, t.podNs('h1', 'client'), ip.b!, { count: 1 })).to.equal(true); // routes and ARP settled
  });

  after(async () => {
    for (const s of servers) s.stop();
    try {
      await t.destroy();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("captures a pod's ping into a pcap file tshark reads: requests out of the pod, replies into it", async () => {
    const file = join(dir, 'ping.pcap');
    const c = capture('h1', ['client', '-w', file, '-c', '4', '--filter', 'icmp']);
    await c.started;
    expect(await ping(t, t.podNs('h1', 'client'), ip.web!, { count: 2 })).to.equal(true);
    await finish(c);
    expect(c.err()).to.match(/4 packets captured, 0 lost/);
    const rows = await tshark(file, ['ip.src', 'ip.dst', 'icmp.type']);
    expect(rows).to.deep.equal([
      [ip.client, ip.web, '8'],
      [ip.web, ip.client, '0'],
      [ip.client, ip.web, '8'],
      [ip.web, ip.client, '0'],
    ]);
  });

  it("captures a ClusterIP request at the client (to the VIP) and at the backend (DNAT'd to its port), pcapng", async () => {
    const atClient = join(dir, 'client.pcapng');
    const atBackend = join(dir, 'backend.pcapng');
    const c1 = capture('h1', ['client', '-w', atClient, '-c', '3', '--filter', 'tcp']);
    const c2 = capture('h1', ['pod/web', '-w', atBackend, '-c', '3', '--filter', 'tcp and port 8080']);
    await Promise.all([c1.started, c2.started]);
    const r = await t.exec(t.podNs('h1', 'client'), 'curl', ['-sf', '-m', '10', `http://${vip}/`]);
    expect(r.code, r.stderr).to.equal(0);
    await Promise.all([finish(c1), finish(c2)]);
    const fields = ['ip.src', 'tcp.srcport', 'ip.dst', 'tcp.dstport', 'tcp.flags.syn', 'tcp.flags.ack', 'frame.packet_flags_direction'];
    const client = await tshark(atClient, fields);
    const backend = await tshark(atBackend, fields);
    const sport = client[0]![1]!;
    // The client's handshake: to the cluster IP on port 80 (SYN out of the pod, SYN-ACK into it, ACK).
    expect(client.map((x) => x.slice(0, 6))).to.deep.equal([
      [ip.client, sport, vip, '80', '1', '0'],
      [vip, '80', ip.client, sport, '1', '1'],
      [ip.client, sport, vip, '80', '0', '1'],
    ]);
    expect(client.map((x) => Number(x[6]))).to.deep.equal([1, 2, 1]); // pcapng: inbound to the switch = sent by the pod
    // The backend sees the same connection DNAT'd: to its own address and port 8080.
    expect(backend.map((x) => x.slice(0, 6))).to.deep.equal([
      [ip.client, sport, ip.web, '8080', '1', '0'],
      [ip.web, '8080', ip.client, sport, '1', '1'],
      [ip.client, sport, ip.web, '8080', '0', '1'],
    ]);
  });

  it('captures a TUN pod as raw IP (no Ethernet header on its device)', async () => {
    const file = join(dir, 'tun.pcap');
    const c = capture('h1', ['tun', '-w', file, '-c', '2', '--filter', 'icmp']);
    await c.started;
    expect(await ping(t, t.podNs('h1', 'client'), ip.tun!, { count: 1 })).to.equal(true);
    await finish(c);
    expect(await tshark(file, ['frame.protocols', 'ip.src', 'ip.dst', 'icmp.type'])).to.deep.equal([
      ['raw:ip:icmp:data', ip.client, ip.tun, '8'],
      ['raw:ip:icmp:data', ip.tun, ip.client, '0'],
    ]);
  });

  it('captures the VXLAN underlay side: outer UDP to port 8472 between the hosts, the ping inside', async () => {
    const file = join(dir, 'vxlan.pcap');
    const c = capture('h1', ['vxlan', '-w', file, '-c', '2', '--filter', 'udp port 8472']);
    await c.started;
    expect(await ping(t, t.podNs('h1', 'client'), ip.b!, { count: 1 })).to.equal(true);
    await finish(c);
    const rows = await tshark(file, ['ip.src', 'ip.dst', 'udp.dstport', 'vxlan.vni', 'icmp.type'], ['-d', 'udp.port==8472,vxlan']);
    const h1 = t.host('h1').underlayIp;
    const h2 = t.host('h2').underlayIp;
    expect(rows).to.deep.equal([
      [`${h1},${ip.client}`, `${h2},${ip.b}`, '8472', '1', '8'],
      [`${h2},${ip.b}`, `${h1},${ip.client}`, '8472', '1', '0'],
    ]);
  });

  it('captures the uplink: a NodePort connection from outside, in and out of the node', async () => {
    const r = await t.podnet('h1', ['service', 'add', 'webnp', '--type', 'NodePort', '--port', '80:8080', '--selector', 'app=web', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const np = String(JSON.parse(r.stdout).ports[0].nodePort);
    const file = join(dir, 'uplink.pcap');
    const c = capture('h1', ['uplink', '-w', file, '-c', '3', '--filter', `tcp port ${np}`]);
    await c.started;
    const h1 = t.host('h1').underlayIp;
    const res = await t.exec(t.host('ext').netns, 'curl', ['-sf', '-m', '10', `http://${h1}:${np}/`]);
    expect(res.code, res.stderr).to.equal(0);
    await finish(c);
    const rows = await tshark(file, ['ip.src', 'ip.dst', 'tcp.dstport', 'tcp.srcport', 'tcp.flags.syn', 'tcp.flags.ack']);
    expect(rows.map((x) => [x[0], x[1], x[4], x[5]])).to.deep.equal([
      [EXT, h1, '1', '0'],
      [h1, EXT, '1', '1'],
      [EXT, h1, '0', '1'],
    ]);
    expect([rows[0]![2], rows[1]![3]]).to.deep.equal([np, np]);
  });

  it('a reader that does not keep up loses packets, counted and reported, while the pods\' traffic goes on (ping -f completes)', async () => {
    const n = 20000;
    const child = spawn(process.execPath, [CLI, '--run-dir', t.runDir, '--node', 'h1', 'capture', 'client', '-w', '-', '-c', String(n), '--filter', `icmp and src host ${ip.client}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    let bytes = 0;
    const exited = new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
    try {
      await new Promise<void>((resolve, reject) => {
        child.stderr.on('data', (d: Buffer) => ((err += d.toString()), err.includes('capturing on') && resolve()));
        void exited.then((c) => reject(new Error(`capture exited ${c}: ${err}`)));
      });
      child.stdout.pause(); // nobody reads the capture: the pipe fills, then the daemon's socket, then its ring
      // 20000 echo requests of 1400 bytes (28 MB) against a ring of 8 MiB / 16384 packets.
      const p = await t.exec(t.podNs('h1', 'client'), 'ping', ['-f', '-q', '-c', String(n), '-s', '1400', ip.web!], 120_000);
      expect(p.code, p.stdout + p.stderr).to.equal(0);
      child.stdout.on('data', (d: Buffer) => (bytes += d.length));
      child.stdout.resume();
      const code = await within(exited, 120_000, -1);
      expect(code, err).to.equal(0);
    } finally {
      child.kill('SIGKILL');
    }
    const m = /(\d+) packets captured, (\d+) lost \(capture ring full\)/.exec(err);
    expect(m, err).to.not.equal(null);
    const [captured, lost] = [Number(m![1]), Number(m![2])];
    expect(lost).to.be.greaterThan(0);
    expect(captured + lost).to.equal(n);
    expect(bytes).to.be.greaterThan(captured * 1400); // what was captured did reach the reader
  });

  it('prints one line per packet without -w (the gateway answering a ping)', async () => {
    const c = capture('h1', ['gateway', '-c', '2', '--filter', 'icmp']);
    await c.started;
    const gw = ip.client!.replace(/\.\d+$/, '.1');
    expect(await ping(t, t.podNs('h1', 'client'), gw, { count: 1 })).to.equal(true);
    await finish(c);
    const lines = c.out().trim().split('\n');
    expect(lines).to.have.length(2);
    expect(lines[0]).to.match(new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{6} in  ICMP ${ip.client} > ${gw}: echo request`));
    expect(lines[1]).to.match(new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{6} out ICMP ${gw} > ${ip.client}: echo reply`));
  });

  it('refuses a bad filter, an unknown target and a second capture of one target, naming the problem', async () => {
    let r = await t.podnet('h1', ['capture', 'client', '--filter', 'port http']);
    expect(r.code).to.not.equal(0);
    expect(r.stderr).to.match(/expected a port number 0-65535 after 'port' at position 6, got 'http'/);
    r = await t.podnet('h1', ['capture', 'nosuchpod', '-c', '1']);
    expect(r.code).to.not.equal(0);
    expect(r.stderr).to.match(/no pod nosuchpod on node h1/);
    const c = capture('h1', ['client', '-c', '1', '--filter', 'udp port 9']);
    await c.started;
    r = await t.podnet('h1', ['capture', 'pod/client', '-c', '1']);
    expect(r.stderr).to.match(/a capture of pod\/client is already running/);
    c.kill();
    await c.exited;
  });

  async function flows(args: string[] = []): Promise<any[]> {
    const r = await t.podnet('h1', ['flows', '--json', ...args]);
    expect(r.code, r.stderr).to.equal(0);
    return JSON.parse(r.stdout) as any[];
  }

  /** Polls the flow log (conntrack's close events come with the connection's last packets) until `pred` holds. */
  async function flowsUntil(pred: (recs: any[]) => boolean, args: string[] = []): Promise<any[]> {
    let recs: any[] = [];
    for (let i = 0; i < 50; i++) {
      recs = await flows(args);
      if (pred(recs)) return recs;
      await new Promise((r) => setTimeout(r, 200));
    }
    return recs;
  }

  it('flows --json: a ClusterIP connection, new, established and closed, with its endpoint, service and pods', async () => {
    const r = await t.exec(t.podNs('h1', 'client'), 'curl', ['-sf', '-m', '10', `http://${vip}/`]);
    expect(r.code, r.stderr).to.equal(0);
    const mine = (x: any) => x.proto === 'tcp' && x.original.dst === vip && x.original.dport === 80 && x.original.src === ip.client;
    const recs = await flowsUntil((rs) => rs.some((x) => mine(x) && x.event === 'closed'), ['--pod', 'client']);
    const last = recs.filter(mine).at(-1)!;
    const conn = recs.filter((x) => mine(x) && x.original.sport === last.original.sport);
    expect(conn.map((x) => x.event)).to.deep.equal(['new', 'established', 'closed']);
    const n = conn[0];
    expect(n.verdict).to.equal('accepted');
    expect(n.from).to.equal('pod');
    expect(n.service).to.equal('web');
    expect(n.srcPod).to.equal('client');
    expect(n.nat).to.deep.equal({ endpoint: `${ip.web}:8080` });
    expect(n.endpointPod).to.equal('web');
    expect(n.reply).to.deep.equal({ src: ip.web, dst: ip.client, sport: 8080, dport: n.original.sport });
    expect(conn[2].closedBy).to.equal('fin/rst');
  });

  it('flows --json: a service without endpoints refused by the services hook, with its reason', async () => {
    const s = await t.podnet('h1', ['service', 'add', 'empty', '--port', '81/tcp', '--selector', 'app=nothing']);
    expect(s.code, s.stderr).to.equal(0);
    const evip = s.stdout.trim();
    const r = await t.exec(t.podNs('h1', 'client'), 'curl', ['-s', '-m', '5', `http://${evip}:81/`]);
    expect(r.code).to.equal(7); // refused at once (ICMP port unreachable)
    const recs = await flowsUntil((rs) => rs.some((x) => x.original.dst === evip));
    const d = recs.find((x) => x.original.dst === evip);
    expect(d).to.include({ event: 'dropped', verdict: 'dropped', reason: 'service_no_endpoints', by: 'services', service: 'empty', srcPod: 'client' });
    expect(d.reply).to.equal(undefined);
  });

  it('flows --json: a forged-source packet dropped by the switch (before conntrack) with its reason, repeats counted', async () => {
    const mac = (await t.sh(t.podNs('h1', 'client'), 'cat /sys/class/net/eth0/address')).trim();
    const webMac = (await t.sh(t.podNs('h1', 'web'), 'cat /sys/class/net/eth0/address')).trim();
    const forged = '10.244.200.9';
    const r = await t.exec(t.podNs('h1', 'client'), 'python3', [RAWSEND, 'eth0', 'icmp', mac, webMac, forged, ip.web!, '5']);
    expect(r.code, r.stderr).to.equal(0);
    const sum = (rs: any[]) => rs.filter((x) => x.original.src === forged).reduce((a, x) => a + x.count, 0);
    const recs = await flowsUntil((rs) => sum(rs) === 5, ['--pod', 'client']);
    expect(sum(recs)).to.equal(5);
    for (const d of recs.filter((x) => x.original.src === forged)) {
      expect(d).to.include({ event: 'dropped', verdict: 'dropped', reason: 'spoofed_source_ip', by: 'switch', port: 'client', proto: 'icmp', dstPod: 'web' });
      expect(d.original.dst).to.equal(ip.web);
    }
  });

  it('flows --json: a masqueraded connection to the outside with its masquerade address and port', async () => {
    const r = await t.exec(t.podNs('h1', 'client'), 'curl', ['-sf', '-m', '10', `http://${EXT}:8080/`]);
    expect(r.code, r.stderr).to.equal(0);
    const recs = await flowsUntil((rs) => rs.some((x) => x.event === 'new' && x.original.dst === EXT), ['--pod', 'client']);
    const n = recs.find((x) => x.event === 'new' && x.original.dst === EXT);
    expect(n, JSON.stringify(recs)).to.not.equal(undefined);
    const m = new RegExp(`^${t.host('h1').underlayIp.replace(/\./g, '\\.')}:(\\d+)$`).exec(n.nat.masquerade);
    expect(m, n.nat.masquerade).to.not.equal(null);
    expect(Number(m![1])).to.be.within(61001, 65535);
    expect(n.reply).to.deep.equal({ src: EXT, dst: t.host('h1').underlayIp, sport: 8080, dport: Number(m![1]) });
    expect(n.nat.endpoint).to.equal(undefined);
  });

  it('flows --follow streams new records as they happen', async () => {
    const child = spawn(process.execPath, [CLI, '--run-dir', t.runDir, '--node', 'h1', 'flows', '--follow', '--json', '--pod', 'client'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await new Promise<void>((resolve, reject) => {
        child.stderr.on('data', (d: Buffer) => ((err += d.toString()), err.includes('following') && resolve()));
        child.on('exit', (c) => reject(new Error(`flows --follow exited ${c}: ${err}`)));
      });
      const r = await t.exec(t.podNs('h1', 'client'), 'curl', ['-sf', '-m', '10', `http://${vip}/`]);
      expect(r.code, r.stderr).to.equal(0);
      const seen = () => out.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
      for (let i = 0; i < 50 && !seen().some((x) => x.event === 'new' && x.original.dst === vip); i++) await new Promise((res) => setTimeout(res, 200));
      const n = seen().find((x) => x.event === 'new' && x.original.dst === vip);
      expect(n, out + err).to.not.equal(undefined);
      expect(n.nat.endpoint).to.equal(`${ip.web}:8080`);
    } finally {
      child.kill('SIGINT');
    }
  });

  it('flows off (flows.capacity 0): the services work, `podnet flows` says the log is off and why', async () => {
    await t.addHost({ name: 'h3' });
    await t.startDaemon('h3', { flows: { capacity: 0 } });
    const p = await t.podnet('h3', ['pod', 'add', 'c3']);
    expect(p.code, p.stderr).to.equal(0);
    const r = await t.exec(t.podNs('h3', 'c3'), 'curl', ['-sf', '-m', '10', `http://${vip}/`]);
    expect(r.code, r.stderr).to.equal(0);
    const f = await t.podnet('h3', ['flows', '--json']);
    expect(f.code).to.not.equal(0);
    expect(f.stderr).to.include('the flow log is off on node h3 (config flows.capacity is 0)');
    const follow = await t.podnet('h3', ['flows', '--follow']);
    expect(follow.code).to.not.equal(0);
    expect(follow.stderr).to.include('flows.capacity is 0');
    const st = await t.podnet('h3', ['status', '--json']);
    expect(st.code, st.stderr).to.equal(0);
    expect(JSON.parse(st.stdout).observe).to.deep.include({ flowRecords: 0, flowCapacity: 0 });
  });
});
