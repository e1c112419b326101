import { createHash } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { certificateNames, type IngressRecord } from './record.js';
import { normalizeRequestHost } from './routes.js';

/**
 * Certificates by server name (SNI), rebuilt with the routing table. An ingress's certificate serves the
 * hosts of its rules and the DNS names in the certificate itself; rule hosts win over certificate names,
 * exact names over wildcards, and among equals the first ingress by name. A client that sends no
 * server name (or one nothing matches) gets the default certificate: the first TLS ingress's by name.
 */
export class CertTable {
  private readonly exact = new Map<string, SecureContext>();
  private readonly wildcard = new Map<string, SecureContext>();
  private anyHost: SecureContext | undefined;
  /** PEM of the default certificate, for the server's own context (clients without SNI). */
  readonly defaultPem: { cert: string; key: string } | undefined;
  readonly size: number;

  /** `cache` keeps contexts across rebuilds (keyed by a hash of cert+key); unused ones are dropped. */
  constructor(ingresses: readonly IngressRecord[], cache: Map<string, SecureContext>, log: Logger) {
    const withTls = [...ingresses].filter((i) => i.tls).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const used = new Set<string>();
    const contexts: Array<{ ing: IngressRecord; ctx: SecureContext }> = [];
    for (const ing of withTls) {
      const { cert, key } = ing.tls!;
      const id = createHash('sha256').update(cert).update('\0').update(key).digest('hex');
      let ctx = cache.get(id);
      if (!ctx) {
        try {
          ctx = createSecureContext({ cert, key });
        } catch (err) {
          log.error({ ingress: ing.name, err: (err as Error).message }, 'ingress certificate unusable; its hosts get the default certificate');
          continue;
        }
        cache.set(id, ctx);
      }
      used.add(id);
      contexts.push({ ing, ctx });
    }
    for (const id of [...cache.keys()]) if (!used.has(id)) cache.delete(id);

    const put = (name: string, ctx: SecureContext) => {
      if (name === '') this.anyHost ??= ctx;
      else if (name.startsWith('*.')) {
        if (!this.wildcard.has(name.slice(2))) this.wildcard.set(name.slice(2), ctx);
      } else if (!this.exact.has(name)) this.exact.set(name, ctx);
    };
    for (const { ing, ctx } of contexts) for (const r of ing.rules) put(r.host, ctx);
    for (const { ing, ctx } of contexts) {
      try {
        for (const n of certificateNames(ing.tls!.cert)) if (n !== '' && n !== '*') put(n, ctx);
      } catch {
        /* names are a convenience; the rule hosts are already in */
      }
    }
    const first = contexts[0]?.ing.tls;
    this.defaultPem = first ? { cert: first.cert, key: first.key } : undefined;
    this.size = contexts.length;
  }

  /** The context for a server name, or undefined for the server's default. */
  lookup(servername: string): SecureContext | undefined {
    const h = normalizeRequestHost(servername);
    const e = this.exact.get(h);
    if (e) return e;
    const dot = h.indexOf('.');
    if (dot > 0) {
      const w = this.wildcard.get(h.slice(dot + 1));
      if (w) return w;
    }
    return this.anyHost;
  }
}
