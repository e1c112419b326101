import { expect } from 'chai';
import { Topology } from '../../src/topology/topology.js';
import { listNetns } from '../../src/netns/run.js';
import { podGsoMaxSegments } from '../../src/dataplane/vxlan.js';
import { ping, startIn, statusJson, tcpTransfer, within } from '../helpers/net.js';

interface Pod {
  node: string;
  name: string;
  ip: string;
  ns: string;
}

/**
 * Issue 3: three hosts, each with a podnet daemon sharing the embedded cluster store; pods on every host
 * reach each other through podnet's userspace VXLAN over a bridge underlay.
 */
describe('multi-host: VXLAN between podnet nodes', function () {
  this.timeout(600_000);
  const t = new Topology();
  const pods: Pod[] = [];
  const pod = (node: string, name: string) => pods.find((p) => p.node === node && p.name === name)!;

  async function addPod(node: string, name: string, extra: string[] = []): Promise<Pod> {
    const r = await t.podnet(node, ['pod', 'add', name, ...extra]);
    expect(r.code, r.stderr).to.equal(0);
    const p = { node, name, ip: r.stdout.trim(), ns: t.podNs(node, name) };
    pods.push(p);
    return p;
  }

  before(async () => {
    await t.createUnderlay();
    for (const h of ['h1', 'h2', 'h3']) await t.addHost({ name: h });
    // h3 turns VXLAN remote checksum offload off (a node of an older release, or an operator's
    // choice): the nodes that have it on must send it complete inner checksums.
    for (const h of ['h1', 'h2', 'h3']) await t.startDaemon(h, h === 'h3' ? { vxlan: { remoteChecksumOffload: false } } : {});
    for (const h of ['h1', 'h2', 'h3']) {
      await addPod(h, 'a');
      await addPod(h, 'b', h === 'h2' ? ['--device', 'tun'] : []);
    }
  });

  after(async () => {
    await t.destroy();
  });

  it('gives every node its own subnet of the pod CIDR', async () => {
    const subnets = await Promise.all(['h1', 'h2', 'h3'].map(async (h) => (await statusJson(t, h)).subnet));
    expect(new Set(subnets).size).to.equal(3);
    for (const s of subnets) expect(s).to.match(/^10\.244\.\d+\.0\/24$/);
    const nodes = JSON.parse((await t.podnet('h1', ['nodes', '--json'])).stdout);
    expect(nodes.map((n: any) => n.name).sort()).to.deep.equal(['h1', 'h2', 'h3']);
  });

  it('every pod pings every other pod', async () => {
    const failures: string[] = [];
    await Promise.all(
      pods.map(async (src) => {
        for (const dst of pods) {
          if (dst === src) continue;
          if (!(await ping(t, src.ns, dst.ip, { count: 1 }))) failures.push(`${src.node}/${src.name} -> ${dst.node}/${dst.name}`);
        }
      }),
    );
    expect(failures).to.deep.equal([]);
  });

  it('carries 50 MB across hosts intact, and the receiver sees the sender\'s pod IP (no NAT)', async () => {
    const from = pod('h1', 'a');
    const to = pod('h3', 'a');
    const s1 = await statusJson(t, 'h1');
    expect(await tcpTransfer(t, from.ns, to.ns, to.ip, 50 * 1024 * 1024, 6001)).to.equal(from.ip);
    // h3 has RCO off: h1 sent it everything with complete inner checksums, and h3 says so.
    const [e1, e3] = [await statusJson(t, 'h1'), await statusJson(t, 'h3')];
    expect(e1.cluster.vxlan.peers.find((p: { underlayIp: string }) => p.underlayIp === t.host('h3').underlayIp).rco).to.equal(false);
    expect(e1.cluster.vxlan.gsoRuns - s1.cluster.vxlan.gsoRuns, 'GSO runs sent by h1').to.be.greaterThan(0);
    expect(e1.cluster.vxlan.rcoSent - s1.cluster.vxlan.rcoSent).to.equal(0);
    expect(e3.cluster.vxlan.remoteChecksumOffload).to.equal(false);
    expect(e3.cluster.vxlan.rcoReceived).to.equal(0);
    expect(e3.cluster.vxlan.peers.every((p: { rco: boolean }) => !p.rco)).to.equal(true);
  });

  /**
   * Sends `bytes` from one pod to another (SHA-256 checked) while tcpdump on the receiving pod's
   * eth0 waits for 20 TCP segments larger than the tunnel MTU: across hosts those can only be
   * super-frames podnet joined (GRO) and wrote with a GSO header.
   */
  async function transferSeeingSuperFrames(from: Pod, to: Pod, bytes: number, port: number): Promise<void> {
    const cap = startIn(to.ns, 'tcpdump', ['-i', 'eth0', '-nn', '-l', '-c', '20', `tcp dst port ${port} and greater 3000`], 'listening');
    try {
      await cap.started;
      expect(await tcpTransfer(t, from.ns, to.ns, to.ip, bytes, port)).to.equal(from.ip);
      const code = await within(cap.exited, 20_000, -1);
      expect(code, `tcpdump on ${to.node}/${to.name} saw fewer than 20 large segments: ${cap.output()} ${cap.errors()}`).to.equal(0);
    } finally {
      cap.stop();
    }
    const lengths = cap.output().split('\n').map((l) => /length (\d+)/.exec(l)?.[1]).filter(Boolean).map(Number);
    expect(lengths).to.have.length(20);
    for (const l of lengths) expect(l).to.be.greaterThan(1450);
  }

  it('a pod\'s super-frames cross hosts whole: one GSO run out, joined again on the other side, bytes intact', async () => {
    const from = pod('h1', 'b');
    const to = pod('h2', 'a'); // a TAP pod: it takes super-frames whole
    const [s1, s2] = [await statusJson(t, 'h1'), await statusJson(t, 'h2')];
    await transferSeeingSuperFrames(from, to, 30 * 1024 * 1024, 6002);
    const [e1, e2] = [await statusJson(t, 'h1'), await statusJson(t, 'h2')];
    expect(e1.cluster.vxlan.txOffload).to.equal('udp-gso');
    const runs = e1.cluster.vxlan.gsoRuns - s1.cluster.vxlan.gsoRuns;
    expect(runs, 'GSO runs sent by h1').to.be.greaterThan(0);
    // One run per super-frame: the pod's device keeps its TSO super-frames to what one UDP GSO run
    // carries (gso_max_segs, 44 at MTU 1450); at the kernel's default (46 segments) every 64 KB
    // super-frame took two runs, and the receiving pod two frames.
    const link = JSON.parse(await t.sh(from.ns, 'ip -d -j link show dev eth0'))[0];
    expect(link.gso_max_segs).to.equal(podGsoMaxSegments(1450));
    const fromPod = (s: any) => s.pods.find((p: { name: string }) => p.name === from.name).counters.rxFrames;
    expect(runs, 'GSO runs vs frames from the pod').to.be.at.most(fromPod(e1) - fromPod(s1));
    expect(e2.cluster.vxlan.rxOffload).to.equal('udp-gro');
    expect(e2.cluster.vxlan.groSuperFrames - s2.cluster.vxlan.groSuperFrames, 'super-frames joined on h2').to.be.greaterThan(0);
    expect(e2.cluster.vxlan.drops).to.deep.equal({});
    // Between podnet nodes (both take RCO, the default) the segments go with partial inner checksums
    // and the receiver joins them unsummed: the SHA-256 above says the bytes still arrived intact.
    expect(e1.cluster.vxlan.peers.find((p: { underlayIp: string }) => p.underlayIp === t.host('h2').underlayIp).rco).to.equal(true);
    expect(e1.cluster.vxlan.rcoSent - s1.cluster.vxlan.rcoSent, 'datagrams sent with RCO by h1').to.be.greaterThan(0);
    expect(e2.cluster.vxlan.rcoReceived - s2.cluster.vxlan.rcoReceived, 'datagrams received with RCO on h2').to.be.greaterThan(0);
  });

  it('a TUN pod has offloads too: its super-frames cross hosts whole both ways, bytes intact', async () => {
    const tun = pod('h2', 'b');
    const tap = pod('h1', 'a');
    // Its eth0 offers TSO (a TUN opened with virtio-net headers), with super-frames fitted to one run.
    const link = JSON.parse(await t.sh(tun.ns, 'ip -d -j link show dev eth0'))[0];
    expect(link.gso_max_segs).to.equal(podGsoMaxSegments(1450));
    const s2 = await statusJson(t, 'h2');
    // To the TUN pod: joined on h2 and written to the TUN device whole.
    await transferSeeingSuperFrames(tap, tun, 20 * 1024 * 1024, 6003);
    // From it: its kernel hands h2 super-frames, which go to h1 as GSO runs and arrive joined.
    await transferSeeingSuperFrames(tun, tap, 20 * 1024 * 1024, 6004);
    const e2 = await statusJson(t, 'h2');
    const counters = (s: any) => s.pods.find((p: { name: string }) => p.name === tun.name).counters;
    const [c0, c1] = [counters(s2), counters(e2)];
    const frames = c1.rxFrames - c0.rxFrames;
    expect((c1.rxBytes - c0.rxBytes) / frames, 'bytes per frame from the TUN pod').to.be.greaterThan(3000);
    expect(e2.cluster.vxlan.gsoRuns - s2.cluster.vxlan.gsoRuns, 'GSO runs sent by h2').to.be.greaterThan(0);
    expect(c1.drops, 'drops on the TUN pod\'s port').to.deep.equal({});
  });

  it('a host\'s TCP to a pod on another host and back moves super-frames: one GSO run out, joined on the other side, bytes intact', async () => {
    const st1 = await statusJson(t, 'h1');
    const host: Pod = { node: 'h1', name: 'podnet0', ip: st1.hostAddress, ns: t.host('h1').netns };
    const remote = pod('h2', 'a'); // a TAP pod
    await transferSeeingSuperFrames(host, remote, 20 * 1024 * 1024, 6005);
    expect(await tcpTransfer(t, remote.ns, host.ns, host.ip, 20 * 1024 * 1024, 6006)).to.equal(remote.ip);
    const e1 = await statusJson(t, 'h1');
    expect(e1.cluster.vxlan.gsoRuns - st1.cluster.vxlan.gsoRuns, 'GSO runs sent by h1').to.be.greaterThan(0);
    expect(e1.cluster.vxlan.groSuperFrames - st1.cluster.vxlan.groSuperFrames, 'super-frames joined on h1').to.be.greaterThan(0);
    const [h0, h1] = [st1.host, e1.host];
    expect((h1.rxBytes - h0.rxBytes) / (h1.rxFrames - h0.rxFrames), 'bytes per packet from the host').to.be.greaterThan(3000);
    expect((h1.txBytes - h0.txBytes) / (h1.txFrames - h0.txFrames), 'bytes per packet to the host').to.be.greaterThan(3000);
    expect(e1.cluster.vxlan.drops).to.deep.equal({});
  });

  it('a host reaches pods on other hosts', async () => {
    expect(await ping(t, t.host('h1').netns, pod('h2', 'a').ip)).to.equal(true);
    expect(await ping(t, t.host('h3').netns, pod('h2', 'b').ip)).to.equal(true);
  });

  it('path MTU: DF packets too big for the tunnel get frag-needed with the tunnel MTU; non-DF ones are fragmented', async () => {
    const src = pod('h1', 'b');
    const dst = pod('h2', 'a');
    // The pod's own MTU is 1450 (underlay 1500 - 50), so raise it to emulate a sender that does not know.
    await t.sh(src.ns, 'ip link set dev eth0 mtu 1500');
    try {
      const r = await t.exec(src.ns, 'ping', ['-c', '1', '-W', '2', '-M', 'do', '-s', '1472', dst.ip]);
      expect(r.code).to.not.equal(0);
      expect(r.stdout + r.stderr).to.match(/[Ff]rag needed and DF set \(mtu = 1450\)|mtu=1450/);
      // Without DF the router fragments and the far side reassembles.
      expect(await ping(t, src.ns, dst.ip, { size: 1472, count: 2 })).to.equal(true);
    } finally {
      await t.sh(src.ns, 'ip link set dev eth0 mtu 1450');
    }
    const st = await statusJson(t, 'h1');
    expect(st.router.drops.fragmentation_needed).to.be.greaterThan(0);
    // TCP across hosts with the default MTU.
    expect(await tcpTransfer(t, pod('h2', 'b').ns, pod('h1', 'a').ns, pod('h1', 'a').ip, 4 * 1024 * 1024, 6002)).to.equal(pod('h2', 'b').ip);
  });

  it('an address in the pod CIDR that no node owns gets ICMP unreachable at once', async () => {
    const r = await t.exec(pod('h1', 'a').ns, 'ping', ['-c', '1', '-W', '3', '10.244.200.9']);
    expect(r.code).to.not.equal(0);
    expect(r.stdout).to.match(/Destination Net Unreachable/);
  });

  it('drops VXLAN from an unknown host, with a wrong VNI, or truncated, and counts each', async () => {
    const before = (await statusJson(t, 'h2')).cluster.vxlan;
    const h2 = t.host('h2').underlayIp;
    const h1 = t.host('h1');
    const send = (ns: string, hex: string, count: number) =>
      t.exec(ns, process.execPath, [
        '-e',
        `const s=require('dgram').createSocket('udp4');const b=Buffer.from('${hex}','hex');let n=${count};` +
          `const go=()=>{if(n--===0)return s.close();s.send(b,8472,'${h2}',go)};go();`,
      ]);
    // A valid-looking VXLAN packet (VNI 1, inner Ethernet+IPv4 header) ...
    const inner = '0a5ac612000c' + '0a5ac612000b' + '0800' + '45000014000000004001' + '0000' + '0af40001' + '0af40102';
    const good = '08000000' + '00000100' + inner;
    const badVni = '08000000' + '00000700' + inner;
    const truncated = '0800';
    // ... from a host that is not a node: an extra namespace on the underlay.
    await t.addExternal('x', '198.18.0.99');
    expect((await send(t.host('x').netns, good, 10)).code).to.equal(0);
    expect((await send(h1.netns, badVni, 10)).code).to.equal(0);
    expect((await send(h1.netns, truncated, 10)).code).to.equal(0);
    await new Promise((r) => setTimeout(r, 500));
    const after = (await statusJson(t, 'h2')).cluster.vxlan;
    const delta = (k: string) => (after.drops[k] ?? 0) - (before.drops[k] ?? 0);
    expect(delta('vxlan_unknown_sender')).to.equal(10);
    expect(delta('vxlan_bad_vni')).to.equal(10);
    expect(delta('vxlan_malformed')).to.equal(10);
    // Nothing else was disturbed.
    expect(await ping(t, pod('h1', 'a').ns, pod('h2', 'a').ip)).to.equal(true);
  });

  it('nodes join and leave while traffic runs: others keep working, newcomers become reachable, leavers unreachable', async () => {
    // Continuous traffic between h1 and h3 during the whole change.
    const flood = startIn(pod('h1', 'a').ns, 'ping', ['-i', '0.05', '-c', '200', '-W', '1', pod('h3', 'a').ip], 'PING');
    await flood.started;
    await t.addHost({ name: 'h4' });
    await t.startDaemon('h4');
    const p4 = await addPod('h4', 'a');
    // The newcomer is reachable from existing nodes (their overlays learned it from the store's watch).
    let reached = false;
    for (let i = 0; i < 20 && !reached; i++) reached = await ping(t, pod('h1', 'b').ns, p4.ip, { count: 1 });
    expect(reached).to.equal(true);
    expect(await ping(t, p4.ns, pod('h2', 'b').ip)).to.equal(true);
    // The leaver: its node is reset (a daemon stopped for good), its lease is revoked, and the others drop its route.
    expect(await t.resetDaemon('h4')).to.equal(0);
    let unreachable = false;
    for (let i = 0; i < 40 && !unreachable; i++) {
      const r = await t.exec(pod('h1', 'b').ns, 'ping', ['-c', '1', '-W', '1', p4.ip]);
      unreachable = /Destination Net Unreachable/.test(r.stdout);
      if (!unreachable) await new Promise((res) => setTimeout(res, 250));
    }
    expect(unreachable).to.equal(true);
    const code = await flood.exited;
    const summary = flood.output();
    const m = /(\d+) packets transmitted, (\d+) received/.exec(summary);
    expect(m, summary).to.not.equal(null);
    expect(Number(m![2])).to.equal(Number(m![1]));
    expect(code).to.equal(0);
  });

  it('leaves nothing behind when the nodes are reset', async () => {
    for (const h of ['h1', 'h2', 'h3']) expect(await t.resetDaemon(h)).to.equal(0);
    const left = (await listNetns()).filter((n) => n.startsWith(t.prefix) && /-h\d-/.test(n));
    expect(left).to.deep.equal([]);
  });
});
