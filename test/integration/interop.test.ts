import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Topology } from '../../src/topology/topology.js';
import { addKernelPeer, addKernelPod, setupKernelNode } from '../../src/topology/kernel.js';
import { openStore } from '../../src/store/index.js';
import { ClusterRegistry } from '../../src/store/registry.js';
import type { ClusterStore } from '../../src/store/types.js';
import { parseSubnet } from '../../src/store/subnet.js';
import { ipv4ToString } from '../../src/packet/addr.js';
import { ping, startIn, statusJson, tcpTransfer, within } from '../helpers/net.js';

/**
 * Issue 3 interop: host h1 runs podnet; host k2 is forwarded by the Linux kernel, configured as flannel's
 * VXLAN backend does it (flannel.1 nolearning + cni0 bridge + route/neigh/fdb per peer). The kernel node
 * is registered in the cluster store by the test, as flanneld would register its lease. Host k3 is a
 * second kernel node with VXLAN remote checksum offload both ways (remcsumtx/remcsumrx), registered as
 * taking it.
 */
describe('interop: podnet userspace VXLAN <-> Linux kernel VXLAN (flannel-style)', function () {
  this.timeout(300_000);
  const t = new Topology();
  let store: ClusterStore;
  let podIp = '';
  let kernelPodIp = '';
  let kernelPodNs = '';
  let rcoPodIp = '';
  let rcoPodNs = '';
  const k2Ns = () => t.host('k2').netns;

  before(async () => {
    await t.createUnderlay();
    await t.addHost({ name: 'h1' });
    const k2 = await t.addHost({ name: 'k2' });
    await t.startDaemon('h1');
    store = await openStore({ kind: 'embedded', path: join(t.dir, 'cluster.db') });
    const registry = new ClusterRegistry(store);
    const kernelVtep = '0a:5a:c6:12:00:0c';
    const { subnet } = await registry.registerNode({ name: 'k2', underlayIp: k2.underlayIp, vtepMac: kernelVtep }, { podCidr: '10.244.0.0/16', subnetPrefix: 24, leaseTtlSeconds: 5 });
    await setupKernelNode(k2, { subnet, vtepMac: kernelVtep });
    const h1 = (await registry.listNodes()).find((n) => n.name === 'h1')!;
    await addKernelPeer(k2, { subnet: h1.subnet, underlayIp: h1.underlayIp, vtepMac: h1.vtepMac });
    kernelPodIp = ipv4ToString(parseSubnet(subnet).network + 10);
    kernelPodNs = await addKernelPod(t, k2, 'kp', kernelPodIp, subnet);
    const k3 = await t.addHost({ name: 'k3' });
    const k3Vtep = '0a:5a:c6:12:00:0d';
    const r3 = await registry.registerNode({ name: 'k3', underlayIp: k3.underlayIp, vtepMac: k3Vtep, rco: true }, { podCidr: '10.244.0.0/16', subnetPrefix: 24, leaseTtlSeconds: 5 });
    await setupKernelNode(k3, { subnet: r3.subnet, vtepMac: k3Vtep, remcsum: true });
    await addKernelPeer(k3, { subnet: h1.subnet, underlayIp: h1.underlayIp, vtepMac: h1.vtepMac });
    rcoPodIp = ipv4ToString(parseSubnet(r3.subnet).network + 10);
    rcoPodNs = await addKernelPod(t, k3, 'kp', rcoPodIp, r3.subnet);
    const r = await t.podnet('h1', ['pod', 'add', 'a']);
    expect(r.code, r.stderr).to.equal(0);
    podIp = r.stdout.trim();
  });

  after(async () => {
    await store?.close();
    await t.destroy();
  });

  it('pods on each side ping each other both ways', async () => {
    // podnet learned the kernel node from the store.
    let ok = false;
    for (let i = 0; i < 20 && !ok; i++) ok = await ping(t, t.podNs('h1', 'a'), kernelPodIp, { count: 1 });
    expect(ok).to.equal(true);
    expect(await ping(t, kernelPodNs, podIp)).to.equal(true);
  });

  it('exchange 100 MB of TCP both ways intact, each side seeing the other\'s pod IP, offloads on on both sides', async () => {
    // Every device at its defaults: the kernel side's pod hands its kernel TSO super-frames with
    // partial checksums, which its VXLAN sends over the veth as they are (one 64 KB datagram); podnet
    // sends its pods' super-frames as UDP GSO runs of complete datagrams.
    for (const ns of [k2Ns(), t.host('h1').netns]) {
      const k = await t.exec(ns, 'ethtool', ['-k', 'eth0']);
      expect(k.stdout).to.match(/tcp-segmentation-offload: on/);
      expect(k.stdout).to.match(/tx-checksumming: on/);
    }
    expect(await tcpTransfer(t, t.podNs('h1', 'a'), kernelPodNs, kernelPodIp, 100 * 1024 * 1024, 7001)).to.equal(podIp);
    expect(await tcpTransfer(t, kernelPodNs, t.podNs('h1', 'a'), podIp, 100 * 1024 * 1024, 7002)).to.equal(kernelPodIp);
    const st = await statusJson(t, 'h1');
    expect(st.cluster.vxlan.txOffload).to.equal('udp-gso');
    expect(st.cluster.vxlan.gsoRuns, 'super-frames sent to the kernel peer as GSO runs').to.be.greaterThan(0);
    // k2 did not say it takes RCO: everything podnet sent it carried complete inner checksums.
    expect(st.cluster.vxlan.peers.find((p: { underlayIp: string }) => p.underlayIp === t.host('k2').underlayIp).rco).to.equal(false);
    expect(st.cluster.vxlan.rcoSent).to.equal(0);
  });

  it('with a kernel node doing remote checksum offload both ways: ping, and 100 MB of TCP both ways intact, RCO on the wire each way', async () => {
    let ok = false;
    for (let i = 0; i < 20 && !ok; i++) ok = await ping(t, t.podNs('h1', 'a'), rcoPodIp, { count: 1 });
    expect(ok).to.equal(true);
    expect(await ping(t, rcoPodNs, podIp)).to.equal(true);
    const s = await statusJson(t, 'h1');
    expect(s.cluster.vxlan.peers.find((p: { underlayIp: string }) => p.underlayIp === t.host('k3').underlayIp).rco).to.equal(true);
    // What podnet sends k3: a capture of its large datagrams on the underlay.
    const pcap = join(t.dir, 'rco.pcap');
    const cap = startIn(t.underlayNs, 'tcpdump', ['-i', 'br0', '-U', '-c', '200', '-w', pcap, `udp port 8472 and src host ${t.host('h1').underlayIp} and greater 1200`], 'listening');
    await cap.started;
    expect(await tcpTransfer(t, t.podNs('h1', 'a'), rcoPodNs, rcoPodIp, 100 * 1024 * 1024, 7003)).to.equal(podIp);
    expect(await within(cap.exited, 20_000, -1), cap.errors()).to.equal(0);
    expect(await tcpTransfer(t, rcoPodNs, t.podNs('h1', 'a'), podIp, 100 * 1024 * 1024, 7004)).to.equal(rcoPodIp);
    const e = await statusJson(t, 'h1');
    expect(e.cluster.vxlan.rcoSent - s.cluster.vxlan.rcoSent, 'datagrams podnet sent k3 with RCO').to.be.greaterThan(0);
    expect(e.cluster.vxlan.rcoReceived - s.cluster.vxlan.rcoReceived, 'datagrams k3 (remcsumtx) sent podnet with RCO').to.be.greaterThan(0);
    expect(e.cluster.vxlan.drops).to.deep.equal({});
    // The super-frames' datagrams (single segments go with complete checksums and no RCO): the I and
    // C flags, the checksum start (inner Ethernet 14 + IPv4 20 = 34, said as 17; TCP's field) in the
    // byte after the VNI, and the inner TCP checksum field holding the pseudo-header sum, for k3 to
    // finish. (Over the veth a GSO run is one skb, so the capture shows a run's first datagram.)
    const file = readFileSync(pcap);
    let at = 24; // pcap file header
    let seen = 0;
    while (at + 16 <= file.length) {
      const caplen = file.readUInt32LE(at + 8);
      const f = file.subarray(at + 16, at + 16 + caplen);
      at += 16 + caplen;
      const vx = 14 + 20 + 8;
      expect(f[vx]! & 0x08, 'I flag').to.equal(0x08);
      if ((f[vx + 1]! & 0x20) === 0) continue;
      expect(f[vx + 7], 'RCO start/2, TCP').to.equal(17);
      const ip = vx + 8 + 14;
      const tcpLen = f.readUInt16BE(ip + 2) - 20;
      let ps = f.readUInt16BE(ip + 12) + f.readUInt16BE(ip + 14) + f.readUInt16BE(ip + 16) + f.readUInt16BE(ip + 18) + 6 + tcpLen;
      while (ps > 0xffff) ps = (ps & 0xffff) + (ps >>> 16);
      expect(f.readUInt16BE(ip + 20 + 16), 'inner TCP checksum: the pseudo-header sum').to.equal(ps);
      seen++;
    }
    expect(seen, 'datagrams with RCO among 200 large ones').to.be.greaterThan(10);
  });

  it('a capture on the underlay shows well-formed VXLAN on port 8472 from podnet, one source port per inner flow', async () => {
    const pcap = join(t.dir, 'underlay.pcap');
    const cap = startIn(t.underlayNs, 'tcpdump', ['-i', 'br0', '-U', '-w', pcap, 'udp', 'port', '8472'], 'listening');
    await cap.started;
    await ping(t, t.podNs('h1', 'a'), kernelPodIp, { count: 5 });
    // Eight UDP flows (destination ports 9001-9008, two datagrams from one socket each) besides the ping: RFC 7348 asks for a source port
    // hashed from the inner flow, so that the underlay's ECMP spreads them, as Linux's vxlan does.
    const flows = await t.exec(t.podNs('h1', 'a'), 'bash', ['-c', `for p in $(seq 9001 9008); do exec 3>/dev/udp/${kernelPodIp}/$p; echo x >&3; echo y >&3; exec 3>&-; done`]);
    expect(flows.code, flows.stderr).to.equal(0);
    await ping(t, t.podNs('h1', 'a'), kernelPodIp, { count: 2 }); // and the capture has caught up
    cap.child.kill('SIGINT'); // tcpdump writes out what it has and exits
    await within(cap.exited, 10_000, -1);
    const fields = async (occurrence: 'f' | 'l', names: string[]) => {
      const r = await t.exec(t.underlayNs, 'tshark', [
        '-r', pcap, '-d', 'udp.port==8472,vxlan', '-T', 'fields', '-E', 'separator=,', '-E', `occurrence=${occurrence}`,
        ...names.flatMap((n) => ['-e', n]),
      ]);
      expect(r.code, r.stderr).to.equal(0);
      return r.stdout.trim().split('\n').map((l) => l.split(','));
    };
    // First occurrence of each field: the outer header (the underlay sender); last: the inner packet.
    const outer = await fields('f', ['ip.src', 'udp.srcport', 'udp.dstport', 'vxlan.flags', 'vxlan.vni']);
    const inner = await fields('l', ['ip.proto', 'udp.dstport']);
    expect(inner.length).to.equal(outer.length);
    const h1 = t.host('h1').underlayIp;
    const fromKernel = outer.filter((c) => c[0] === t.host('k2').underlayIp);
    expect(fromKernel.length).to.be.greaterThan(0);
    const portsByFlow = new Map<string, Set<number>>();
    outer.forEach((c, i) => {
      if (c[0] !== h1) return;
      expect(c[2]).to.equal('8472');
      expect(Number(c[3]) & 0x0800).to.equal(0x0800); // I flag
      if (c[0] === h1) expect(Number(c[3]) & 0x0020, 'no RCO to a peer that did not ask for it').to.equal(0);
      expect(c[4]).to.equal('1');
      const sport = Number(c[1]);
      expect(sport).to.be.within(32768, 60999); // Linux's default range for it
      const flow = inner[i]![0] === '17' ? `udp/${inner[i]![1]}` : `proto ${inner[i]![0]}`;
      if (!portsByFlow.has(flow)) portsByFlow.set(flow, new Set());
      portsByFlow.get(flow)!.add(sport);
    });
    // Every packet of a flow left from one port; the flows did not all share one.
    const seen = outer.map((c, i) => `${c.join(',')} | ${inner[i]!.join(',')}`).join('\n');
    expect([...portsByFlow.keys()].sort(), `flows from podnet in the capture:\n${seen}`).to.include.members(['proto 1', 'udp/9001', 'udp/9008']);
    for (const [flow, ports] of portsByFlow) expect(ports.size, `${flow}: ${[...ports].join(' ')}`).to.equal(1);
    const distinct = new Set([...portsByFlow.values()].map((p) => [...p][0]));
    expect(distinct.size, 'distinct source ports over the nine flows').to.be.greaterThan(4);
  });

  it('the podnet side counts the decapsulated kernel traffic and drops nothing', async () => {
    const st = await statusJson(t, 'h1');
    expect(st.cluster.vxlan.decapsulated).to.be.greaterThan(0);
    expect(st.cluster.vxlan.sourcePorts).to.equal('per-flow');
    expect(st.cluster.vxlan.drops).to.deep.equal({});
    expect(st.cluster.vxlan.peers.map((p: any) => p.underlayIp)).to.include(t.host('k2').underlayIp);
  });
});
