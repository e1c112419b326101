/**
 * The measuring tools, run inside pod namespaces: iperf3 (TCP throughput, small-packet UDP), ping (RTT)
 * and the short-connection client of crr.ts. Each function returns numbers or throws with the tool's own
 * error: a run that produced no number is an error, never a zero.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runIn, startServer } from './proc.js';
import { median, percentile } from '../stats.js';

export { median, percentile };

export interface Endpoint {
  /** Pod name inside its cluster (a1, a2, b1). */
  name: string;
  /** Network namespace of the pod. */
  ns: string;
  ip: string;
}

export const IPERF_PORT = 5201;
export const CRR_PORT = 8080;
const CRR_TOOL = join(dirname(fileURLToPath(import.meta.url)), 'crr.js');

export interface TcpResult {
  /** Receiver's goodput, bits per second (iperf3 end.sum_received). */
  bitsPerSecond: number;
  /** Bytes the receiver got. */
  bytes: number;
  seconds: number;
  retransmits: number | undefined;
}

function parseIperf(out: { code: number; stdout: string; stderr: string }, what: string): any {
  let json: any;
  try {
    json = JSON.parse(out.stdout);
  } catch {
    throw new Error(`${what}: iperf3 exited ${out.code} without JSON: ${(out.stderr || out.stdout).trim().slice(-500)}`);
  }
  if (json.error || out.code !== 0) throw new Error(`${what}: iperf3: ${json.error ?? `exit ${out.code}`} ${out.stderr.trim().slice(-300)}`);
  return json;
}

/**
 * One iperf3 TCP run: a one-shot server (`iperf3 -s -1`) in `server`'s namespace, the client in
 * `client`'s, connecting to `target` (the server pod itself, or a ClusterIP that leads to it).
 * `around` is called right before the client starts and right after it ends (CPU readings).
 */
export async function iperfTcp(client: Endpoint, server: Endpoint, seconds: number, target = { ip: server.ip, port: IPERF_PORT }, around?: () => void): Promise<TcpResult> {
  const srv = await startServer(server.ns, 'iperf3', ['-s', '-1', '-p', String(IPERF_PORT)], IPERF_PORT);
  try {
    around?.();
    const out = await runIn(client.ns, 'iperf3', ['-c', target.ip, '-p', String(target.port), '-t', String(seconds), '-J', '--connect-timeout', '5000'], (seconds + 30) * 1000);
    around?.();
    const json = parseIperf(out, `TCP ${client.name} -> ${target.ip}:${target.port}`);
    const recv = json.end?.sum_received;
    const bps = Number(recv?.bits_per_second);
    const bytes = Number(recv?.bytes);
    if (!(bps > 0) || !(bytes > 0)) throw new Error(`TCP ${client.name} -> ${target.ip}: iperf3 reported no data received (${JSON.stringify(recv)})`);
    return { bitsPerSecond: bps, bytes, seconds: Number(recv.seconds), retransmits: json.end?.sum_sent?.retransmits };
  } finally {
    await srv.stop();
  }
}

export interface UdpResult {
  /** Datagrams the receiver got per second. */
  receivedPps: number;
  /** Datagrams the sender sent per second. */
  sentPps: number;
  /** Percent of datagrams lost (iperf3's count from sequence-number gaps). */
  lossPercent: number;
  sent: number;
  received: number;
  seconds: number;
}

/** One iperf3 UDP run with `payload`-byte datagrams offered at `rate` (iperf3 -b). */
export async function iperfUdp(client: Endpoint, server: Endpoint, seconds: number, payload = 64, rate = '1G'): Promise<UdpResult> {
  const srv = await startServer(server.ns, 'iperf3', ['-s', '-1', '-p', String(IPERF_PORT)], IPERF_PORT);
  try {
    const out = await runIn(
      client.ns,
      'iperf3',
      ['-c', server.ip, '-p', String(IPERF_PORT), '-u', '-l', String(payload), '-b', rate, '-t', String(seconds), '-J', '--connect-timeout', '5000'],
      (seconds + 30) * 1000,
    );
    const json = parseIperf(out, `UDP ${client.name} -> ${server.ip}`);
    const sentSum = json.end?.sum_sent;
    const recvSum = json.end?.sum_received;
    const sent = Number(sentSum?.packets);
    // The receiver's view (exchanged at the end of the test): packets = highest sequence seen, lost = gaps.
    const received = Number(recvSum?.packets) - Number(recvSum?.lost_packets);
    const secs = Number(recvSum?.seconds);
    if (!(sent > 0) || !(received > 0) || !(secs > 0)) throw new Error(`UDP ${client.name} -> ${server.ip}: no datagrams received (${JSON.stringify({ sentSum, recvSum })})`);
    return {
      receivedPps: received / secs,
      sentPps: sent / Number(sentSum.seconds),
      lossPercent: Number(recvSum.lost_percent),
      sent,
      received,
      seconds: secs,
    };
  } finally {
    await srv.stop();
  }
}

export interface PingResult {
  sent: number;
  received: number;
  /** Milliseconds. */
  medianMs: number;
  p99Ms: number;
  minMs: number;
  maxMs: number;
  /** Replies slower than 1 ms and 5x the median (first 50), with their sequence numbers: spikes or a pattern. */
  slow: Array<{ seq: number; ms: number }>;
}

/** `count` echo requests 10 ms apart; the per-reply `time=` values give the median and the p99. */
export async function pingRtt(client: Endpoint, dst: Endpoint, count: number): Promise<PingResult> {
  const out = await runIn(client.ns, 'ping', ['-n', '-i', '0.01', '-c', String(count), '-W', '1', dst.ip], count * 10 + 30_000);
  const replies = [...out.stdout.matchAll(/icmp_seq=(\d+) .*time=([\d.]+) ms/g)].map((m) => ({ seq: Number(m[1]), ms: Number(m[2]) }));
  const times = replies.map((r) => r.ms).sort((a, b) => a - b);
  if (times.length === 0) throw new Error(`ping ${client.name} -> ${dst.ip}: no replies (exit ${out.code}): ${(out.stderr || out.stdout).trim().slice(-300)}`);
  const med = median(times);
  const slow = replies.filter((r) => r.ms > 1 && r.ms > 5 * med).slice(0, 50);
  return { sent: count, received: times.length, medianMs: med, p99Ms: percentile(times, 99), minMs: times[0]!, maxMs: times[times.length - 1]!, slow };
}

export interface CrrResult {
  /** Completed connections (connect, 64-byte request, 64-byte answer, close) per second. */
  perSecond: number;
  connections: number;
  errors: number;
  seconds: number;
  firstError?: string;
}

/**
 * Short TCP connections for `seconds`: `concurrency` loops in one Node process in the client pod, each
 * connecting to `target`, sending 64 bytes, reading the server's 64-byte answer and closing.
 */
export async function crr(client: Endpoint, target: { ip: string; port: number }, seconds: number, concurrency: number): Promise<CrrResult> {
  const out = await runIn(client.ns, process.execPath, [CRR_TOOL, 'client', target.ip, String(target.port), String(seconds), String(concurrency)], (seconds + 30) * 1000);
  let r: CrrResult;
  try {
    r = JSON.parse(out.stdout);
  } catch {
    throw new Error(`connection client ${client.name} -> ${target.ip}:${target.port} exited ${out.code}: ${out.stderr.trim().slice(-300)}`);
  }
  if (!(r.connections > 0)) throw new Error(`connection client ${client.name} -> ${target.ip}:${target.port}: no connection completed (${r.errors} errors, first: ${r.firstError})`);
  // A path that fails a noticeable share of connections is broken, not slow.
  if (r.errors > r.connections * 0.01) throw new Error(`connection client ${client.name} -> ${target.ip}:${target.port}: ${r.errors} errors for ${r.connections} connections (first: ${r.firstError})`);
  return r;
}

/** Starts the short-connection server (crr.js server) in a pod. */
export function startCrrServer(pod: Endpoint) {
  return startServer(pod.ns, process.execPath, [CRR_TOOL, 'server', String(CRR_PORT)], CRR_PORT);
}
