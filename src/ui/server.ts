/**
 * `podnet ui`: a web page on a loopback address with a live map of the cluster.
 *
 * The CLI process serves it (the daemon gets no new listener): every `intervalMs` it reads the cluster
 * view from one daemon and each node's counters from that node's own daemon socket in the run dir
 * (the same API calls as `podnet nodes`, `pod list --all`, `svc list`, `status` and `conntrack list`),
 * builds the map (model.ts) and its layout (layout.ts), and sends both to every open page as a
 * Server-Sent Event. Only loopback addresses can be bound, and requests must name a loopback host
 * (a web page elsewhere cannot read the map through DNS rebinding). The server changes nothing: it
 * has GET routes only.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { apiCall } from '../api/client.js';
import { layoutMap, type MapLayout } from './layout.js';
import { MapBuilder, type ClusterMap, type ClusterSnapshot, type ConnView, type NodeReading, type NodeRecordView, type NodeStatusView, type PodRecordView, type ServiceView } from './model.js';
import { PAGE_CSS, PAGE_HTML, PAGE_JS } from './page.js';

export const DEFAULT_UI_ADDRESS = '127.0.0.1:9465';
/** Connections read per node and reading (the busiest pairs of these are drawn). */
export const CONNTRACK_LIMIT = 5000;
const API_TIMEOUT_MS = 5000;

/** What one update carries to the page. */
export interface UiPayload {
  map?: ClusterMap;
  layout?: MapLayout;
  /** Why the last reading failed (the page keeps showing the map before it). */
  error?: string;
}

/**
 * Parses `--address HOST:PORT`; HOST must be a loopback address (127.0.0.0/8, [::1] or localhost),
 * PORT 0-65535 (0: any free port). Throws naming the option and the reason.
 */
export function parseUiAddress(s: string, field = '--address'): { host: string; port: number } {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):([^:]*)$/.exec(s);
  if (!m) throw new Error(`invalid ${field} ${JSON.stringify(s)}: expected HOST:PORT, e.g. ${DEFAULT_UI_ADDRESS}`);
  const host = m[1] ?? m[2]!;
  const portText = m[3]!;
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw new Error(`invalid ${field} ${JSON.stringify(s)}: port ${JSON.stringify(portText)} is not a number from 0 to 65535`);
  const port = Number(portText);
  if (host === 'localhost') return { host: '127.0.0.1', port };
  if (m[1] !== undefined) {
    if (host === '::1') return { host: '::1', port };
    throw new Error(`invalid ${field} ${JSON.stringify(s)}: the UI binds to a loopback address only (127.0.0.0/8, [::1] or localhost), not [${host}]`);
  }
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  if (!v4 || v4.slice(1).some((o) => Number(o) > 255 || (o.length > 1 && o.startsWith('0')))) {
    throw new Error(`invalid ${field} ${JSON.stringify(s)}: host ${JSON.stringify(host)} is not an IPv4 address, [::1] or localhost`);
  }
  if (v4[1] !== '127') throw new Error(`invalid ${field} ${JSON.stringify(s)}: the UI binds to a loopback address only (127.0.0.0/8, [::1] or localhost), not ${host}`);
  return { host, port };
}

/** A Host header the page may be asked for under: a loopback name or address with our port. */
export function loopbackHost(header: string | undefined, port: number): boolean {
  if (!header) return false;
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(header.trim().toLowerCase());
  if (!m || Number(m[3] ?? 80) !== port) return false;
  const h = m[1] ?? m[2]!;
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

export interface UiOptions {
  address: string;
  intervalMs: number;
  runDir: string;
  /** The daemon to read the cluster view from; default: the first in the run dir that answers. */
  node?: string;
}

/**
 * Reads the cluster once: the view from one daemon, the counters from every node's own socket in the
 * run dir. A socket whose daemon belongs to another cluster (its VTEP MAC is not the node record's)
 * counts as no socket.
 */
export async function readCluster(runDir: string, node?: string): Promise<ClusterSnapshot> {
  const sock = (n: string) => join(runDir, `${n}.sock`);
  let candidates: string[];
  if (node) candidates = [node];
  else {
    try {
      candidates = readdirSync(runDir)
        .filter((f) => f.endsWith('.sock'))
        .map((f) => f.slice(0, -5))
        .sort();
    } catch {
      candidates = [];
    }
    if (candidates.length === 0) throw new Error(`no podnet daemon socket in ${runDir} (is a daemon running here? --run-dir picks another directory)`);
  }
  let view: { source: string; nodes: NodeRecordView[]; pods: PodRecordView[]; services: ServiceView[] } | undefined;
  const errors: string[] = [];
  for (const c of candidates) {
    try {
      const [nodes, pods, services] = await Promise.all([
        apiCall<NodeRecordView[]>(sock(c), 'GET', '/v1/nodes', undefined, API_TIMEOUT_MS),
        apiCall<PodRecordView[]>(sock(c), 'GET', '/v1/cluster/pods', undefined, API_TIMEOUT_MS),
        apiCall<ServiceView[]>(sock(c), 'GET', '/v1/services', undefined, API_TIMEOUT_MS),
      ]);
      view = { source: c, nodes, pods, services };
      break;
    } catch (err) {
      errors.push(`${c}: ${(err as Error).message}`);
    }
  }
  if (!view) throw new Error(`no podnet daemon answered: ${errors.join('; ')}`);
  const at = Date.now();
  const readings: Record<string, NodeReading> = {};
  await Promise.all(
    view.nodes.map(async (n) => {
      if (!existsSync(sock(n.name))) return;
      try {
        const [status, conntrack] = await Promise.all([
          apiCall<NodeStatusView>(sock(n.name), 'GET', '/v1/status', undefined, API_TIMEOUT_MS),
          apiCall<ConnView[]>(sock(n.name), 'GET', `/v1/conntrack?limit=${CONNTRACK_LIMIT}`, undefined, API_TIMEOUT_MS),
        ]);
        if (status.cluster?.vtepMac !== undefined && status.cluster.vtepMac !== n.vtepMac) return; // another cluster's node of that name
        readings[n.name] = { at: Date.now(), status, conntrack };
      } catch (err) {
        readings[n.name] = { at: Date.now(), error: (err as Error).message };
      }
    }),
  );
  return { at, source: view.source, nodes: view.nodes, pods: view.pods, services: view.services, readings };
}

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

export class UiServer {
  private readonly clients = new Set<ServerResponse>();
  private readonly builder = new MapBuilder();
  private payload: UiPayload = {};
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private polling: Promise<void> = Promise.resolve();
  /** Readings made so far (for tests and the log). */
  readings = 0;

  private constructor(
    private readonly server: Server,
    private readonly opts: UiOptions,
    readonly url: string,
    private readonly port: number,
  ) {}

  static async start(opts: UiOptions): Promise<UiServer> {
    const { host, port } = parseUiAddress(opts.address);
    if (!(Number.isInteger(opts.intervalMs) && opts.intervalMs >= 100)) throw new Error(`invalid --interval ${opts.intervalMs}: must be a whole number of milliseconds, at least 100`);
    let ui: UiServer | undefined;
    const server = createServer((req, res) => ui!.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new Error(`cannot listen on ${opts.address}: ${e.code === 'EADDRINUSE' ? 'the port is in use (try another --address port, or port 0 for any free one)' : e.message}`)));
      server.listen(port, host, () => resolve());
    });
    const a = server.address() as AddressInfo;
    const url = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/`;
    ui = new UiServer(server, opts, url, a.port);
    ui.polling = ui.poll();
    await ui.polling;
    return ui;
  }

  /** The map of the last reading (or why there is none). */
  current(): UiPayload {
    return this.payload;
  }

  private async poll(): Promise<void> {
    try {
      const snap = await readCluster(this.opts.runDir, this.opts.node);
      const map = this.builder.update(snap);
      this.payload = { map, layout: layoutMap(map) };
    } catch (err) {
      this.payload = { ...this.payload, error: (err as Error).message };
    }
    this.readings++;
    this.broadcast();
    if (!this.closed) {
      this.timer = setTimeout(() => {
        this.polling = this.poll();
      }, this.opts.intervalMs);
    }
  }

  private event(): string {
    return `event: map\ndata: ${JSON.stringify(this.payload)}\n\n`;
  }

  private broadcast(): void {
    const ev = this.event();
    for (const c of this.clients) c.write(ev);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    if (!loopbackHost(req.headers.host, this.port)) {
      res.writeHead(421, { 'content-type': 'text/plain' }).end('podnet ui answers requests for localhost only\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' }).end('podnet ui is read-only: GET only\n');
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    const send = (type: string, body: string) => {
      res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    switch (path) {
      case '/':
        return send('text/html; charset=utf-8', PAGE_HTML);
      case '/app.js':
        return send('text/javascript; charset=utf-8', PAGE_JS);
      case '/app.css':
        return send('text/css; charset=utf-8', PAGE_CSS);
      case '/api/map':
        return send('application/json', JSON.stringify(this.payload));
      case '/events': {
        res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream', connection: 'keep-alive' });
        res.write(`retry: ${Math.max(1000, this.opts.intervalMs)}\n\n`);
        if (this.payload.map || this.payload.error) res.write(this.event());
        this.clients.add(res);
        req.on('close', () => this.clients.delete(res));
        return;
      }
      default:
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.polling;
    if (this.timer) clearTimeout(this.timer);
    for (const c of this.clients) c.end();
    this.clients.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
