import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { expect } from 'chai';
import { REPO_ROOT, type Topology } from '../../src/topology/topology.js';

export const NETTOOL = join(REPO_ROOT, 'test/fixtures/nettool.mjs');
export const RAWSEND = join(REPO_ROOT, 'test/fixtures/rawsend.py');

/** A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick for port 0). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves with the promise's value, or `fallback` after `ms`; the timer never outlives the race. */
export async function within<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<T>((r) => (timer = setTimeout(() => r(fallback), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Pings from a namespace; true when `count` replies came back. */
export async function ping(t: Topology, ns: string, ip: string, opts: { count?: number; size?: number; df?: boolean } = {}): Promise<boolean> {
  const args = ['-c', String(opts.count ?? 2), '-i', '0.2', '-W', '2'];
  if (opts.size !== undefined) args.push('-s', String(opts.size));
  if (opts.df) args.push('-M', 'do');
  const r = await t.exec(ns, 'ping', [...args, ip], 30_000);
  return r.code === 0;
}

/** Starts a long-running process in a namespace; resolves once it prints `ready` on stdout or stderr. */
export function startIn(ns: string, cmd: string, args: string[], ready = 'listening') {
  const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const started = new Promise<void>((resolve, reject) => {
    const check = () => (out.includes(ready) || err.includes(ready)) && resolve();
    child.stdout.on('data', (d: Buffer) => ((out += d.toString()), check()));
    child.stderr.on('data', (d: Buffer) => ((err += d.toString()), check()));
    child.on('exit', (c) => reject(new Error(`${cmd} ${args.join(' ')} exited ${c} before it was ready: ${err}`)));
  });
  const exited = new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
  return { child, started, exited, output: () => out, errors: () => err, stop: () => child.kill('SIGKILL') };
}

/**
 * Sends `bytes` of pseudo-random data over TCP from one namespace to a sink in another and checks that
 * the SHA-256 and length match. Returns the source address the receiver saw.
 */
export async function tcpTransfer(t: Topology, fromNs: string, toNs: string, toIp: string, bytes: number, port = 5001): Promise<string> {
  const sink = startIn(toNs, process.execPath, [NETTOOL, 'sink', String(port)]);
  try {
    await sink.started;
    const sent = await t.exec(fromNs, process.execPath, [NETTOOL, 'send', toIp, String(port), String(bytes)], 300_000);
    expect(sent.code, `sender failed: ${sent.stderr}`).to.equal(0);
    const code = await within(sink.exited, 60_000, -1);
    expect(code, `sink: ${sink.errors()}`).to.equal(0);
    const [sentBytes, sentHash] = sent.stdout.trim().split(' ');
    const [gotBytes, gotHash, remote] = sink.output().trim().split(' ');
    expect(Number(gotBytes)).to.equal(bytes);
    expect(Number(sentBytes)).to.equal(bytes);
    expect(gotHash).to.equal(sentHash);
    return (remote ?? '').replace(/^::ffff:/, '');
  } finally {
    sink.stop();
  }
}

export async function statusJson(t: Topology, host: string): Promise<any> {
  const r = await t.podnet(host, ['status', '--json']);
  expect(r.code, r.stderr).to.equal(0);
  return JSON.parse(r.stdout);
}

export function podCounters(status: any, pod: string): { drops: Record<string, number>; rxFrames: number; txFrames: number } {
  const p = status.pods.find((x: any) => x.name === pod);
  if (!p) throw new Error(`no pod ${pod} in status`);
  return p.counters;
}

/**
 * A one-member etcd (Debian's etcd-server) serving clients on `clientIp`:2379 inside namespace `ns`,
 * its data under `dataDir`; resolves once it serves. Stop it with `stop()`.
 */
export function startEtcd(ns: string, dataDir: string, clientIp = '198.18.0.1') {
  const url = `http://${clientIp}:2379`;
  return startIn(ns, 'etcd', [
    '--data-dir', dataDir, '--name', 'podnet-test',
    '--listen-client-urls', url, '--advertise-client-urls', url,
    '--listen-peer-urls', 'http://127.0.0.1:2380', '--initial-advertise-peer-urls', 'http://127.0.0.1:2380',
    '--initial-cluster', 'podnet-test=http://127.0.0.1:2380',
  ], 'ready to serve client requests');
}
