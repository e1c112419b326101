/** The daemon's flow-log routes: `GET /v1/flows` (a listing) and `GET /v1/flows/follow` (NDJSON, streamed). */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PodRecord } from '../store/registry.js';
import type { ServiceRecord } from '../services/record.js';
import { invalid } from '../util/errors.js';
import { flowInvolves, type FlowLog, type FlowNames, type FlowRecord } from './flows.js';

export interface FlowSources {
  pods(): Promise<PodRecord[]>;
  services(): Promise<ServiceRecord[]>;
}

/** Pod and service names as the cluster has them now. */
export async function flowNames(src: FlowSources): Promise<FlowNames> {
  const [pods, services] = await Promise.all([src.pods().catch(() => []), src.services().catch(() => [])]);
  const byIp = new Map<string, string>();
  for (const p of pods) byIp.set(p.ip, p.name);
  const svc = new Map<string, string>();
  for (const s of services) {
    const ips = [s.clusterIp, ...(s.externalIps ?? []), ...(s.loadBalancerIp ? [s.loadBalancerIp] : [])];
    for (const ip of ips) for (const p of s.ports) svc.set(`${ip}|${p.port}|${p.protocol}`, s.name);
  }
  return {
    pod: (ip) => byIp.get(ip),
    service: (ip, port, proto) => svc.get(`${ip}|${port}|${proto}`),
  };
}

function limitParam(v: string | undefined, dflt: number): number {
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw invalid(`flows: limit must be a positive integer, got '${v}'`);
  return n;
}

export async function listFlows(log: FlowLog, src: FlowSources, params: Record<string, string>): Promise<{ first: number; next: number; records: FlowRecord[] }> {
  const limit = limitParam(params.limit, log.capacity);
  const names = await flowNames(src);
  let records = log.read(log.first, log.capacity, names);
  if (params.pod) records = records.filter((r) => flowInvolves(r, params.pod!));
  return { first: log.first, next: log.next, records: records.slice(-limit) };
}

const FOLLOW_MS = 200;

/**
 * Streams records as they come (one JSON object per line), from the next one on; a line
 * `{"lost": N}` says N records were overwritten before this reader got to them.
 */
export function followFlows(log: FlowLog, src: FlowSources, params: Record<string, string>, _req: IncomingMessage, res: ServerResponse): void {
  const pod = params.pod || undefined;
  let from = log.next;
  let busy = false;
  let closed = false;
  const tick = async () => {
    if (busy || closed || log.next === from) return;
    busy = true;
    try {
      if (from < log.first) {
        res.write(JSON.stringify({ lost: log.first - from }) + '\n');
        from = log.first;
      }
      const upto = log.next;
      const names = await flowNames(src);
      const recs = log.read(from, upto - from, names);
      from = upto;
      let out = '';
      for (const r of recs) if (pod === undefined || flowInvolves(r, pod)) out += JSON.stringify(r) + '\n';
      if (out !== '' && !closed) res.write(out);
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void tick(), FOLLOW_MS);
  res.on('close', () => {
    closed = true;
    clearInterval(timer);
  });
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  res.write(JSON.stringify({ following: true, next: from }) + '\n');
}
