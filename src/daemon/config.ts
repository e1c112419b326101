import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { z } from 'zod';
import { Address4 } from 'ip-address';
import { invalid } from '../util/errors.js';
import { VXLAN_OVERHEAD } from '../packet/index.js';
import { DEFAULT_FLOW_CAPACITY } from '../observe/flows.js';

/** A CIDR string, validated by ip-address and normalised to its network address. */
const cidr = z.string().refine((s) => {
  if (!s.includes('/')) return false;
  try {
    new Address4(s);
    return true;
  } catch {
    return false;
  }
}, 'must be an IPv4 CIDR such as 10.244.0.0/16');

const ipv4 = z.string().refine((s) => Address4.isValid(s) && !s.includes('/'), 'must be an IPv4 address');

/** Node names become parts of namespace and file names: keep them DNS-label-like. */
export const nodeName = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/, 'must be 1-32 lowercase letters, digits or dashes, starting and ending with a letter or digit');

export const configSchema = z
  .object({
    node: nodeName.default(() => hostname().toLowerCase().replace(/[^a-z0-9-]/g, '-').slice(0, 32)),
    podCidr: cidr.default('10.244.0.0/16'),
    subnetPrefix: z.number().int().min(8).max(30).default(24),
    serviceCidr: cidr.default('10.96.0.0/12'),
    stateDir: z.string().min(1).default('/var/lib/podnet'),
    runDir: z.string().min(1).default('/run/podnet'),
    nsPrefix: z.string().regex(/^[a-z0-9-]{0,16}$/, 'must be at most 16 lowercase letters, digits or dashes').default('pn-'),
    underlay: z
      .object({
        interface: z.string().min(1).max(15).optional(),
        ip: ipv4.optional(),
        mtu: z.number().int().min(576).max(65535).default(1500),
      })
      .default({ mtu: 1500 }),
    podMtu: z.number().int().min(576).max(65485).optional(),
    vxlan: z
      .object({
        vni: z.number().int().min(0).max(0xffffff).default(1),
        port: z.number().int().min(1).max(65535).default(8472),
        /** native: the addon's recvmmsg/sendmmsg socket (default); dgram: Node's dgram (fallback). */
        transport: z.enum(['native', 'dgram']).default('native'),
        /**
         * VXLAN remote checksum offload (RCO, Linux's remcsumtx/remcsumrx): this node says in its
         * record that it takes it, and sends its pods' super-frames with partial inner checksums to
         * the nodes that say so. Datagrams with RCO are always understood. false: neither.
         */
        remoteChecksumOffload: z.boolean().default(true),
      })
      .default({ vni: 1, port: 8472, transport: 'native', remoteChecksumOffload: true }),
    store: z
      .discriminatedUnion('kind', [
        z.object({ kind: z.literal('embedded'), path: z.string().min(1) }),
        z.object({ kind: z.literal('etcd'), endpoints: z.array(z.string().url()).min(1), prefix: z.string().optional() }),
      ])
      .optional(),
    /** Seconds a node's registration lease lives without renewal. */
    leaseTtl: z.number().int().min(1).max(3600).default(10),
    macAgingSeconds: z.number().int().min(1).max(86400).default(300),
    /** Most tracked connections (services, node ports, masquerade); unassured ones are evicted first. */
    conntrackMax: z.number().int().min(16).max(8_000_000).default(131072),
    /**
     * The file (tmpfs) that holds the conntrack table, so connections and their NAT survive a restart
     * or a crash of the daemon (default /dev/shm/podnet-<node>.conntrack); '' keeps it in private memory.
     */
    conntrackFile: z.string().optional(),
    /**
     * The uplink: capture of node-port / LoadBalancer / masquerade-reply traffic on the underlay interface
     * (libpcap) and raw sends out of it. Off: services work inside the cluster only and pods leave unNATed.
     */
    uplink: z.object({ enabled: z.boolean().default(true) }).default({ enabled: true }),
    /** Addresses handed to LoadBalancer services and announced on the underlay by ARP. */
    loadBalancerPool: cidr.optional(),
    /** The ingress (L7 routing by host and path to services), served on the node's underlay address. */
    ingress: z
      .object({
        enabled: z.boolean().default(true),
        httpPort: z.number().int().min(1).max(65535).default(80),
        httpsPort: z.number().int().min(1).max(65535).default(443),
      })
      .strict()
      .refine((i) => i.httpPort !== i.httpsPort, { message: 'httpPort and httpsPort must differ', path: ['httpsPort'] })
      .default({ enabled: true, httpPort: 80, httpsPort: 443 }),
    /**
     * Prometheus metrics (text exposition format on GET /metrics). Off unless an address is given;
     * it is never opened on the underlay unless that address says so (e.g. 127.0.0.1:9464).
     */
    metrics: z
      .object({
        address: z
          .string()
          .regex(/^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]|localhost):\d{1,5}$/, 'must be host:port, e.g. 127.0.0.1:9464')
          .optional(),
      })
      .strict()
      .default({}),
    /**
     * The flow log behind `podnet flows`: the records it keeps in memory (rounded up to a power of
     * two, 64 bytes each); 0 turns it off (nothing recorded, no cost per connection).
     */
    flows: z
      .object({ capacity: z.number().int().min(0).max(1 << 20).default(DEFAULT_FLOW_CAPACITY) })
      .strict()
      .default({ capacity: DEFAULT_FLOW_CAPACITY }),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  })
  .strict()
  .superRefine((c, ctx) => {
    const pod = new Address4(c.podCidr);
    if (c.subnetPrefix <= pod.subnetMask) {
      ctx.addIssue({ code: 'custom', path: ['subnetPrefix'], message: `must be longer than the pod CIDR's /${pod.subnetMask}` });
    }
    const mtu = c.podMtu ?? c.underlay.mtu - VXLAN_OVERHEAD;
    if (mtu + 50 > c.underlay.mtu) {
      ctx.addIssue({ code: 'custom', path: ['podMtu'], message: `must leave 50 bytes of VXLAN overhead under the underlay MTU ${c.underlay.mtu}` });
    }
  });

export type Config = z.infer<typeof configSchema> & { podMtu: number };

/** Formats zod issues as "field: reason" lines. */
export function formatIssues(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ');
}

/** Parses a config object (from a file and CLI overrides); throws one error naming each bad field. */
export function parseConfig(input: unknown, source = 'config'): Config {
  const r = configSchema.safeParse(input);
  if (!r.success) throw invalid(`invalid ${source}: ${formatIssues(r.error)}`);
  const c = r.data;
  return { ...c, podMtu: c.podMtu ?? c.underlay.mtu - VXLAN_OVERHEAD };
}

export function loadConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw invalid(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw invalid(`config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
}
