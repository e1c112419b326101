import { expect } from 'chai';
import { join } from 'node:path';
import { Topology } from '../../src/topology/topology.js';
import { addKernelPeer, addKernelPod, setupKernelNode } from '../../src/topology/kernel.js';
import { openStore } from '../../src/store/index.js';
import { ClusterRegistry } from '../../src/store/registry.js';
import type { ClusterStore } from '../../src/store/types.js';
import { parseSubnet, numberToIp } from '../../src/daemon/ipam.js';
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
    kernelPodIp = numberToIp(parseSubnet(subnet).network + 10);
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

  it('exchange TCP both ways intact, each side seeing the other\'s pod IP', async () => {
    expect(await tcpTransfer(t, t.podNs('h1', 'a'), kernelPodNs, kernelPodIp, 20 * 1024 * 1024, 7001)).to.equal(podIp);
    expect(await tcpTransfer(t, kernelPodNs, t.podNs('h1', 'a'), podIp, 20 * 1024 * 1024, 7002)).to.equal(kernelPodIp);
  });

  it('a capture on the underlay shows well-formed VXLAN on port 8472 from podnet', async () => {
    const pcap = join(t.dir, 'underlay.pcap');
    const cap = startIn(t.underlayNs, 'tcpdump', ['-i', 'br0', '-U', '-c', '20', '-w', pcap, 'udp', 'port', '8472'], 'listening');
    await cap.started;
    await ping(t, t.podNs('h1', 'a'), kernelPodIp, { count: 10 });
    await within(cap.exited, 10_000, -1);
    cap.stop();
    const r = await t.exec(t.underlayNs, 'tshark', [
      '-r', pcap, '-d', 'udp.port==8472,vxlan', '-T', 'fields', '-E', 'separator=,', '-E', 'occurrence=f',
      '-e', 'ip.src', '-e', 'udp.dstport', '-e', 'vxlan.flags', '-e', 'vxlan.vni',
    ]);
    expect(r.code, r.stderr).to.equal(0);
    const rows = r.stdout.trim().split('\n').map((l) => l.split(','));
    const h1 = t.host('h1').underlayIp;
    // First occurrence of each field: the outer header (the underlay sender).
    const fromPodnet = rows.filter((c) => c[0] === h1);
    const fromKernel = rows.filter((c) => c[0] === t.host('k2').underlayIp);
    expect(fromPodnet.length).to.be.greaterThan(0);
    expect(fromKernel.length).to.be.greaterThan(0);
    for (const c of fromPodnet) {
      expect(c[1]).to.equal('8472');
      expect(Number(c[2]) & 0x0800).to.equal(0x0800); // I flag
      expect(c[3]).to.equal('1');
    }
  });

  it('the podnet side counts the decapsulated kernel traffic and drops nothing', async () => {
    const st = await statusJson(t, 'h1');
    expect(st.cluster.vxlan.decapsulated).to.be.greaterThan(0);
    expect(st.cluster.vxlan.drops).to.deep.equal({});
    expect(st.cluster.vxlan.peers.map((p: any) => p.underlayIp)).to.include(t.host('k2').underlayIp);
  });
});
