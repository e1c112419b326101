/**
 * `npm run bench:floor`: how close can a per-host userspace forwarder come to the kernel on this
 * machine, and where does podnet stand between them? (root needed)
 *
 *   node dist/bench/floor.js [--quick] [--rounds N] [--pings N] [--duration S] [--out FILE]
 *
 * Five clusters side by side on one underlay bridge, in one Topology, each with pods a1, a2 on one host
 * and b1 on the other: podnet (h1, h2; bench/e2e/clusters.ts), the kernel (k1, k2, flannel-style), and
 * three relays, one process per host holding the pods' TAPs and one UDP socket, VXLAN-framed, with no
 * routing, NAT or batching: relay.c in C (r1, r2), and relay-node.ts, the same forwarding in Node.js on
 * podnet's addon, with plain devices (n1, n2) and with the devices set up as podnet's daemon sets them
 * (m1, m2: offload TAPs, GRO socket, per-flow source ports). The relays' packets take podnet's hops
 * (pod -> TAP -> a process woken on the host -> UDP -> the other host's process -> TAP -> pod) and do
 * nothing else there: relay.c's numbers are what those hops cost on this machine, the Node relays' what
 * the runtime and the addon add, and podnet's own the data plane on top. Every round pings a1 -> b1 and
 * a1 -> a2 (10 ms apart, as the e2e benchmark does) and runs one TCP stream a1 -> a2 (iperf3) on each,
 * the order rotating every round. Prints the medians over rounds and writes bench/results/floor.json.
 *
 * Exit status: 0 when every ping run got replies, 1 when one failed, 2 on bad options, 130 when
 * interrupted. Everything it made is torn down at the end, on failure and on SIGINT/SIGTERM.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ip, ipBatch, run } from '../src/netns/run.js';
import { REPO_ROOT, Topology } from '../src/topology/topology.js';
import { buildKernel, buildPodnet, checkIsolated, waitReachable } from './e2e/clusters.js';
import { nodeArgs, podnetConfig, positive } from './e2e/options.js';
import { gitInfo, killAll, machineInfo, preflight, readOptions, runIn, startReady } from './e2e/proc.js';
import { iperfTcp, median, pingRtt, type Endpoint, type PingResult, type TcpResult } from './e2e/tools.js';

const log = (line: string) => process.stderr.write(line + '\n');

const USAGE = `usage: node dist/bench/floor.js [options]          (npm run bench:floor -- [options]; needs root)

Ping across hosts and on one host, and TCP on one host, through podnet, through minimal relays with
the same hops (bench/floor/relay.c in C; bench/floor/relay-node.ts in Node on podnet's addon, with
plain devices and with podnet's) and through the kernel (flannel-style VXLAN), in one run.

  --quick        CI smoke run: 1 round of 50 pings and 2 s of TCP, 1 s warm-up
  --rounds N     rounds (default 3; medians are reported)
  --pings N      echo requests per ping run, 10 ms apart (default 500)
  --duration S   seconds of the TCP run (default 10)
  --out FILE     JSON output (default bench/results/floor.json)
  --podnet-config JSON   merged into both podnet daemons' configs, for an A/B run of one setting
  --node-args ARGS       arguments for node when it starts each podnet daemon and each Node relay (with =,
                         as in npm run bench)
`;

interface Options {
  quick: boolean;
  rounds: number;
  pings: number;
  warmup: number;
  duration: number;
  out: string;
  podnetConfig: Record<string, unknown>;
  nodeArgs: string[];
}

function parseOptions(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      rounds: { type: 'string' },
      pings: { type: 'string' },
      duration: { type: 'string' },
      out: { type: 'string' },
      'podnet-config': { type: 'string' },
      'node-args': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) return 'help';
  const quick = values.quick === true;
  return {
    quick,
    rounds: positive('--rounds', values.rounds, quick ? 1 : 3, true),
    pings: positive('--pings', values.pings, quick ? 50 : 500, true),
    warmup: quick ? 1 : 2,
    duration: positive('--duration', values.duration, quick ? 2 : 10, true),
    out: resolve(values.out ?? join(REPO_ROOT, 'bench', 'results', 'floor.json')),
    podnetConfig: podnetConfig(values['podnet-config']),
    nodeArgs: nodeArgs(values['node-args']),
  };
}

/** The relays' clusters: hosts, their pods on one L2 segment per cluster, and the UDP port between the hosts. */
interface RelaySpec {
  kind: Kind;
  /** Its TAPs' names start with this (and the bench's pid): unique on the machine. */
  tapPrefix: string;
  /** The relay's command line before its arguments (`<local-ip> <peer-ip> <port> <tap>...`). */
  command: string[];
  hosts: Record<string, string>;
  pods: Record<'a1' | 'a2' | 'b1', { host: string; ip: string }>;
}

const RELAY_PORT = 8472;
const RELAY_MTU = 1450;

function relaySpecs(cBinary: string, nodeArgs: string[]): RelaySpec[] {
  return [
    {
      kind: 'relay',
      tapPrefix: 'rc',
      command: [cBinary],
      hosts: { r1: '198.18.0.31', r2: '198.18.0.32' },
      pods: { a1: { host: 'r1', ip: '10.246.0.10' }, a2: { host: 'r1', ip: '10.246.0.11' }, b1: { host: 'r2', ip: '10.246.0.20' } },
    },
    {
      kind: 'relay-node',
      tapPrefix: 'rn',
      command: [process.execPath, ...nodeArgs, join(REPO_ROOT, 'dist', 'bench', 'floor', 'relay-node.js')],
      hosts: { n1: '198.18.0.33', n2: '198.18.0.34' },
      pods: { a1: { host: 'n1', ip: '10.247.0.10' }, a2: { host: 'n1', ip: '10.247.0.11' }, b1: { host: 'n2', ip: '10.247.0.20' } },
    },
    {
      kind: 'relay-node-io',
      tapPrefix: 'ri',
      command: [process.execPath, ...nodeArgs, join(REPO_ROOT, 'dist', 'bench', 'floor', 'relay-node.js'), '--podnet-io'],
      hosts: { m1: '198.18.0.35', m2: '198.18.0.36' },
      pods: { a1: { host: 'm1', ip: '10.248.0.10' }, a2: { host: 'm1', ip: '10.248.0.11' }, b1: { host: 'm2', ip: '10.248.0.20' } },
    },
  ];
}

type Kind = 'podnet' | 'relay' | 'relay-node' | 'relay-node-io' | 'kernel';
interface Cluster {
  kind: Kind;
  client: Endpoint;
  same: Endpoint;
  cross: Endpoint;
}

async function compileRelay(dir: string): Promise<string> {
  const src = join(REPO_ROOT, 'bench', 'floor', 'relay.c');
  const bin = join(dir, 'relay');
  await run('cc', ['-O2', '-Wall', '-Werror', '-o', bin, src]);
  return bin;
}

/** Two hosts, one relay process on each holding its pods' TAPs; pods a1, a2 on the first host and b1 on the second, one L2 segment. */
async function buildRelay(t: Topology, spec: RelaySpec): Promise<Cluster> {
  const pods = new Map<string, Endpoint>();
  const tag = `${spec.tapPrefix}${process.pid.toString(36)}`;
  for (const [host, underlayIp] of Object.entries(spec.hosts)) {
    const h = await t.addHost({ name: host, underlayIp });
    const peer = Object.entries(spec.hosts).find(([n]) => n !== host)![1];
    const mine = Object.entries(spec.pods).filter(([, p]) => p.host === host);
    const taps = mine.map(([name]) => `${tag}${name}`);
    await startReady(h.netns, spec.command[0]!, [...spec.command.slice(1), underlayIp, peer, String(RELAY_PORT), ...taps]);
    for (const [i, [name, p]] of mine.entries()) {
      const ns = t.podNs(host, name);
      await run('ip', ['netns', 'add', ns]);
      await ip(['link', 'set', taps[i]!, 'netns', ns], h.netns);
      await ipBatch(['link set lo up', `link set ${taps[i]} name eth0`, `link set eth0 mtu ${RELAY_MTU} up`, `addr add ${p.ip}/24 dev eth0`], ns);
      pods.set(name, { name, ns, ip: p.ip });
    }
  }
  return { kind: spec.kind, client: pods.get('a1')!, same: pods.get('a2')!, cross: pods.get('b1')! };
}

/** What a round measures: ping across hosts and on one host (RTT, ms), TCP on one host (Gbit/s). */
type Test = 'ping-cross' | 'ping-same' | 'tcp-same';
const TESTS: ReadonlyArray<{ id: Test; label: string; unit: string; higherIsBetter: boolean }> = [
  { id: 'ping-cross', label: 'ping across hosts, median RTT', unit: 'ms', higherIsBetter: false },
  { id: 'ping-same', label: 'ping same host, median RTT', unit: 'ms', higherIsBetter: false },
  { id: 'tcp-same', label: 'TCP same host (iperf3, one stream)', unit: 'Gbit/s', higherIsBetter: true },
];
/** Who runs TCP: not the plain Node relay (no offloads: a different workload, MTU-size frames). */
const TCP_KINDS: readonly Kind[] = ['podnet', 'relay-node-io', 'relay', 'kernel'];

interface RunRecord {
  round: number;
  test: Test;
  kind: Kind;
  /** The test's number: the median RTT (ms) of a ping run, the receiver's Gbit/s of a TCP run. */
  value?: number;
  ping?: PingResult;
  tcp?: TcpResult;
  error?: string;
}

async function main(): Promise<number> {
  const opts = readOptions(parseOptions, USAGE);
  if (typeof opts === 'number') return opts;
  await preflight(['cc', 'iperf3', 'ping', 'bridge', 'sysctl'], 'apt-get install gcc iperf3 iproute2 iputils-ping procps');
  const started = new Date();
  const machine = machineInfo();
  const t = new Topology();
  log(`machine: ${machine.cpuModel}, ${machine.cores} CPUs, ${machine.kernel}, node ${machine.node}`);
  log(`floor benchmark: ${opts.rounds} round(s) of ${opts.pings} pings per path; namespaces ${t.prefix}*`);

  let teardownPromise: Promise<void> | undefined;
  const teardown = () =>
    (teardownPromise ??= (async () => {
      killAll();
      await t.destroy().catch((err) => log(`teardown: ${(err as Error).message}`));
    })());
  let signal: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (signal === undefined) log(`\n${sig}: tearing everything down...`);
    signal = sig;
    killAll();
    void teardown().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const runs: RunRecord[] = [];
  let fatal: Error | undefined;
  try {
    await t.createUnderlay();
    log('clusters: podnet (h1, h2), kernel (k1, k2), relay.c (r1, r2), relay-node (n1, n2), relay-node --podnet-io (m1, m2)');
    const bin = await compileRelay(t.dir);
    const podnet = await buildPodnet(t, opts.podnetConfig, opts.nodeArgs);
    const kernel = await buildKernel(t);
    const relays: Cluster[] = [];
    for (const spec of relaySpecs(bin, opts.nodeArgs)) relays.push(await buildRelay(t, spec));
    const clusters: Cluster[] = [podnet, ...relays, kernel];
    for (const c of clusters) await waitReachable(c);
    await checkIsolated(podnet, kernel);
    // As in the e2e benchmark, podnet's and the kernel's paths carry TCP first (podnet's daemons are
    // then optimised code, as after any traffic). The relays carry no TCP across hosts (a TSO
    // super-frame would need segmenting, see relay.c): they warm up on a ping flood instead.
    log(`warm-up: ${opts.warmup} s of TCP on podnet's and the kernel's paths, 1000 pings 1 ms apart on the relays'`);
    for (const c of clusters) {
      for (const dst of [c.same, c.cross]) {
        if (c.kind === 'podnet' || c.kind === 'kernel') await iperfTcp(c.client, dst, opts.warmup);
        else await runIn(c.client.ns, 'ping', ['-n', '-q', '-i', '0.001', '-c', '1000', dst.ip], 30_000);
      }
    }
    for (let round = 1; round <= opts.rounds; round++) {
      for (const test of TESTS) {
        // Rotate who goes first, so a drift of the machine lands on every cluster.
        const order = clusters.map((_, i) => clusters[(i + round - 1) % clusters.length]!);
        for (const c of order) {
          if (test.id === 'tcp-same' && !TCP_KINDS.includes(c.kind)) continue;
          if (signal !== undefined) throw new Error('interrupted');
          const rec: RunRecord = { round, test: test.id, kind: c.kind };
          try {
            if (test.id === 'tcp-same') {
              rec.tcp = await iperfTcp(c.client, c.same, opts.duration);
              rec.value = rec.tcp.bitsPerSecond / 1e9;
              log(`  round ${round} ${test.id} ${c.kind.padEnd(13)} ${rec.value.toFixed(2)} Gbit/s`);
            } else {
              rec.ping = await pingRtt(c.client, test.id === 'ping-cross' ? c.cross : c.same, opts.pings);
              rec.value = rec.ping.medianMs;
              log(`  round ${round} ${test.id} ${c.kind.padEnd(13)} median ${rec.ping.medianMs.toFixed(3)} ms  p99 ${rec.ping.p99Ms.toFixed(3)} ms`);
            }
          } catch (err) {
            rec.error = (err as Error).message;
            log(`  round ${round} ${test.id} ${c.kind}: ${rec.error}`);
          }
          runs.push(rec);
        }
      }
    }
  } catch (err) {
    if (signal === undefined) {
      fatal = err as Error;
      log(`FAILED: ${fatal.stack ?? fatal.message}`);
    }
  } finally {
    log('tearing down');
    await teardown();
  }

  const kinds: Kind[] = ['podnet', 'relay-node-io', 'relay-node', 'relay', 'kernel'];
  const summary = TESTS.map((test) => ({
    test: test.id,
    unit: test.unit,
    medians: Object.fromEntries(kinds.map((k) => [k, median(runs.filter((x) => x.test === test.id && x.kind === k && x.value !== undefined).map((x) => x.value!))])) as Record<Kind, number>,
  }));
  const f = (x: number, unit: string) => (Number.isFinite(x) ? x.toFixed(unit === 'ms' ? 3 : 2) : 'n/a');
  const r = (a: number, b: number) => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}x` : 'n/a');
  const lines = [
    'medians over rounds (and / kernel) | podnet | relay in Node, podnet\'s I/O | relay in Node | relay in C | kernel',
    ...summary.map((x) => {
      const m = x.medians;
      const cell = (k: Kind) => `${f(m[k], x.unit)} (${r(m[k], m.kernel)})`;
      const label = `${TESTS.find((t) => t.id === x.test)!.label} (${x.unit})`;
      return `${label} | ${cell('podnet')} | ${cell('relay-node-io')} | ${cell('relay-node')} | ${cell('relay')} | ${f(m.kernel, x.unit)}`;
    }),
  ];
  if (runs.length > 0) process.stdout.write('\n' + lines.join('\n') + '\n\n');
  mkdirSync(dirname(opts.out), { recursive: true });
  writeFileSync(
    opts.out,
    JSON.stringify({ benchmark: 'floor', startedAt: started.toISOString(), argv: process.argv.slice(2), options: opts, git: gitInfo(REPO_ROOT), machine, relays: relaySpecs('relay', opts.nodeArgs).map(({ kind, hosts, pods }) => ({ kind, hosts, pods })), summary, runs }, null, 2) + '\n',
  );
  log(`results: ${opts.out}`);
  const failed = runs.filter((x) => x.error !== undefined);
  if (signal !== undefined) return 130;
  if (fatal !== undefined || failed.length > 0 || runs.length === 0) return 1;
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`floor: ${err.message}\n`);
    process.exit(1);
  },
);
