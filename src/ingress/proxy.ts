import { Agent, STATUS_CODES, createServer as createHttpServer, type ClientRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import type { SecureContext, TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { createProxyServer, type ProxyServer } from 'http-proxy-3';
import type { IngressRecord } from './record.js';
import { RouteTable, requestPath, type Route } from './routes.js';
import { CertTable } from './tls.js';

/** What the proxy needs to know about a service: its cluster IP, ports and current endpoints. */
export interface ServiceLookup {
  lookup(name: string): { clusterIp: string; ports: ReadonlyArray<{ port: number; protocol: string }>; endpoints: readonly string[] } | undefined;
}

export interface IngressProxyOptions {
  /** The node's underlay address: both listeners bind to it. */
  address: string;
  httpPort: number;
  httpsPort: number;
  services: ServiceLookup;
  log: Logger;
  /** An upstream connection idle this long (no response yet, or a stalled body) fails the request with 504. */
  upstreamIdleMs?: number;
  /** Idle keep-alive connections to clients are closed after this long. */
  clientKeepAliveMs?: number;
}

export interface ListenerState {
  address: string;
  port: number;
  listening: boolean;
  error?: string;
}

type Scheme = 'http' | 'https';

/** A backend resolved for one request: where to connect and the pool to connect from. */
interface Upstream {
  key: string;
  url: string;
  agent: Agent;
}

interface Pool {
  clusterIp: string;
  url: string;
  agent: Agent;
  endpoints: Set<string>;
}

/** Hop-by-hop headers (RFC 9110 7.6.1) that must not be passed on; `connection` is handled separately. */
const HOP_BY_HOP_REQUEST = ['keep-alive', 'proxy-connection', 'te', 'expect'];
const HOP_BY_HOP_RESPONSE = ['connection', 'keep-alive', 'proxy-connection'];

class UpstreamTimeout extends Error {
  readonly code = 'EUPSTREAMTIMEOUT';
}

/**
 * The ingress data path of one node: an HTTP and an HTTPS listener on the node's underlay address that
 * route each request by host and path (RouteTable) to a service's cluster IP and port, and proxy it
 * there with http-proxy-3 over a keep-alive pool per service port. The connection to the cluster IP is an
 * ordinary kernel socket: it leaves through `podnet0` and podnet's own router balances and NATs it like
 * any other client's. Bodies stream both ways with backpressure (pipe), WebSocket upgrades are passed
 * through, HTTPS picks its certificate by SNI (CertTable). `update` swaps in new rules at once.
 */
export class IngressProxy {
  private routes = new RouteTable([]);
  private certs: CertTable;
  private readonly contexts = new Map<string, SecureContext>();
  private readonly pools = new Map<string, Pool>();
  private readonly proxy: ProxyServer;
  private readonly proxyReqs = new WeakMap<IncomingMessage, ClientRequest>();
  private readonly upgraded = new WeakSet<object>();
  /** Client sockets of WebSocket sessions: a server's close() would wait for them, stop() ends them. */
  private readonly tunnels = new Set<Socket>();
  private httpServer: Server | undefined;
  private httpsServer: HttpsServer | undefined;
  private readonly upstreamIdleMs: number;
  readonly listeners: { http: ListenerState; https: ListenerState };
  readonly stats = { requests: 0, upgrades: 0, proxied: 0, retried: 0, notFound: 0, unavailable: 0, badGateway: 0, gatewayTimeout: 0 };

  constructor(private readonly o: IngressProxyOptions) {
    this.upstreamIdleMs = o.upstreamIdleMs ?? 60_000;
    this.certs = new CertTable([], this.contexts, o.log);
    this.listeners = {
      http: { address: o.address, port: o.httpPort, listening: false },
      https: { address: o.address, port: o.httpsPort, listening: false },
    };
    // xfwd off: the X-Forwarded-* headers are set here (replaced, not appended: this is the edge).
    this.proxy = createProxyServer({ xfwd: false, changeOrigin: false, ws: true });
    this.proxy.on('error', (err, req) => this.o.log.debug({ err: err.message, url: req?.url }, 'ingress proxy error'));
    this.proxy.on('proxyReq', (proxyReq, req) => {
      this.proxyReqs.set(req, proxyReq);
      proxyReq.setTimeout(this.upstreamIdleMs, () => proxyReq.destroy(new UpstreamTimeout(`no data from upstream for ${this.upstreamIdleMs} ms`)));
    });
    this.proxy.on('proxyReqWs', (proxyReq, _req, socket) => {
      proxyReq.once('upgrade', () => this.upgraded.add(socket));
    });
    this.proxy.on('proxyRes', (proxyRes) => {
      // The upstream's connection management is not the client's: Connection is set for the client by
      // http-proxy (from the client's own Connection header), keep-alive hints are our server's.
      for (const h of HOP_BY_HOP_RESPONSE) delete proxyRes.headers[h];
    });
  }

  /** Replaces the rules and certificates; requests already under way keep their backend. */
  update(ingresses: readonly IngressRecord[]): void {
    this.routes = new RouteTable(ingresses);
    this.certs = new CertTable(ingresses, this.contexts, this.o.log);
    const def = this.certs.defaultPem;
    this.httpsServer?.setSecureContext(def ? { cert: def.cert, key: def.key } : {});
    // Pools of backends no rule names any more: close their idle connections (busy ones finish first).
    const wanted = new Set<string>();
    for (const i of ingresses) {
      for (const r of i.rules) wanted.add(`${r.backend.service}:${r.backend.port}`);
      if (i.defaultBackend) wanted.add(`${i.defaultBackend.service}:${i.defaultBackend.port}`);
    }
    for (const [k, p] of this.pools) {
      if (!wanted.has(k)) {
        this.pools.delete(k);
        closeIdle(p.agent);
      }
    }
    this.o.log.info({ ingresses: ingresses.length, rules: this.routes.ruleCount, certificates: this.certs.size }, 'ingress rules applied');
  }

  async start(): Promise<void> {
    const tune = <S extends Server | HttpsServer>(s: S): S => {
      s.keepAliveTimeout = this.o.clientKeepAliveMs ?? 60_000;
      s.headersTimeout = 60_000;
      // No limit on the whole request: a large upload may take long; idle sockets still time out.
      s.requestTimeout = 0;
      s.timeout = 300_000;
      return s;
    };
    this.httpServer = tune(createHttpServer((req, res) => this.onRequest(req, res, 'http')));
    this.httpServer.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.onUpgrade(req, socket, head, 'http'));
    const https = createHttpsServer({
      minVersion: 'TLSv1.2',
      SNICallback: (servername, cb) => cb(null, this.certs.lookup(servername)),
    });
    const def = this.certs.defaultPem;
    if (def) https.setSecureContext({ cert: def.cert, key: def.key });
    https.on('request', (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res, 'https'));
    https.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.onUpgrade(req, socket, head, 'https'));
    https.on('tlsClientError', (err) => this.o.log.debug({ err: err.message }, 'ingress TLS handshake failed'));
    this.httpsServer = tune(https);
    await Promise.all([this.listen(this.httpServer, this.listeners.http), this.listen(this.httpsServer, this.listeners.https)]);
  }

  /** Listens; a port that cannot be had is logged and reported in status, not fatal to the node. */
  private listen(server: Server | HttpsServer, state: ListenerState): Promise<void> {
    return new Promise((resolve) => {
      const onError = (err: Error) => {
        state.error = err.message;
        this.o.log.error({ err: err.message, address: state.address, port: state.port }, 'ingress cannot listen; set ingress.enabled=false or another port');
        resolve();
      };
      server.once('error', onError);
      server.listen(state.port, state.address, () => {
        server.off('error', onError);
        server.on('error', (err) => this.o.log.error({ err: err.message, port: state.port }, 'ingress listener error'));
        state.listening = true;
        this.o.log.info({ address: state.address, port: state.port }, 'ingress listening');
        resolve();
      });
    });
  }

  async stop(): Promise<void> {
    const close = (s: Server | HttpsServer | undefined) =>
      new Promise<void>((resolve) => {
        if (!s || !s.listening) return resolve();
        s.close(() => resolve());
        s.closeAllConnections();
      });
    for (const s of this.tunnels) s.destroy();
    await Promise.all([close(this.httpServer), close(this.httpsServer)]);
    this.listeners.http.listening = false;
    this.listeners.https.listening = false;
    for (const p of this.pools.values()) p.agent.destroy();
    this.pools.clear();
  }

  status() {
    return { listeners: this.listeners, rules: this.routes.ruleCount, certificates: this.certs.size, ...this.stats };
  }

  // ---- requests ----

  /** Finds the backend for a request, or the status to answer with. */
  private resolve(req: IncomingMessage): Upstream | { status: number; message: string } {
    const host = req.headers.host ?? ((req.socket as TLSSocket).servername || '');
    const path = requestPath(req.url);
    const route = this.routes.match(host, path);
    if (!route) return { status: 404, message: `no ingress rule for host ${JSON.stringify(host)} and path ${JSON.stringify(path)}` };
    return this.upstream(route);
  }

  private upstream(route: Route): Upstream | { status: number; message: string } {
    const { service, port } = route.backend;
    const svc = this.o.services.lookup(service);
    if (!svc) return { status: 503, message: `service ${service} does not exist` };
    if (!svc.ports.some((p) => p.port === port && p.protocol === 'tcp')) return { status: 503, message: `service ${service} has no TCP port ${port}` };
    if (svc.endpoints.length === 0) return { status: 503, message: `service ${service} has no endpoints` };
    const key = `${service}:${port}`;
    let pool = this.pools.get(key);
    if (pool && pool.clusterIp !== svc.clusterIp) {
      // The service was re-created with another cluster IP.
      closeIdle(pool.agent);
      pool = undefined;
    }
    if (!pool) {
      pool = {
        clusterIp: svc.clusterIp,
        url: `http://${svc.clusterIp}:${port}`,
        // Free connections live 30 s (less when the upstream announces a shorter keep-alive timeout).
        agent: new Agent({ keepAlive: true, maxFreeSockets: 64, timeout: 30_000, scheduling: 'lifo' }),
        endpoints: new Set(svc.endpoints),
      };
      this.pools.set(key, pool);
    } else if (svc.endpoints.length < pool.endpoints.size || svc.endpoints.some((e) => !pool!.endpoints.has(e))) {
      // Endpoints changed: an idle pooled connection may lead to a pod that is gone. New requests open new
      // connections, which the router balances over the endpoints there are now.
      let removed = svc.endpoints.length < pool.endpoints.size;
      if (!removed) {
        const now = new Set(svc.endpoints);
        for (const e of pool.endpoints) if (!now.has(e)) removed = true;
      }
      if (removed) closeIdle(pool.agent);
      pool.endpoints = new Set(svc.endpoints);
    }
    return { key, url: pool.url, agent: pool.agent };
  }

  private onRequest(req: IncomingMessage, res: ServerResponse, scheme: Scheme): void {
    this.stats.requests++;
    const up = this.resolve(req);
    if ('status' in up) return this.reply(res, up.status, up.message);
    this.forwardHeaders(req, scheme);
    this.forward(req, res, up, 0);
  }

  private forward(req: IncomingMessage, res: ServerResponse, up: Upstream, attempt: number): void {
    this.stats.proxied++;
    const opts = attempt === 0 ? { target: up.url, agent: up.agent } : { target: up.url, agent: up.agent, buffer: Readable.from([]) };
    this.proxy.web(req, res, opts, (err) => this.onProxyError(err as NodeJS.ErrnoException, req, res, up, attempt));
  }

  private onProxyError(err: NodeJS.ErrnoException, req: IncomingMessage, res: ServerResponse, up: Upstream, attempt: number): void {
    if (res.headersSent || res.writableEnded) {
      // The response had begun: the only honest signal left is to cut the connection.
      res.destroy();
      return;
    }
    if (req.socket.destroyed) return;
    const proxyReq = this.proxyReqs.get(req);
    // A pooled connection the upstream closed just as we reused it: safe to retry once when the request
    // has no body and is idempotent (as nginx's proxy_next_upstream does for errors before a response).
    if (attempt === 0 && proxyReq?.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE') && isRetryable(req)) {
      this.stats.retried++;
      this.forward(req, res, up, 1);
      return;
    }
    if (err instanceof UpstreamTimeout) return this.reply(res, 504, `upstream ${up.key} (${up.url}) timed out`);
    if (err.code === 'ECONNREFUSED') {
      // Refused by podnet's router (ICMP) when the last endpoint went away since we looked.
      const svc = this.o.services.lookup(up.key.slice(0, up.key.lastIndexOf(':')));
      if (!svc || svc.endpoints.length === 0) return this.reply(res, 503, `service ${up.key} has no endpoints`);
    }
    this.reply(res, 502, `upstream ${up.key} (${up.url}) failed: ${err.code ?? err.message}`);
  }

  private onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer, scheme: Scheme): void {
    this.stats.requests++;
    this.stats.upgrades++;
    socket.on('error', () => undefined);
    this.tunnels.add(socket);
    socket.once('close', () => this.tunnels.delete(socket));
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') return this.replyRaw(socket, 400, 'only WebSocket upgrades are proxied');
    const up = this.resolve(req);
    if ('status' in up) return this.replyRaw(socket, up.status, up.message);
    this.forwardHeaders(req, scheme);
    this.proxy.ws(req, socket, head, { target: up.url }, (err) => {
      if (this.upgraded.has(socket)) return;
      this.replyRaw(socket, 502, `upstream ${up.key} (${up.url}) failed: ${(err as NodeJS.ErrnoException).code ?? err.message}`);
    });
  }

  /** X-Forwarded-For/-Proto/-Host/-Port and X-Real-IP as ingress controllers set them; Host is kept. */
  private forwardHeaders(req: IncomingMessage, scheme: Scheme): void {
    const h = req.headers;
    for (const k of HOP_BY_HOP_REQUEST) delete h[k];
    const client = (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    h['x-forwarded-for'] = client;
    h['x-real-ip'] = client;
    h['x-forwarded-proto'] = scheme;
    h['x-forwarded-host'] = h.host ?? '';
    h['x-forwarded-port'] = String(scheme === 'https' ? this.o.httpsPort : this.o.httpPort);
  }

  private count(status: number): void {
    if (status === 404) this.stats.notFound++;
    else if (status === 502) this.stats.badGateway++;
    else if (status === 503) this.stats.unavailable++;
    else if (status === 504) this.stats.gatewayTimeout++;
  }

  private reply(res: ServerResponse, status: number, message: string): void {
    this.count(status);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = `${status} ${STATUS_CODES[status] ?? ''}: ${message}\n`;
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  private replyRaw(socket: Socket, status: number, message: string): void {
    this.count(status);
    if (socket.destroyed || !socket.writable) return;
    const body = `${status} ${STATUS_CODES[status] ?? ''}: ${message}\n`;
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  }
}

/** A request that can be sent again: idempotent method and no body. */
function isRetryable(req: IncomingMessage): boolean {
  if (!['GET', 'HEAD', 'OPTIONS', 'DELETE'].includes(req.method ?? '')) return false;
  const len = req.headers['content-length'];
  return req.headers['transfer-encoding'] === undefined && (len === undefined || len === '0');
}

/** Closes a pool's idle connections; connections in use go back to it and expire there. */
function closeIdle(agent: Agent): void {
  for (const list of Object.values(agent.freeSockets)) for (const s of list ?? []) s.destroy();
}
