import { chmodSync, existsSync, lstatSync, mkdirSync, symlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../util/fsutil.js';
import { invalid } from '../util/errors.js';
import { isSupportedVersion } from './spec.js';

export const PLUGIN_BINARY = 'podnet-cni';

export interface InstallOptions {
  confDir: string;
  binDir: string;
  /** The conflist's file name in confDir. */
  file: string;
  /** CNI network name. */
  name: string;
  cniVersion: string;
  /** How the plugin finds its daemon (see src/cni/config.ts resolveSocket). */
  socket?: string;
  node?: string;
  runDir?: string;
  device: 'tap' | 'tun';
  portmap: boolean;
  bandwidth: boolean;
  /** Where the reference plugins (portmap, bandwidth) are, to link into binDir if it lacks them. */
  pluginsFrom: string;
  /** The compiled plugin (dist/src/cni/main.js) and the Node.js that runs it. */
  pluginMain: string;
  nodePath: string;
}

/** The conflist: podnet first, then portmap (hostPort) and bandwidth, as kubelet-era configs chain them. */
export function conflist(o: Pick<InstallOptions, 'name' | 'cniVersion' | 'socket' | 'node' | 'runDir' | 'device' | 'portmap' | 'bandwidth'>): Record<string, unknown> {
  const podnet: Record<string, unknown> = { type: PLUGIN_BINARY, device: o.device };
  if (o.socket) podnet.socket = o.socket;
  if (o.node) podnet.node = o.node;
  if (o.runDir) podnet.runDir = o.runDir;
  const plugins: Array<Record<string, unknown>> = [podnet];
  if (o.portmap) plugins.push({ type: 'portmap', capabilities: { portMappings: true } });
  if (o.bandwidth) plugins.push({ type: 'bandwidth', capabilities: { bandwidth: true } });
  return { cniVersion: o.cniVersion, name: o.name, plugins };
}

const shQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Writes the conflist into confDir and the plugin launcher into binDir (both atomically), and links
 * the chained reference plugins into binDir when they are not there. Returns the paths it wrote.
 */
export function installCni(o: InstallOptions): { conflist: string; binary: string; linked: string[] } {
  if (!isSupportedVersion(o.cniVersion)) throw invalid(`invalid --cni-version ${o.cniVersion}: podnet-cni supports 1.0.0 and 1.1.0`);
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(o.name)) throw invalid(`invalid --name ${JSON.stringify(o.name)}: letters, digits, _ . - starting with a letter or digit`);
  if (!/^[^/]+\.conflist$/.test(o.file)) throw invalid(`invalid --file ${JSON.stringify(o.file)}: a file name ending in .conflist`);
  if (!existsSync(o.pluginMain)) throw invalid(`the compiled plugin ${o.pluginMain} is missing: run npm run build`);
  mkdirSync(o.confDir, { recursive: true, mode: 0o755 });
  mkdirSync(o.binDir, { recursive: true, mode: 0o755 });
  const binary = join(o.binDir, PLUGIN_BINARY);
  writeFileAtomic(
    binary,
    `#!/bin/sh\n# podnet CNI plugin, written by \`podnet cni install\`.\nexec ${shQuote(o.nodePath)} ${shQuote(resolve(o.pluginMain))} "$@"\n`,
    0o755,
  );
  chmodSync(binary, 0o755);
  const linked: string[] = [];
  for (const [want, p] of [[o.portmap, 'portmap'], [o.bandwidth, 'bandwidth']] as const) {
    if (!want) continue;
    const dst = join(o.binDir, p);
    if (existsSync(dst) || isLink(dst)) continue;
    const src = join(o.pluginsFrom, p);
    if (!existsSync(src)) throw invalid(`the ${p} plugin is neither in ${o.binDir} nor in ${o.pluginsFrom} (install containernetworking-plugins, or pass --no-${p})`);
    symlinkSync(src, dst);
    linked.push(dst);
  }
  const path = join(o.confDir, o.file);
  writeFileAtomic(path, JSON.stringify(conflist(o), null, 2) + '\n', 0o644);
  return { conflist: path, binary, linked };
}

function isLink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}
