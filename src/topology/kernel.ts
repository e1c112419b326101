import { VXLAN_OVERHEAD } from '../packet/index.js';
import { ip, ipBatch, nsExec, run } from '../netns/run.js';
import { parseSubnet } from '../store/subnet.js';
import { ipv4ToString } from '../packet/addr.js';
import type { Host, Topology } from './topology.js';

/**
 * A node forwarded by the Linux kernel the way flannel's VXLAN backend sets one up: a `flannel.1` VXLAN
 * device (nolearning, VNI, UDP port), the subnet's .0/32 on it, a `cni0` bridge with the gateway .1, and
 * per remote node one route, one permanent neighbour entry and one FDB entry. Used by the interop tests
 * and as the kernel baseline of the end-to-end benchmark.
 */
export interface KernelNodeOptions {
  subnet: string;
  vtepMac: string;
  vni?: number;
  port?: number;
  underlayMtu?: number;
  /**
   * VXLAN remote checksum offload both ways (`remcsumtx remcsumrx`, with the outer UDP checksum RCO
   * relies on, `udpcsum`): register the node with `rco: true`. Off by default, as flannel sets it up.
   */
  remcsum?: boolean;
}

export interface KernelPeer {
  subnet: string;
  underlayIp: string;
  vtepMac: string;
}

export async function setupKernelNode(host: Host, opts: KernelNodeOptions): Promise<void> {
  const s = parseSubnet(opts.subnet);
  const mtu = (opts.underlayMtu ?? 1500) - VXLAN_OVERHEAD;
  await ipBatch(
    [
      `link add flannel.1 type vxlan id ${opts.vni ?? 1} dstport ${opts.port ?? 8472} nolearning local ${host.underlayIp} dev eth0${opts.remcsum ? ' udpcsum remcsumtx remcsumrx' : ''}`,
      `link set flannel.1 address ${opts.vtepMac} mtu ${mtu} up`,
      `addr add ${ipv4ToString(s.hostIp)}/32 dev flannel.1`,
      'link add cni0 type bridge',
      `link set cni0 mtu ${mtu} up`,
      `addr add ${ipv4ToString(s.gatewayIp)}/${s.prefix} dev cni0`,
    ],
    host.netns,
  );
  await nsExec(host.netns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
}

export async function addKernelPeer(host: Host, peer: KernelPeer): Promise<void> {
  const p = parseSubnet(peer.subnet);
  const via = ipv4ToString(p.hostIp);
  await ipBatch(
    [`route replace ${p.cidr} via ${via} dev flannel.1 onlink`, `neigh replace ${via} lladdr ${peer.vtepMac} dev flannel.1 nud permanent`],
    host.netns,
  );
  await run('ip', ['netns', 'exec', host.netns, 'bridge', 'fdb', 'append', peer.vtepMac, 'dev', 'flannel.1', 'dst', peer.underlayIp]);
}

let vethCounter = 0;

/** A pod on a kernel node: a namespace with a veth whose host end is on cni0 (as the bridge CNI plugin does). */
export async function addKernelPod(t: Topology, host: Host, name: string, podIp: string, subnet: string): Promise<string> {
  const s = parseSubnet(subnet);
  const netns = t.podNs(host.name, name);
  const hostSide = `kv${process.pid % 1000}x${++vethCounter}`;
  await run('ip', ['netns', 'add', netns]);
  await nsExec(netns, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  await ip(['link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns], host.netns);
  const mtu = (await ip(['-j', 'link', 'show', 'cni0'], host.netns)).stdout.match(/"mtu":(\d+)/)?.[1] ?? '1450';
  await ipBatch([`link set ${hostSide} master cni0 mtu ${mtu} up`], host.netns);
  await ipBatch(
    ['link set lo up', `link set eth0 mtu ${mtu} up`, `addr add ${podIp}/${s.prefix} dev eth0`, `route add default via ${ipv4ToString(s.gatewayIp)} dev eth0`],
    netns,
  );
  return netns;
}
