import { request } from 'node:http';
import { ErrorCode, PodnetError } from '../util/errors.js';

/**
 * The client side of the daemon's HTTP/JSON API (src/daemon/api.ts) on its unix socket: used by the
 * CLI, the CNI plugin, the topology builder and tests. Errors come back as the daemon's PodnetError.
 */
export function apiCall<T = unknown>(socketPath: string, method: string, path: string, body?: unknown, timeoutMs = 120_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      { socketPath, method, path, headers: text ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } : {}, timeout: timeoutMs },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let parsed: unknown;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            return reject(new PodnetError(ErrorCode.Internal, `daemon sent an invalid response (${res.statusCode})`));
          }
          const err = (parsed as { error?: { code: string; message: string } }).error;
          if (res.statusCode !== 200 && err) return reject(new PodnetError(err.code as ErrorCode, err.message));
          resolve(parsed as T);
        });
      },
    );
    req.on('timeout', () => req.destroy(new PodnetError(ErrorCode.Internal, `daemon did not answer within ${timeoutMs} ms`)));
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e instanceof PodnetError) return reject(e);
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') {
        return reject(new PodnetError(ErrorCode.Precondition, `no podnet daemon is listening on ${socketPath} (is it running, and is --node right?)`));
      }
      if (e.code === 'EACCES') return reject(new PodnetError(ErrorCode.Precondition, `permission denied on ${socketPath}: the podnet API is for root only`));
      reject(new PodnetError(ErrorCode.Internal, `${socketPath}: ${e.message}`));
    });
    if (text) req.write(text);
    req.end();
  });
}
