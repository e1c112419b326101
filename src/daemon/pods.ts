import { randomBytes } from 'node:crypto';
import { ip, ipBatch, nsExec, run, Undo } from '../netns/run.js';
import { invalid } from '../util/errors.js';

/** Pod names become namespace names and API paths: DNS-label-like, as Kubernetes names are. */
const POD_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** Kubernetes label syntax: optional DNS-subdomain prefix, name <= 63, value <= 63. */
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

export type DeviceKind = 'tap' | 'tun';

export interface PodSpec {
  name: string;
  labels: Record<string, string>;
  device: DeviceKind;
  /** The address the pod had (kept in the state file, so a restart can tell a changed subnet). */
  ip?: string;
  /** The name its device had in the node namespace before it became the pod's eth0. */
  hostDevice?: string;
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

/** Kills every process in a namespace (a deleted pod must not leave its processes running). */
export async function killNetnsPids(netns: string): Promise<void> {
  let pids: string[] = [];
  try {
    const { stdout } = await run('ip', ['netns', 'pids', netns]);
    pids = stdout.split(/\s+/).filter(Boolean);
  } catch {
    return;
  }
  for (const p of pids) {
    try {
      process.kill(Number(p), 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

export async function deleteNetns(netns: string): Promise<void> {
  await killNetnsPids(netns);
  try {
    await run('ip', ['netns', 'del', netns]);
  } catch (err) {
    if (!/No such file|not found|Invalid/.test(String((err as Error).message))) throw err;
  }
}

/**
 * Creates the pod's namespace, moves the already-open device into it as eth0 and configures it.
 * Registers undo steps on `undo` for everything it creates.
 */
export async function plumbPod(opts: {
  netns: string;
  device: string;
  kind: DeviceKind;
  mac: string;
  ip: string;
  prefix: number;
  gateway: string;
  mtu: number;
  undo: Undo;
}): Promise<void> {
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
 * Configures an eth0 that already is in the pod's namespace (a persistent device a new daemon
 * attached to again, or one it just created there) so it ends up exactly as `plumbPod` leaves it.
 * Idempotent: a device that is already configured is left as it is. `flush` first removes every
 * address (the pod's address changed, e.g. its node got another subnet).
 */
export async function replumbPod(opts: { netns: string; kind: DeviceKind; mac: string; ip: string; prefix: number; gateway: string; mtu: number; flush: boolean }): Promise<void> {
  const lines = [
    ...(opts.kind === 'tap' ? [`link set dev eth0 address ${opts.mac}`] : []),
    `link set dev eth0 mtu ${opts.mtu}`,
    'link set dev lo up',
    'link set dev eth0 up',
    ...(opts.flush ? ['addr flush dev eth0'] : []),
    `addr replace ${opts.ip}/${opts.prefix} dev eth0`,
    `route replace default via ${opts.gateway} dev eth0${opts.kind === 'tun' ? ' onlink' : ''}`,
  ];
  await nsExec(opts.netns, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1', 'net.ipv6.conf.eth0.disable_ipv6=1']);
  await ipBatch(lines, opts.netns);
}
