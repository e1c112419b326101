import { expect } from 'chai';
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
 * is registered in the cluster store by the test, as flanneld would register its lease.
 */
describe('interop: podnet userspace VXLAN <-> Linux kernel VXLAN (flannel-style)', function () {
  this.timeout(300_000);
  const t = new Topology();
  let store: ClusterStore;
  let podIp = '';
  let kernelPodIp = '';
  let kernelPodNs = '';
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
