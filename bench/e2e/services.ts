/**
 * ClusterIP services for the two ClusterIP scenarios.
 *
 * kernel: the iptables rules kube-proxy (iptables mode) writes, loaded with iptables-restore into k1 and
 * k2: PREROUTING/OUTPUT -> KUBE-SERVICES -> KUBE-SVC-<hash> -> KUBE-SEP-<hash> (DNAT), endpoints picked
 * with `-m statistic --mode random --probability 1/n` (the last one unconditionally), KUBE-MARK-MASQ for
 * traffic from outside the cluster CIDR and for hairpin, KUBE-POSTROUTING masquerading marked packets.
 * As kubelet requires, bridged traffic on cni0 goes through iptables (net.bridge.bridge-nf-call-iptables,
 * per namespace, 1 by default), so a same-node endpoint works. Loading the nat table turns conntrack on
 * in k1/k2 for everything, which is why the ClusterIP scenarios run after the pod-to-pod ones.
 *
 * podnet: `podnet service add NAME --port 80:TARGET/tcp --selector KEY=VALUE`, which prints the cluster
 * IP (services select the pods by the labels clusters.ts gives them). A build whose CLI has no `service`
 * command makes podnetServices() return undefined: the podnet column of the ClusterIP rows then reads
 * "not available yet" and the run does not fail for it.
 */
import { createHash } from 'node:crypto';
import { run } from '../../src/netns/run.js';
import type { Topology } from '../../src/topology/topology.js';
import { KERNEL, LABELS, type Side } from './clusters.js';
import { CRR_PORT, IPERF_PORT } from './tools.js';

export interface ServiceAddr {
  ip: string;
  port: number;
}

export interface ClusterIps {
  /** Service in front of b1's iperf3 server (one endpoint). */
  tput: ServiceAddr;
  /** Service in front of the short-connection servers on a2 and b1 (two endpoints). */
  crr: ServiceAddr;
}

/** Service port of both services (the target ports are iperf3's 5201 and the crr server's 8080). */
export const SERVICE_PORT = 80;

/** Kernel cluster ClusterIPs, outside podnet's service CIDR (10.96.0.0/12) on purpose. */
export const KERNEL_SERVICES = { tput: '10.112.0.10', crr: '10.112.0.11' } as const;

interface KubeService {
  namespace: string;
  name: string;
  clusterIp: string;
  port: number;
  endpoints: Array<{ ip: string; port: number }>;
}

/** kube-proxy's chain names: prefix + first 16 base32 characters of SHA-256(service port name + protocol [+ endpoint]). */
function chainName(prefix: string, ...parts: string[]): string {
  const sum = createHash('sha256').update(parts.join('')).digest();
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of sum) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return prefix + out.slice(0, 16);
}

/** The nat table kube-proxy would program for `services` in a cluster whose pod CIDR is `clusterCidr`. */
export function kubeProxyRules(services: readonly KubeService[], clusterCidr: string): string {
  const chains = ['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ'];
  const rules: string[] = [
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    '-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000',
    '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN',
    '-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0',
    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
  ];
  for (const s of services) {
    const id = `${s.namespace}/${s.name}`;
    const svc = chainName('KUBE-SVC-', id, 'tcp');
    chains.push(svc);
    rules.push(`-A KUBE-SERVICES -d ${s.clusterIp}/32 -p tcp -m comment --comment "${id} cluster IP" -m tcp --dport ${s.port} -j ${svc}`);
    rules.push(`-A ${svc} ! -s ${clusterCidr} -d ${s.clusterIp}/32 -p tcp -m comment --comment "${id} cluster IP" -m tcp --dport ${s.port} -j KUBE-MARK-MASQ`);
    s.endpoints.forEach((ep, i) => {
      const sep = chainName('KUBE-SEP-', id, 'tcp', `${ep.ip}:${ep.port}`);
      chains.push(sep);
      const left = s.endpoints.length - i;
      const pick = left > 1 ? ` -m statistic --mode random --probability ${(1 / left).toFixed(11)}` : '';
      rules.push(`-A ${svc} -m comment --comment "${id} -> ${ep.ip}:${ep.port}"${pick} -j ${sep}`);
      rules.push(`-A ${sep} -s ${ep.ip}/32 -m comment --comment "${id}" -j KUBE-MARK-MASQ`);
      rules.push(`-A ${sep} -p tcp -m comment --comment "${id}" -m tcp -j DNAT --to-destination ${ep.ip}:${ep.port}`);
    });
  }
  // Last, as kube-proxy does: node ports for local destinations (none here, the chain stays empty).
  rules.push('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS');
  return ['*nat', ...chains.map((c) => `:${c} - [0:0]`), ...rules, 'COMMIT', ''].join('\n');
}

/** Programs both kernel services on k1 and k2 (kube-proxy runs on every node) and returns their addresses. */
export async function kernelServices(t: Topology, side: Side): Promise<ClusterIps> {
  const services: KubeService[] = [
    { namespace: 'default', name: 'e2e-tput', clusterIp: KERNEL_SERVICES.tput, port: SERVICE_PORT, endpoints: [{ ip: side.cross.ip, port: IPERF_PORT }] },
    {
      namespace: 'default',
      name: 'e2e-crr',
      clusterIp: KERNEL_SERVICES.crr,
      port: SERVICE_PORT,
      endpoints: [side.same, side.cross].map((p) => ({ ip: p.ip, port: CRR_PORT })),
    },
  ];
  const rules = kubeProxyRules(services, KERNEL.podCidr);
  for (const h of side.hosts) {
    const ns = t.host(h).netns;
    await run('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=1']);
    await run('ip', ['netns', 'exec', ns, 'iptables-restore', '--noflush'], { input: rules });
  }
  return { tput: { ip: KERNEL_SERVICES.tput, port: SERVICE_PORT }, crr: { ip: KERNEL_SERVICES.crr, port: SERVICE_PORT } };
}

/** Whether this build of the CLI has `podnet service` (commander exits non-zero on an unknown command). */
export async function podnetHasServices(t: Topology, node: string): Promise<boolean> {
  const r = await t.podnet(node, ['service', '--help']);
  return r.code === 0 && /\badd\b/.test(r.stdout);
}

const IPV4 = /\b(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})\b/;

/**
 * Creates the two services through podnet's CLI on h1 (they go to the cluster store, every node follows)
 * and returns their ClusterIPs, or undefined when the CLI has no `service` command. The ClusterIP is what
 * `service add` prints, else the service's `clusterIp` in `podnet service list --json`.
 */
export async function podnetServices(t: Topology, side: Side): Promise<ClusterIps | undefined> {
  const node = side.hosts[0];
  if (!(await podnetHasServices(t, node))) return undefined;
  const add = async (name: string, target: number, selector: string): Promise<ServiceAddr> => {
    const r = await t.podnet(node, ['service', 'add', name, '--port', `${SERVICE_PORT}:${target}/tcp`, '--selector', selector]);
    if (r.code !== 0) throw new Error(`podnet service add ${name}: ${r.stderr.trim() || r.stdout.trim()}`);
    let ip = IPV4.exec(r.stdout)?.[1];
    if (!ip) {
      const list = await t.podnet(node, ['service', 'list', '--json']);
      const found = list.code === 0 ? (JSON.parse(list.stdout) as any[]).find((s) => s.name === name) : undefined;
      ip = found?.clusterIp ?? found?.clusterIP ?? found?.ip;
    }
    if (!ip) throw new Error(`podnet service add ${name}: cannot tell its ClusterIP from ${JSON.stringify(r.stdout)}`);
    return { ip, port: SERVICE_PORT };
  };
  return { tput: await add('e2e-tput', IPERF_PORT, LABELS.tput), crr: await add('e2e-crr', CRR_PORT, LABELS.crr) };
}
