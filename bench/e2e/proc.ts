/**
 * Processes of the benchmark: every command it starts in a namespace is tracked so that teardown (and
 * Ctrl-C) can kill what is still running, plus CPU-time readers (/proc/<pid>/stat, /proc/stat) and the
 * machine description written into the JSON.
 */
import { spawn, execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { CLI } from '../../src/topology/topology.js';
import { readFileSync } from 'node:fs';
import os from 'node:os';

const live = new Set<ChildProcess>();

export interface Output {
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `cmd args` in network namespace `ns` (`ip netns exec` execs the command, so the child's pid is
 * the command's) and resolves with its exit status and output; never rejects. Killed after `timeoutMs`.
 */
export function runIn(ns: string, cmd: string, args: readonly string[], timeoutMs: number): Promise<Output> {
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      stderr += `\n[bench] killed after ${timeoutMs} ms`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => (stderr += e.message));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      resolve({ code: code ?? 128, signal, stdout, stderr });
    });
  });
}

/** A server left running in a namespace until `stop()`. */
export interface Server {
  child: ChildProcess;
  /** stdout and stderr as they came. */
  output(): string;
  stdout(): string;
  /** SIGKILL (or `signal`, then SIGKILL after 3 s) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `cmd args` in `ns`, tracked for killAll; `exited()` tells whether it has exited since. */
function spawnTracked(ns: string, cmd: string, args: readonly string[]): { server: Server; exited: () => boolean } {
  const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let out = '';
  let stdout = '';
  child.stdout!.on('data', (d: Buffer) => ((out += d.toString()), (stdout += d.toString())));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  let exited = false;
  const exit = new Promise<void>((r) =>
    child.on('close', () => {
      exited = true;
      live.delete(child);
      r();
    }),
  );
  child.on('error', (e) => (out += e.message));
  const server: Server = {
    child,
    output: () => out,
    stdout: () => stdout,
    stop: async (signal: NodeJS.Signals = 'SIGKILL') => {
      if (!exited) child.kill(signal);
      const timer = signal === 'SIGKILL' ? undefined : setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exit;
      clearTimeout(timer);
    },
  };
  return { server, exited: () => exited };
}

/**
 * Starts a server in `ns` and waits until something listens on TCP `port` in that namespace (polled with
 * `ss`, so it works for any server whatever it prints). Fails if it exits first or is not up in 10 s.
 */
export async function startServer(ns: string, cmd: string, args: readonly string[], port: number): Promise<Server> {
  const { server, exited } = spawnTracked(ns, cmd, args);
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (exited()) throw new Error(`${cmd} ${args.join(' ')} in ${ns} exited before listening: ${server.output().trim().slice(-500)}`);
    const ss = await runIn(ns, 'ss', ['-Hltn', `sport = :${port}`], 5_000);
    if (ss.code === 0 && ss.stdout.trim().length > 0) return server;
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`${cmd} ${args.join(' ')} in ${ns} was not listening on ${port} after 10 s: ${server.output().trim().slice(-500)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts a long-running command in `ns` and waits until it prints the line `ready`; fails if it exits first or is not ready in 10 s. */
export async function startReady(ns: string, cmd: string, args: readonly string[]): Promise<Server> {
  const { server, exited } = spawnTracked(ns, cmd, args);
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (/^ready$/m.test(server.stdout())) return server;
    if (exited()) throw new Error(`${cmd} ${args.join(' ')} in ${ns} exited before it was ready: ${server.output().trim().slice(-500)}`);
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`${cmd} ${args.join(' ')} in ${ns} was not ready after 10 s: ${server.output().trim().slice(-500)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Kills every command and server still running (teardown, Ctrl-C). */
export function killAll(): void {
  for (const c of live) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

/**
 * A benchmark's options from the command line: the parsed options, or the exit status once `--help`
 * printed `usage` (0) or a bad option printed its reason and `usage` (2).
 */
export function readOptions<T>(parse: (argv: string[]) => T | 'help', usage: string): T | number {
  try {
    const parsed = parse(process.argv.slice(2));
    if (parsed !== 'help') return parsed;
    process.stdout.write(usage);
    return 0;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${usage}`);
    return 2;
  }
}

/** What a benchmark that builds namespaces needs: root, /dev/net/tun, the built CLI and `tools` (else `hint` says what to install). */
export async function preflight(tools: readonly string[], hint: string): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces, TAP devices): run with sudo');
  if (!existsSync('/dev/net/tun')) throw new Error('/dev/net/tun is missing');
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npx tsc -p tsconfig.json)`);
  for (const tool of tools) {
    const found = await new Promise<boolean>((res) => execFile('sh', ['-c', `command -v ${tool}`], (err) => res(!err)));
    if (!found) throw new Error(`${tool} is not installed (${hint})`);
  }
}

/** The commit measured (and whether the tree had local changes): the code moves fast. */
export function gitInfo(repo: string): { commit?: string; dirty?: boolean } {
  try {
    const commit = execFileSync('git', ['-C', repo, 'rev-parse', 'HEAD']).toString().trim();
    const dirty = execFileSync('git', ['-C', repo, 'status', '--porcelain', '--untracked-files=no']).toString().trim().length > 0;
    return { commit, dirty };
  } catch {
    return {};
  }
}

export function liveCount(): number {
  return live.size;
}

let clkTck: number | undefined;
/** Clock ticks per second, the unit of /proc CPU times. */
export function ticksPerSecond(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** utime + stime of a process (all its threads), in seconds, from /proc/<pid>/stat. */
export function processCpuSeconds(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after "(comm)": state is field 3, utime 14 and stime 15 (1-based) -> 11 and 12 here.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`cannot parse /proc/${pid}/stat: ${text}`);
  return (utime + stime) / ticksPerSecond();
}

/** Busy CPU seconds of the whole machine (all CPUs, every process and softirq): /proc/stat's first line. */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already counted in user).
  const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + (f[7] ?? 0);
  return busy / ticksPerSecond();
}

/**
 * Seconds the whole machine spent in softirq (/proc/stat): where the kernel forwards packets (bridge,
 * VXLAN, veth, the TCP receive path), for the kernel side the counterpart of podnet's daemon CPU.
 */
export function machineSoftirqSeconds(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return f[6]! / ticksPerSecond();
}

/**
 * The real daemon process behind a pid Topology.startDaemon recorded. That pid is the `nsenter` it
 * spawned; nsenter (entering only a network namespace, no --fork) execs the command in place, so it is
 * normally already `node ... daemon`. Should nsenter ever fork (e.g. --pid), follow its only child.
 */
export function resolveDaemonPid(pid: number): number {
  let cur = pid;
  for (let i = 0; i < 3; i++) {
    const comm = readFileSync(`/proc/${cur}/comm`, 'utf8').trim();
    if (comm !== 'nsenter') break;
    const children = readFileSync(`/proc/${cur}/task/${cur}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    if (children.length !== 1) throw new Error(`nsenter ${cur} has ${children.length} children, expected the daemon`);
    cur = children[0]!;
  }
  const cmdline = readFileSync(`/proc/${cur}/cmdline`, 'utf8').split('\0');
  if (!cmdline.includes('daemon')) throw new Error(`process ${cur} is not a podnet daemon: ${cmdline.join(' ')}`);
  return cur;
}

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  kernel: string;
  node: string;
  iperf3: string;
  memoryBytes: number;
  /** Load averages when the run started: other work on the machine skews the numbers. */
  loadAverage: number[];
}

export function machineInfo(): MachineInfo {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpuModel = m[1]!.trim();
  } catch {
    /* os.cpus() it is */
  }
  let iperf3 = 'unknown';
  try {
    iperf3 = execFileSync('iperf3', ['--version']).toString().split('\n')[0]!.trim();
  } catch {
    /* reported by the preflight check */
  }
  return {
    cpuModel,
    cores: os.availableParallelism?.() ?? os.cpus().length,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    iperf3,
    memoryBytes: os.totalmem(),
    loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}
