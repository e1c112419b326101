import { createHash, randomBytes } from 'node:crypto';
import { deleteNetns, ip, ipBatch, nsExec, run, Undo } from '../netns/run.js';
import { ErrorCode, exists, invalid, notFound, PodnetError } from '../util/errors.js';

/** Pod names become namespace names and API paths: DNS-label-like, as Kubernetes names are. */
const POD_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** Kubernetes label syntax: optional DNS-subdomain prefix, name <= 63, value <= 63. */
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

export type DeviceKind = 'tap' | 'tun';

export interface PodSpec {
  name: string;
  labels: Record<string, string>;
  /** Kubernetes namespace (NetworkPolicy); `default` when absent (state files of older daemons). */
  namespace?: string;
  /** Named container ports (NetworkPolicy's named ports). */
  namedPorts?: NamedPort[];
  device: DeviceKind;
  /** The address the pod had (kept in the state file, so a restart can tell a changed subnet). */
  ip?: string;
  /** The name its device had in the node namespace before it became the pod's eth0. */
  hostDevice?: string;
  /** Set for a CNI attachment: the interface lives in a runtime's namespace, not one podnet made. */
  attachment?: AttachmentSpec;
}

export interface NamedPort {
  name: string;
  port: number;
  protocol: 'TCP' | 'UDP' | 'SCTP';
}

const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** IANA_SVC_NAME, as Kubernetes names container ports. */
const PORT_NAME = /^(?=.*[a-z])[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$/;

export function validateNamespace(ns: unknown): string {
  if (ns === undefined || ns === '') return 'default';
  if (typeof ns !== 'string' || !NAMESPACE.test(ns)) throw invalid(`invalid namespace ${JSON.stringify(ns)}: must be a DNS label (1-63 lowercase letters, digits or dashes)`);
  return ns;
}

/** Named ports from the API ([{name, port, protocol}]) or the CLI (`NAME=PORT[/PROTO]`). */
export function validateNamedPorts(v: unknown): NamedPort[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw invalid('namedPorts: must be a list of {name, port, protocol}');
  const out: NamedPort[] = [];
  v.forEach((x: unknown, i) => {
    let o = x as { name?: unknown; port?: unknown; protocol?: unknown };
    if (typeof x === 'string') {
      const m = /^([^=]+)=(\d{1,5})(?:\/(tcp|udp|sctp))?$/i.exec(x);
      if (!m) throw invalid(`namedPorts[${i}]: ${JSON.stringify(x)} is not NAME=PORT[/tcp|udp|sctp]`);
      o = { name: m[1], port: Number(m[2]), protocol: (m[3] ?? 'tcp').toUpperCase() };
    }
    if (typeof o !== 'object' || o === null) throw invalid(`namedPorts[${i}]: must be {name, port, protocol}`);
    if (typeof o.name !== 'string' || !PORT_NAME.test(o.name)) throw invalid(`namedPorts[${i}].name: ${JSON.stringify(o.name)} must be a port name (IANA_SVC_NAME: 1-15 lowercase letters, digits, '-', with a letter)`);
    if (typeof o.port !== 'number' || !Number.isInteger(o.port) || o.port < 1 || o.port > 65535) throw invalid(`namedPorts[${i}].port: must be 1-65535`);
    const proto = o.protocol ?? 'TCP';
    if (proto !== 'TCP' && proto !== 'UDP' && proto !== 'SCTP') throw invalid(`namedPorts[${i}].protocol: must be TCP, UDP or SCTP`);
    if (out.some((p) => p.name === o.name)) throw invalid(`namedPorts[${i}].name: ${o.name} is given twice`);
    out.push({ name: o.name, port: o.port, protocol: proto });
  });
  return out;
}

export function validatePodName(name: unknown): string {
  if (typeof name !== 'string' || !POD_NAME.test(name)) {
    throw invalid(`invalid pod name ${JSON.stringify(name)}: must be 1-63 lowercase letters, digits or dashes, starting and ending with a letter or digit`);
  }
  return name;
}

export function validateLabels(labels: unknown): Record<string, string> {
  if (labels === undefined) return {};
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) throw invalid('labels must be an object of key=value');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) {
    if (!LABEL_KEY.test(k) || k.split('/').pop()!.length > 63 || k.length > 253 + 1 + 63) {
      throw invalid(`invalid label key ${JSON.stringify(k)}: must be [prefix/]name with name 1-63 of [A-Za-z0-9-_.] starting and ending alphanumeric`);
    }
    if (typeof v !== 'string' || !LABEL_VALUE.test(v)) {
      throw invalid(`invalid label value ${JSON.stringify(v)} for ${k}: must be 0-63 of [A-Za-z0-9-_.] starting and ending alphanumeric`);
    }
    out[k] = v;
  }
  return out;
}

/** Parses `k=v` strings (CLI form) into labels, validating each. */
export function parseLabelArgs(args: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const a of args) {
    const eq = a.indexOf('=');
    if (eq <= 0) throw invalid(`invalid label ${JSON.stringify(a)}: expected key=value`);
    labels[a.slice(0, eq)] = a.slice(eq + 1);
  }
  return validateLabels(labels);
}

/** A fresh device name for the node namespace: `pn` + 8 hex, unique enough and <= 15 chars. */
export function newDeviceName(): string {
  return `pn${randomBytes(4).toString('hex')}`;
}

/** Pod MAC from its IP, as the Kubernetes bridge plugin does: 0a:58:a.b.c.d (locally administered). */
export function podMac(ipNum: number): { hi: number; lo: number; str: string } {
  const hi = 0x0a58;
  const lo = ipNum >>> 0;
  const b = [0x0a, 0x58, lo >>> 24, (lo >>> 16) & 255, (lo >>> 8) & 255, lo & 255];
  return { hi, lo, str: b.map((x) => x.toString(16).padStart(2, '0')).join(':') };
}

/** How a pod's device is set up in its namespace: the device, its MAC, address, gateway and MTU. */
export interface PlumbOptions {
  netns: string;
  device: string;
  kind: DeviceKind;
  mac: string;
  ip: string;
  prefix: number;
  gateway: string;
  mtu: number;
}

/**
 * Creates the pod's namespace, moves the already-open device into it as eth0 and configures it.
 * Registers undo steps on `undo` for everything it creates.
 */
export async function plumbPod(opts: PlumbOptions & { undo: Undo }): Promise<void> {
  const { netns, device, undo } = opts;
  await run('ip', ['netns', 'add', netns]);
  undo.push(`delete namespace ${netns}`, () => deleteNetns(netns));
  // No IPv6 in pods: podnet's network is IPv4, and this keeps router solicitations off the switch.
  await nsExec(netns, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  await ip(['link', 'set', 'dev', device, 'netns', netns]);
  const lines = [
    `link set dev ${device} name eth0`,
    ...(opts.kind === 'tap' ? [`link set dev eth0 address ${opts.mac}`] : []),
    `link set dev eth0 mtu ${opts.mtu}`,
    'link set dev lo up',
    'link set dev eth0 up',
    `addr add ${opts.ip}/${opts.prefix} dev eth0`,
    `route add default via ${opts.gateway} dev eth0${opts.kind === 'tun' ? ' onlink' : ''}`,
  ];
  await ipBatch(lines, netns);
}

/**
 * Configures an interface that already is in its namespace (a persistent device a new daemon attached
 * to again, or one it just created there) so it ends up exactly as `plumbPod` (`plumbAttachment`)
 * leaves it. Idempotent: a device that is already configured is left as it is. `flush` first removes
 * every address (the pod's address changed, e.g. its node got another subnet). `netnsPath` is any
 * network namespace path; `own`: a namespace podnet made (lo and namespace-wide sysctls are ours too).
 */
export async function replumbPod(opts: Omit<PlumbOptions, 'netns' | 'device'> & { netnsPath: string; ifname: string; own: boolean; flush: boolean }): Promise<void> {
  const i = opts.ifname;
  const lines = [
    ...(opts.kind === 'tap' ? [`link set dev ${i} address ${opts.mac}`] : []),
    `link set dev ${i} mtu ${opts.mtu}`,
    ...(opts.own ? ['link set dev lo up'] : []),
    `link set dev ${i} up`,
    ...(opts.flush ? [`addr flush dev ${i}`] : []),
    `addr replace ${opts.ip}/${opts.prefix} dev ${i}`,
    `route replace default via ${opts.gateway} dev ${i}${opts.kind === 'tun' ? ' onlink' : ''}`,
  ];
  const sysctls = [...(opts.own ? ['net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'] : []), `net/ipv6/conf/${i}/disable_ipv6=1`];
  await nsPathExec(opts.netnsPath, 'sysctl', ['-qw', ...sysctls]).catch(() => undefined);
  await nsPathExec(opts.netnsPath, 'ip', ['-batch', '-'], { input: lines.join('\n') + '\n' });
}

/**
 * A CNI attachment: an interface podnet put into a namespace a container runtime made. The runtime owns
 * the namespace (podnet never creates or deletes it); podnet owns the device, the address and the record.
 */
export interface AttachmentSpec {
  containerId: string;
  ifname: string;
  /** The namespace path the runtime gave (CNI_NETNS): /proc/PID/ns/net, /var/run/netns/NAME, ... */
  netns: string;
  /** The CNI network name (the config's `name`): GC and listings are per network. */
  network: string;
}

/** CNI spec: starts alphanumeric, then alphanumerics, `_`, `.` or `-`. */
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** CNI spec: 1-15 characters, not `.` or `..`, no `/`, `:` or whitespace. */
const IFNAME = /^[^/:\s]{1,15}$/;

export function validateAttachment(a: { containerId?: unknown; ifname?: unknown; netns?: unknown; network?: unknown }, needNetns: boolean): AttachmentSpec {
  const { containerId, ifname, netns, network } = a;
  if (typeof containerId !== 'string' || !CONTAINER_ID.test(containerId) || containerId.length > 1024) {
    throw invalid(`invalid containerId ${JSON.stringify(containerId)}: must start with a letter or digit and hold only letters, digits, '_', '.' or '-'`);
  }
  if (typeof ifname !== 'string' || !IFNAME.test(ifname) || ifname === '.' || ifname === '..') {
    throw invalid(`invalid ifname ${JSON.stringify(ifname)}: must be 1-15 characters, not '.' or '..', without '/', ':' or whitespace`);
  }
  if (needNetns && (typeof netns !== 'string' || !netns.startsWith('/') || netns.includes('\0'))) {
    throw invalid(`invalid netns ${JSON.stringify(netns)}: must be an absolute path to a network namespace`);
  }
  if (network !== undefined && (typeof network !== 'string' || network.length === 0 || network.length > 253)) {
    throw invalid(`invalid network ${JSON.stringify(network)}: must be a non-empty string`);
  }
  return { containerId, ifname, netns: typeof netns === 'string' ? netns : '', network: typeof network === 'string' ? network : '' };
}

/**
 * The pod name an attachment is known by (IPAM owner, cluster record, `podnet pod list`): `cni-`, the
 * container ID made DNS-label-like and cut to 40 characters, and 8 hex of a hash of ID and interface,
 * so that two attachments never share a name and any ID gives a valid pod name.
 */
export function attachmentName(containerId: string, ifname: string): string {
  const readable = containerId.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/-+/g, '-').replace(/^-|-$/g, '').slice(0, 40).replace(/-$/, '');
  const hash = createHash('sha256').update(`${containerId}\0${ifname}`).digest('hex').slice(0, 8);
  return readable ? `cni-${readable}-${hash}` : `cni-${hash}`;
}

/** Runs a command in the network namespace at `path` (any nsfs path), nothing else switched. */
export function nsPathExec(path: string, cmd: string, args: readonly string[], opts: { input?: string } = {}) {
  return run('nsenter', [`--net=${path}`, '--', cmd, ...args], opts);
}

/** True when `path` is a network namespace this process can enter. */
export async function netnsPathUsable(path: string): Promise<boolean> {
  try {
    await nsPathExec(path, 'true', []);
    return true;
  } catch {
    return false;
  }
}

/**
 * Moves the already-open device into the runtime's namespace at `netns` (a path), names it `ifname`
 * and configures it as plumbPod does for eth0. The namespace is the runtime's: nothing here creates or
 * deletes it. If this fails the caller closes the device, which takes the interface, its address and
 * routes with it.
 */
export async function plumbAttachment(opts: PlumbOptions & { ifname: string }): Promise<void> {
  const { netns, ifname } = opts;
  if (!(await netnsPathUsable(netns))) throw notFound(`network namespace ${netns} does not exist or is not a network namespace`);
  try {
    await nsPathExec(netns, 'ip', ['link', 'show', 'dev', ifname]);
    throw exists(`interface ${ifname} already exists in network namespace ${netns}`);
  } catch (err) {
    if (err instanceof PodnetError && err.code === ErrorCode.AlreadyExists) throw err;
  }
  await ip(['link', 'set', 'dev', opts.device, 'netns', netns]);
  // As in pods: podnet's network is IPv4 only; no router solicitations or DAD on the switch. Only this
  // interface, the rest of the namespace is the runtime's.
  await nsPathExec(netns, 'sysctl', ['-qw', `net/ipv6/conf/${opts.device}/disable_ipv6=1`]).catch(() => undefined);
  await nsPathExec(netns, 'ip', ['-batch', '-'], {
    input:
      [
        `link set dev ${opts.device} name ${ifname}`,
        ...(opts.kind === 'tap' ? [`link set dev ${ifname} address ${opts.mac}`] : []),
        `link set dev ${ifname} mtu ${opts.mtu}`,
        `link set dev ${ifname} up`,
        `addr add ${opts.ip}/${opts.prefix} dev ${ifname}`,
        `route add default via ${opts.gateway} dev ${ifname}${opts.kind === 'tun' ? ' onlink' : ''}`,
      ].join('\n') + '\n',
  });
}

/** The interface `ifname` in the namespace at `netns`: its MAC, MTU, state and IPv4 addresses; undefined if absent. */
export async function inspectInterface(netns: string, ifname: string): Promise<{ mac: string | undefined; mtu: number; up: boolean; addrs: string[] } | undefined> {
  let out: string;
  try {
    out = (await nsPathExec(netns, 'ip', ['-j', 'addr', 'show', 'dev', ifname])).stdout;
  } catch {
    return undefined;
  }
  const links = JSON.parse(out) as Array<{ address?: string; mtu: number; flags: string[]; link_type?: string; addr_info: Array<{ family: string; local: string; prefixlen: number }> }>;
  const l = links[0];
  if (!l) return undefined;
  return {
    mac: l.link_type === 'ether' ? l.address : undefined,
    mtu: l.mtu,
    up: l.flags.includes('UP'),
    addrs: l.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`),
  };
}
