import type { Backend, IngressRecord, PathType } from './record.js';

/**
 * The routing table every node builds from all ingresses (rebuilt and swapped as one object when any
 * ingress changes, so a request sees either the old rules or the new ones, never a mix).
 *
 * Matching, as Kubernetes specifies it and ingress-nginx does it:
 * - Host: an exact host group first, else the wildcard group for `*.` + the host without its first label
 *   (a wildcard matches exactly one label), else the any-host group. Only that one group is searched.
 * - Path, within the group: an Exact rule equal to the path, else the longest Prefix rule. Prefix matches
 *   whole path elements: `/api` matches `/api`, `/api/` and `/api/v1`, not `/apis`; `/` matches all.
 * - Nothing matched: the group's default backend (the first ingress, by name, among those with rules in
 *   the group that has one), else the cluster's (the first ingress by name with one), else no route (404).
 * - Two ingresses with the same host, path and type: the first by name wins on every node.
 */
export interface Route {
  backend: Backend;
  ingress: string;
  /** The rule that matched, or undefined for a default backend. */
  rule?: { host: string; path: string; pathType: PathType };
}

interface PrefixEntry {
  /** Normalised prefix: no trailing slash; '' for '/'. */
  prefix: string;
  route: Route;
}

class HostGroup {
  readonly exact = new Map<string, Route>();
  prefixes: PrefixEntry[] = [];
  defaultRoute: Route | undefined;
  readonly ingresses = new Set<string>();

  match(path: string): Route | undefined {
    const e = this.exact.get(path);
    if (e) return e;
    // Sorted longest first: the first hit is the longest match.
    for (const p of this.prefixes) {
      if (p.prefix === '' || path === p.prefix || (path.startsWith(p.prefix) && path.charCodeAt(p.prefix.length) === 0x2f)) return p.route;
    }
    return this.defaultRoute;
  }
}

export class RouteTable {
  private readonly exactHosts = new Map<string, HostGroup>();
  /** Keyed by the domain after `*.`. */
  private readonly wildcardHosts = new Map<string, HostGroup>();
  private anyHost: HostGroup | undefined;
  private fallback: Route | undefined;
  readonly ruleCount: number;

  constructor(ingresses: readonly IngressRecord[]) {
    const sorted = [...ingresses].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    let n = 0;
    for (const ing of sorted) {
      for (const rule of ing.rules) {
        const g = this.group(rule.host);
        g.ingresses.add(ing.name);
        const route: Route = { backend: rule.backend, ingress: ing.name, rule: { host: rule.host, path: rule.path, pathType: rule.pathType } };
        if (rule.pathType === 'Exact') {
          if (!g.exact.has(rule.path)) g.exact.set(rule.path, route);
        } else {
          const prefix = rule.path.replace(/\/+$/, '');
          if (!g.prefixes.some((p) => p.prefix === prefix)) g.prefixes.push({ prefix, route });
        }
        n++;
      }
      if (ing.defaultBackend) {
        const route: Route = { backend: ing.defaultBackend, ingress: ing.name };
        this.fallback ??= route;
        for (const g of this.groups()) if (g.ingresses.has(ing.name)) g.defaultRoute ??= route;
      }
    }
    for (const g of this.groups()) g.prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
    this.ruleCount = n;
  }

  private *groups(): Iterable<HostGroup> {
    yield* this.exactHosts.values();
    yield* this.wildcardHosts.values();
    if (this.anyHost) yield this.anyHost;
  }

  private group(host: string): HostGroup {
    if (host === '') return (this.anyHost ??= new HostGroup());
    const map = host.startsWith('*.') ? this.wildcardHosts : this.exactHosts;
    const key = host.startsWith('*.') ? host.slice(2) : host;
    let g = map.get(key);
    if (!g) map.set(key, (g = new HostGroup()));
    return g;
  }

  /** The route for a request; `host` as sent (any case, maybe with a port), `path` without the query. */
  match(host: string, path: string): Route | undefined {
    const h = normalizeRequestHost(host);
    let g = h ? this.exactHosts.get(h) : undefined;
    if (!g && h) {
      const dot = h.indexOf('.');
      if (dot > 0) g = this.wildcardHosts.get(h.slice(dot + 1));
    }
    g ??= this.anyHost;
    return (g ? g.match(path) : undefined) ?? this.fallback;
  }
}

/** Host header -> lowercase name without port or trailing dot ('' when absent). */
export function normalizeRequestHost(host: string | undefined): string {
  if (!host) return '';
  let h = host.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end > 0 ? h.slice(0, end + 1) : h;
  }
  const colon = h.lastIndexOf(':');
  if (colon >= 0) h = h.slice(0, colon);
  return h.endsWith('.') ? h.slice(0, -1) : h;
}

/** The path of a request target (origin-form `/a?b`, absolute-form `http://h/a`, or `*`), without the query. */
export function requestPath(url: string | undefined): string {
  if (!url) return '/';
  if (url.charCodeAt(0) === 0x2f) {
    const q = url.search(/[?#]/);
    return q < 0 ? url : url.slice(0, q);
  }
  if (url === '*') return '/';
  try {
    return new URL(url).pathname || '/';
  } catch {
    return '/';
  }
}
