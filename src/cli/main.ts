#!/usr/bin/env node
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { DEMO_PREFIX, demoDown, demoRestart, demoUp } from '../demo/demo.js';
import { demoExec, demoVmDown, demoVmUp } from '../demo/vm.js';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { apiCall } from '../api/client.js';
import { loadConfigFile, parseConfig } from '../daemon/config.js';
import { runDaemon } from '../daemon/daemon.js';
import { parseLabelArgs } from '../daemon/pods.js';
import type { PodInfo } from '../daemon/node.js';
import { PodnetError } from '../util/errors.js';
import { formatTable } from '../util/table.js';
import { parsePortArg } from '../services/record.js';
import { readFileSync } from 'node:fs';
import { parseBackendArg, parseRuleArg, type IngressView, type PathType } from '../ingress/record.js';
import { formatCtEntry, type CtEntryInfo } from '../nat/conntrack.js';
import { installCni } from '../cni/install.js';
import { addPolicyCommands } from './policy.js';
import { fileURLToPath } from 'node:url';
import { followFlowsCli, runCapture } from '../observe/client.js';
import { formatFlow, type FlowRecord } from '../observe/flows.js';
import { DEFAULT_UI_ADDRESS, parseUiAddress, UiServer } from '../ui/server.js';
import { processAlive } from '../util/process.js';

const DEFAULT_RUN_DIR = '/run/podnet';

interface Globals {
  node?: string;
  runDir: string;
}

/** The daemon socket: --node picks one; without it, the only daemon running, else this host's name. */
function socketFor(g: Globals): string {
  if (g.node) return join(g.runDir, `${g.node}.sock`);
  let socks: string[] = [];
  try {
    socks = readdirSync(g.runDir).filter((f) => f.endsWith('.sock'));
  } catch {
    /* no daemon has run */
  }
  if (socks.length === 1) return join(g.runDir, socks[0]!);
  if (socks.length > 1) {
    throw new PodnetError('EINVALID', `several podnet daemons are running (${socks.map((s) => s.slice(0, -5)).join(', ')}): choose one with --node NAME`);
  }
  return join(g.runDir, `${hostname().toLowerCase()}.sock`);
}

function positiveInt(flag: string, v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new InvalidArgumentError(`${flag} must be a positive integer, got '${v}'`);
  return Number(v);
}

function collect(value: string, prev: string[]): string[] {
  return [...prev, value];
}

function print(json: boolean, data: unknown, table: () => string): void {
  process.stdout.write(json ? JSON.stringify(data, null, 2) + '\n' : table());
}

export function buildCli(): Command {
  const program = new Command('podnet')
    .description('podnet: a userspace pod network (TAP/TUN pods, L2 switch, L3 router, VXLAN) run by one daemon per node')
    .option('--node <name>', 'the node (daemon) to talk to when several run on this machine')
    .option('--run-dir <dir>', 'where daemons put their API sockets', DEFAULT_RUN_DIR)
    .showHelpAfterError()
    .exitOverride();
  const globals = (): Globals => program.opts<Globals>();

  program
    .command('daemon')
    .description('run the podnet daemon for this node (as root) until SIGTERM/SIGINT')
    .option('--config <file>', 'JSON config file')
    .option('--state-dir <dir>', 'where IPAM and pod state are kept (default /var/lib/podnet)')
    .option('--log-level <level>', 'trace|debug|info|warn|error')
    .option('--cleanup', 'on SIGTERM/SIGINT remove every pod namespace, device, route and rule (default: leave the datapath running for the next daemon)')
    .action(async (opts: { config?: string; stateDir?: string; logLevel?: string; cleanup?: boolean }) => {
      const file = opts.config ? (loadConfigFile(opts.config) as Record<string, unknown>) : {};
      if (typeof file !== 'object' || file === null || Array.isArray(file)) throw new PodnetError('EINVALID', `config file ${opts.config} must hold a JSON object`);
      const g = globals();
      const merged: Record<string, unknown> = { ...file };
      if (g.node) merged.node = g.node;
      if (g.runDir !== DEFAULT_RUN_DIR || merged.runDir === undefined) merged.runDir = g.runDir;
      if (opts.stateDir) merged.stateDir = opts.stateDir;
      if (opts.logLevel) merged.logLevel = opts.logLevel;
      const cfg = parseConfig(merged, opts.config ? `config ${opts.config}` : 'config');
      await runDaemon(cfg, undefined, { cleanup: !!opts.cleanup });
    });

  const nodeCmd = program.command('node').description('the node itself');
  nodeCmd
    .command('reset')
    .description("stop the node's daemon and remove everything it made: pod namespaces, devices, routes, rules, its conntrack table and its cluster registration")
    .action(async () => {
      const r = await apiCall<{ node: string; pid: number; pods: number }>(socketFor(globals()), 'POST', '/v1/node/reset').catch((err: unknown) => {
        // A stopped or killed daemon left its pods in place on purpose; the next daemon takes them over.
        if (err instanceof PodnetError && err.code === 'EPRECONDITION') {
          throw new PodnetError('EPRECONDITION', `${err.message}; a stopped daemon leaves its pods in place: start it (podnet daemon) and run node reset again`);
        }
        throw err;
      });
      // The daemon answers, then tears down: wait for it to be gone.
      for (let i = 0; i < 600 && processAlive(r.pid); i++) await new Promise((res) => setTimeout(res, 100));
      if (processAlive(r.pid)) throw new PodnetError('EINTERNAL', `daemon of node ${r.node} (pid ${r.pid}) is still tearing down after 60 s`);
      process.stdout.write(`node ${r.node} reset: daemon stopped, ${r.pods} pods removed\n`);
    });

  const pod = program.command('pod').description('create, delete and list pods on a node');
  pod
    .command('add <name>')
    .description("create a pod: a network namespace whose eth0 is a TAP (or TUN) device held by the daemon; prints the pod's IP")
    .option('--label <k=v>', 'a label (repeatable)', collect, [])
    .addOption(new Option('--device <kind>', 'eth0 device kind').choices(['tap', 'tun']).default('tap'))
    .option('-n, --namespace <ns>', 'its Kubernetes namespace (NetworkPolicy)', 'default')
    .option('--named-port <name=port[/proto]>', 'a named container port, for NetworkPolicy named ports (repeatable)', collect, [])
    .option('--json', 'print the pod as JSON')
    .action(async (name: string, opts: { label: string[]; device: string; namespace: string; namedPort: string[]; json?: boolean }) => {
      const labels = parseLabelArgs(opts.label);
      const info = await apiCall<PodInfo>(socketFor(globals()), 'POST', '/v1/pods', { name, labels, device: opts.device, namespace: opts.namespace, namedPorts: opts.namedPort });
      print(!!opts.json, info, () => `${info.ip}\n`);
    });
  pod
    .command('del <name>')
    .alias('delete')
    .description('delete a pod: its processes, namespace and device; frees its IP')
    .action(async (name: string) => {
      await apiCall(socketFor(globals()), 'DELETE', `/v1/pods/${encodeURIComponent(name)}`);
    });
  pod
    .command('list')
    .alias('ls')
    .description('list the pods of a node (--all: of every node in the cluster)')
    .option('--json', 'print JSON')
    .option('--all', 'pods of every node, from the cluster store')
    .action(async (opts: { json?: boolean; all?: boolean }) => {
      const pods = await apiCall<Array<PodInfo & { policyDenials?: { ingress: number; egress: number } }>>(socketFor(globals()), 'GET', opts.all ? '/v1/cluster/pods' : '/v1/pods');
      print(!!opts.json, pods, () =>
        formatTable(
          ['NAMESPACE', 'NAME', 'NODE', 'IP', 'MAC', 'DEVICE', 'LABELS', 'DENIED IN/OUT'],
          pods.map((p) => [
            p.namespace ?? 'default',
            p.name,
            p.node,
            p.ip,
            p.mac,
            p.device ?? '',
            Object.entries(p.labels).map(([k, v]) => `${k}=${v}`).join(','),
            p.policyDenials ? `${p.policyDenials.ingress}/${p.policyDenials.egress}` : '-',
          ]),
        ),
      );
    });

  program
    .command('exec <pod> <command...>')
    .description('run a command inside a pod\'s network namespace (podnet exec web -- curl ...)')
    .action(async (podName: string, command: string[]) => {
      const info = await apiCall<PodInfo>(socketFor(globals()), 'GET', `/v1/pods/${encodeURIComponent(podName)}`);
      // A CNI attachment's namespace is a path the runtime gave (only its network namespace is entered).
      const child = info.attachment
        ? spawn('nsenter', [`--net=${info.netns}`, '--', ...command], { stdio: 'inherit' })
        : spawn('ip', ['netns', 'exec', info.netns, ...command], { stdio: 'inherit' });
      const code = await new Promise<number>((resolve) => {
        child.on('exit', (c, sig) => resolve(c ?? (sig ? 128 + 9 : 1)));
        child.on('error', () => resolve(127));
      });
      process.exitCode = code;
    });

  program
    .command('status')
    .description('show the node, its subnet, pods and counters')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const s = await apiCall<StatusView>(socketFor(globals()), 'GET', '/v1/status');
      print(!!opts.json, s, () => renderStatus(s));
    });

  program
    .command('nodes')
    .description('list the nodes of the cluster')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const nodes = await apiCall<Array<{ name: string; underlayIp: string; subnet: string; vtepMac: string }>>(socketFor(globals()), 'GET', '/v1/nodes');
      print(!!opts.json, nodes, () => formatTable(['NODE', 'UNDERLAY', 'SUBNET', 'VTEP MAC'], nodes.map((n) => [n.name, n.underlayIp, n.subnet, n.vtepMac])));
    });

  const service = program.command('service').alias('svc').description('services: a stable virtual IP balanced over pods (ClusterIP, NodePort, LoadBalancer)');
  service
    .command('add <name>')
    .description('create a service; prints its cluster IP')
    .option('--port <port[:target][/tcp|udp]>', 'a service port (repeatable)', collect, [])
    .option('--selector <k=v>', 'pods with this label are endpoints (repeatable)', collect, [])
    .addOption(new Option('--type <type>', 'service type').choices(['ClusterIP', 'NodePort', 'LoadBalancer']).default('ClusterIP'))
    .option('--node-port <n>', 'node port for every service port (30000-32767; default: allocated)', parseIntArg('--node-port', 30000, 32767))
    .option('--external-ip <ip>', 'an external IP that also reaches the service (repeatable)', collect, [])
    .addOption(new Option('--session-affinity <mode>', 'keep a client on one endpoint').choices(['None', 'ClientIP']).default('None'))
    .option('--affinity-timeout <s>', 'seconds a ClientIP affinity lasts (default 10800)', parseIntArg('--affinity-timeout', 1, 86400))
    .addOption(new Option('--external-traffic-policy <p>', 'Local keeps the client IP and uses only local endpoints').choices(['Cluster', 'Local']).default('Cluster'))
    .option('--json', 'print the service as JSON')
    .action(
      async (
        name: string,
        o: { port: string[]; selector: string[]; type: string; nodePort?: number; externalIp: string[]; sessionAffinity: string; affinityTimeout?: number; externalTrafficPolicy: string; json?: boolean },
      ) => {
        if (o.port.length === 0) throw new PodnetError('EINVALID', 'invalid service: at least one --port is required');
        const ports = o.port.map((p) => ({ ...parsePortArg(p), ...(o.nodePort !== undefined ? { nodePort: o.nodePort } : {}) }));
        const rec = await apiCall<{ clusterIp: string; ports: Array<{ nodePort?: number }>; loadBalancerIp?: string }>(socketFor(globals()), 'POST', '/v1/services', {
          name,
          type: o.type,
          ports,
          selector: parseLabelArgs(o.selector),
          externalIps: o.externalIp,
          sessionAffinity: o.sessionAffinity,
          ...(o.affinityTimeout !== undefined ? { affinityTimeoutSeconds: o.affinityTimeout } : {}),
          externalTrafficPolicy: o.externalTrafficPolicy,
        });
        print(!!o.json, rec, () => `${rec.clusterIp}\n`);
      },
    );
  service
    .command('del <name>')
    .alias('delete')
    .description('delete a service and free its cluster IP, node ports and LoadBalancer IP')
    .action(async (name: string) => {
      await apiCall(socketFor(globals()), 'DELETE', `/v1/services/${encodeURIComponent(name)}`);
    });
  service
    .command('list')
    .alias('ls')
    .description('list services with their endpoints')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const list = await apiCall<Array<{ name: string; type: string; clusterIp: string; loadBalancerIp?: string; externalIps: string[]; ports: Array<{ port: number; targetPort: number; protocol: string; nodePort?: number }>; endpoints: string[] }>>(
        socketFor(globals()),
        'GET',
        '/v1/services',
      );
      print(!!o.json, list, () =>
        formatTable(
          ['NAME', 'TYPE', 'CLUSTER-IP', 'EXTERNAL-IP', 'PORTS', 'ENDPOINTS'],
          list.map((s) => [
            s.name,
            s.type,
            s.clusterIp,
            [...(s.loadBalancerIp ? [s.loadBalancerIp] : []), ...s.externalIps].join(',') || '-',
            s.ports.map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol}`).join(','),
            s.endpoints.join(',') || '<none>',
          ]),
        ),
      );
    });

  const ingress = program.command('ingress').alias('ing').description('ingress: HTTP(S) from outside the cluster to services, routed by host and path');
  ingress
    .command('add <name>')
    .description('create (or with --replace, change) an ingress; every node serves it on its underlay address')
    .option('--rule <host/path=service:port>', 'a routing rule (repeatable); host may be *.domain, or empty or * for any host', collect, [])
    .addOption(new Option('--path-type <type>', 'how the rules\' paths match').choices(['Prefix', 'Exact']).default('Prefix'))
    .option('--default-backend <service:port>', 'where requests that match no rule go')
    .option('--tls-cert <file>', 'PEM certificate for HTTPS (read now and stored in the cluster)')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option('--replace', 'replace the ingress if it exists (one atomic change)')
    .option('--json', 'print the ingress as JSON')
    .action(async (name: string, o: { rule: string[]; pathType: PathType; defaultBackend?: string; tlsCert?: string; tlsKey?: string; replace?: boolean; json?: boolean }) => {
      const rules = o.rule.map((r) => parseRuleArg(r, o.pathType));
      const defaultBackend = o.defaultBackend !== undefined ? parseBackendArg(o.defaultBackend) : undefined;
      if (rules.length === 0 && !defaultBackend) throw new PodnetError('EINVALID', 'invalid ingress: at least one --rule or a --default-backend is required');
      if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) throw new PodnetError('EINVALID', 'invalid ingress: --tls-cert and --tls-key go together');
      const readPem = (flag: string, file: string) => {
        try {
          return readFileSync(file, 'utf8');
        } catch (err) {
          throw new PodnetError('EINVALID', `invalid ${flag} ${file}: ${(err as Error).message}`);
        }
      };
      const tls = o.tlsCert && o.tlsKey ? { cert: readPem('--tls-cert', o.tlsCert), key: readPem('--tls-key', o.tlsKey) } : undefined;
      const rec = await apiCall<IngressView>(socketFor(globals()), 'POST', '/v1/ingresses', {
        name,
        rules,
        ...(defaultBackend ? { defaultBackend } : {}),
        ...(tls ? { tls } : {}),
        replace: !!o.replace,
      });
      print(!!o.json, rec, () => `${rec.name}\n`);
    });
  ingress
    .command('del <name>')
    .alias('delete')
    .description('delete an ingress (every node stops serving its rules)')
    .action(async (name: string) => {
      await apiCall(socketFor(globals()), 'DELETE', `/v1/ingresses/${encodeURIComponent(name)}`);
    });
  ingress
    .command('list')
    .alias('ls')
    .description('list ingresses with their rules')
    .option('--json', 'print JSON (certificates are shown by name; private keys never leave the store)')
    .action(async (o: { json?: boolean }) => {
      const list = await apiCall<IngressView[]>(socketFor(globals()), 'GET', '/v1/ingresses');
      print(!!o.json, list, () =>
        formatTable(
          ['NAME', 'RULES', 'DEFAULT', 'TLS'],
          list.map((i) => [
            i.name,
            i.rules.map((r) => `${r.host || '*'}${r.path}${r.pathType === 'Exact' ? '(exact)' : ''}=${r.backend.service}:${r.backend.port}`).join(' ') || '-',
            i.defaultBackend ? `${i.defaultBackend.service}:${i.defaultBackend.port}` : '-',
            i.tls ? i.tls.names.join(',') || 'yes' : '-',
          ]),
        ),
      );
    });
  ingress
    .command('status')
    .description("this node's ingress listeners and counters")
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const s = await apiCall<Record<string, unknown>>(socketFor(globals()), 'GET', '/v1/ingress/status');
      print(!!o.json, s, () => JSON.stringify(s, null, 2) + '\n');
    });

  addPolicyCommands(program, () => socketFor(globals()));

  const conntrack = program.command('conntrack').description('the connection tracking table of a node');
  conntrack
    .command('list')
    .alias('ls')
    .description('tracked connections with state and timeout (like conntrack -L)')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const list = await apiCall<CtEntryInfo[]>(socketFor(globals()), 'GET', '/v1/conntrack');
      print(!!o.json, list, () => list.map((e) => formatCtEntry(e) + '\n').join(''));
    });
  conntrack
    .command('flush')
    .description('remove every tracked connection')
    .action(async () => {
      const r = await apiCall<{ removed: number }>(socketFor(globals()), 'POST', '/v1/conntrack/flush');
      process.stdout.write(`${r.removed} entries removed\n`);
    });

  program
    .command('capture <target>')
    .description('capture packets at a pod, the gateway, the host port, the VXLAN underlay side or the uplink: a pcap/pcapng file or one line per packet')
    .option('-w, --write <file>', "write a capture file (pcap; pcapng if FILE ends with .pcapng or with --format); '-' for stdout")
    .option('-c, --count <n>', 'stop after N packets', (v) => positiveInt('--count', v))
    .option('--filter <expr>', "which packets: e.g. 'tcp and dst port 80', 'host 10.244.0.2 or icmp' (see README)")
    .option('-s, --snaplen <bytes>', 'bytes kept of each packet (64-262144, default 65535)', (v) => positiveInt('--snaplen', v))
    .addOption(new Option('--format <f>', 'capture file format').choices(['pcap', 'pcapng']))
    .action(async (target: string, o: { write?: string; count?: number; filter?: string; snaplen?: number; format?: 'pcap' | 'pcapng' }) => {
      await runCapture(socketFor(globals()), target, o);
    });

  program
    .command('flows')
    .description('the flow log: one record per connection event (new, established, closed, dropped) with both tuples, NAT, verdict and drop reason')
    .option('--follow', 'keep printing records as they come')
    .option('--pod <name>', "only records about this pod (either end, the endpoint, or the port it was dropped on)")
    .option('--limit <n>', 'at most the last N records (without --follow)', (v) => positiveInt('--limit', v))
    .option('--json', 'print JSON (with --follow: one object per line)')
    .action(async (o: { follow?: boolean; pod?: string; limit?: number; json?: boolean }) => {
      if (o.follow) return followFlowsCli(socketFor(globals()), o, formatFlow);
      const q = new URLSearchParams();
      if (o.pod) q.set('pod', o.pod);
      if (o.limit) q.set('limit', String(o.limit));
      const r = await apiCall<{ records: FlowRecord[] }>(socketFor(globals()), 'GET', `/v1/flows?${q.toString()}`);
      print(!!o.json, r.records, () => r.records.map((x) => formatFlow(x) + '\n').join(''));
    });

  const cni = program.command('cni').description('the CNI plugin: let container runtimes (containerd, CRI-O) put containers on podnet');
  cni
    .command('install')
    .description('write a conflist (podnet, then portmap and bandwidth) to a CNI config dir and the podnet-cni plugin to a CNI bin dir')
    .option('--conf-dir <dir>', 'CNI config directory', '/etc/cni/net.d')
    .option('--bin-dir <dir>', 'CNI plugin directory', '/opt/cni/bin')
    .option('--file <name>', 'conflist file name in --conf-dir', '10-podnet.conflist')
    .option('--name <network>', 'CNI network name', 'podnet')
    .addOption(new Option('--cni-version <v>', 'cniVersion of the conflist').choices(['1.0.0', '1.1.0']).default('1.0.0'))
    .option('--socket <path>', 'the daemon API socket the plugin talks to (default: --run-dir and --node)')
    .addOption(new Option('--device <kind>', 'device kind of the container interface').choices(['tap', 'tun']).default('tap'))
    .option('--no-portmap', 'leave portmap (hostPort) out of the chain')
    .option('--no-bandwidth', 'leave bandwidth out of the chain')
    .option('--plugins-from <dir>', 'where the reference plugins are, to link into --bin-dir when missing there', '/usr/lib/cni')
    .action((o: { confDir: string; binDir: string; file: string; name: string; cniVersion: string; socket?: string; device: 'tap' | 'tun'; portmap: boolean; bandwidth: boolean; pluginsFrom: string }) => {
      const g = globals();
      const r = installCni({
        ...o,
        ...(o.socket ? { socket: o.socket } : {}),
        ...(g.node ? { node: g.node } : {}),
        ...(g.runDir !== DEFAULT_RUN_DIR ? { runDir: g.runDir } : {}),
        pluginMain: fileURLToPath(new URL('../cni/main.js', import.meta.url)),
        nodePath: process.execPath,
      });
      process.stdout.write(`${r.conflist}\n${r.binary}\n${r.linked.map((l) => l + '\n').join('')}`);
    });
  cni
    .command('list')
    .alias('ls')
    .description("the node's CNI attachments (container, interface, namespace, address)")
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const list = await apiCall<PodInfo[]>(socketFor(globals()), 'GET', '/v1/cni/attachments');
      print(!!o.json, list, () =>
        formatTable(
          ['CONTAINER', 'IFNAME', 'NETWORK', 'IP', 'NETNS', 'POD'],
          list.map((p) => [p.attachment!.containerId, p.attachment!.ifname, p.attachment!.network, p.ip, p.attachment!.netns, p.name]),
        ),
      );
    });

  program
    .command('ui')
    .description('serve a web page on localhost with a live map of the cluster: nodes, pods, services and their endpoints, and the traffic between them')
    .option('--address <host:port>', 'where to serve the page: a loopback address (127.0.0.0/8, [::1] or localhost); port 0 picks a free one', DEFAULT_UI_ADDRESS)
    .option('--interval <ms>', 'how often the counters are read, in milliseconds (200-60000)', parseIntArg('--interval', 200, 60000), 1000)
    .action(async (o: { address: string; interval: number }) => {
      try {
        parseUiAddress(o.address);
      } catch (err) {
        throw new PodnetError('EINVALID', (err as Error).message);
      }
      const g = globals();
      const ui = await UiServer.start({ address: o.address, intervalMs: o.interval, runDir: g.runDir, ...(g.node ? { node: g.node } : {}) });
      const first = ui.current();
      if (!first.map) {
        await ui.close();
        throw new PodnetError('EPRECONDITION', first.error ?? 'no reading of the cluster');
      }
      process.stdout.write(`podnet ui: ${ui.url} (cluster view from node ${first.map.source}; Ctrl-C stops it)\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await ui.close();
    });

  const demo = program
    .command('demo')
    .description('a multi-host cluster on this machine: hosts as network namespaces on an underlay bridge, or real VMs (--vms)');
  demo
    .command('up')
    .description('build the hosts (or boot the VMs), start a daemon on each, create pods, and show cross-host traffic')
    .option('--nodes <n>', 'number of hosts as namespaces (1-20)', parseIntArg('--nodes', 1, 20), 3)
    .option('--vms [n]', 'boot QEMU VMs instead (1-8, default 3), each its own kernel and virtio NIC, etcd as the store', parseIntArg('--vms', 1, 8))
    .option('--pods <n>', 'pods per host (1-10)', parseIntArg('--pods', 1, 10), 2)
    .option('--memory <mb>', 'memory per VM in MB (256-16384; with --vms)', parseIntArg('--memory', 256, 16384), 768)
    .option('--cpus <n>', 'vCPUs per VM (1-8; with --vms)', parseIntArg('--cpus', 1, 8), 1)
    .addOption(new Option('--accel <kind>', 'VM acceleration: auto probes KVM and falls back to TCG (with --vms)').choices(['auto', 'kvm', 'tcg']).default('auto'))
    .option('--boot-timeout <s>', 'seconds a VM may take to a serving daemon (default 600 under TCG, 120 with KVM)', parseIntArg('--boot-timeout', 1, 3600))
    .action(async (opts: { nodes: number; vms?: number | true; pods: number; memory: number; cpus: number; accel: 'auto' | 'kvm' | 'tcg'; bootTimeout?: number }) => {
      const out = (s: string) => process.stdout.write(s);
      if (opts.vms !== undefined) {
        await demoVmUp({ vms: opts.vms === true ? 3 : opts.vms, podsPerNode: opts.pods, memoryMb: opts.memory, cpus: opts.cpus, accel: opts.accel, bootTimeoutS: opts.bootTimeout, out });
      } else {
        await demoUp({ nodes: opts.nodes, podsPerNode: opts.pods, runDir: globals().runDir, out });
      }
    });
  demo
    .command('exec <node> <command...>')
    .description('run a command in a demo node: a VM (through its agent) or a namespace host; e.g. podnet demo exec vm1 -- podnet pod list')
    .action(async (node: string, command: string[]) => {
      process.exitCode = await demoExec(node, command, DEMO_PREFIX);
    });
  demo
    .command('restart <node>')
    .description("restart a demo node's daemon (SIGTERM, or SIGKILL with --kill); its pods and their connections carry on")
    .option('--kill', 'kill the daemon with SIGKILL (a crash) instead of stopping it')
    .action(async (node: string, opts: { kill?: boolean }) => {
      await demoRestart({ node, kill: !!opts.kill, runDir: globals().runDir, out: (s) => process.stdout.write(s) });
    });
  demo
    .command('down')
    .description('stop the demo daemons (and VMs) and remove every namespace, device and file the demo made')
    .action(async () => {
      const out = (s: string) => process.stdout.write(s);
      const vms = await demoVmDown(out);
      await demoDown(vms ? () => undefined : out, vms);
    });

  return program;
}


function parseIntArg(flag: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${flag} must be a whole number from ${min} to ${max}`);
    return n;
  };
}

interface StatusView {
  node: string;
  subnet: string;
  gateway: string;
  hostAddress: string;
  podMtu: number;
  ipam: { used: number; capacity: number };
  pods: Array<PodInfo & { counters: { rxFrames: number; txFrames: number; drops: Record<string, number> } }>;
  router: { forwarded: number; icmpSent: number; drops: Record<string, number> };
  host?: { rxFrames: number; txFrames: number };
  underlay: { interface?: string; ip?: string };
  process?: { pid: number; uptimeSeconds: number; memory: { rss: number; heapUsed: number; external: number } };
  cluster?: { store?: { kind: string; reachable: boolean; unreachableSince?: string; unreachableSeconds?: number; lastError?: string; reregistrations: number } };
  restart?: { reattached: number; recreated: number; failed: number; conntrack: { restored?: number; discardedReason?: string; error?: string } };
}

function renderStatus(s: StatusView): string {
  const drops = (d: Record<string, number>) => Object.entries(d).map(([k, v]) => `${k}=${v}`).join(',') || '-';
  let out = `node ${s.node}  subnet ${s.subnet}  gateway ${s.gateway}  host ${s.hostAddress}  mtu ${s.podMtu}  underlay ${s.underlay.interface ?? '-'} ${s.underlay.ip ?? ''}\n`;
  out += `addresses ${s.ipam.used}/${s.ipam.capacity}  routed ${s.router.forwarded}  icmp sent ${s.router.icmpSent}  router drops ${drops(s.router.drops)}`;
  if (s.host) out += `  host rx ${s.host.rxFrames} tx ${s.host.txFrames}`;
  if (s.process) {
    const mb = (b: number) => (b / 1048576).toFixed(1);
    const m = s.process.memory;
    out += `\ndaemon pid ${s.process.pid}  up ${s.process.uptimeSeconds} s  rss ${mb(m.rss)} MB  heap ${mb(m.heapUsed)} MB  buffers ${mb(m.external)} MB`;
  }
  const store = s.cluster?.store;
  if (store) {
    out += store.reachable
      ? `\nstore ${store.kind} reachable`
      : `\nstore ${store.kind} UNREACHABLE since ${store.unreachableSince} (${store.unreachableSeconds} s; ${store.lastError ?? ''}): forwarding on the last known state`;
    if (store.reregistrations > 0) out += `  registered again ${store.reregistrations}x`;
  }
  if (s.restart && (s.restart.reattached > 0 || s.restart.recreated > 0 || s.restart.failed > 0 || s.restart.conntrack.restored)) {
    const c = s.restart.conntrack;
    out += `\nstarted over a previous run: pods attached again ${s.restart.reattached}, recreated ${s.restart.recreated}, failed ${s.restart.failed}; conntrack entries taken over ${c.restored ?? 0}`;
  }
  out += '\n\n';
  out += formatTable(
    ['POD', 'IP', 'DEVICE', 'RX', 'TX', 'DROPS'],
    s.pods.map((p) => [p.name, p.ip, p.device, String(p.counters.rxFrames), String(p.counters.txFrames), drops(p.counters.drops)]),
  );
  return out;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildCli();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed the message (and help) for usage errors.
      return err.exitCode === 0 ? 0 : 2;
    }
    const msg = err instanceof Error ? err.message : String(err);
    process.stderr.write(`podnet: error: ${msg.split('\n')[0]}\n`);
    return 1;
  }
}

/**
 * Resolves once everything written to `stream` so far has left the process. A write to a pipe that
 * is full is queued by Node and finished later from the event loop; `process.exit` does not wait for
 * it, so a CLI that exits right after writing cuts its output at the pipe's capacity (64 KB). A write
 * of nothing completes after every earlier write (they are ordered). A reader that went away (EPIPE,
 * `podnet ... | head`) ends the wait too: there is nobody left to write to.
 */
export function drained(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed || stream.writableEnded) return resolve();
    stream.write('', () => resolve());
  });
}

/** Runs the CLI and exits with its status once stdout and stderr have reached their readers whole. */
export async function runCli(argv: string[]): Promise<never> {
  // A reader that closes early (EPIPE) is not an error of ours; without a handler it would crash us.
  for (const s of [process.stdout, process.stderr]) s.on('error', () => undefined);
  const code = await main(argv);
  await Promise.all([drained(process.stdout), drained(process.stderr)]);
  process.exit(code);
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  void runCli(process.argv);
}
