import { join } from 'node:path';
import { readdirSync } from 'node:fs';
import { Command, CniError, CniErrorCode, isCommand, isSupportedVersion, type CniDns, type CniResult, type CniVersion } from './spec.js';

export const DEFAULT_RUN_DIR = '/run/podnet';

/** podnet's network configuration (one plugin entry of a conflist, as the runtime hands it over). */
export interface NetConf {
  cniVersion: CniVersion;
  name: string;
  type: string;
  /** The daemon's API socket; else `runDir`/`node`.sock; else the only socket in `runDir`. */
  socket?: string;
  node?: string;
  runDir: string;
  device: 'tap' | 'tun';
  dns?: CniDns;
  /** Labels from `args.labels` (an object) and `args.cni.labels` (CNI conventions: [{key, value}]). */
  argLabels: Record<string, string>;
  prevResult?: CniResult;
  /** GC: the attachments the runtime still knows (`cni.dev/valid-attachments`). */
  validAttachments?: Array<{ containerId: string; ifname: string }>;
}

export interface CniEnv {
  command: Command;
  containerId?: string;
  netns?: string;
  ifname?: string;
  path?: string;
  args: Record<string, string>;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const NETWORK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function bad(field: string, value: unknown, why: string): CniError {
  return new CniError(CniErrorCode.InvalidConfig, `invalid network config: ${field} ${JSON.stringify(value)}: ${why}`);
}

/** The config's cniVersion if it is one podnet speaks (for error JSON), else the latest. */
export function peekVersion(stdin: string): string {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
    return typeof v === 'string' && v.length > 0 && v.length < 32 ? v : '1.1.0';
  } catch {
    return '1.1.0';
  }
}

/**
 * Parses the network config from stdin. Names the field and the reason of every refusal: 6 when it is
 * not JSON, 1 for a cniVersion podnet does not speak, 2 for a field podnet does not support (an `ipam`
 * section: podnet assigns addresses itself), 7 for a missing or malformed field.
 */
export function parseNetConf(stdin: string): NetConf {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(CniErrorCode.DecodeFailure, `network config on stdin is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObj(raw)) throw new CniError(CniErrorCode.DecodeFailure, 'network config on stdin must be a JSON object');
  const v = raw.cniVersion;
  if (v === undefined) throw bad('cniVersion', v, 'is required');
  if (!isSupportedVersion(v)) {
    throw new CniError(CniErrorCode.IncompatibleVersion, `incompatible CNI version ${JSON.stringify(v)}: podnet-cni supports 1.0.0 and 1.1.0`);
  }
  if (typeof raw.name !== 'string' || !NETWORK_NAME.test(raw.name)) throw bad('name', raw.name, 'must start with a letter or digit and hold only letters, digits, _ . -');
  if (typeof raw.type !== 'string' || raw.type.length === 0) throw bad('type', raw.type, 'must name the plugin');
  if (raw.ipam !== undefined) {
    throw new CniError(CniErrorCode.UnsupportedField, `unsupported field in network config: ipam ${JSON.stringify(raw.ipam)}: podnet assigns addresses from the node's subnet itself`);
  }
  const conf: NetConf = { cniVersion: v, name: raw.name, type: raw.type, runDir: DEFAULT_RUN_DIR, device: 'tap', argLabels: {} };
  if (raw.socket !== undefined) {
    if (typeof raw.socket !== 'string' || !raw.socket.startsWith('/')) throw bad('socket', raw.socket, 'must be an absolute path to the podnet daemon socket');
    conf.socket = raw.socket;
  }
  if (raw.node !== undefined) {
    if (typeof raw.node !== 'string' || !/^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/.test(raw.node)) throw bad('node', raw.node, 'must be a podnet node name');
    conf.node = raw.node;
  }
  if (raw.runDir !== undefined) {
    if (typeof raw.runDir !== 'string' || !raw.runDir.startsWith('/')) throw bad('runDir', raw.runDir, 'must be an absolute directory');
    conf.runDir = raw.runDir;
  }
  if (raw.device !== undefined) {
    if (raw.device !== 'tap' && raw.device !== 'tun') throw bad('device', raw.device, 'must be "tap" or "tun"');
    conf.device = raw.device;
  }
  if (raw.dns !== undefined) conf.dns = parseDns(raw.dns);
  if (raw.args !== undefined) conf.argLabels = parseArgLabels(raw.args);
  if (raw.prevResult !== undefined) conf.prevResult = parsePrevResult(raw.prevResult);
  const valid = raw['cni.dev/valid-attachments'];
  if (valid !== undefined) {
    if (!Array.isArray(valid)) throw bad('cni.dev/valid-attachments', valid, 'must be a list of {containerID, ifname}');
    conf.validAttachments = valid.map((a, i) => {
      if (!isObj(a) || typeof a.containerID !== 'string' || typeof a.ifname !== 'string') throw bad(`cni.dev/valid-attachments[${i}]`, a, 'must be {containerID, ifname}');
      return { containerId: a.containerID, ifname: a.ifname };
    });
  }
  return conf;
}

function strings(field: string, v: unknown): string[] {
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw bad(field, v, 'must be a list of strings');
  return v as string[];
}

function parseDns(v: unknown): CniDns {
  if (!isObj(v)) throw bad('dns', v, 'must be an object');
  const d: CniDns = {};
  if (v.nameservers !== undefined) d.nameservers = strings('dns.nameservers', v.nameservers);
  if (v.domain !== undefined) {
    if (typeof v.domain !== 'string') throw bad('dns.domain', v.domain, 'must be a string');
    d.domain = v.domain;
  }
  if (v.search !== undefined) d.search = strings('dns.search', v.search);
  if (v.options !== undefined) d.options = strings('dns.options', v.options);
  return d;
}

/** `args.labels` {k: v} (the spec's example) and `args.cni.labels` [{key, value}] (CNI conventions). */
function parseArgLabels(args: unknown): Record<string, string> {
  if (!isObj(args)) return {}; // args may carry anything; plugins ignore what they do not understand
  const out: Record<string, string> = {};
  if (args.labels !== undefined) {
    if (!isObj(args.labels)) throw bad('args.labels', args.labels, 'must be an object of label: value');
    for (const [k, val] of Object.entries(args.labels)) {
      if (typeof val !== 'string') throw bad(`args.labels.${k}`, val, 'must be a string');
      out[k] = val;
    }
  }
  const cni = args.cni;
  if (isObj(cni) && cni.labels !== undefined) {
    if (!Array.isArray(cni.labels)) throw bad('args.cni.labels', cni.labels, 'must be a list of {key, value}');
    cni.labels.forEach((l, i) => {
      if (!isObj(l) || typeof l.key !== 'string' || typeof l.value !== 'string') throw bad(`args.cni.labels[${i}]`, l, 'must be {key, value} strings');
      out[l.key] = l.value;
    });
  }
  return out;
}

function parsePrevResult(v: unknown): CniResult {
  if (!isObj(v)) throw bad('prevResult', v, 'must be an object');
  for (const k of ['interfaces', 'ips', 'routes'] as const) {
    if (v[k] !== undefined && !Array.isArray(v[k])) throw bad(`prevResult.${k}`, v[k], 'must be a list');
  }
  return v as unknown as CniResult;
}

/** CNI_ARGS: `K=V;K2=V2` (values may hold '='). */
export function parseCniArgs(s: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!s) return out;
  for (const part of s.split(';')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new CniError(CniErrorCode.InvalidEnvironment, `invalid CNI_ARGS entry ${JSON.stringify(part)}: expected KEY=VALUE`);
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

/** Reads and checks the CNI_* variables the command needs (error 4 naming the variable). */
export function parseEnv(env: NodeJS.ProcessEnv): CniEnv {
  const command = env.CNI_COMMAND;
  if (!isCommand(command)) {
    throw new CniError(CniErrorCode.InvalidEnvironment, `CNI_COMMAND ${JSON.stringify(command ?? '')} is not one of ${Object.values(Command).join(', ')}`);
  }
  const out: CniEnv = { command, args: parseCniArgs(env.CNI_ARGS) };
  const need = (name: string): string => {
    const v = env[name];
    if (v === undefined || v === '') throw new CniError(CniErrorCode.InvalidEnvironment, `${name} is required for ${command}`);
    return v;
  };
  if (command === Command.Add || command === Command.Check || command === Command.Del) {
    out.containerId = need('CNI_CONTAINERID');
    out.ifname = need('CNI_IFNAME');
    out.path = need('CNI_PATH');
    if (command === Command.Del) {
      if (env.CNI_NETNS) out.netns = env.CNI_NETNS;
    } else {
      out.netns = need('CNI_NETNS');
    }
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(out.containerId)) {
      throw new CniError(CniErrorCode.InvalidEnvironment, `CNI_CONTAINERID ${JSON.stringify(out.containerId)}: must start with a letter or digit and hold only letters, digits, _ . -`);
    }
    if (!/^[^/:\s]{1,15}$/.test(out.ifname) || out.ifname === '.' || out.ifname === '..') {
      throw new CniError(CniErrorCode.InvalidEnvironment, `CNI_IFNAME ${JSON.stringify(out.ifname)}: must be 1-15 characters, not . or .., without / : or whitespace`);
    }
    if (out.netns !== undefined && !out.netns.startsWith('/')) {
      throw new CniError(CniErrorCode.InvalidEnvironment, `CNI_NETNS ${JSON.stringify(out.netns)}: must be an absolute path`);
    }
  }
  return out;
}

/**
 * Labels for the attachment (service selectors match them): `io.kubernetes.pod.namespace` and
 * `io.kubernetes.pod.name` from K8S_POD_NAMESPACE / K8S_POD_NAME in CNI_ARGS, then the config's
 * `args.labels` / `args.cni.labels`, which win on a clash.
 */
export function labelsFor(conf: NetConf, env: CniEnv): Record<string, string> {
  const labels: Record<string, string> = {};
  if (env.args.K8S_POD_NAMESPACE) labels['io.kubernetes.pod.namespace'] = env.args.K8S_POD_NAMESPACE;
  if (env.args.K8S_POD_NAME) labels['io.kubernetes.pod.name'] = env.args.K8S_POD_NAME;
  return { ...labels, ...conf.argLabels };
}

/** The daemon socket: `socket`, else `runDir/node.sock`, else the only socket in `runDir`. */
export function resolveSocket(conf: Pick<NetConf, 'socket' | 'node' | 'runDir'>, list: (dir: string) => string[] = safeList): string {
  if (conf.socket) return conf.socket;
  if (conf.node) return join(conf.runDir, `${conf.node}.sock`);
  const socks = list(conf.runDir).filter((f) => f.endsWith('.sock'));
  if (socks.length === 1) return join(conf.runDir, socks[0]!);
  if (socks.length === 0) throw new CniError(CniErrorCode.TryAgainLater, `no podnet daemon socket in ${conf.runDir} (is the daemon running?)`);
  throw new CniError(CniErrorCode.InvalidConfig, `invalid network config: several podnet daemons in ${conf.runDir} (${socks.join(', ')}): set "node" or "socket"`);
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
