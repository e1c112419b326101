import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, httpStatus, PodnetError } from '../util/errors.js';

export type Handler = (body: unknown, params: Record<string, string>) => Promise<unknown> | unknown;

interface Route {
  method: string;
  pattern: RegExp;
  keys: string[];
  handler: Handler;
}

const MAX_BODY = 1024 * 1024;

/**
 * The daemon's HTTP/JSON API on a unix socket. The socket lives in a 0700 directory and is itself 0600,
 * so only root can talk to the daemon. Errors are `{ error: { code, message } }` with a matching status.
 */
export class ApiServer {
  private readonly routes: Route[] = [];
  private server: Server | undefined;

  route(method: string, path: string, handler: Handler): this {
    const keys: string[] = [];
    const pattern = new RegExp('^' + path.replace(/:([a-z]+)/g, (_m, k: string) => (keys.push(k), '([^/]+)')) + '$');
    this.routes.push({ method, pattern, keys, handler });
    return this;
  }

  async listen(socketPath: string): Promise<void> {
    const dir = join(socketPath, '..');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    if (existsSync(socketPath)) unlinkSync(socketPath);
    const server = createServer((req, res) => void this.dispatch(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => resolve());
    });
    chmodSync(socketPath, 0o600);
    this.server = server;
  }

  async close(socketPath: string): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) {
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
    try {
      unlinkSync(socketPath);
    } catch {
      /* gone already */
    }
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://podnet');
      let matchedPath = false;
      for (const r of this.routes) {
        const m = r.pattern.exec(url.pathname);
        if (!m) continue;
        matchedPath = true;
        if (r.method !== req.method) continue;
        const params: Record<string, string> = {};
        r.keys.forEach((k, i) => (params[k] = decodeURIComponent(m[i + 1]!)));
        for (const [k, v] of url.searchParams) params[k] ??= v;
        const body = await readBody(req);
        const result = await r.handler(body, params);
        return send(res, 200, result ?? {});
      }
      throw new PodnetError(matchedPath ? ErrorCode.InvalidArgument : ErrorCode.NotFound, `no API route ${req.method} ${url.pathname}`);
    } catch (err) {
      const e = err instanceof PodnetError ? err : new PodnetError(ErrorCode.Internal, (err as Error).message);
      send(res, httpStatus(e.code), { error: { code: e.code, message: e.message } });
    }
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) throw new PodnetError(ErrorCode.InvalidArgument, 'request body too large');
    chunks.push(c as Buffer);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new PodnetError(ErrorCode.InvalidArgument, 'request body is not valid JSON');
  }
}
