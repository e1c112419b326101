import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { z } from 'zod';
import { invalid } from '../util/errors.js';

/**
 * An Ingress as the cluster store keeps it, modelled on Kubernetes' networking/v1 Ingress: rules route
 * (host, path) to a service port; an optional default backend takes what no rule matches; an optional
 * certificate (PEM, stored in the record so every node has it) serves HTTPS for the ingress's hosts.
 */
export const PATH_TYPES = ['Prefix', 'Exact'] as const;
export type PathType = (typeof PATH_TYPES)[number];

const dnsLabel = z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'must be a DNS label (lowercase letters, digits, dashes)');
const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/;

/** A rule's host: '' (any host), an exact DNS name, or `*.` + a DNS name (matches exactly one more label). */
export const hostSchema = z
  .string()
  .transform((h) => normalizeRuleHost(h))
  .refine((h) => h === '' || DNS_NAME.test(h.startsWith('*.') ? h.slice(2) : h), 'must be empty or *, a DNS name, or *.<DNS name>');

export const pathSchema = z
  .string()
  .max(1024)
  .regex(/^\/[^\s?#]*$/, 'must start with / and hold no spaces, ? or #');

export const backendSchema = z.object({
  service: dnsLabel,
  port: z.number().int().min(1).max(65535),
});
export type Backend = z.infer<typeof backendSchema>;

export const ruleSchema = z.object({
  host: hostSchema,
  path: pathSchema,
  pathType: z.enum(PATH_TYPES),
  backend: backendSchema,
});
export type IngressRule = z.infer<typeof ruleSchema>;

const PEM_MAX = 64 * 1024;
export const tlsSchema = z.object({
  cert: z.string().min(1).max(PEM_MAX).regex(/-----BEGIN CERTIFICATE-----/, 'must be a PEM certificate'),
  key: z.string().min(1).max(PEM_MAX).regex(/-----BEGIN [A-Z ]*PRIVATE KEY-----/, 'must be a PEM private key'),
});
export type IngressTls = z.infer<typeof tlsSchema>;

export const ingressRecordSchema = z
  .object({
    name: dnsLabel,
    rules: z.array(ruleSchema).max(1000),
    defaultBackend: backendSchema.optional(),
    tls: tlsSchema.optional(),
  })
  .refine((r) => r.rules.length > 0 || r.defaultBackend !== undefined, { message: 'needs at least one rule or a default backend', path: ['rules'] });
export type IngressRecord = z.infer<typeof ingressRecordSchema>;

/** '*' and '' both mean any host; names are case-insensitive and a trailing dot is dropped. */
export function normalizeRuleHost(h: string): string {
  const s = h.trim().toLowerCase().replace(/\.$/, '');
  return s === '*' ? '' : s;
}

/**
 * Parses `HOST/PATH=SERVICE:PORT` (the CLI's --rule). HOST may be empty or `*` (any host) or `*.domain`;
 * without a `/` the path is `/`. Errors name the flag and the part that is wrong.
 */
export function parseRuleArg(s: string, pathType: PathType = 'Prefix'): IngressRule {
  const eq = s.lastIndexOf('=');
  if (eq < 0) throw invalid(`invalid --rule ${JSON.stringify(s)}: expected HOST/PATH=SERVICE:PORT`);
  const left = s.slice(0, eq);
  const slash = left.indexOf('/');
  const host = slash < 0 ? left : left.slice(0, slash);
  const path = slash < 0 ? '/' : left.slice(slash);
  const backend = parseBackendArg(s.slice(eq + 1), '--rule', s);
  const r = ruleSchema.safeParse({ host, path, pathType, backend });
  if (!r.success) throw invalid(`invalid --rule ${JSON.stringify(s)}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}

/** Parses `SERVICE:PORT` (the CLI's --default-backend, and the right side of --rule). */
export function parseBackendArg(s: string, flag = '--default-backend', whole = s): Backend {
  const m = /^([^:]+):(\d{1,5})$/.exec(s);
  if (!m) throw invalid(`invalid ${flag} ${JSON.stringify(whole)}: the backend must be SERVICE:PORT, got ${JSON.stringify(s)}`);
  const r = backendSchema.safeParse({ service: m[1], port: Number(m[2]) });
  if (!r.success) throw invalid(`invalid ${flag} ${JSON.stringify(whole)}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}

/** What `POST /v1/ingresses` takes: the record plus `replace` (overwrite an existing ingress of that name). */
export interface IngressSpec {
  record: IngressRecord;
  replace: boolean;
}

/** Validates an API body: every problem names its field (rules.1.host, tls.key, ...). */
export function validateSpec(input: unknown): IngressSpec {
  const schema = z.object({
    name: dnsLabel,
    rules: z.array(ruleSchema.extend({ pathType: z.enum(PATH_TYPES).default('Prefix') })).max(1000).default([]),
    defaultBackend: backendSchema.optional(),
    tls: tlsSchema.optional(),
    replace: z.boolean().default(false),
  });
  const r = schema.safeParse(input);
  if (!r.success) throw invalid(`invalid ingress: ${r.error.issues.map((i) => `${i.path.join('.') || '(ingress)'}: ${i.message}`).join('; ')}`);
  const { replace, ...rest } = r.data;
  const record: IngressRecord = {
    name: rest.name,
    rules: rest.rules,
    ...(rest.defaultBackend ? { defaultBackend: rest.defaultBackend } : {}),
    ...(rest.tls ? { tls: rest.tls } : {}),
  };
  if (record.rules.length === 0 && !record.defaultBackend) throw invalid('invalid ingress: rules: needs at least one --rule or a --default-backend');
  const seen = new Map<string, number>();
  record.rules.forEach((rule, i) => {
    const k = `${rule.pathType} ${rule.host || '*'}${rule.path}`;
    const j = seen.get(k);
    if (j !== undefined) throw invalid(`invalid ingress: rules.${i}: ${rule.host || '*'}${rule.path} (${rule.pathType}) is already rule ${j}`);
    seen.set(k, i);
  });
  if (record.tls) checkTls(record.tls);
  return { record, replace };
}

/** Checks that the certificate and key parse, belong together and make a TLS context. */
export function checkTls(tls: IngressTls): { cert: X509Certificate; key: KeyObject } {
  let cert: X509Certificate;
  let key: KeyObject;
  try {
    cert = new X509Certificate(tls.cert);
  } catch (err) {
    throw invalid(`invalid ingress: tls.cert: not a readable PEM certificate (${(err as Error).message})`);
  }
  try {
    key = createPrivateKey(tls.key);
  } catch (err) {
    throw invalid(`invalid ingress: tls.key: not a readable, unencrypted PEM private key (${(err as Error).message})`);
  }
  if (!cert.checkPrivateKey(key)) throw invalid('invalid ingress: tls.key: does not belong to the certificate in tls.cert');
  try {
    createSecureContext({ cert: tls.cert, key: tls.key });
  } catch (err) {
    throw invalid(`invalid ingress: tls: cannot build a TLS context (${(err as Error).message})`);
  }
  return { cert, key };
}

/** DNS names a certificate is for (subjectAltName DNS entries, else the subject CN). */
export function certificateNames(pem: string): string[] {
  const c = new X509Certificate(pem);
  const sans = (c.subjectAltName ?? '')
    .split(/,\s*/)
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4).toLowerCase());
  if (sans.length > 0) return sans;
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(c.subject)?.[1];
  return cn ? [cn.toLowerCase()] : [];
}

/** The record as `ingress list` shows it: the private key is never sent back. */
export function describeIngress(r: IngressRecord) {
  let tls: { names: string[]; notAfter: string } | undefined;
  if (r.tls) {
    try {
      tls = { names: certificateNames(r.tls.cert), notAfter: new X509Certificate(r.tls.cert).validTo };
    } catch {
      tls = { names: [], notAfter: '' };
    }
  }
  return { name: r.name, rules: r.rules, ...(r.defaultBackend ? { defaultBackend: r.defaultBackend } : {}), ...(tls ? { tls } : {}) };
}
export type IngressView = ReturnType<typeof describeIngress>;
