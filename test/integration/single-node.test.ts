import { expect } from 'chai';
import { execCapture, Topology } from '../../src/topology/topology.js';
import { listNetns } from '../../src/netns/run.js';
import { NETTOOL, ping, podCounters, RAWSEND, statusJson, tcpTransfer } from '../helpers/net.js';
import { podGsoMaxSegments } from '../../src/dataplane/vxlan.js';

/**
 * Issue 2: pods on one node. One host namespace (with an underlay so the daemon finds an uplink),
 * a podnet daemon in it, TAP and TUN pods. Everything is torn down in `after`, also on failure.
 */
describe('single node: pods, switch, router, host port', function () {
  this.timeout(300_000);
  const t = new Topology();
  let ipA = '';
  let ipB = '';
  let ipC = '';
  const ns = (pod: string) => t.podNs('h1', pod);

  before(async () => {
    await t.createUnderlay();
    await t.addHost({ name: 'h1' });
    await t.startDaemon('h1', { subnetPrefix: 28 });
    const add = async (args: string[]) => {
      const r = await t.podnet('h1', ['pod', 'add', ...args]);
      expect(r.code, r.stderr).to.equal(0);
      return r.stdout.trim();
    };
    ipA = await add(['a', '--label', 'app=web']);
    ipB = await add(['b']);
    ipC = await add(['c', '--device', 'tun']);
  });

  after(async () => {
    await t.destroy();
  });

  it('prints each pod IP from the node subnet and lists the pods', async () => {
    expect(ipA).to.match(/^10\.244\.\d+\.2$/);
    expect(ipB).to.match(/^10\.244\.\d+\.3$/);
    const r = await t.podnet('h1', ['pod', 'list', '--json']);
    const pods = JSON.parse(r.stdout);
    expect(pods.map((p: any) => p.name)).to.deep.equal(['a', 'b', 'c']);
    expect(pods[0].labels).to.deep.equal({ app: 'web' });
    expect(await listNetns()).to.include.members([ns('a'), ns('b'), ns('c')]);
  });

  it('two TAP pods ping each other both ways and learn each other\'s real MAC by ARP', async () => {
    expect(await ping(t, ns('a'), ipB)).to.equal(true);
    expect(await ping(t, ns('b'), ipA)).to.equal(true);
    const macOf = async (pod: string) => (await t.sh(ns(pod), "cat /sys/class/net/eth0/address")).trim();
    const neighA = await t.sh(ns('a'), `ip neigh show ${ipB}`);
    const neighB = await t.sh(ns('b'), `ip neigh show ${ipA}`);
    expect(neighA).to.include(await macOf('b'));
    expect(neighB).to.include(await macOf('a'));
  });

  it('carries a 50 MB TCP transfer between TAP pods intact, with the sender\'s real IP', async () => {
    const seen = await tcpTransfer(t, ns('a'), ns('b'), ipB, 50 * 1024 * 1024);
    expect(seen).to.equal(ipA);
  });

  it('a TUN pod and a TAP pod exchange ping and TCP, in super-frames both ways (the TUN has offloads too)', async () => {
    expect(await ping(t, ns('c'), ipA)).to.equal(true);
    expect(await ping(t, ns('a'), ipC)).to.equal(true);
    const s0 = podCounters(await statusJson(t, 'h1'), 'c') as any;
    expect(await tcpTransfer(t, ns('c'), ns('a'), ipA, 5 * 1024 * 1024, 5002)).to.equal(ipC);
    expect(await tcpTransfer(t, ns('a'), ns('c'), ipC, 5 * 1024 * 1024, 5003)).to.equal(ipA);
    const s1 = podCounters(await statusJson(t, 'h1'), 'c') as any;
    // Frames far above the pod MTU (1450) each way: TSO super-frames read from the TUN pod whole,
    // and the TAP pod's written to it whole (counted as the switch sees them, with Ethernet).
    expect((s1.rxBytes - s0.rxBytes) / (s1.rxFrames - s0.rxFrames), 'bytes per frame from the TUN pod').to.be.greaterThan(3000);
    expect((s1.txBytes - s0.txBytes) / (s1.txFrames - s0.txFrames), 'bytes per frame to the TUN pod').to.be.greaterThan(3000);
    expect(s1.drops).to.deep.equal({});
  });

  it('the host reaches a pod by its IP and a pod reaches the host, without NAT', async () => {
    const hostNs = t.host('h1').netns;
    expect(await ping(t, hostNs, ipA)).to.equal(true);
    const st = await statusJson(t, 'h1');
    expect(await ping(t, ns('a'), st.hostAddress)).to.equal(true);
    expect(await ping(t, ns('c'), st.hostAddress)).to.equal(true);
    // TCP host -> pod, and pod -> a server on the host: each side sees the other's own address.
    expect(await tcpTransfer(t, hostNs, ns('b'), ipB, 1024 * 1024, 5004)).to.equal(st.hostAddress);
    expect(await tcpTransfer(t, ns('b'), hostNs, st.hostAddress, 1024 * 1024, 5005)).to.equal(ipB);
  });

  it('the host\'s TCP to and from pods moves super-frames both ways (podnet0 has offloads too), bytes intact', async () => {
    const hostNs = t.host('h1').netns;
    const st0 = await statusJson(t, 'h1');
    // podnet0 offers TSO (a TUN opened with virtio-net headers), its super-frames fitted to one VXLAN GSO run.
    expect(await t.sh(hostNs, 'ethtool -k podnet0')).to.match(/tcp-segmentation-offload: on/);
    expect(JSON.parse(await t.sh(hostNs, 'ip -d -j link show dev podnet0'))[0].gso_max_segs).to.equal(podGsoMaxSegments(1450));
    expect(await tcpTransfer(t, hostNs, ns('a'), ipA, 5 * 1024 * 1024, 5006)).to.equal(st0.hostAddress);
    expect(await tcpTransfer(t, ns('a'), hostNs, st0.hostAddress, 5 * 1024 * 1024, 5007)).to.equal(ipA);
    const st1 = await statusJson(t, 'h1');
    const [h0, h1] = [st0.host, st1.host];
    // Far above the MTU (1450) each way: the host's super-frames read whole, the pod's written whole.
    expect((h1.rxBytes - h0.rxBytes) / (h1.rxFrames - h0.rxFrames), 'bytes per packet from the host').to.be.greaterThan(3000);
    expect((h1.txBytes - h0.txBytes) / (h1.txFrames - h0.txFrames), 'bytes per packet to the host').to.be.greaterThan(3000);
    expect(podCounters(st1, 'a').drops).to.deep.equal({});
  });

  it('answers ping to the gateway', async () => {
    const st = await statusJson(t, 'h1');
    expect(await ping(t, ns('a'), st.gateway)).to.equal(true);
  });

  it('two processes of one pod talk over 127.0.0.1 (podnet exec)', async () => {
    const srv = t.podnet('h1', ['exec', 'a', '--', process.execPath, NETTOOL, 'echo', '7777']);
    // wait for the server inside the pod to listen
    for (let i = 0; i < 50; i++) {
      const r = await t.exec(ns('a'), 'sh', ['-c', "ss -ltn | grep -q ':7777 '"]);
      if (r.code === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const talk = await t.podnet('h1', ['exec', 'a', '--', process.execPath, NETTOOL, 'talk', '127.0.0.1', '7777', 'hello-from-a-sidecar']);
    expect(talk.code, talk.stderr).to.equal(0);
    expect(talk.stdout.trim()).to.equal('hello-from-a-sidecar');
    // The other pod cannot see it on its own localhost: separate network namespaces.
    const other = await t.exec(ns('b'), process.execPath, [NETTOOL, 'talk', '127.0.0.1', '7777', 'x']);
    expect(other.code).to.not.equal(0);
    // Stop the server: exactly the processes inside pod a's namespace, nothing else on the machine.
    const pids = (await execCapture('ip', ['netns', 'pids', ns('a')])).stdout.split(/\s+/).filter(Boolean);
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGTERM');
      } catch {
        /* already gone */
      }
    }
    await srv;
  });

  it('drops and counts forged source IP and MAC; other pods are unaffected', async () => {
    const st0 = await statusJson(t, 'h1');
    const before = podCounters(st0, 'a').drops;
    const macB = (await t.sh(ns('b'), 'cat /sys/class/net/eth0/address')).trim();
    const macA = (await t.sh(ns('a'), 'cat /sys/class/net/eth0/address')).trim();
    // Forged source IP (b's address) from a's real MAC, and a forged MAC with a's own IP.
    let r = await t.exec(ns('a'), 'python3', [RAWSEND, 'eth0', 'icmp', macA, macB, ipB, ipB, '20']);
    expect(r.code, r.stderr).to.equal(0);
    r = await t.exec(ns('a'), 'python3', [RAWSEND, 'eth0', 'icmp', '0a:58:de:ad:be:ef', macB, ipA, ipB, '20']);
    expect(r.code, r.stderr).to.equal(0);
    const st1 = await statusJson(t, 'h1');
    const after = podCounters(st1, 'a').drops;
    expect((after.spoofed_source_ip ?? 0) - (before.spoofed_source_ip ?? 0)).to.equal(20);
    expect((after.spoofed_source_mac ?? 0) - (before.spoofed_source_mac ?? 0)).to.equal(20);
    // None of them reached b: b would have answered the echo requests.
    expect(podCounters(st1, 'b').rxFrames - podCounters(st0, 'b').rxFrames).to.be.lessThan(5);
    expect(await ping(t, ns('b'), ipC)).to.equal(true);
    expect(await ping(t, ns('a'), ipB)).to.equal(true);
  });

  it('counts and drops thousands of malformed frames; the daemon stays up and pods still talk', async () => {
    // A pod of its own that sends nothing but the garbage, so every frame the daemon receives from it
    // is one of them. The daemon is judged by what it received (its port's rx counter), not by what
    // the sender wrote: frames the pod's kernel drops because the TAP queue is full never reach the
    // daemon. Every garbage frame is invalid (kind 0 has a random source MAC, the others are
    // truncated or malformed headers from the pod's own MAC), so each one received must be dropped
    // with a reason. The first frames always reach the daemon (the device queue holds hundreds), and
    // they cover every kind (the sender cycles through the kinds), so each reason shows up.
    const g = await t.podnet('h1', ['pod', 'add', 'garbage']);
    expect(g.code, g.stderr).to.equal(0);
    try {
      const st0 = await statusJson(t, 'h1');
      const r = await t.exec(ns('garbage'), 'python3', [RAWSEND, 'eth0', 'garbage', '5000', '7'], 120_000);
      expect(r.code, r.stderr).to.equal(0);
      expect(Number(r.stdout.trim())).to.equal(5000);
      // The daemon may still be reading the queue: wait until its count stops moving.
      let st1 = await statusJson(t, 'h1');
      for (let i = 0; i < 50; i++) {
        await new Promise((res) => setTimeout(res, 100));
        const next = await statusJson(t, 'h1');
        const same = podCounters(next, 'garbage').rxFrames === podCounters(st1, 'garbage').rxFrames;
        st1 = next;
        if (same) break;
      }
      const sum = (d: Record<string, number>) => Object.values(d).reduce((a, b) => a + b, 0);
      const c0 = podCounters(st0, 'garbage');
      const c1 = podCounters(st1, 'garbage');
      const received = c1.rxFrames - c0.rxFrames;
      const dropped = sum(c1.drops) - sum(c0.drops);
      expect(received).to.be.greaterThan(0);
      expect(received).to.be.at.most(5000);
      expect(dropped).to.equal(received);
      expect(c1.drops.malformed_ipv4).to.be.greaterThan(0);
      expect(c1.drops.malformed_arp).to.be.greaterThan(0);
      expect((c1.drops.spoofed_source_mac ?? 0) + (c1.drops.multicast_source ?? 0)).to.be.greaterThan(0);
    } finally {
      expect((await t.podnet('h1', ['pod', 'del', 'garbage'])).code).to.equal(0);
    }
    expect(await ping(t, ns('a'), ipB)).to.equal(true);
    expect(await tcpTransfer(t, ns('b'), ns('a'), ipA, 1024 * 1024, 5006)).to.equal(ipB);
  });

  it('rejects bad CLI input with a one-line error and a non-zero exit, leaving nothing behind', async () => {
    const nsBefore = (await listNetns()).filter((n) => n.startsWith(t.prefix)).sort();
    const linksBefore = await t.sh(t.host('h1').netns, 'ip -br link | wc -l');
    const cases: Array<[string[], RegExp]> = [
      [['pod', 'del', 'nope'], /pod nope not found/],
      [['pod', 'add', 'a'], /pod a already exists/],
      [['pod', 'add', 'x', '--label', 'bad key=v'], /invalid label/],
      [['pod', 'add', 'x', '--label', 'novalue'], /invalid label/],
      [['pod', 'add', 'Bad_Name'], /invalid pod name/],
      [['pod', 'add', 'x', '--device', 'veth'], /device/],
    ];
    for (const [args, re] of cases) {
      const r = await t.podnet('h1', args);
      expect(r.code, args.join(' ')).to.not.equal(0);
      expect(r.stderr.trim().split('\n')[0], args.join(' ')).to.match(re);
    }
    // Exhaust the /28: 16 - network, gateway, broadcast = 13 pod addresses, 3 used.
    for (let i = 0; i < 10; i++) {
      const r = await t.podnet('h1', ['pod', 'add', `fill${i}`]);
      expect(r.code, r.stderr).to.equal(0);
    }
    const full = await t.podnet('h1', ['pod', 'add', 'one-too-many']);
    expect(full.code).to.not.equal(0);
    expect(full.stderr).to.match(/exhausted/);
    for (let i = 0; i < 10; i++) expect((await t.podnet('h1', ['pod', 'del', `fill${i}`])).code).to.equal(0);
    expect((await listNetns()).filter((n) => n.startsWith(t.prefix)).sort()).to.deep.equal(nsBefore);
    expect(await t.sh(t.host('h1').netns, 'ip -br link | wc -l')).to.equal(linksBefore);
  });

  it('frees a deleted pod\'s address and reuses it', async () => {
    expect((await t.podnet('h1', ['pod', 'del', 'b'])).code).to.equal(0);
    expect(await listNetns()).to.not.include(ns('b'));
    const r = await t.podnet('h1', ['pod', 'add', 'b2']);
    expect(r.stdout.trim()).to.equal(ipB);
  });

  it('podnet node reset removes every namespace, device and route it made, and stops the daemon', async () => {
    const hostNs = t.host('h1').netns;
    expect(await t.sh(hostNs, 'ip route')).to.include('podnet0');
    const daemon = t.host('h1').daemon!;
    const exited = new Promise<number | null>((res) => daemon.once('exit', (c) => res(c)));
    const r = await t.podnet('h1', ['node', 'reset']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/node h1 reset: daemon stopped, \d+ pods removed/);
    // The CLI returns once the daemon is gone.
    expect(daemon.exitCode ?? daemon.signalCode).to.not.equal(null);
    const code = await exited;
    t.host('h1').daemon = undefined;
    expect(code).to.equal(0);
    const left = (await listNetns()).filter((n) => n.startsWith(`${t.prefix}h1-`));
    expect(left).to.deep.equal([]);
    const links = await t.sh(hostNs, 'ip -br link');
    expect(links).to.not.match(/podnet0|^pn/m);
    expect(await t.sh(hostNs, 'ip route')).to.not.include('10.244.');
  });
});
