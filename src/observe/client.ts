/** The CLI's side of `podnet capture` and `podnet flows --follow`: streamed API responses. */
import { request, type IncomingMessage } from 'node:http';
import { closeSync, openSync, writeSync } from 'node:fs';
import { ErrorCode, PodnetError } from '../util/errors.js';
import { compileFilter, FilterError } from './filter.js';
import { CaptureFileWriter } from './pcap.js';
import { summarizePacket } from './summary.js';
import { WireDecoder, type CaptureStats } from './wire.js';
import type { FlowRecord } from './flows.js';

/** Opens a streamed GET; resolves with the response once its head is there (a JSON error rejects). */
export function streamGet(socketPath: string, path: string): Promise<{ res: IncomingMessage; abort: () => void }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method: 'GET', path }, (res) => {
      if (res.statusCode === 200) return resolve({ res, abort: () => req.destroy() });
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          const e = (JSON.parse(Buffer.concat(chunks).toString()) as { error: { code: string; message: string } }).error;
          reject(new PodnetError(e.code as ErrorCode, e.message));
        } catch {
          reject(new PodnetError(ErrorCode.Internal, `daemon answered ${res.statusCode}`));
        }
      });
    });
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') reject(new PodnetError(ErrorCode.Precondition, `no podnet daemon is listening on ${socketPath} (is it running, and is --node right?)`));
      else if (e.code === 'EACCES') reject(new PodnetError(ErrorCode.Precondition, `permission denied on ${socketPath}: the podnet API is for root only`));
      else reject(new PodnetError(ErrorCode.Internal, `${socketPath}: ${e.message}`));
    });
    req.end();
  });
}

export interface CaptureCliOptions {
  write?: string;
  count?: number;
  filter?: string;
  snaplen?: number;
  format?: 'pcap' | 'pcapng';
}

/**
 * Runs a capture: writes a pcap/pcapng file (`-w FILE`, `-w -` for stdout) or prints one line per
 * packet; the totals (and the packets lost to a full capture ring) go to stderr at the end. Ends at
 * the count, when the daemon ends it, or on SIGINT/SIGTERM.
 */
export async function runCapture(socketPath: string, target: string, o: CaptureCliOptions): Promise<void> {
  if (o.filter !== undefined) {
    try {
      compileFilter(o.filter); // the daemon checks again; this names the problem without a round trip
    } catch (e) {
      if (e instanceof FilterError) throw new PodnetError(ErrorCode.InvalidArgument, e.message);
      throw e;
    }
  }
  const q = new URLSearchParams({ target });
  if (o.filter) q.set('filter', o.filter);
  if (o.count !== undefined) q.set('count', String(o.count));
  if (o.snaplen !== undefined) q.set('snaplen', String(o.snaplen));
  const { res, abort } = await streamGet(socketPath, `/v1/capture?${q.toString()}`);
  const format = o.format ?? (o.write?.endsWith('.pcapng') ? 'pcapng' : 'pcap');
  // Standard output (a summary line, or `-w -`) may be a pipe with a slow reader: when it is full the
  // response is paused, the daemon's socket fills, and the daemon counts what its ring cannot keep as
  // lost (the data plane never waits). A file is written synchronously.
  let paused = false;
  const out = (b: Buffer | string) => {
    if (!process.stdout.write(b) && !paused) {
      paused = true;
      res.pause();
      process.stdout.once('drain', () => {
        paused = false;
        res.resume();
      });
    }
  };
  const fd = o.write === undefined || o.write === '-' ? -1 : openSync(o.write, 'w', 0o600);
  const writer = o.write === undefined ? undefined : new CaptureFileWriter(format, fd >= 0 ? (b) => void writeSync(fd, b) : out);
  const dec = new WireDecoder();
  let link = 1;
  let vxlanPort = 0;
  let got = 0;
  let stats: CaptureStats = { matched: 0, lost: 0, filtered: 0 };
  let reason = 'interrupted';
  try {
    await readStream(res, abort, (chunk) => {
      const msgs = dec.push(chunk); // a malformed stream throws: readStream rejects with it
      for (const m of msgs) {
        if (m.type === 1) {
          link = m.start.linkType;
          vxlanPort = (m.start as unknown as { vxlanPort?: number }).vxlanPort ?? 0;
          writer?.header(link, m.start.snaplen, `${m.start.node}:${m.start.ifName}`);
          process.stderr.write(`capturing on ${m.start.target} of node ${m.start.node} (link type ${link === 1 ? 'EN10MB' : 'RAW'}, snaplen ${m.start.snaplen}${m.start.filter ? `, filter '${m.start.filter}'` : ''})\n`);
        } else if (m.type === 2) {
          got++;
          if (writer) writer.packet(m.epochMs, m.data, m.orig, m.dir);
          else out(summarizePacket(m.epochMs, m.dir, m.data, link, vxlanPort) + '\n');
          if (o.count !== undefined && got >= o.count) {
            reason = 'count reached';
            abort();
          }
        } else if (m.type === 3) stats = m.stats;
        else {
          stats = m.end;
          reason = m.end.reason;
        }
      }
    });
  } finally {
    writer?.stats(Date.now(), stats.matched, stats.lost);
    if (fd >= 0) closeSync(fd);
  }
  process.stderr.write(`${got} packets captured, ${stats.lost} lost (capture ring full), ${stats.filtered} filtered out; ${reason}\n`);
}

/** `podnet flows --follow`: prints records as the daemon streams them (NDJSON with --json) until interrupted. */
export async function followFlowsCli(socketPath: string, o: { pod?: string; json?: boolean }, format: (r: FlowRecord) => string): Promise<void> {
  const q = new URLSearchParams();
  if (o.pod) q.set('pod', o.pod);
  const { res, abort } = await streamGet(socketPath, `/v1/flows/follow?${q.toString()}`);
  let pending = '';
  await readStream(res, abort, (c) => {
    pending += c.toString();
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line === '') continue;
      const v = JSON.parse(line) as FlowRecord & { following?: boolean; lost?: number };
      if (v.following) process.stderr.write(`following the flow log${o.pod ? ` of pod ${o.pod}` : ''}\n`);
      else if (v.lost !== undefined) process.stderr.write(`${v.lost} flow records lost (this reader was too slow)\n`);
      else process.stdout.write((o.json ? JSON.stringify(v) : format(v)) + '\n');
    }
  });
}

/**
 * Feeds a streamed response's chunks to `onData` until it ends, closes or fails, or the user
 * interrupts (SIGINT/SIGTERM abort the request). A chunk `onData` throws on ends it with that error,
 * as a PodnetError.
 */
function readStream(res: IncomingMessage, abort: () => void, onData: (chunk: Buffer) => void): Promise<void> {
  const stop = () => abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return new Promise<void>((resolve, reject) => {
    res.on('data', (chunk: Buffer) => {
      try {
        onData(chunk);
      } catch (e) {
        abort();
        reject(e instanceof PodnetError ? e : new PodnetError(ErrorCode.Internal, (e as Error).message));
      }
    });
    res.on('end', resolve);
    res.on('close', resolve);
    res.on('error', () => resolve());
  }).finally(() => {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  });
}
