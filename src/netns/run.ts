import { execFile, spawn } from 'node:child_process';
import { ErrorCode, PodnetError } from '../util/errors.js';

/**
 * Runs control-plane commands (iproute2, sysctl). Never used per packet. Failures become PodnetError
 * with the command line and its stderr, so the operator sees what the kernel refused.
 */
export interface RunResult {
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args as string[],
      { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          const detail = (stderr || err.message).toString().trim().split('\n').slice(-3).join('; ');
          reject(new PodnetError(ErrorCode.Command, `${cmd} ${args.join(' ')}: ${detail}`));
        } else {
          resolve({ stdout: stdout.toString(), stderr: stderr.toString() });
        }
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** `ip ARGS...`; with `netns`, inside that named namespace (`ip -n NS ...`). */
export function ip(args: readonly string[], netns?: string): Promise<RunResult> {
  return run('ip', netns ? ['-n', netns, ...args] : args);
}

/** Runs many `ip` commands in one process (`ip -batch -`); stops at the first failure. */
export async function ipBatch(lines: readonly string[], netns?: string): Promise<void> {
  if (lines.length === 0) return;
  await run('ip', [...(netns ? ['-n', netns] : []), '-batch', '-'], { input: lines.join('\n') + '\n' });
}

/** Runs a command inside a named namespace. */
export function nsExec(netns: string, cmd: string, args: readonly string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  return run('ip', ['netns', 'exec', netns, cmd, ...args], opts);
}

/** Spawns a long-running process in a namespace (inherits nothing but env). */
export function nsSpawn(netns: string | undefined, cmd: string, args: readonly string[], env?: NodeJS.ProcessEnv) {
  const argv = netns ? ['netns', 'exec', netns, cmd, ...args] : [cmd, ...args];
  return spawn(netns ? 'ip' : argv[0]!, netns ? argv : argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
}

export async function listNetns(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.length > 0);
}

export async function netnsExists(name: string): Promise<boolean> {
  return (await listNetns()).includes(name);
}

export async function linkExists(dev: string, netns?: string): Promise<boolean> {
  try {
    await ip(['link', 'show', 'dev', dev], netns);
    return true;
  } catch {
    return false;
  }
}

/**
 * An undo stack for multi-step operations: each step that creates something registers how to remove it.
 * On failure `unwind()` runs the removals newest-first, ignoring their own errors, so a failed operation
 * leaves nothing half-made.
 */
export class Undo {
  private readonly steps: Array<{ what: string; fn: () => Promise<unknown> | unknown }> = [];
  push(what: string, fn: () => Promise<unknown> | unknown): void {
    this.steps.push({ what, fn });
  }
  async unwind(onError?: (what: string, err: unknown) => void): Promise<void> {
    while (this.steps.length > 0) {
      const step = this.steps.pop()!;
      try {
        await step.fn();
      } catch (err) {
        onError?.(step.what, err);
      }
    }
  }
  /** Forget the steps: the operation succeeded and now owns what it made. */
  commit(): void {
    this.steps.length = 0;
  }
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
