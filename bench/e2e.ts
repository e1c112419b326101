/**
 * `npm run bench`: the whole network against the kernel, in one run (root needed).
 *
 *   node dist/bench/e2e.js [--quick] [--rounds N] [--duration S] [--pings N] [--scenario ID]... [--keep]
 *
 * Builds two clusters side by side on one underlay bridge (bench/e2e/clusters.ts): podnet (h1, h2 with
 * podnet daemons; pods a1, a2 on h1, b1 on h2) and kernel (k1, k2 configured as flannel's VXLAN backend;
 * pods in the same positions). Every scenario (bench/e2e/scenarios.ts) runs `rounds` rounds; a round runs
 * podnet and kernel once each, the order flipping every round, so the noise of a small shared machine
 * lands on both. Prints scenario | podnet | kernel | ratio with the medians over rounds, and writes
 * bench/results/e2e.json (machine, options, every round's numbers and the tools' raw results).
 *
 * Exit status: 0 when every available scenario produced its numbers on both sides, 1 when one failed (a
 * scenario with no number is a failure, never a zero), 2 on bad options, 130 when interrupted. Scenarios
 * podnet cannot run yet (ClusterIP until `podnet service` exists) print "not available yet" and do not
 * fail the run. Everything is torn down at the end, on failure and on SIGINT/SIGTERM: the iperf3 and
 * other servers are killed, then Topology.destroy stops the daemons and removes every namespace.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { REPO_ROOT, Topology } from '../src/topology/topology.js';
import { buildKernel, buildPodnet, checkIsolated, KERNEL, PODNET, waitReachable, type Side, type SideKind } from './e2e/clusters.js';
import { parseOptions, USAGE } from './e2e/options.js';
import { gitInfo, killAll, machineInfo, preflight, readOptions } from './e2e/proc.js';
import { rows, table } from './e2e/report.js';
import { Aborted, runScenario, SCENARIOS, type Ctx, type ScenarioResult } from './e2e/scenarios.js';
import { iperfTcp } from './e2e/tools.js';

const log = (line: string) => process.stderr.write(line + '\n');

async function main(): Promise<number> {
  const opts = readOptions(parseOptions, USAGE);
  if (typeof opts === 'number') return opts;
  if (opts.list) {
    for (const s of SCENARIOS) process.stdout.write(`${s.id.padEnd(18)} ${s.title}\n`);
    return 0;
  }
  const unknown = opts.scenarios.filter((id) => !SCENARIOS.some((s) => s.id === id));
  if (unknown.length > 0) {
    process.stderr.write(`unknown scenario(s): ${unknown.join(', ')} (--list shows them)\n`);
    return 2;
  }
  const selected = SCENARIOS.filter((s) => opts.scenarios.length === 0 || opts.scenarios.includes(s.id));
  await preflight(['iperf3', 'ping', 'ss', 'iptables-restore', 'nsenter', 'ethtool', 'bridge', 'sysctl'], 'apt-get install iperf3 iproute2 iputils-ping iptables util-linux ethtool procps');

  const started = new Date();
  const machine = machineInfo();
  const t = new Topology();
  log(`machine: ${machine.cpuModel}, ${machine.cores} CPUs, ${machine.kernel}, node ${machine.node}, load ${machine.loadAverage.join(' ')}`);
  log(`e2e benchmark: ${opts.quick ? 'quick (smoke) run' : 'full run'}, ${opts.rounds} round(s), ${opts.duration} s per run; namespaces ${t.prefix}*`);

  // Teardown happens once, whoever asks first (the normal path, a failure, or a signal).
  let teardownPromise: Promise<void> | undefined;
  const teardown = () =>
    (teardownPromise ??= (async () => {
      killAll();
      await t.destroy({ keepDir: opts.keep }).catch((err) => log(`teardown: ${(err as Error).message}`));
      if (opts.keep) log(`kept ${t.dir} (daemon logs)`);
    })());
  let signal: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (signal) {
      log(`${sig} again: tearing down now`);
      void teardown().finally(() => process.exit(130));
      return;
    }
    signal = sig;
    log(`\n${sig}: stopping the running tools and tearing everything down...`);
    killAll();
    // The main flow notices at its next step and unwinds through its finally; should it be stuck, do it here.
    setTimeout(() => void teardown().finally(() => process.exit(130)), 30_000).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const aborted = () => signal !== undefined;
  const step = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    if (aborted()) throw new Aborted();
    log(what);
    const r = await fn();
    if (aborted()) throw new Aborted();
    return r;
  };

  const results: ScenarioResult[] = [];
  let fatal: Error | undefined;
  let podnetStatus: Record<string, unknown> = {};
  let sides: Record<SideKind, Side> | undefined;
  let ctx: Ctx | undefined;
  let offloads: Offloads | undefined;
  try {
    await step('creating the underlay', () => t.createUnderlay());
    const podnet = await step(`podnet cluster: h1, h2 (${PODNET.podCidr}), ${opts.podDevice.toUpperCase()} pods a1 a2 on h1, b1 on h2`, () =>
      buildPodnet(t, opts.podnetConfig, opts.nodeArgs, opts.podDevice),
    );
    const kernel = await step(`kernel cluster: k1, k2 (flannel-style, ${KERNEL.podCidr}), pods a1 a2 on k1, b1 on k2`, () => buildKernel(t));
    sides = { podnet, kernel };
    offloads = await step('reading the offload settings of both sides', () => readOffloads(t, podnet, kernel));
    log(`offloads: ${describeOffloads(offloads)}`);
    await step('waiting until the pods reach each other', async () => {
      await waitReachable(podnet);
      await waitReachable(kernel);
      await checkIsolated(podnet, kernel);
    });
    await step(`warm-up: ${opts.warmup} s of TCP on every path`, async () => {
      for (const side of [podnet, kernel]) for (const dst of [side.same, side.cross]) await iperfTcp(side.client, dst, opts.warmup);
    });
    ctx = { t, opts, sides, services: {}, aborted };
    for (const s of selected) {
      if (aborted()) throw new Aborted();
      log(`${s.id}: ${s.title}`);
      results.push(await runScenario(ctx!, s, log));
    }
    for (const h of podnet.hosts) {
      const r = await t.podnet(h, ['status', '--json']);
      podnetStatus[h] = r.code === 0 ? JSON.parse(r.stdout) : { error: r.stderr.trim() };
    }
  } catch (err) {
    if (!(err instanceof Aborted)) {
      fatal = err as Error;
      log(`FAILED: ${fatal.stack ?? fatal.message}`);
      for (const h of ['h1', 'h2']) {
        if (t.hosts.has(h)) podnetStatus[h] = { logTail: t.daemonLog(h).slice(-3000) };
      }
    }
  } finally {
    log('tearing down');
    await teardown();
  }

  const failures = results.flatMap((r) =>
    (['podnet', 'kernel'] as const).filter((k) => r.sides[k].error).map((k) => `${r.id} (${k}): ${r.sides[k].error}`),
  );
  if (fatal) failures.unshift(`setup: ${fatal.message}`);
  if (signal) failures.unshift(`interrupted by ${signal}`);

  if (results.length > 0) process.stdout.write('\n' + table(results) + '\n\n');
  const out = resolve(opts.out ?? join(REPO_ROOT, 'bench', 'results', 'e2e.json'));
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(
    out,
    JSON.stringify(
      {
        benchmark: 'e2e',
        startedAt: started.toISOString(),
        seconds: (Date.now() - started.getTime()) / 1000,
        argv: process.argv.slice(2),
        options: opts,
        git: gitInfo(REPO_ROOT),
        machine: { ...machine, loadAverageAtEnd: loadavg().map((x) => Math.round(x * 100) / 100) },
        topology: {
          underlay: 'one bridge in its own namespace; hosts are namespaces with a veth eth0 at its default offloads',
          offloads,
          podnet: { podCidr: PODNET.podCidr, hosts: PODNET.hosts, pods: sides && podPositions(sides.podnet) },
          kernel: { podCidr: KERNEL.podCidr, nodes: KERNEL.nodes, pods: sides && podPositions(sides.kernel) },
          clusterIps: ctx?.services,
        },
        order: 'per scenario, rounds 1..N; each round runs both sides, podnet first in odd rounds and kernel first in even ones',
        table: rows(results),
        scenarios: results,
        podnetStatus,
        failures,
      },
      null,
      2,
    ) + '\n',
  );
  log(`results: ${out}`);
  if (failures.length > 0) {
    log(`\n${failures.length} failure(s):\n  ${failures.join('\n  ')}`);
    return signal ? 130 : 1;
  }
  return 0;
}

/** Offload features of a device (`ethtool -k`), by name: on, off, or with [fixed]. */
type Features = Record<string, string>;
interface Offloads {
  /** Each host's underlay eth0 (both sides: veth at its defaults), and the kernel nodes' flannel.1. */
  devices: Record<string, Features>;
  /** What podnet's VXLAN transport does with super-frames (from `podnet status`). */
  podnet: Record<string, { txOffload?: string; rxOffload?: string }>;
}

const SHOWN_FEATURES = ['tx-checksumming', 'tcp-segmentation-offload', 'generic-segmentation-offload', 'generic-receive-offload', 'tx-udp_tnl-segmentation', 'tx-udp-segmentation'];

async function readOffloads(t: Topology, podnet: Side, kernel: Side): Promise<Offloads> {
  const features = async (ns: string, dev: string): Promise<Features> => {
    const out = await new Promise<string>((res) => execFile('ip', ['netns', 'exec', ns, 'ethtool', '-k', dev], (err, stdout) => res(err ? '' : stdout)));
    const f: Features = {};
    for (const line of out.split('\n')) {
      const m = /^\s*([\w-]+):\s*(.+)$/.exec(line);
      if (m && SHOWN_FEATURES.includes(m[1]!)) f[m[1]!] = m[2]!.trim();
    }
    return f;
  };
  const devices: Record<string, Features> = {};
  for (const h of [...podnet.hosts, ...kernel.hosts]) devices[`${h} eth0`] = await features(t.host(h).netns, 'eth0');
  for (const h of kernel.hosts) devices[`${h} flannel.1`] = await features(t.host(h).netns, 'flannel.1');
  const pn: Offloads['podnet'] = {};
  for (const h of podnet.hosts) {
    const r = await t.podnet(h, ['status', '--json']);
    const vx = r.code === 0 ? JSON.parse(r.stdout).cluster?.vxlan : undefined;
    pn[h] = { txOffload: vx?.txOffload, rxOffload: vx?.rxOffload };
  }
  return { devices, podnet: pn };
}

function describeOffloads(o: Offloads): string {
  const eth = (d: string) => {
    const f = o.devices[d] ?? {};
    return `tx-csum ${f['tx-checksumming'] ?? '?'}, tso ${f['tcp-segmentation-offload'] ?? '?'}, gro ${f['generic-receive-offload'] ?? '?'}`;
  };
  const p = o.podnet.h1 ?? {};
  return `underlay eth0 h1: ${eth('h1 eth0')}; k1: ${eth('k1 eth0')}; podnet VXLAN tx ${p.txOffload ?? '?'}, rx ${p.rxOffload ?? '?'}`;
}

function podPositions(side: Side) {
  return { client: side.client, sameHost: side.same, otherHost: side.cross, daemonPids: side.daemonPids };
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
