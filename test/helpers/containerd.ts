import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readdirSync, readFileSync, rmdirSync, writeFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execCapture, sleep, type ExecResult } from '../../src/topology/topology.js';

/**
 * containerd from Debian's package, run for a test host: its own root, state, sockets and config under
 * the test's directory, in the host's network namespace and in a private mount namespace where
 * /run/containerd is a tmpfs and the default CNI directories (/etc/cni/net.d, /opt/cni/bin, which
 * ctr's CNI library always uses) are bind mounts of this host's own directories. Nothing is written
 * into the machine's directories; mount points that did not exist are made and removed again.
 */
const MOUNT_POINTS = ['/run/containerd', '/etc/cni/net.d', '/opt/cni/bin'];
let made: string[] | undefined;
let users = 0;

function makeMountPoints(): void {
  users++;
  if (made) return;
  made = [];
  for (const mp of MOUNT_POINTS) {
    const parts = mp.split('/').filter(Boolean);
    let p = '';
    for (const part of parts) {
      p += '/' + part;
      if (!existsSync(p)) {
        mkdirSync(p);
        made.push(p);
      }
    }
  }
}

function removeMountPoints(): void {
  if (--users > 0 || !made) return;
  for (const p of made.reverse()) {
    try {
      rmdirSync(p);
    } catch {
      /* not empty: someone else's now */
    }
  }
  made = undefined;
}

/** A busybox image for containers, built with umoci from busybox-static's binary (no registry). */
export async function buildBusyboxImage(dir: string): Promise<string> {
  const img = join(dir, 'img');
  const bundle = join(dir, 'bundle');
  const must = async (cmd: string, args: string[], cwd?: string) => {
    const r = cwd ? await execCapture('sh', ['-c', `cd '${cwd}' && exec "$0" "$@"`, cmd, ...args]) : await execCapture(cmd, args);
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  };
  await must('umoci', ['init', '--layout', img]);
  await must('umoci', ['new', '--image', `${img}:latest`]);
  await must('umoci', ['unpack', '--rootless', '--image', `${img}:latest`, bundle]);
  mkdirSync(join(bundle, 'rootfs/bin'), { recursive: true });
  mkdirSync(join(bundle, 'rootfs/www'), { recursive: true });
  writeFileSync(join(bundle, 'rootfs/bin/busybox'), readFileSync('/bin/busybox'), { mode: 0o755 });
  for (const c of ['sh', 'ip', 'ping', 'sleep', 'nc', 'wget', 'httpd', 'sha256sum', 'head', 'cat', 'echo', 'ls', 'hostname', 'cut', 'wc', 'mkdir']) {
    symlinkSync('busybox', join(bundle, 'rootfs/bin', c));
  }
  await must('umoci', ['repack', '--image', `${img}:latest`, bundle]);
  await must('umoci', ['config', '--image', `${img}:latest`, '--config.cmd', '/bin/sh']);
  const tar = join(dir, 'busybox-image.tar');
  await must('tar', ['-C', img, '-cf', tar, '.']);
  return tar;
}

export interface Container {
  id: string;
  /** The foreground `ctr run --cni`: it calls CNI DEL when the task ends. */
  run: ChildProcess;
  exited: Promise<number>;
  output: () => string;
}

export class Containerd {
  readonly sock: string;
  readonly confDir: string;
  readonly binDir: string;
  private proc: ChildProcess | undefined;
  private readonly containers = new Map<string, Container>();

  constructor(
    readonly dir: string,
    readonly hostNetns: string,
  ) {
    this.sock = join(dir, 'containerd.sock');
    this.confDir = join(dir, 'net.d');
    this.binDir = join(dir, 'cni-bin');
    mkdirSync(this.confDir, { recursive: true });
    mkdirSync(this.binDir, { recursive: true });
  }

  async start(imageTar: string): Promise<void> {
    makeMountPoints();
    const cfg = join(this.dir, 'config.toml');
    writeFileSync(
      cfg,
      [
        'version = 2',
        `root = "${this.dir}/root"`,
        `state = "${this.dir}/state"`,
        // The CRI plugin is Kubernetes' entry point and not used here (ctr talks to containerd's own API).
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        `  address = "${this.sock}"`,
        '[ttrpc]',
        `  address = "${this.sock}.ttrpc"`,
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = "${this.dir}/opt"`,
        '',
      ].join('\n'),
    );
    const log = openSync(join(this.dir, 'containerd.log'), 'a');
    const script = [
      'mount -t tmpfs tmpfs /run/containerd',
      `mount --bind '${this.confDir}' /etc/cni/net.d`,
      `mount --bind '${this.binDir}' /opt/cni/bin`,
      `exec containerd --config '${cfg}'`,
    ].join(' && ');
    this.proc = spawn('nsenter', [`--net=/run/netns/${this.hostNetns}`, '--', 'unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', script], {
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (this.proc.exitCode !== null) throw new Error(`containerd exited ${this.proc.exitCode}: ${this.log().slice(-2000)}`);
      if (existsSync(this.sock) && (await this.ctr(['version'])).code === 0) break;
      if (Date.now() > deadline) throw new Error(`containerd did not start: ${this.log().slice(-2000)}`);
      await sleep(200);
    }
    const r = await this.ctr(['image', 'import', '--base-name', 'local/bb', imageTar]);
    if (r.code !== 0) throw new Error(`image import: ${r.stderr}`);
  }

  log(): string {
    try {
      return readFileSync(join(this.dir, 'containerd.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /** argv running `cmd` in this containerd's mount namespace and the host's network namespace. */
  private enter(cmd: string[]): string[] {
    if (!this.proc?.pid) throw new Error('containerd is not running');
    return [`--mount=/proc/${this.proc.pid}/ns/mnt`, `--net=/run/netns/${this.hostNetns}`, '--', ...cmd];
  }

  ctr(args: string[], timeoutMs = 120_000): Promise<ExecResult> {
    return execCapture('nsenter', this.enter(['ctr', '--address', this.sock, ...args]), timeoutMs);
  }

  /**
   * `ctr run --cni` in the foreground (as a user would run it, in the background of a shell): ctr makes
   * the task with a new network namespace, runs the CNI conflist in /etc/cni/net.d (this host's) for
   * /proc/PID/ns/net, starts the task, and runs CNI DEL when the task has ended. Resolves once the task
   * is running (ADD done).
   */
  async run(id: string, cmd: string[] = ['sleep', '100000']): Promise<Container> {
    const child = spawn('nsenter', this.enter(['ctr', '--address', this.sock, 'run', '--cni', 'local/bb:latest', id, ...cmd]), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number>((res) => child.on('exit', (c) => res(c ?? 128)));
    const c: Container = { id, run: child, exited, output: () => out };
    this.containers.set(id, c);
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`ctr run ${id} exited ${child.exitCode}: ${out}`);
      const t = await this.ctr(['task', 'ls']);
      if (t.stdout.split('\n').some((l) => l.startsWith(id + ' ') && l.includes('RUNNING'))) {
        // RUNNING comes after CNI ADD: ctr starts the task only when ADD succeeded.
        return c;
      }
      if (Date.now() > deadline) throw new Error(`container ${id} did not start: ${out}`);
      await sleep(200);
    }
  }

  /** Waits for a `ctr run` that is expected to fail (its CNI ADD failed) and returns its output. */
  async runFailing(id: string, cmd: string[] = ['sleep', '100000']): Promise<{ code: number; output: string }> {
    const r = await execCapture('nsenter', this.enter(['ctr', '--address', this.sock, 'run', '--cni', 'local/bb:latest', id, ...cmd]), 120_000);
    return { code: r.code, output: r.stdout + r.stderr };
  }

  async taskPid(id: string): Promise<number> {
    const t = await this.ctr(['task', 'ls']);
    const line = t.stdout.split('\n').find((l) => l.startsWith(id + ' '));
    if (!line) throw new Error(`no task ${id}: ${t.stdout}`);
    return Number(line.trim().split(/\s+/)[1]);
  }

  /** Runs a shell script in the running container (ctr task exec). */
  exec(id: string, script: string, timeoutMs = 300_000): Promise<ExecResult> {
    return this.ctr(['task', 'exec', '--exec-id', `x${randomBytes(4).toString('hex')}`, id, 'sh', '-c', script], timeoutMs);
  }

  /** ctr task kill, wait for ctr run to finish (it runs CNI DEL), then ctr container rm. */
  async remove(id: string): Promise<Container | undefined> {
    const c = this.containers.get(id);
    await this.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
    if (c) await Promise.race([c.exited, sleep(60_000)]);
    await this.ctr(['task', 'delete', id]);
    await this.ctr(['container', 'rm', id]);
    this.containers.delete(id);
    return c;
  }

  /** Removes every container, stops containerd and any shim of ours left, unmounts what it mounted. */
  async stop(): Promise<void> {
    if (!this.proc) return;
    for (const id of [...this.containers.keys()]) await this.remove(id).catch(() => undefined);
    const left = await this.ctr(['container', 'ls', '-q']);
    for (const id of left.stdout.split('\n').filter(Boolean)) {
      await this.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
      await this.ctr(['task', 'delete', '-f', id]);
      await this.ctr(['container', 'rm', id]);
    }
    const p = this.proc;
    this.proc = undefined;
    if (p.exitCode === null) {
      const done = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await Promise.race([done, sleep(20_000)]);
      if (p.exitCode === null) p.kill('SIGKILL');
    }
    // Shims outlive containerd by design; ours carry our socket address on their command line.
    for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        if (cmdline.includes('containerd-shim') && cmdline.includes(this.sock)) process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    removeMountPoints();
  }
}
