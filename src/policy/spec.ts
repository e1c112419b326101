/**
 * Kubernetes NetworkPolicy (networking.k8s.io/v1) as podnet reads it: the YAML or JSON of the object,
 * validated with zod into a normalised record (what the cluster store keeps). Errors name the field
 * (`spec.ingress.0.from.1.ipBlock.cidr: ...`).
 */
import { z } from 'zod';
import { parseAllDocuments } from 'yaml';
import { invalid } from '../util/errors.js';
import { cidrContains, parseCidr } from '../store/subnet.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;
/** IANA_SVC_NAME, as a container port name: <= 15 chars, lowercase alphanumerics and '-', a letter somewhere. */
const PORT_NAME = /^(?=.*[a-z])[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$/;

export const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

const labelKey = z.string().regex(LABEL_KEY, 'must be a label key ([prefix/]name)');
const labelValue = z.string().regex(LABEL_VALUE, 'must be a label value (0-63 of [A-Za-z0-9-_.], alphanumeric at both ends)');

export const labelSelectorSchema = z
  .object({
    matchLabels: z.record(labelKey, labelValue).optional(),
    matchExpressions: z
      .array(
        z
          .object({
            key: labelKey,
            operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
            values: z.array(labelValue).optional(),
          })
          .strict()
          .superRefine((e, ctx) => {
            const n = e.values?.length ?? 0;
            if ((e.operator === 'In' || e.operator === 'NotIn') && n === 0) ctx.addIssue({ code: 'custom', path: ['values'], message: `must not be empty with operator ${e.operator}` });
            if ((e.operator === 'Exists' || e.operator === 'DoesNotExist') && n > 0) ctx.addIssue({ code: 'custom', path: ['values'], message: `must be empty with operator ${e.operator}` });
          }),
      )
      .optional(),
  })
  .strict();
export type LabelSelector = z.infer<typeof labelSelectorSchema>;

const cidr = z.string().refine((s) => {
  try {
    parseCidr(s, false);
    return true;
  } catch {
    return false;
  }
}, 'must be an IPv4 CIDR such as 10.0.0.0/8');

const peerSchema = z
  .object({
    podSelector: labelSelectorSchema.optional(),
    namespaceSelector: labelSelectorSchema.optional(),
    ipBlock: z.object({ cidr, except: z.array(cidr).optional() }).strict().optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    if (p.ipBlock && (p.podSelector || p.namespaceSelector)) ctx.addIssue({ code: 'custom', message: 'ipBlock cannot be combined with podSelector or namespaceSelector' });
    if (!p.ipBlock && !p.podSelector && !p.namespaceSelector) ctx.addIssue({ code: 'custom', message: 'must have podSelector, namespaceSelector or ipBlock' });
    if (p.ipBlock) {
      let outer: ReturnType<typeof parseCidr>;
      try {
        outer = parseCidr(p.ipBlock.cidr, false);
      } catch {
        return; // named by the cidr field's own check
      }
      (p.ipBlock.except ?? []).forEach((e, i) => {
        let inner: ReturnType<typeof parseCidr>;
        try {
          inner = parseCidr(e, false);
        } catch {
          return;
        }
        const inside = inner.prefix > outer.prefix && cidrContains(outer, inner);
        if (!inside) ctx.addIssue({ code: 'custom', path: ['ipBlock', 'except', i], message: `must be a strict subset of cidr ${p.ipBlock!.cidr}` });
      });
    }
  });
export type PolicyPeer = z.infer<typeof peerSchema>;

const portSchema = z
  .object({
    protocol: z.enum(PROTOCOLS).default('TCP'),
    port: z.union([z.number().int().min(1).max(65535), z.string().regex(PORT_NAME, 'must be a port number or a port name (IANA_SVC_NAME)')]).optional(),
    endPort: z.number().int().min(1).max(65535).optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    if (p.endPort === undefined) return;
    if (typeof p.port !== 'number') ctx.addIssue({ code: 'custom', path: ['endPort'], message: 'needs a numeric port' });
    else if (p.endPort < p.port) ctx.addIssue({ code: 'custom', path: ['endPort'], message: `must be >= port ${p.port}` });
  });
export type PolicyPort = z.infer<typeof portSchema>;

const ingressRuleSchema = z.object({ from: z.array(peerSchema).optional(), ports: z.array(portSchema).optional() }).strict();
const egressRuleSchema = z.object({ to: z.array(peerSchema).optional(), ports: z.array(portSchema).optional() }).strict();

const objectSchema = z
  .object({
    apiVersion: z.literal('networking.k8s.io/v1', { message: 'must be networking.k8s.io/v1' }),
    kind: z.literal('NetworkPolicy', { message: 'must be NetworkPolicy' }),
    metadata: z
      .object({
        name: z.string().regex(DNS_SUBDOMAIN, 'must be a DNS subdomain (lowercase letters, digits, "-" and ".")'),
        namespace: z.string().regex(DNS_LABEL, 'must be a DNS label').default('default'),
      })
      .passthrough(),
    spec: z
      .object({
        podSelector: labelSelectorSchema,
        policyTypes: z.array(z.enum(['Ingress', 'Egress'])).optional(),
        ingress: z.array(ingressRuleSchema).optional(),
        egress: z.array(egressRuleSchema).optional(),
      })
      .strict(),
  })
  .passthrough();

/** A rule, normalised: `peers` undefined = every peer (from/to absent or empty); `ports` empty = every port. */
export interface PolicyRule {
  peers?: PolicyPeer[];
  ports: Array<{ protocol: Protocol; port?: number | string; endPort?: number }>;
}

/** A NetworkPolicy as the cluster store keeps it. */
export interface PolicyRecord {
  namespace: string;
  name: string;
  podSelector: LabelSelector;
  /** Which directions the policy isolates the selected pods in. */
  ingressIsolated: boolean;
  egressIsolated: boolean;
  ingress: PolicyRule[];
  egress: PolicyRule[];
}

const ruleRecord = z.object({
  peers: z.array(peerSchema).optional(),
  ports: z.array(z.object({ protocol: z.enum(PROTOCOLS), port: z.union([z.number(), z.string()]).optional(), endPort: z.number().optional() })),
});
export const policyRecordSchema: z.ZodType<PolicyRecord> = z.object({
  namespace: z.string().regex(DNS_LABEL),
  name: z.string().regex(DNS_SUBDOMAIN),
  podSelector: labelSelectorSchema,
  ingressIsolated: z.boolean(),
  egressIsolated: z.boolean(),
  ingress: z.array(ruleRecord),
  egress: z.array(ruleRecord),
}) as z.ZodType<PolicyRecord>;

function describe(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.length ? i.path.join('.') : '(policy)'}: ${i.message}`).join('; ');
}

/** Validates one NetworkPolicy object (parsed JSON/YAML) into a record; the error names the field. */
export function validatePolicy(input: unknown): PolicyRecord {
  const r = objectSchema.safeParse(input);
  if (!r.success) throw invalid(`invalid NetworkPolicy: ${describe(r.error)}`);
  const { metadata, spec } = r.data;
  // policyTypes default as Kubernetes defaults them: Ingress always, Egress when the policy has egress rules.
  const types = spec.policyTypes ?? (spec.egress && spec.egress.length > 0 ? ['Ingress', 'Egress'] : ['Ingress']);
  const norm = (peers: PolicyPeer[] | undefined, ports: PolicyRule['ports'] | undefined): PolicyRule => ({
    ...(peers && peers.length > 0 ? { peers } : {}),
    ports: (ports ?? []).map((p) => ({ protocol: p.protocol, ...(p.port !== undefined ? { port: p.port } : {}), ...(p.endPort !== undefined ? { endPort: p.endPort } : {}) })),
  });
  return {
    namespace: metadata.namespace,
    name: metadata.name,
    podSelector: spec.podSelector,
    ingressIsolated: types.includes('Ingress'),
    egressIsolated: types.includes('Egress'),
    ingress: (spec.ingress ?? []).map((rule) => norm(rule.from, rule.ports)),
    egress: (spec.egress ?? []).map((rule) => norm(rule.to, rule.ports)),
  };
}

/**
 * Parses a file's text: YAML (one or more documents, `---` separated, or a `kind: List`) or JSON
 * (JSON is YAML). Returns the validated policies; errors say which document and which field.
 */
export function parsePolicyText(text: string, source = 'input'): PolicyRecord[] {
  const docs = parseAllDocuments(text);
  const objects: unknown[] = [];
  for (const [i, d] of (Array.isArray(docs) ? docs : [docs]).entries()) {
    if (d.errors.length > 0) {
      const e = d.errors[0]!;
      throw invalid(`invalid ${source}: document ${i + 1}: ${e.message.split('\n')[0]}`);
    }
    const v = d.toJS() as unknown;
    if (v === null || v === undefined) continue;
    if (typeof v === 'object' && (v as { kind?: unknown }).kind === 'List' && Array.isArray((v as { items?: unknown }).items)) objects.push(...((v as { items: unknown[] }).items));
    else objects.push(v);
  }
  if (objects.length === 0) throw invalid(`invalid ${source}: no NetworkPolicy in it`);
  return objects.map((o, i) => {
    try {
      return validatePolicy(o);
    } catch (err) {
      throw objects.length > 1 ? invalid(`${source}: object ${i + 1}: ${(err as Error).message}`) : err;
    }
  });
}

/** Does a label selector select these labels? (An empty selector selects everything, as in Kubernetes.) */
export function selectorMatches(sel: LabelSelector, labels: Record<string, string>): boolean {
  if (sel.matchLabels) for (const k in sel.matchLabels) if (labels[k] !== sel.matchLabels[k]) return false;
  if (sel.matchExpressions) {
    for (const e of sel.matchExpressions) {
      const has = Object.prototype.hasOwnProperty.call(labels, e.key);
      const v = labels[e.key];
      switch (e.operator) {
        case 'In':
          if (!has || !e.values!.includes(v!)) return false;
          break;
        case 'NotIn':
          if (has && e.values!.includes(v!)) return false;
          break;
        case 'Exists':
          if (!has) return false;
          break;
        case 'DoesNotExist':
          if (has) return false;
          break;
      }
    }
  }
  return true;
}

export function policyKey(p: { namespace: string; name: string }): string {
  return `${p.namespace}/${p.name}`;
}
