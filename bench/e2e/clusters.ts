/**
 * The two clusters the benchmark compares, built side by side in ONE Topology (one underlay bridge, one
 * namespace prefix, one teardown):
 *
 *   podnet: hosts h1 (198.18.0.11) and h2 (198.18.0.12), each running a podnet daemon (pod CIDR
 *           10.244.0.0/16); pods a1, a2 on h1 and b1 on h2, made with `podnet pod add`.
 *   kernel: hosts k1 (198.18.0.21) and k2 (198.18.0.22) configured as flannel's VXLAN backend does
 *           (kernel.ts: flannel.1 + cni0), subnets 10.245.1.0/24 and 10.245.2.0/24 of 10.245.0.0/16;
 *           pods a1, a2 on k1's cni0 and b1 on k2, wired to each other with addKernelPeer only.
 *
 * Nothing about the kernel nodes is registered in podnet's cluster store, and the kernel nodes have
 * routes only to each other, so the two clusters never exchange a packet even though they share the
 * bridge (both use VNI 1 / UDP 8472, each only towards its own peers' underlay addresses).
 */
import { addKernelPeer, addKernelPod, setupKernelNode } from '../../src/topology/kernel.js';
import type { Host, Topology } from '../../src/topology/topology.js';
import { resolveDaemonPid, runIn } from './proc.js';
import type { Endpoint } from './tools.js';

export type SideKind = 'podnet' | 'kernel';

export interface Side {
  kind: SideKind;
  /** Host names: [node of a1 and a2, node of b1]. */
  hosts: [string, string];
  /** a1: the client of every scenario. */
  client: Endpoint;
  /** a2: same host as a1. */
  same: Endpoint;
  /** b1: the other host. */
  cross: Endpoint;
  /** podnet: the daemons' real pids (h1, h2); kernel: none. */
  daemonPids: number[];
}

export const PODNET = {
  podCidr: '10.244.0.0/16',
  hosts: { h1: '198.18.0.11', h2: '198.18.0.12' },
} as const;

export const KERNEL = {
  podCidr: '10.245.0.0/16',
  nodes: {
    k1: { underlayIp: '198.18.0.21', subnet: '10.245.1.0/24', vtepMac: '0a:5a:c6:12:00:15' },
    k2: { underlayIp: '198.18.0.22', subnet: '10.245.2.0/24', vtepMac: '0a:5a:c6:12:00:16' },
  },
  pods: { a1: '10.245.1.10', a2: '10.245.1.11', b1: '10.245.2.10' },
} as const;

/** Labels of the podnet pods, so ClusterIP services can select them once podnet has services. */
export const LABELS = {
  /** Backends of the throughput service: b1 only (iperf3's control and data connections must meet one server). */
  tput: 'e2e-tput=yes',
  /** Backends of the short-connection service: a2 and b1. */
  crr: 'e2e-crr=yes',
};

function inCidr(ip: string, cidr: string): boolean {
  const [net, len] = cidr.split('/') as [string, string];
  const n = (a: string) => a.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
  const size = 2 ** (32 - Number(len));
  return Math.floor(n(ip) / size) === Math.floor(n(net) / size);
}

/**
 * `extra`: merged into each daemon's config (the bench's --podnet-config); `nodeArgs`: node's own
 * (--node-args); `device`: every pod's eth0 (--pod-device).
 */
export async function buildPodnet(t: Topology, extra: Record<string, unknown> = {}, nodeArgs: string[] = [], device: 'tap' | 'tun' = 'tap'): Promise<Side> {
  for (const [name, underlayIp] of Object.entries(PODNET.hosts)) await t.addHost({ name, underlayIp });
  // Warnings only: the daemons' logging is not what is measured.
  for (const name of Object.keys(PODNET.hosts)) await t.startDaemon(name, { podCidr: PODNET.podCidr, logLevel: 'warn', ...extra }, { nodeArgs });
  const add = async (node: string, name: string, labels: string[]): Promise<Endpoint> => {
    const r = await t.podnet(node, ['pod', 'add', name, '--device', device, ...labels.flatMap((l) => ['--label', l])]);
    if (r.code !== 0) throw new Error(`podnet pod add ${name} on ${node}: ${r.stderr.trim()}`);
    const ip = r.stdout.trim();
    if (!inCidr(ip, PODNET.podCidr)) throw new Error(`podnet pod ${name} got ${JSON.stringify(ip)}, not in ${PODNET.podCidr}`);
    return { name, ns: t.podNs(node, name), ip };
  };
  const client = await add('h1', 'a1', []);
  const same = await add('h1', 'a2', [LABELS.crr]);
  const cross = await add('h2', 'b1', [LABELS.tput, LABELS.crr]);
  const daemonPids = ['h1', 'h2'].map((h) => {
    const pid = t.host(h).daemon?.pid;
    if (!pid) throw new Error(`no daemon process for ${h}`);
    return resolveDaemonPid(pid);
  });
  return { kind: 'podnet', hosts: ['h1', 'h2'], client, same, cross, daemonPids };
}

export async function buildKernel(t: Topology): Promise<Side> {
  const hosts: Record<string, Host> = {};
  for (const [name, n] of Object.entries(KERNEL.nodes)) {
    hosts[name] = await t.addHost({ name, underlayIp: n.underlayIp });
    await setupKernelNode(hosts[name]!, { subnet: n.subnet, vtepMac: n.vtepMac });
  }
  const { k1, k2 } = KERNEL.nodes;
  await addKernelPeer(hosts.k1!, { subnet: k2.subnet, underlayIp: k2.underlayIp, vtepMac: k2.vtepMac });
  await addKernelPeer(hosts.k2!, { subnet: k1.subnet, underlayIp: k1.underlayIp, vtepMac: k1.vtepMac });
  const add = async (node: 'k1' | 'k2', name: keyof typeof KERNEL.pods): Promise<Endpoint> => {
    const ip = KERNEL.pods[name];
    const ns = await addKernelPod(t, hosts[node]!, name, ip, KERNEL.nodes[node].subnet);
    return { name, ns, ip };
  };
  const client = await add('k1', 'a1');
  const same = await add('k1', 'a2');
  const cross = await add('k2', 'b1');
  return { kind: 'kernel', hosts: ['k1', 'k2'], client, same, cross, daemonPids: [] };
}

/** Waits until a1 gets ping replies from a2 and b1 (podnet nodes learn each other from the store watch). */
export async function waitReachable(side: Pick<Side, 'client' | 'same' | 'cross'> & { kind: string }, timeoutMs = 30_000): Promise<void> {
  for (const dst of [side.same, side.cross]) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await runIn(side.client.ns, 'ping', ['-n', '-c', '1', '-W', '1', dst.ip], 5_000);
      if (r.code === 0) break;
      if (Date.now() > deadline) throw new Error(`${side.kind}: ${side.client.name} (${side.client.ip}) cannot reach ${dst.name} (${dst.ip}): ${r.stdout.trim().slice(-200)}`);
    }
  }
}

/** The two clusters must not be able to talk: a podnet pod pinging a kernel pod must fail. */
export async function checkIsolated(podnet: Side, kernel: Side): Promise<void> {
  const r = await runIn(podnet.client.ns, 'ping', ['-n', '-c', '1', '-W', '1', kernel.cross.ip], 5_000);
  if (r.code === 0) throw new Error(`podnet pod ${podnet.client.ip} reaches kernel pod ${kernel.cross.ip}: the clusters are not isolated`);
}
