import { z } from 'zod';
import { Address4 } from 'ip-address';
import { invalid } from '../util/errors.js';

/**
 * A Service as the cluster store keeps it. Like Kubernetes: a stable virtual IP (ClusterIP) balanced over
 * the pods whose labels match the selector; NodePort and LoadBalancer add ways in from outside.
 */
export const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer'] as const;
export type ServiceType = (typeof SERVICE_TYPES)[number];

const ipv4 = z.string().refine((s) => Address4.isValid(s) && !s.includes('/'), 'must be an IPv4 address');
const port = z.number().int().min(1).max(65535);

export const servicePortSchema = z.object({
  port,
  targetPort: port,
  protocol: z.enum(['tcp', 'udp']),
  nodePort: z.number().int().min(30000).max(32767).optional(),
});
export type ServicePort = z.infer<typeof servicePortSchema>;

export const serviceRecordSchema = z.object({
  name: z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'must be a DNS label'),
  type: z.enum(SERVICE_TYPES),
  clusterIp: ipv4,
  ports: z.array(servicePortSchema).min(1),
  selector: z.record(z.string(), z.string()),
  externalIps: z.array(ipv4),
  loadBalancerIp: ipv4.optional(),
  sessionAffinity: z.enum(['None', 'ClientIP']),
  affinityTimeoutSeconds: z.number().int().min(1).max(86400),
  externalTrafficPolicy: z.enum(['Cluster', 'Local']),
});
export type ServiceRecord = z.infer<typeof serviceRecordSchema>;

/** What a user asks for (`podnet service add`); the cluster IP, node ports and LB IP are allocated. */
export interface ServiceSpec {
  name: string;
  type: ServiceType;
  ports: Array<{ port: number; targetPort: number; protocol: 'tcp' | 'udp'; nodePort?: number }>;
  selector: Record<string, string>;
  externalIps: string[];
  sessionAffinity: 'None' | 'ClientIP';
  affinityTimeoutSeconds: number;
  externalTrafficPolicy: 'Cluster' | 'Local';
}

/** Parses `PORT[:TARGETPORT][/tcp|udp]`. */
export function parsePortArg(s: string): { port: number; targetPort: number; protocol: 'tcp' | 'udp' } {
  const m = /^(\d{1,5})(?::(\d{1,5}))?(?:\/(tcp|udp|TCP|UDP))?$/.exec(s);
  if (!m) throw invalid(`invalid --port ${JSON.stringify(s)}: expected PORT[:TARGETPORT][/tcp|udp]`);
  const p = Number(m[1]);
  const t = m[2] === undefined ? p : Number(m[2]);
  for (const [what, v] of [['port', p], ['target port', t]] as const) {
    if (v < 1 || v > 65535) throw invalid(`invalid --port ${JSON.stringify(s)}: ${what} ${v} is not in 1-65535`);
  }
  return { port: p, targetPort: t, protocol: (m[3]?.toLowerCase() ?? 'tcp') as 'tcp' | 'udp' };
}

/** Validates a spec from the API: names the field and the reason. */
export function validateSpec(input: unknown): ServiceSpec {
  const schema = z.object({
    name: serviceRecordSchema.shape.name,
    type: z.enum(SERVICE_TYPES).default('ClusterIP'),
    ports: z.array(servicePortSchema.extend({ protocol: z.enum(['tcp', 'udp']).default('tcp') })).min(1, 'at least one --port is required'),
    selector: z.record(z.string(), z.string()).default({}),
    externalIps: z.array(ipv4).default([]),
    sessionAffinity: z.enum(['None', 'ClientIP']).default('None'),
    affinityTimeoutSeconds: z.number().int().min(1).max(86400).default(10800),
    externalTrafficPolicy: z.enum(['Cluster', 'Local']).default('Cluster'),
  });
  const r = schema.safeParse(input);
  if (!r.success) throw invalid(`invalid service: ${r.error.issues.map((i) => `${i.path.join('.') || '(service)'}: ${i.message}`).join('; ')}`);
  const spec = r.data;
  const seen = new Set<string>();
  for (const p of spec.ports) {
    const k = `${p.port}/${p.protocol}`;
    if (seen.has(k)) throw invalid(`invalid service: port ${k} is given twice`);
    seen.add(k);
    if (p.nodePort !== undefined && spec.type === 'ClusterIP') throw invalid('invalid service: --node-port needs --type NodePort or LoadBalancer');
  }
  return spec;
}

/** Does a pod with these labels belong to the selector? (An empty selector selects nothing, as in Kubernetes.) */
export function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  const keys = Object.keys(selector);
  if (keys.length === 0) return false;
  return keys.every((k) => labels[k] === selector[k]);
}
