/**
 * The scenarios of the end-to-end benchmark and the loop that runs them: for every scenario, `rounds`
 * rounds, each running the podnet side and the kernel side once, in an order that flips every round
 * (podnet first in odd rounds, kernel first in even ones), so drift and noise on the machine land on
 * both sides alike. A scenario returns several metrics (the rows of the table).
 */
import type { Topology } from '../../src/topology/topology.js';
import type { Options } from './options.js';
import type { Side, SideKind } from './clusters.js';
import { machineBusySeconds, machineSoftirqSeconds, processCpuSeconds, runIn, type Server } from './proc.js';
import { kernelServices, podnetServices, type ClusterIps } from './services.js';
import { CRR_PORT, crr, iperfTcp, iperfUdp, median, pingRtt, startCrrServer, type Endpoint } from './tools.js';

export interface MetricDef {
  key: string;
  label: string;
  unit: string;
  /** Digits after the point in the table. */
  digits: number;
  /** Raw value -> unit (e.g. bit/s -> Gbit/s). */
  scale?: number;
  higherIsBetter: boolean;
  /** Sides that produce it (podnet's daemon CPU has no kernel counterpart). */
  sides: readonly SideKind[];
  /** 0 is a real value (loss %); otherwise a zero or missing value is an error. */
  allowZero?: boolean;
  /** Whether podnet/kernel means something (not for loss %). */
  ratio?: boolean;
}

export interface Ctx {
  t: Topology;
  opts: Options;
  sides: Record<SideKind, Side>;
  services: Partial<Record<SideKind, ClusterIps>>;
  aborted(): boolean;
}

export interface RunOutput {
  metrics: Record<string, number>;
  raw: unknown;
}

export interface Scenario {
  id: string;
  title: string;
  /** How it is measured (goes into the JSON). */
  method: string;
  metrics: MetricDef[];
  /** Once before the rounds; may mark a side unavailable (returns the reason) or throw (the side fails). */
  prepare?(ctx: Ctx, side: Side): Promise<string | undefined>;
  run(ctx: Ctx, side: Side): Promise<RunOutput>;
}

const BOTH: readonly SideKind[] = ['podnet', 'kernel'];
const GBIT = 1e-9;

/** TCP throughput a1 -> dst, with podnet daemon CPU (utime+stime of both daemons) and machine CPU per GB. */
async function tcpWithCpu(ctx: Ctx, side: Side, dst: Endpoint, prefix: string, client: Endpoint = side.client): Promise<RunOutput> {
  type Reading = { daemon: number; machine: number; softirq: number };
  const readings: Reading[] = [];
  const read = () =>
    readings.push({ daemon: side.daemonPids.reduce((s, pid) => s + processCpuSeconds(pid), 0), machine: machineBusySeconds(), softirq: machineSoftirqSeconds() });
  const r = await iperfTcp(client, dst, ctx.opts.duration, undefined, read);
  if (readings.length !== 2) throw new Error('CPU readings missing');
  const [before, after] = readings as [Reading, Reading];
  const gb = r.bytes / 1e9;
  const daemonCpu = after.daemon - before.daemon;
  const softirq = after.softirq - before.softirq;
  const metrics: Record<string, number> = {
    [`${prefix}_bps`]: r.bitsPerSecond,
    [`${prefix}_machine_cpu_per_gb`]: (after.machine - before.machine) / gb,
    // The network's own cost: the kernel forwards in softirq; podnet in its daemons, plus the
    // softirq the kernels spend around them (TAP, sockets, veth).
    [`${prefix}_network_cpu_per_gb`]: (softirq + (side.kind === 'podnet' ? daemonCpu : 0)) / gb,
  };
  if (side.kind === 'podnet') metrics[`${prefix}_daemon_cpu_per_gb`] = daemonCpu / gb;
  return {
    metrics,
    raw: { ...r, daemonCpuSeconds: side.kind === 'podnet' ? daemonCpu : undefined, softirqSeconds: softirq, machineCpuSeconds: after.machine - before.machine },
  };
}

function tcpMetrics(prefix: string, where: string): MetricDef[] {
  return [
    { key: `${prefix}_bps`, label: `TCP ${where} throughput`, unit: 'Gbit/s', scale: GBIT, digits: 2, higherIsBetter: true, sides: BOTH },
    { key: `${prefix}_daemon_cpu_per_gb`, label: `TCP ${where}: podnet daemons CPU`, unit: 's/GB', digits: 2, higherIsBetter: false, sides: ['podnet'] },
    {
      key: `${prefix}_network_cpu_per_gb`,
      label: `TCP ${where}: network CPU (softirq + podnet daemons)`,
      unit: 's/GB',
      digits: 2,
      higherIsBetter: false,
      sides: BOTH,
    },
    { key: `${prefix}_machine_cpu_per_gb`, label: `TCP ${where}: whole machine CPU`, unit: 's/GB', digits: 2, higherIsBetter: false, sides: BOTH },
  ];
}

/** The node of a1 as a client: its own namespace, where a host-network process (kubelet, a hostNetwork pod) runs. */
function nodeOfClient(ctx: Ctx, side: Side): Endpoint {
  const h = side.hosts[0];
  return { name: `node ${h}`, ns: ctx.t.host(h).netns, ip: '' };
}

/** Udp counters of a namespace's /proc/net/snmp (the file is per network namespace). */
async function snmpUdp(ns: string): Promise<Record<string, number>> {
  const r = await runIn(ns, 'cat', ['/proc/net/snmp'], 5_000);
  const [head, values] = r.stdout.split('\n').filter((l) => l.startsWith('Udp:')).map((l) => l.split(/\s+/).slice(1));
  const out: Record<string, number> = {};
  head?.forEach((k, i) => (out[k] = Number(values?.[i])));
  return out;
}

async function linkDrops(ns: string, dev: string): Promise<{ rx: number; tx: number }> {
  const r = await runIn(ns, 'ip', ['-s', '-j', 'link', 'show', 'dev', dev], 5_000);
  const st = (JSON.parse(r.stdout) as any[])[0]?.stats64 ?? {};
  return { rx: Number(st.rx?.dropped ?? NaN), tx: Number(st.tx?.dropped ?? NaN) };
}

/**
 * Where datagrams can be lost on the UDP path: the client pod's eth0 (for podnet a TAP whose queue fills
 * when the daemon does not read fast enough), each host's UDP sockets (podnet's VXLAN socket) and eth0,
 * and the receiving pod's socket buffer. Deltas go into the JSON to explain the loss.
 */
async function udpPathCounters(ctx: Ctx, side: Side): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  out[`pod ${side.client.name} eth0 tx_dropped`] = (await linkDrops(side.client.ns, 'eth0')).tx;
  for (const h of side.hosts) {
    const ns = ctx.t.host(h).netns;
    const udp = await snmpUdp(ns);
    out[`host ${h} udp RcvbufErrors`] = udp.RcvbufErrors ?? NaN;
    out[`host ${h} udp SndbufErrors`] = udp.SndbufErrors ?? NaN;
    const eth = await linkDrops(ns, 'eth0');
    out[`host ${h} eth0 rx_dropped`] = eth.rx;
    out[`host ${h} eth0 tx_dropped`] = eth.tx;
  }
  const srv = await snmpUdp(side.cross.ns);
  out[`pod ${side.cross.name} udp RcvbufErrors`] = srv.RcvbufErrors ?? NaN;
  out[`pod ${side.cross.name} udp InDatagrams`] = srv.InDatagrams ?? NaN;
  return out;
}

/** Client pods open many short connections: wide ephemeral port range, reuse of TIME_WAIT ports. */
async function tuneClientForShortConnections(side: Side): Promise<void> {
  const r = await runIn(side.client.ns, 'sysctl', ['-qw', 'net.ipv4.ip_local_port_range=1024 65535', 'net.ipv4.tcp_tw_reuse=1'], 10_000);
  if (r.code !== 0) throw new Error(`sysctl in ${side.client.ns}: ${r.stderr.trim()}`);
}

async function prepareServices(ctx: Ctx, side: Side): Promise<string | undefined> {
  if (ctx.services[side.kind]) return undefined;
  if (side.kind === 'kernel') {
    ctx.services.kernel = await kernelServices(ctx.t, side);
    return undefined;
  }
  const ips = await podnetServices(ctx.t, side);
  if (!ips) return 'not available yet';
  ctx.services.podnet = ips;
  return undefined;
}

export const SCENARIOS: Scenario[] = [
  {
    id: 'tcp-same-host',
    title: 'TCP a1 -> a2 (same host)',
    method:
      'iperf3 -c <a2> -t <duration> -J from a1 against a one-shot server (iperf3 -s -1) in a2, one stream; throughput = end.sum_received.bits_per_second. ' +
      'CPU per GB: utime+stime (/proc/<pid>/stat) of both podnet daemons, and busy time of the whole machine (/proc/stat: user+nice+system+irq+softirq+steal, ' +
      'every process including iperf3), read right before and after the client run, divided by the bytes the receiver got (GB = 1e9 bytes).',
    metrics: tcpMetrics('tcp_same', 'pod->pod same host'),
    run: (ctx, side) => tcpWithCpu(ctx, side, side.same, 'tcp_same'),
  },
  {
    id: 'tcp-cross-host',
    title: 'TCP a1 -> b1 (across hosts, VXLAN)',
    method: 'As tcp-same-host, to b1 on the other host (through the VXLAN overlay).',
    metrics: tcpMetrics('tcp_cross', 'pod->pod across hosts'),
    run: (ctx, side) => tcpWithCpu(ctx, side, side.cross, 'tcp_cross'),
  },
  {
    id: 'tcp-node-same-host',
    title: 'TCP node of a1 -> a2 (node to a pod on it)',
    method:
      'As tcp-same-host, the client in the node\'s own namespace (a host-network process): podnet through its podnet0 TUN and the router, ' +
      'the kernel through the cni0 bridge.',
    metrics: tcpMetrics('tcp_node_same', 'node->pod same host'),
    run: (ctx, side) => tcpWithCpu(ctx, side, side.same, 'tcp_node_same', nodeOfClient(ctx, side)),
  },
  {
    id: 'tcp-node-cross-host',
    title: 'TCP node of a1 -> b1 (node to a pod on another node)',
    method: 'As tcp-node-same-host, to b1 on the other host (podnet0, the router and the VXLAN overlay; the kernel: flannel.1).',
    metrics: tcpMetrics('tcp_node_cross', 'node->pod across hosts'),
    run: (ctx, side) => tcpWithCpu(ctx, side, side.cross, 'tcp_node_cross', nodeOfClient(ctx, side)),
  },
  {
    id: 'udp64-cross-host',
    title: 'UDP 64-byte datagrams a1 -> b1',
    method:
      'iperf3 -c <b1> -u -l 64 -b 1G -t <duration> -J: one sender as fast as it can go (1 Gbit/s of 64-byte payloads is far above what it reaches). ' +
      'Sent packets/s = end.sum_sent.packets / seconds (a kernel sender also pays for forwarding in its own syscall, a podnet sender stops at the TAP queue). ' +
      'Received packets/s = (end.sum_received.packets - lost_packets) / seconds, the receiver\'s view; loss = end.sum_received.lost_percent. ' +
      'The JSON has, per run, the sender\'s rate and the drop counters along the path (client eth0 tx_dropped, hosts\' UDP RcvbufErrors and eth0 drops, receiver RcvbufErrors).',
    metrics: [
      { key: 'udp64_rx_pps', label: 'UDP 64 B across hosts: received', unit: 'kpps', scale: 1e-3, digits: 1, higherIsBetter: true, sides: BOTH },
      { key: 'udp64_tx_pps', label: 'UDP 64 B across hosts: sent', unit: 'kpps', scale: 1e-3, digits: 1, higherIsBetter: true, sides: BOTH, ratio: false },
      { key: 'udp64_loss_pct', label: 'UDP 64 B across hosts: loss', unit: '%', digits: 1, higherIsBetter: false, sides: BOTH, allowZero: true, ratio: false },
    ],
    run: async (ctx, side) => {
      const before = await udpPathCounters(ctx, side);
      const r = await iperfUdp(side.client, side.cross, ctx.opts.duration);
      const after = await udpPathCounters(ctx, side);
      const counterDeltas = Object.fromEntries(Object.keys(after).map((k) => [k, after[k]! - before[k]!]));
      return { metrics: { udp64_rx_pps: r.receivedPps, udp64_tx_pps: r.sentPps, udp64_loss_pct: r.lossPercent }, raw: { ...r, counterDeltas } };
    },
  },
  {
    id: 'ping-cross-host',
    title: 'ping a1 -> b1',
    method: 'ping -i 0.01 -c <pings> from a1 (56-byte payload); median and p99 (nearest rank) of the per-reply time= values.',
    metrics: [
      { key: 'ping_cross_median_ms', label: 'ping across hosts: median RTT', unit: 'ms', digits: 3, higherIsBetter: false, sides: BOTH },
      { key: 'ping_cross_p99_ms', label: 'ping across hosts: p99 RTT', unit: 'ms', digits: 3, higherIsBetter: false, sides: BOTH },
    ],
    run: async (ctx, side) => {
      const r = await pingRtt(side.client, side.cross, ctx.opts.pings);
      return { metrics: { ping_cross_median_ms: r.medianMs, ping_cross_p99_ms: r.p99Ms }, raw: r };
    },
  },
  {
    id: 'ping-same-host',
    title: 'ping a1 -> a2',
    method: 'As ping-cross-host, to a2 on the same host.',
    metrics: [
      { key: 'ping_same_median_ms', label: 'ping same host: median RTT', unit: 'ms', digits: 3, higherIsBetter: false, sides: BOTH },
      { key: 'ping_same_p99_ms', label: 'ping same host: p99 RTT', unit: 'ms', digits: 3, higherIsBetter: false, sides: BOTH },
    ],
    run: async (ctx, side) => {
      const r = await pingRtt(side.client, side.same, ctx.opts.pings);
      return { metrics: { ping_same_median_ms: r.medianMs, ping_same_p99_ms: r.p99Ms }, raw: r };
    },
  },
  {
    id: 'clusterip-tcp',
    title: 'TCP a1 -> ClusterIP -> b1',
    method:
      'iperf3 -c <ClusterIP> -p 80 -t <duration> -J from a1; the service has one endpoint, b1:5201 (iperf3\'s control and data connections must reach the same server). ' +
      'kernel: kube-proxy iptables rules (KUBE-SERVICES -> KUBE-SVC -> KUBE-SEP DNAT) on k1 and k2; podnet: `podnet service add`.',
    metrics: [{ key: 'clusterip_tcp_bps', label: 'TCP through a ClusterIP (across hosts)', unit: 'Gbit/s', scale: GBIT, digits: 2, higherIsBetter: true, sides: BOTH }],
    prepare: prepareServices,
    run: async (ctx, side) => {
      const svc = ctx.services[side.kind]!.tput;
      const r = await iperfTcp(side.client, side.cross, ctx.opts.duration, svc);
      return { metrics: { clusterip_tcp_bps: r.bitsPerSecond }, raw: r };
    },
  },
  {
    id: 'clusterip-crr',
    title: 'short TCP connections a1 -> ClusterIP -> {a2, b1}',
    method:
      'crr.js client in a1 (Node, <concurrency> loops of connect / 64-byte request / 64-byte answer / close, the client closing first) against a ClusterIP with two endpoints, ' +
      'a2:8080 (same host) and b1:8080 (other host), picked at random per connection (kernel: -m statistic --mode random --probability 0.5). ' +
      'Client pod: ip_local_port_range 1024-65535, tcp_tw_reuse=1. More than 1% failed connections fails the run.',
    metrics: [{ key: 'clusterip_crr_per_s', label: 'short TCP connections via ClusterIP', unit: 'conn/s', digits: 0, higherIsBetter: true, sides: BOTH }],
    prepare: async (ctx, side) => {
      const reason = await prepareServices(ctx, side);
      if (!reason) await tuneClientForShortConnections(side);
      return reason;
    },
    run: async (ctx, side) => {
      const svc = ctx.services[side.kind]!.crr;
      const servers: Array<{ pod: Endpoint; server: Server }> = [];
      try {
        for (const pod of [side.same, side.cross]) servers.push({ pod, server: await startCrrServer(pod) });
        const r = await crr(side.client, svc, ctx.opts.duration, ctx.opts.crrConcurrency);
        // How the service spread the connections: each server prints its count when stopped.
        const accepted: Record<string, number | null> = {};
        for (const { pod, server } of servers.splice(0)) {
          await server.stop('SIGTERM');
          const m = /"accepted":(\d+)/.exec(server.stdout());
          accepted[`${pod.name} ${pod.ip}`] = m ? Number(m[1]) : null;
        }
        return { metrics: { clusterip_crr_per_s: r.perSecond }, raw: { ...r, port: CRR_PORT, acceptedPerEndpoint: accepted } };
      } finally {
        for (const { server } of servers) await server.stop();
      }
    },
  },
];

export interface RunRecord {
  scenario: string;
  round: number;
  side: SideKind;
  /** 0 when this side ran first in its round, 1 when second. */
  position: number;
  startedAt: string;
  seconds: number;
  metrics?: Record<string, number>;
  raw?: unknown;
  error?: string;
}

export interface SideSummary {
  /** Why this side did not run (not available yet), or its error. */
  unavailable?: string;
  error?: string;
  /** Median over rounds per metric key, and the values per round. */
  medians: Record<string, number>;
  rounds: Record<string, number[]>;
}

export interface ScenarioResult {
  id: string;
  title: string;
  method: string;
  metrics: MetricDef[];
  sides: Record<SideKind, SideSummary>;
  runs: RunRecord[];
}

export class Aborted extends Error {
  constructor() {
    super('aborted');
  }
}

function checkMetrics(s: Scenario, side: SideKind, metrics: Record<string, number>): void {
  for (const m of s.metrics) {
    if (!m.sides.includes(side)) continue;
    const v = metrics[m.key];
    if (v === undefined || !Number.isFinite(v) || v < 0 || (v === 0 && !m.allowZero)) throw new Error(`${s.id}/${side}: ${m.key} is ${v}: no number, a failure`);
  }
}

/** Runs one scenario for every round, alternating the sides; never throws except on abort. */
export async function runScenario(ctx: Ctx, s: Scenario, log: (line: string) => void): Promise<ScenarioResult> {
  const sides: Record<SideKind, SideSummary> = { podnet: { medians: {}, rounds: {} }, kernel: { medians: {}, rounds: {} } };
  const runs: RunRecord[] = [];
  for (const kind of ['podnet', 'kernel'] as const) {
    if (!s.prepare) continue;
    if (ctx.aborted()) throw new Aborted();
    try {
      const reason = await s.prepare(ctx, ctx.sides[kind]);
      if (reason) {
        sides[kind].unavailable = reason;
        log(`  ${s.id} ${kind}: ${reason}`);
      }
    } catch (err) {
      sides[kind].error = `prepare: ${(err as Error).message}`;
      log(`  ${s.id} ${kind}: FAILED to prepare: ${(err as Error).message}`);
    }
  }
  for (let round = 1; round <= ctx.opts.rounds; round++) {
    const order: SideKind[] = round % 2 === 1 ? ['podnet', 'kernel'] : ['kernel', 'podnet'];
    for (const [position, kind] of order.entries()) {
      if (ctx.aborted()) throw new Aborted();
      const summary = sides[kind];
      if (summary.unavailable || summary.error) continue;
      const startedAt = new Date();
      const rec: RunRecord = { scenario: s.id, round, side: kind, position, startedAt: startedAt.toISOString(), seconds: 0 };
      try {
        const out = await s.run(ctx, ctx.sides[kind]);
        if (ctx.aborted()) throw new Aborted();
        checkMetrics(s, kind, out.metrics);
        rec.metrics = out.metrics;
        rec.raw = out.raw;
        for (const [k, v] of Object.entries(out.metrics)) (summary.rounds[k] ??= []).push(v);
      } catch (err) {
        if (err instanceof Aborted || ctx.aborted()) throw new Aborted();
        rec.error = (err as Error).message;
        // One failure is enough to fail the scenario for this side; the remaining rounds are skipped.
        summary.error = `round ${round}: ${rec.error}`;
      }
      rec.seconds = (Date.now() - startedAt.getTime()) / 1000;
      runs.push(rec);
      log(`  ${s.id} round ${round} ${kind.padEnd(6)} ${rec.error ? `FAILED: ${rec.error}` : formatRun(s, rec.metrics!)}`);
    }
  }
  for (const kind of ['podnet', 'kernel'] as const) {
    for (const [k, vs] of Object.entries(sides[kind].rounds)) sides[kind].medians[k] = median(vs);
  }
  return { id: s.id, title: s.title, method: s.method, metrics: s.metrics, sides, runs };
}

export function formatValue(m: MetricDef, v: number): string {
  return `${(v * (m.scale ?? 1)).toFixed(m.digits)} ${m.unit}`;
}

function formatRun(s: Scenario, metrics: Record<string, number>): string {
  return s.metrics
    .filter((m) => metrics[m.key] !== undefined)
    .map((m) => `${m.key}=${formatValue(m, metrics[m.key]!)}`)
    .join('  ');
}
