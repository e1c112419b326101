import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { ip, listNetns, nsExec, run, type RunResult } from '../netns/run.js';
import { deleteNetns } from '../netns/run.js';
import { apiCall } from '../api/client.js';
import { processAlive } from '../util/process.js';

/** Repository root (this file is src/topology/topology.ts, compiled to dist/src/topology/topology.js). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), existsSync(resolve(dirname(fileURLToPath(import.meta.url)), '../../../package.json')) ? '../../..' : '../..');
export const CLI = join(REPO_ROOT, 'dist/src/cli/main.js');

export interface HostSpec {
  name: string;
  /** Underlay address (198.18.0.0/15 benchmarking range); default 198.18.0.(10 + host number). */
  underlayIp?: string;
}

export interface Host {
  name: string;
  netns: string;
  underlayIp: string;
  stateDir: string;
  daemon?: ChildProcess;
  logFile: string;
  /** The config overrides and options its daemon was last started with (a restart uses them again). */
  started?: { extra: Record<string, unknown>; opts: { detached?: boolean; nodeArgs?: string[]; cleanup?: boolean } };
}

export interface ExecResult extends RunResult {
  code: number;
}

/**
 * Builds hosts as network namespaces joined by an underlay bridge that itself lives in a namespace, so
 * nothing is added to the machine's own namespace. Runs a podnet daemon per host. Everything it creates
 * starts with `prefix`, and `destroy` removes all of it (also from another process, for `demo down`).
 * Shared by the integration tests, the demo and the end-to-end benchmark.
 */
export class Topology {
  readonly prefix: string;
  readonly dir: string;
  readonly runDir: string;
  readonly underlayNs: string;
  readonly hosts = new Map<string, Host>();
  private hostCount = 0;

  constructor(opts: { prefix?: string; dir?: string; runDir?: string } = {}) {
    this.prefix = opts.prefix ?? `pnt${process.pid.toString(36)}${randomBytes(2).toString('hex')}-`;
    this.dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'podnet-'));
    mkdirSync(this.dir, { recursive: true });
    this.runDir = opts.runDir ?? join(this.dir, 'run');
    this.underlayNs = `${this.prefix}underlay`;
  }

  /** Creates the underlay: a namespace with bridge br0 (198.18.0.0/24 for the hosts). */
  async createUnderlay(): Promise<void> {
    await run('ip', ['netns', 'add', this.underlayNs]);
    await ip(['link', 'add', 'br0', 'type', 'bridge'], this.underlayNs);
    await ip(['link', 'set', 'br0', 'up'], this.underlayNs);
    await ip(['link', 'set', 'lo', 'up'], this.underlayNs);
  }

  /** A host: namespace `<prefix><name>` with eth0 on the underlay bridge. */
  async addHost(spec: HostSpec): Promise<Host> {
    const n = ++this.hostCount;
    const netns = `${this.prefix}${spec.name}`;
    const underlayIp = spec.underlayIp ?? `198.18.0.${10 + n}`;
    await run('ip', ['netns', 'add', netns]);
    const host: Host = { name: spec.name, netns, underlayIp, stateDir: join(this.dir, spec.name), logFile: join(this.dir, `${spec.name}.log`) };
    this.hosts.set(spec.name, host);
    const peer = `v${n}-${spec.name}`.slice(0, 15);
    await ip(['link', 'add', peer, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns], this.underlayNs);
    await ip(['link', 'set', peer, 'master', 'br0', 'up'], this.underlayNs);
    await ip(['link', 'set', 'lo', 'up'], netns);
    await ip(['addr', 'add', `${underlayIp}/24`, 'dev', 'eth0'], netns);
    await ip(['link', 'set', 'eth0', 'up'], netns);
    // eth0 keeps veth's default offloads (checksum offload, TSO, UDP and tunnel GSO), as a user's
    // machine has them: partial checksums and super-frames reach podnet from every side.
    return host;
  }

  /** An extra namespace on the underlay that is not a podnet node (an "external" client). */
  async addExternal(name: string, underlayIp: string): Promise<Host> {
    const h = await this.addHost({ name, underlayIp });
    return h;
  }

  host(name: string): Host {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host ${name} in topology ${this.prefix}`);
    return h;
  }

  /**
   * Takes a host that another process built (its namespace exists; e.g. `podnet demo restart`)
   * into this topology object, so its daemon can be started again.
   */
  async adoptHost(name: string): Promise<Host> {
    const netns = `${this.prefix}${name}`;
    if (!(await listNetns()).includes(netns)) throw new Error(`no host ${name} (namespace ${netns}) in topology ${this.prefix}`);
    const { stdout } = await ip(['-j', '-4', 'addr', 'show', 'dev', 'eth0'], netns);
    const addr = (JSON.parse(stdout) as Array<{ addr_info: Array<{ local: string }> }>)[0]?.addr_info[0]?.local ?? '';
    const host: Host = { name, netns, underlayIp: addr, stateDir: join(this.dir, name), logFile: join(this.dir, `${name}.log`) };
    this.hosts.set(name, host);
    return host;
  }

  /** Config for a host's daemon: every host shares the embedded cluster store in this topology's dir. */
  daemonConfig(host: Host, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      node: host.name,
      stateDir: host.stateDir,
      runDir: this.runDir,
      nsPrefix: this.prefix,
      store: { kind: 'embedded', path: join(this.dir, 'cluster.db') },
      underlay: { interface: 'eth0', mtu: 1500 },
      leaseTtl: 5,
      logLevel: 'info',
      // Per topology and host, so that tests reusing host names never take over each other's table.
      conntrackFile: `/dev/shm/${this.prefix}${host.name}.conntrack`,
      ...extra,
    };
  }

  /** Starts `podnet daemon` inside the host's namespace and waits until its API answers. */
  /** Starts podnet's daemon in a host; `opts.nodeArgs` go to node itself (e.g. --expose-gc). */
  async startDaemon(name: string, extra: Record<string, unknown> = {}, opts: { detached?: boolean; nodeArgs?: string[]; cleanup?: boolean; cli?: string } = {}): Promise<Host> {
    const host = this.host(name);
    host.started = { extra, opts };
    mkdirSync(host.stateDir, { recursive: true });
    const cfgPath = join(this.dir, `${name}.json`);
    writeFileSync(cfgPath, JSON.stringify(this.daemonConfig(host, extra), null, 2));
    const log = openSync(host.logFile, 'a');
    // nsenter switches only the network namespace: `ip netns exec` would also give the daemon a private
    // mount namespace, and the pod namespaces it mounts under /run/netns would be invisible outside it.
    const daemonArgs = ['daemon', '--config', cfgPath, ...(opts.cleanup ? ['--cleanup'] : [])];
    const child = spawn('nsenter', [`--net=/run/netns/${host.netns}`, '--', process.execPath, ...(opts.nodeArgs ?? []), opts.cli ?? CLI, ...daemonArgs], {
      stdio: ['ignore', log, log],
      detached: !!opts.detached,
    });
    closeSync(log);
    host.daemon = child;
    mkdirSync(join(this.dir, 'pids'), { recursive: true });
    writeFileSync(join(this.dir, 'pids', name), String(child.pid));
    if (opts.detached) child.unref();
    const deadline = Date.now() + 60_000;
    // Asked in-process (a CLI per poll would cost a Node start each): ready once the API answers.
    const sock = join(this.runDir, `${name}.sock`);
    for (;;) {
      if (child.exitCode !== null) throw new Error(`daemon on ${name} exited with ${child.exitCode}: ${this.daemonLog(name).slice(-2000)}`);
      const err = await apiCall(sock, 'GET', '/v1/status', undefined, 5000).then(
        () => undefined,
        (e: Error) => e.message,
      );
      if (err === undefined) return host;
      if (Date.now() > deadline) throw new Error(`daemon on ${name} did not become ready: ${err} ${this.daemonLog(name).slice(-2000)}`);
      await sleep(50);
    }
  }

  daemonLog(name: string): string {
    try {
      return readFileSync(this.host(name).logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** Sends SIGTERM to a host's daemon and waits for it to finish its teardown. */
  async stopDaemon(name: string, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000): Promise<number | null> {
    const host = this.host(name);
    const child = host.daemon;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const done = new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await done;
    clearTimeout(timer);
    host.daemon = undefined;
    return code;
  }

  /**
   * Stops a host's daemon (SIGTERM: a graceful stop that leaves the datapath; SIGKILL: a crash) and
   * starts it again with the same config and options; resolves once the new daemon answers.
   * `opts.cli` runs another build's CLI (an upgrade).
   */
  async restartDaemon(
    name: string,
    signal: NodeJS.Signals = 'SIGTERM',
    opts: { cli?: string; startedWith?: NonNullable<Host['started']> } = {},
  ): Promise<Host> {
    const host = this.host(name);
    const started = host.started ?? opts.startedWith ?? { extra: {}, opts: {} };
    if (host.daemon) await this.stopDaemon(name, signal);
    else await killAndWait(this.recordedPid(name), signal);
    return this.startDaemon(name, started.extra, { ...started.opts, ...(opts.cli ? { cli: opts.cli } : {}) });
  }

  /** The pid recorded for a host's daemon (also one started by another process), or 0. */
  recordedPid(name: string): number {
    try {
      return Number(readFileSync(join(this.dir, 'pids', name), 'utf8'));
    } catch {
      return 0;
    }
  }

  /**
   * `podnet node reset` on a host: its daemon removes every pod namespace, device, route and rule it
   * made and exits. Falls back to SIGTERM when the daemon does not answer.
   */
  async resetDaemon(name: string): Promise<number | null> {
    const host = this.host(name);
    const child = host.daemon;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const done = new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
    const r = await this.podnet(name, ['node', 'reset'], 90_000);
    if (r.code !== 0) return this.stopDaemon(name);
    const code = await done;
    host.daemon = undefined;
    return code;
  }

  /** Runs the podnet CLI against a host's daemon. */
  podnet(name: string, args: readonly string[], timeoutMs = 120_000): Promise<ExecResult> {
    return execCapture(process.execPath, [CLI, '--run-dir', this.runDir, '--node', name, ...args], timeoutMs);
  }

  /** Runs a command in a namespace (host or pod), never throwing: the result has the exit code. */
  exec(netns: string, cmd: string, args: readonly string[], timeoutMs = 120_000): Promise<ExecResult> {
    return execCapture('ip', ['netns', 'exec', netns, cmd, ...args], timeoutMs);
  }

  /** Same as `exec` but throws with the output when the command fails. */
  async sh(netns: string, script: string, timeoutMs = 120_000): Promise<string> {
    const r = await nsExec(netns, 'sh', ['-c', script], { timeoutMs });
    return r.stdout;
  }

  /** Pod namespace name for a pod created by host `node`. */
  podNs(node: string, pod: string): string {
    return `${this.prefix}${node}-${pod}`;
  }

  /**
   * Removes everything: every daemon is reset (`podnet node reset`: it removes its pods, devices,
   * routes, rules and conntrack file, as a stop did before daemons left their datapath in place),
   * then every namespace with this prefix, the conntrack files and the working directory go.
   */
  async destroy(opts: { keepDir?: boolean } = {}): Promise<void> {
    await Promise.all([...this.hosts.keys()].map((h) => this.resetDaemon(h).catch(() => this.stopDaemon(h).catch(() => undefined))));
    await Topology.destroyByPrefix(this.prefix, this.dir, opts);
  }

  /** Stateless teardown: kills daemons recorded under `dir/pids`, removes namespaces starting with `prefix`. */
  static async destroyByPrefix(prefix: string, dir: string | undefined, opts: { keepDir?: boolean } = {}): Promise<void> {
    if (dir && existsSync(join(dir, 'pids'))) {
      for (const f of readdirSync(join(dir, 'pids'))) {
        const pid = Number(readFileSync(join(dir, 'pids', f), 'utf8'));
        await killAndWait(pid);
      }
    }
    // Kill any process left in our namespaces (daemons started elsewhere, stray servers), then delete them.
    const names = (await listNetns()).filter((n) => n.startsWith(prefix));
    for (const n of names) {
      try {
        const { stdout } = await run('ip', ['netns', 'pids', n]);
        for (const p of stdout.split(/\s+/).filter(Boolean)) await killAndWait(Number(p), 'SIGTERM', 10_000);
      } catch {
        /* namespace already gone */
      }
    }
    for (const n of (await listNetns()).filter((x) => x.startsWith(prefix))) await deleteNetns(n).catch(() => undefined);
    // Conntrack tables the daemons kept for their next run (daemonConfig names them by the prefix).
    try {
      for (const f of readdirSync('/dev/shm')) if (f.startsWith(prefix)) rmSync(join('/dev/shm', f), { force: true });
    } catch {
      /* no /dev/shm */
    }
    if (dir && !opts.keepDir) rmSync(dir, { recursive: true, force: true });
  }
}

async function killAndWait(pid: number, sig: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000): Promise<void> {
  if (!Number.isInteger(pid) || pid <= 1) return;
  const alive = () => processAlive(pid);
  if (!alive()) return;
  try {
    process.kill(pid, sig);
  } catch {
    return;
  }
  const deadline = Date.now() + timeoutMs;
  while (alive() && Date.now() < deadline) await sleep(100);
  if (alive()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    while (alive()) await sleep(50);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function execCapture(cmd: string, args: readonly string[], timeoutMs = 120_000, input?: string): Promise<ExecResult> {
  return new Promise((resolvePromise) => {
    const child = spawn(cmd, args as string[], { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    if (input !== undefined) child.stdin!.end(input);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      resolvePromise({ code: code ?? (sig ? 128 : 1), stdout, stderr });
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      resolvePromise({ code: 127, stdout, stderr: stderr + e.message });
    });
  });
}
