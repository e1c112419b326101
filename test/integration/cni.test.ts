import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { execCapture, REPO_ROOT, Topology, type ExecResult } from '../../src/topology/topology.js';
import { run } from '../../src/netns/run.js';
import { buildBusyboxImage, Containerd } from '../helpers/containerd.js';
import { ping, statusJson } from '../helpers/net.js';

const PLUGIN = join(REPO_ROOT, 'dist/src/cni/main.js');

/**
 * Issue 13: podnet as a CNI plugin. The plugin is run two ways: by containerd's own `ctr run --cni`
 * (containerd from Debian, a busybox image built here with umoci) on two podnet hosts, and directly,
 * as a runtime runs it (config on stdin, CNI_* in the environment), for every verb and version and
 * for the failures the spec names.
 */
describe('CNI plugin: podnet-cni with containerd and direct CNI calls', function () {
  this.timeout(900_000);
  const t = new Topology();
  const rt: Record<string, Containerd> = {};
  const sockets = () => ({ h1: join(t.runDir, 'h1.sock'), h2: join(t.runDir, 'h2.sock') });
  const extras: Array<{ kill: () => void }> = [];
  let nsCount = 0;

  /** Runs podnet-cni in a host's network namespace as a runtime would. */
  function cni(host: string, command: string, conf: unknown, env: Record<string, string> = {}): Promise<ExecResult & { json: any }> {
    return new Promise((resolve) => {
      const child = spawn('nsenter', [`--net=/run/netns/${t.host(host).netns}`, '--', process.execPath, PLUGIN], {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CNI_COMMAND: command, CNI_PATH: '/usr/lib/cni', ...env },
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (code) => {
        let json: any;
        try {
          json = stdout.trim() ? JSON.parse(stdout) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ code: code ?? 1, stdout, stderr, json });
      });
      child.stdin.end(typeof conf === 'string' ? conf : JSON.stringify(conf));
    });
  }

  const conf = (host: string, extra: Record<string, unknown> = {}, version = '1.1.0') => ({ cniVersion: version, name: 'podnet', type: 'podnet-cni', socket: sockets()[host as 'h1'], ...extra });

  /** A namespace made the way a runtime makes one: `ip netns add` (a /var/run/netns path). */
  async function runtimeNetns(): Promise<string> {
    const name = `${t.prefix}rt${++nsCount}`;
    await run('ip', ['netns', 'add', name]);
    return name;
  }
  const nsPath = (name: string) => `/run/netns/${name}`;

  async function attachments(host: string): Promise<any[]> {
    const r = await t.podnet(host, ['cni', 'list', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    return JSON.parse(r.stdout);
  }
  async function hostLinks(host: string): Promise<string[]> {
    const r = await execCapture('ip', ['-n', t.host(host).netns, '-o', 'link', 'show']);
    return r.stdout.split('\n').filter(Boolean).map((l) => l.split(': ')[1]!.split('@')[0]!);
  }
  async function links(path: string): Promise<string[]> {
    const r = await execCapture('nsenter', [`--net=${path}`, '--', 'ip', '-o', 'link', 'show']);
    return r.stdout.split('\n').filter(Boolean).map((l) => l.split(': ')[1]!.split('@')[0]!);
  }
  async function addrs(path: string, ifname: string): Promise<string[]> {
    const r = await execCapture('nsenter', [`--net=${path}`, '--', 'ip', '-j', '-4', 'addr', 'show', 'dev', ifname]);
    if (r.code !== 0) return [];
    return (JSON.parse(r.stdout) as any[]).flatMap((l) => l.addr_info.map((a: any) => `${a.local}/${a.prefixlen}`));
  }

  before(async () => {
    await t.createUnderlay();
    await t.addHost({ name: 'h1' });
    await t.addHost({ name: 'h2' });
    await t.addExternal('ext', '198.18.0.50');
    await t.startDaemon('h1');
    await t.startDaemon('h2');
    const tar = await buildBusyboxImage(join(t.dir, 'image'));
    for (const h of ['h1', 'h2']) {
      const dir = join(t.dir, `containerd-${h}`);
      mkdirSync(dir, { recursive: true });
      rt[h] = new Containerd(dir, t.host(h).netns);
      // What a user runs on each node (README): the conflist and the plugin into the node's CNI dirs.
      const r = await t.podnet(h, ['cni', 'install', '--conf-dir', rt[h]!.confDir, '--bin-dir', rt[h]!.binDir]);
      expect(r.code, r.stderr).to.equal(0);
      await rt[h]!.start(tar);
    }
  });

  after(async () => {
    for (const e of extras) e.kill();
    for (const c of Object.values(rt)) await c.stop().catch((e) => console.error('containerd stop:', e));
    await t.destroy();
  });

  it('podnet cni install writes a conflist chaining podnet, portmap and bandwidth, and a plugin that answers VERSION', async () => {
    const list = JSON.parse(readFileSync(join(rt.h1!.confDir, '10-podnet.conflist'), 'utf8'));
    expect(list.cniVersion).to.equal('1.0.0');
    expect(list.plugins.map((p: any) => p.type)).to.deep.equal(['podnet-cni', 'portmap', 'bandwidth']);
    expect(list.plugins[0].node).to.equal('h1');
    const v = await execCapture('sh', ['-c', `echo '{"cniVersion":"1.0.0"}' | CNI_COMMAND=VERSION '${join(rt.h1!.binDir, 'podnet-cni')}'`]);
    expect(v.code, v.stderr).to.equal(0);
    expect(JSON.parse(v.stdout)).to.deep.equal({ cniVersion: '1.0.0', supportedVersions: ['1.0.0', '1.1.0'] });
  });

  for (const version of ['1.0.0', '1.1.0']) {
    it(`cniVersion ${version}: ADD gives the result and a working interface, CHECK passes (and catches a wrong result), DEL removes everything, twice`, async () => {
      const ns = await runtimeNetns();
      const env = { CNI_CONTAINERID: `direct-${version.replace(/\./g, '')}`, CNI_NETNS: nsPath(ns), CNI_IFNAME: 'eth0', CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0' };
      const used = (await statusJson(t, 'h1')).ipam.used;
      const add = await cni('h1', 'ADD', conf('h1', { dns: { nameservers: ['10.96.0.10'] } }, version), env);
      expect(add.code, add.stdout + add.stderr).to.equal(0);
      const r = add.json;
      expect(r.cniVersion).to.equal(version);
      expect(r.interfaces).to.have.length(1);
      expect(r.interfaces[0].name).to.equal('eth0');
      expect(r.interfaces[0].sandbox).to.equal(nsPath(ns));
      expect(r.interfaces[0].mac).to.match(/^0a:58:/);
      if (version === '1.1.0') expect(r.interfaces[0].mtu).to.equal(1450);
      else expect(r.interfaces[0]).to.not.have.property('mtu');
      expect(r.ips).to.have.length(1);
      expect(r.ips[0].interface).to.equal(0);
      expect(r.ips[0].address).to.match(/^10\.244\.\d+\.\d+\/24$/);
      expect(r.routes).to.deep.equal([{ dst: '0.0.0.0/0', gw: r.ips[0].gateway }]);
      expect(r.dns).to.deep.equal({ nameservers: ['10.96.0.10'] });
      // The interface really is there, with that address, and reaches the gateway.
      expect(await addrs(nsPath(ns), 'eth0')).to.deep.equal([r.ips[0].address]);
      expect(await ping(t, ns, r.ips[0].gateway)).to.equal(true);
      const att = (await attachments('h1')).find((a) => a.attachment.containerId === env.CNI_CONTAINERID);
      expect(att.attachment).to.deep.include({ ifname: 'eth0', netns: nsPath(ns), network: 'podnet' });
      expect(att.labels).to.deep.equal({ 'io.kubernetes.pod.namespace': 'shop', 'io.kubernetes.pod.name': 'web-0' });
      expect(att.namespace).to.equal('shop'); // the pod's namespace, for NetworkPolicy
      expect((await statusJson(t, 'h1')).ipam.used).to.equal(used + 1);
      // It is a pod to podnet: listed, and podnet exec enters its namespace.
      expect((await t.podnet('h1', ['exec', att.name, '--', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])).stdout).to.include(r.ips[0].address);

      const check = await cni('h1', 'CHECK', conf('h1', { prevResult: r }, version), env);
      expect(check.code, check.stdout).to.equal(0);
      expect(check.stdout).to.equal('');
      const wrong = structuredClone(r);
      wrong.ips[0].address = '10.244.99.99/24';
      const bad = await cni('h1', 'CHECK', conf('h1', { prevResult: wrong }, version), env);
      expect(bad.code).to.not.equal(0);
      expect(bad.json.code).to.equal(101);
      expect(bad.json.msg).to.include('10.244.99.99/24');
      // The address removed behind podnet's back: CHECK says so.
      await execCapture('nsenter', [`--net=${nsPath(ns)}`, '--', 'ip', 'addr', 'flush', 'dev', 'eth0']);
      const gone = await cni('h1', 'CHECK', conf('h1', { prevResult: r }, version), env);
      expect(gone.json.code, gone.stdout).to.equal(101);
      expect(gone.json.msg).to.include('lacks address');

      const del = await cni('h1', 'DEL', conf('h1', { prevResult: r }, version), env);
      expect(del.code, del.stdout).to.equal(0);
      expect(await links(nsPath(ns))).to.deep.equal(['lo']);
      expect((await attachments('h1')).some((a) => a.attachment.containerId === env.CNI_CONTAINERID)).to.equal(false);
      expect((await statusJson(t, 'h1')).ipam.used).to.equal(used);
      const again = await cni('h1', 'DEL', conf('h1', {}, version), { ...env, CNI_NETNS: '' });
      expect(again.code, again.stdout).to.equal(0);
      await run('ip', ['netns', 'del', ns]);
      // DEL after the namespace itself is gone: still success.
      const after = await cni('h1', 'DEL', conf('h1', {}, version), env);
      expect(after.code, after.stdout).to.equal(0);
    });
  }

  it('ADD into a /proc/PID/ns/net path, as a TUN by config, and after another plugin: prevResult is kept', async () => {
    const holder = spawn('unshare', ['--net', 'sleep', '100000'], { stdio: 'ignore' });
    extras.push({ kill: () => holder.kill('SIGKILL') });
    await new Promise((r) => setTimeout(r, 300));
    const path = `/proc/${holder.pid}/ns/net`;
    const prevResult = { cniVersion: '1.1.0', interfaces: [{ name: 'lo', sandbox: path }], ips: [{ address: '127.0.0.1/8', interface: 0 }], dns: { search: ['svc.cluster.local'] } };
    const env = { CNI_CONTAINERID: 'procns-1', CNI_NETNS: path, CNI_IFNAME: 'net1' };
    const add = await cni('h1', 'ADD', conf('h1', { device: 'tun', prevResult }), env);
    expect(add.code, add.stdout + add.stderr).to.equal(0);
    const r = add.json;
    expect(r.interfaces).to.have.length(2);
    expect(r.interfaces[0]).to.deep.equal({ name: 'lo', sandbox: path });
    expect(r.interfaces[1]).to.deep.equal({ name: 'net1', mtu: 1450, sandbox: path }); // a TUN has no MAC
    expect(r.ips[0]).to.deep.equal(prevResult.ips[0]);
    expect(r.ips[1].interface).to.equal(1);
    expect(r.dns).to.deep.equal(prevResult.dns);
    expect(await addrs(path, 'net1')).to.deep.equal([r.ips[1].address]);
    const gw = r.ips[1].gateway;
    const p = await execCapture('nsenter', [`--net=${path}`, '--', 'ping', '-c', '2', '-i', '0.2', '-W', '2', gw]);
    expect(p.code, p.stdout).to.equal(0);
    expect((await cni('h1', 'CHECK', conf('h1', { device: 'tun', prevResult: r }), env)).code).to.equal(0);
    expect((await cni('h1', 'DEL', conf('h1', { device: 'tun', prevResult: r }), env)).code).to.equal(0);
    expect(await links(path)).to.deep.equal(['lo']);
    holder.kill('SIGKILL');
  });

  it('ADD failures give the spec\'s error code and a message naming the problem, and leave nothing behind', async () => {
    const ns = await runtimeNetns();
    const env = { CNI_CONTAINERID: 'fails-1', CNI_NETNS: nsPath(ns), CNI_IFNAME: 'eth0' };
    const before = { used: (await statusJson(t, 'h1')).ipam.used, links: await hostLinks('h1'), attachments: (await attachments('h1')).length };
    const cases: Array<{ what: string; conf: unknown; env?: Record<string, string>; code: number; msg: RegExp }> = [
      { what: 'missing netns', conf: conf('h1'), env: { ...env, CNI_NETNS: `/run/netns/${t.prefix}no-such-ns` }, code: 3, msg: /no-such-ns does not exist/ },
      { what: 'bad config field', conf: conf('h1', { device: 'veth' }), code: 7, msg: /device "veth": must be "tap" or "tun"/ },
      { what: 'unsupported field', conf: conf('h1', { ipam: { type: 'host-local' } }), code: 2, msg: /unsupported field in network config: ipam/ },
      { what: 'unknown cniVersion', conf: conf('h1', {}, '0.9.9'), code: 1, msg: /incompatible CNI version "0.9.9"/ },
      { what: 'not JSON', conf: '{"cniVersion": ', code: 6, msg: /not valid JSON/ },
      { what: 'missing CNI_IFNAME', conf: conf('h1'), env: { CNI_CONTAINERID: 'fails-1', CNI_NETNS: nsPath(ns) }, code: 4, msg: /CNI_IFNAME is required/ },
      { what: 'bad label', conf: conf('h1', { args: { labels: { 'bad key!': 'x' } } }), code: 7, msg: /invalid label key "bad key!"/ },
      { what: 'daemon down', conf: conf('h1', { socket: join(t.runDir, 'h9.sock') }), code: 11, msg: /podnet daemon not available/ },
    ];
    for (const c of cases) {
      const r = await cni('h1', 'ADD', c.conf, c.env ?? env);
      expect(r.code, `${c.what}: ${r.stdout}`).to.equal(1);
      expect(r.json.code, `${c.what}: ${r.stdout}`).to.equal(c.code);
      expect(r.json.msg, c.what).to.match(c.msg);
      expect(r.json.cniVersion, c.what).to.be.a('string');
    }
    // The interface name taken in the namespace: refused, and the existing interface left alone.
    expect((await execCapture('ip', ['-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p'])).code).to.equal(0);
    const taken = await cni('h1', 'ADD', conf('h1'), env);
    expect(taken.json.code, taken.stdout).to.equal(100);
    expect(taken.json.msg).to.include('interface eth0 already exists');
    expect((await links(nsPath(ns))).sort()).to.deep.equal(['eth0', 'eth0p', 'lo']);
    expect((await statusJson(t, 'h1')).ipam.used).to.equal(before.used);
    expect(await hostLinks('h1')).to.deep.equal(before.links);
    expect((await attachments('h1')).length).to.equal(before.attachments);
    await run('ip', ['netns', 'del', ns]);
  });

  it('GC with a partial valid list removes exactly the attachments of this network not in it', async () => {
    const made: Array<{ id: string; ns: string; network: string }> = [];
    for (const [id, network] of [['gc-a', 'podnet'], ['gc-b', 'podnet'], ['gc-c', 'podnet'], ['gc-d', 'othernet']] as const) {
      const ns = await runtimeNetns();
      const r = await cni('h1', 'ADD', { ...conf('h1'), name: network }, { CNI_CONTAINERID: id, CNI_NETNS: nsPath(ns), CNI_IFNAME: 'eth0' });
      expect(r.code, r.stdout).to.equal(0);
      made.push({ id, ns, network });
    }
    const gc = await cni('h1', 'GC', conf('h1', { 'cni.dev/valid-attachments': [{ containerID: 'gc-a', ifname: 'eth0' }, { containerID: 'gc-c', ifname: 'eth0' }] }));
    expect(gc.code, gc.stdout).to.equal(0);
    const left = (await attachments('h1')).map((a) => a.attachment.containerId).filter((id: string) => id.startsWith('gc-')).sort();
    expect(left).to.deep.equal(['gc-a', 'gc-c', 'gc-d']);
    expect(await links(nsPath(made[1]!.ns))).to.deep.equal(['lo']);
    expect((await links(nsPath(made[0]!.ns))).sort()).to.deep.equal(['eth0', 'lo']);
    // GC without the list is refused rather than taken as "nothing is valid"; GC is a 1.1.0 verb.
    expect((await cni('h1', 'GC', conf('h1'))).json.code).to.equal(7);
    expect((await cni('h1', 'GC', conf('h1', { 'cni.dev/valid-attachments': [] }, '1.0.0'))).json.code).to.equal(1);
    for (const m of made) {
      expect((await cni('h1', 'DEL', { ...conf('h1'), name: m.network }, { CNI_CONTAINERID: m.id, CNI_NETNS: nsPath(m.ns), CNI_IFNAME: 'eth0' })).code).to.equal(0);
      await run('ip', ['netns', 'del', m.ns]);
    }
  });

  // ---- containerd: ctr run --cni with the conflist podnet cni install wrote ----
  const ip: Record<string, string> = {};
  /** The address podnet gave a ctr container (ctr's CNI container ID is "<namespace>-<id>"). */
  async function containerIp(host: string, id: string): Promise<string> {
    const a = (await attachments(host)).find((x) => x.attachment.containerId === `default-${id}`);
    if (!a) throw new Error(`no attachment for ${id} on ${host}`);
    return a.ip;
  }
  async function inC(host: string, id: string, script: string): Promise<string> {
    const r = await rt[host]!.exec(id, script);
    expect(r.code, `${id}: ${script}: ${r.stdout}${r.stderr}`).to.equal(0);
    return r.stdout;
  }
  /** Runs `fn` with this host's conflist changed by `edit` (ctr reads it at each ctr run). */
  async function withConflist<T>(host: string, edit: (list: any) => void, fn: () => Promise<T>): Promise<T> {
    const file = join(rt[host]!.confDir, '10-podnet.conflist');
    const original = readFileSync(file, 'utf8');
    const list = JSON.parse(original);
    edit(list);
    writeFileSync(file, JSON.stringify(list, null, 2));
    try {
      return await fn();
    } finally {
      writeFileSync(file, original);
    }
  }

  /** An HTTP GET from a host namespace (Node's client; prints the body). */
  function httpGet(host: string, url: string, timeoutMs: number): Promise<ExecResult> {
    const js = `const r=require('http').get(process.argv[1],{timeout:${timeoutMs}},(res)=>{res.pipe(process.stdout)});r.on('timeout',()=>{r.destroy();process.exit(3)});r.on('error',(e)=>{console.error(e.message);process.exit(2)})`;
    return t.exec(t.host(host).netns, process.execPath, ['-e', js, url], timeoutMs + 30_000);
  }

  it('containerd containers on node 1 and node 2 ping each other and a podnet pod add pod, and move 50 MB over TCP intact', async () => {
    const p = await t.podnet('h1', ['pod', 'add', 'pod1']);
    expect(p.code, p.stderr).to.equal(0);
    ip.pod1 = p.stdout.trim();
    await rt.h1!.run('c1');
    await rt.h2!.run('c2');
    ip.c1 = await containerIp('h1', 'c1');
    ip.c2 = await containerIp('h2', 'c2');
    const subnet1 = (await statusJson(t, 'h1')).subnet.split('.').slice(0, 3).join('.');
    const subnet2 = (await statusJson(t, 'h2')).subnet.split('.').slice(0, 3).join('.');
    expect(ip.c1.startsWith(subnet1 + '.')).to.equal(true);
    expect(ip.c2.startsWith(subnet2 + '.')).to.equal(true);
    // Inside the container: eth0 is podnet's TAP with the address podnet recorded.
    expect(await inC('h1', 'c1', 'ip -4 addr show eth0')).to.include(`${ip.c1}/24`);
    await inC('h1', 'c1', `ping -c 2 -W 2 ${ip.c2}`);
    await inC('h2', 'c2', `ping -c 2 -W 2 ${ip.c1}`);
    await inC('h2', 'c2', `ping -c 2 -W 2 ${ip.pod1}`);
    expect(await ping(t, t.podNs('h1', 'pod1'), ip.c2)).to.equal(true);
    // 50 MB from a web server in the container on node 2 to the container on node 1, over VXLAN.
    const sent = (await inC('h2', 'c2', 'head -c 52428800 /dev/urandom > /www/blob && sha256sum /www/blob && httpd -p 8080 -h /www')).trim().split(/\s+/)[0];
    const got = (await inC('h1', 'c1', `wget -q -O - http://${ip.c2}:8080/blob | sha256sum`)).trim().split(/\s+/)[0];
    expect(got).to.match(/^[0-9a-f]{64}$/);
    expect(got).to.equal(sent);
    const size = (await inC('h1', 'c1', `wget -q -O - http://${ip.c2}:8080/blob | wc -c`)).trim();
    expect(Number(size)).to.equal(52428800);
  });

  it('a container selected by a service (labels from args.labels) is reached through its ClusterIP from another node', async () => {
    await withConflist('h1', (l) => (l.plugins[0].args = { labels: { app: 'cweb' } }), () => rt.h1!.run('c3'));
    ip.c3 = await containerIp('h1', 'c3');
    expect((await attachments('h1')).find((a) => a.ip === ip.c3).labels).to.deep.equal({ app: 'cweb' });
    await inC('h1', 'c3', 'mkdir -p /site && echo served-by-c3 > /site/index.html && httpd -p 8080 -h /site');
    const s = await t.podnet('h1', ['service', 'add', 'cweb', '--port', '80:8080/tcp', '--selector', 'app=cweb']);
    expect(s.code, s.stderr).to.equal(0);
    const vip = s.stdout.trim();
    const list = JSON.parse((await t.podnet('h2', ['service', 'list', '--json'])).stdout);
    expect(list.find((x: any) => x.name === 'cweb').endpoints).to.deep.equal([ip.c3]);
    expect((await inC('h2', 'c2', `wget -q -O - http://${vip}/`)).trim()).to.equal('served-by-c3');
  });

  it('portmap after podnet: a container\'s hostPort is reached from an outside host', async () => {
    // ctr passes no port mappings of its own, so the conflist carries them, as a runtime would in runtimeConfig.
    await withConflist(
      'h1',
      (l) => (l.plugins[1].runtimeConfig = { portMappings: [{ hostPort: 8081, containerPort: 8080, protocol: 'tcp' }] }),
      () => rt.h1!.run('c4'),
    );
    await inC('h1', 'c4', 'mkdir -p /site && echo hostport-c4 > /site/index.html && httpd -p 8080 -h /site');
    const r = await httpGet('ext', `http://${t.host('h1').underlayIp}:8081/`, 10_000);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout.trim()).to.equal('hostport-c4');
  });

  it('a failing ADD under ctr (bad config field) fails the container with podnet\'s message and leaves nothing', async () => {
    const before = { used: (await statusJson(t, 'h1')).ipam.used, n: (await attachments('h1')).length };
    const r = await withConflist('h1', (l) => (l.plugins[0].device = 'veth'), () => rt.h1!.runFailing('c5'));
    expect(r.code).to.not.equal(0);
    expect(r.output).to.include('device \\"veth\\": must be \\"tap\\" or \\"tun\\"');
    expect((await statusJson(t, 'h1')).ipam.used).to.equal(before.used);
    expect((await attachments('h1')).length).to.equal(before.n);
    await rt.h1!.ctr(['container', 'rm', 'c5']);
  });

  it('bandwidth after podnet: without limits it passes the result on; a rate limit fails the ADD (no veth to shape) and the chain\'s DEL leaves nothing', async () => {
    // Every container above ran through the full conflist, bandwidth included, without limits.
    const before = { used: (await statusJson(t, 'h1')).ipam.used, n: (await attachments('h1')).length };
    const r = await withConflist('h1', (l) => Object.assign(l.plugins[2], { ingressRate: 8_000_000, ingressBurst: 65536 }), () => rt.h1!.runFailing('c6'));
    expect(r.code).to.not.equal(0);
    expect(r.output).to.include('has no veth peer');
    expect((await statusJson(t, 'h1')).ipam.used).to.equal(before.used);
    expect((await attachments('h1')).length).to.equal(before.n);
    await rt.h1!.ctr(['container', 'rm', 'c6']);
  });

  it('removing a container (ctr task kill, container rm) runs DEL: attachment, address and device are gone', async () => {
    const used = (await statusJson(t, 'h1')).ipam.used;
    const pid = await rt.h1!.taskPid('c4');
    const name = (await attachments('h1')).find((a) => a.attachment.containerId === 'default-c4').name;
    expect(await links(`/proc/${pid}/ns/net`)).to.include('eth0');
    const c = await rt.h1!.remove('c4');
    expect(await c!.exited).to.equal(137);
    expect((await attachments('h1')).some((a) => a.attachment.containerId === 'default-c4')).to.equal(false);
    expect((await statusJson(t, 'h1')).ipam.used).to.equal(used - 1);
    // DEL (not a restart or GC) removed it: the daemon logged the deletion of that pod.
    expect(t.daemonLog('h1')).to.match(new RegExp(`"pod":"${name}".*"msg":"pod deleted"`));
    expect(await hostLinks('h1')).to.not.include(name);
    // portmap's DEL ran too: its hostPort is closed.
    const r = await httpGet('ext', `http://${t.host('h1').underlayIp}:8081/`, 3_000);
    expect(r.code).to.not.equal(0);
  });

  it('attachments survive a daemon restart: interfaces come back with their addresses; down, STATUS says 50 and ADD/DEL say try again', async () => {
    const ns = await runtimeNetns();
    const env = { CNI_CONTAINERID: 'restart-1', CNI_NETNS: nsPath(ns), CNI_IFNAME: 'eth0' };
    const add = await cni('h2', 'ADD', conf('h2', { args: { labels: { app: 'restarted' } } }), env);
    expect(add.code, add.stdout).to.equal(0);
    const addr = add.json.ips[0].address.split('/')[0];
    expect((await t.podnet('h1', ['service', 'add', 'rs', '--port', '80/tcp', '--selector', 'app=restarted'])).code).to.equal(0);
    const endpoints = async () => JSON.parse((await t.podnet('h1', ['service', 'list', '--json'])).stdout).find((x: any) => x.name === 'rs').endpoints;
    expect(await endpoints()).to.deep.equal([addr]);
    // A second attachment whose namespace the runtime removes while the daemon is down.
    const nsGone = await runtimeNetns();
    expect((await cni('h2', 'ADD', conf('h2'), { CNI_CONTAINERID: 'restart-gone', CNI_NETNS: nsPath(nsGone), CNI_IFNAME: 'eth0' })).code).to.equal(0);
    const used = (await statusJson(t, 'h2')).ipam.used;
    await t.stopDaemon('h2');
    await run('ip', ['netns', 'del', nsGone]);
    // The device stays (persistent) with its address, carrier off, for the next daemon to attach to.
    expect(await links(nsPath(ns))).to.deep.equal(['lo', 'eth0']);
    expect(await addrs(nsPath(ns), 'eth0')).to.deep.equal([add.json.ips[0].address]);
    const status = await cni('h2', 'STATUS', conf('h2'));
    expect(status.json.code).to.equal(50);
    const add2 = await cni('h2', 'ADD', conf('h2'), { ...env, CNI_CONTAINERID: 'restart-2' });
    expect(add2.json.code).to.equal(11);
    const del = await cni('h2', 'DEL', conf('h2'), { ...env, CNI_CONTAINERID: 'restart-2' });
    expect(del.json.code).to.equal(11);
    await t.startDaemon('h2');
    expect(await addrs(nsPath(ns), 'eth0')).to.deep.equal([add.json.ips[0].address]);
    // The attachment whose namespace is gone was dropped at start-up, and its address freed.
    expect((await attachments('h2')).some((a) => a.attachment.containerId === 'restart-gone')).to.equal(false);
    expect((await statusJson(t, 'h2')).ipam.used).to.equal(used - 1);
    // Published again: still the service's endpoint.
    expect(await endpoints()).to.deep.equal([addr]);
    expect((await cni('h2', 'CHECK', conf('h2', { prevResult: add.json }), env)).code).to.equal(0);
    // The ctr container on node 2 is back on the network too, at the same address.
    expect(await containerIp('h2', 'c2')).to.equal(ip.c2);
    await inC('h1', 'c1', `ping -c 2 -W 2 ${ip.c2}`);
    expect((await cni('h2', 'DEL', conf('h2'), env)).code).to.equal(0);
    await run('ip', ['netns', 'del', ns]);
  });

  it('STATUS: available while the daemon runs, code 50 when it is not', async () => {
    const ok = await cni('h1', 'STATUS', conf('h1'));
    expect(ok.code, ok.stdout).to.equal(0);
    const down = await cni('h1', 'STATUS', conf('h1', { socket: join(t.runDir, 'h9.sock') }));
    expect(down.code).to.equal(1);
    expect(down.json.code).to.equal(50);
    expect(down.json.msg).to.include('podnet daemon not available');
  });
});
