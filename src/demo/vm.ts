import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, accessSync, constants as fsc } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execCapture, REPO_ROOT, sleep, type ExecResult } from '../topology/topology.js';
import { deleteNetns, ip, listNetns, run } from '../netns/run.js';
import { formatTable } from '../util/table.js';
import { PodnetError, ErrorCode } from '../util/errors.js';
import { processAlive } from '../util/process.js';

/** Everything the VM demo makes: namespaces and devices start with this prefix, files live in VM_DIR. */
export const VM_PREFIX = 'pnvm-';
export const VM_DIR = '/var/lib/podnet-vm';
export const VM_UNDERLAY_NS = `${VM_PREFIX}underlay`;
export const VM_CACHE = '/var/cache/podnet-vm';
const UNDERLAY_IP = '198.18.0.1';
const AGENT_PORT = 7070;
const STATE_FILE = join(VM_DIR, 'state.json');
const AGENT_CLIENT = join(REPO_ROOT, 'dist/src/demo/agent-client.js');

export interface VmDemoOptions {
  vms: number;
  podsPerNode: number;
  memoryMb: number;
  cpus: number;
  /** Seconds a VM may take from start to a serving podnet daemon before the demo gives up. */
  bootTimeoutS?: number;
  /** `kvm`, `tcg` or `auto` (probe KVM, fall back to TCG). */
  accel?: 'auto' | 'kvm' | 'tcg';
  out: (s: string) => void;
}

interface VmRecord {
  name: string;
  ip: string;
  tap: string;
  console: string;
  pid: number;
}

/** What `demo up --vms` leaves for `demo exec` and `demo down` (VM_DIR/state.json). */
export interface VmState {
  underlayNs: string;
  token: string;
  agentPort: number;
  accel: string;
  image: string;
  etcdPid: number;
  vms: VmRecord[];
}

export function readVmState(): VmState | undefined {
  try {
    return JSON.parse(readFileSync(STATE_FILE, 'utf8')) as VmState;
  } catch {
    return undefined;
  }
}

function writeState(s: VmState): void {
  writeFileSync(STATE_FILE, JSON.stringify(s, null, 2), { mode: 0o600 });
}

/** Builds (or finds in the cache) the kernel, initramfs and root disk the VMs boot (scripts/vm-image.sh). */
export async function buildImage(out: (s: string) => void): Promise<string> {
  const started = performance.now();
  const r = await execCapture('bash', [join(REPO_ROOT, 'scripts/vm-image.sh'), '--cache', VM_CACHE], 900_000);
  if (r.code !== 0) throw new PodnetError(ErrorCode.Command, `building the VM image failed: ${r.stderr.trim() || r.stdout.trim()}`);
  const dir = r.stdout.trim().split('\n').pop()!;
  const built = r.stderr.includes('built');
  out(`VM image ${dir} (${built ? `built in ${secs(started)}` : 'cached'}; kernel ${readFileSync(join(dir, 'kernel-version'), 'utf8').trim()})\n`);
  return dir;
}

function secs(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
}

/**
 * Where a VM finds the agent's token: a QEMU fw_cfg item (the guest reads it from
 * /sys/firmware/qemu_fw_cfg/by_name/<name>/raw, scripts/vm-rc.sh), filled from a 0600 file, so the token
 * is on neither qemu's command line (world-readable on the host) nor the guest kernel's.
 */
const TOKEN_FW_CFG = 'opt/podnet/token';

function qemuArgs(image: string, accel: 'kvm' | 'tcg', opts: { memoryMb: number; cpus: number; console: string; append: string; disk: boolean; tap?: string; mac?: string; name: string; tokenFile?: string }): string[] {
  const a = [
    '-name', opts.name, '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    ...(accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg,thread=multi', '-cpu', 'max']),
    '-m', String(opts.memoryMb), '-smp', String(opts.cpus),
    '-bios', '/usr/share/qemu/qboot.rom',
    '-kernel', join(image, 'vmlinuz'), '-initrd', join(image, 'initrd.cpio'),
    '-append', `console=ttyS0 panic=-1 ${opts.append}`,
    '-serial', `file:${opts.console}`, '-monitor', 'none',
    '-device', 'virtio-rng-pci',
  ];
  // snapshot=on: every VM writes to its own temporary overlay (in TMPDIR, our directory); the image stays as built.
  if (opts.disk) a.push('-drive', `file=${join(image, 'rootfs.ext4')},if=virtio,format=raw,snapshot=on`);
  if (opts.tokenFile) a.push('-fw_cfg', `name=${TOKEN_FW_CFG},file=${opts.tokenFile}`);
  if (opts.tap) a.push('-netdev', `tap,id=n0,ifname=${opts.tap},script=no,downscript=no`, '-device', `virtio-net-pci,netdev=n0,mac=${opts.mac}`);
  return a;
}

/** Starts qemu detached, logging to `log`; with `netns`, inside that namespace (where its tap lives). */
function startQemu(args: string[], log: string, netns?: string): number {
  const fd = openSync(log, 'a');
  const tmp = join(VM_DIR, 'tmp');
  mkdirSync(tmp, { recursive: true });
  const [cmd, argv] = netns ? ['nsenter', [`--net=/run/netns/${netns}`, '--', 'qemu-system-x86_64', ...args]] : ['qemu-system-x86_64', args];
  const child = spawn(cmd, argv, {
    stdio: ['ignore', fd, fd],
    detached: true,
    env: { ...process.env, TMPDIR: tmp },
  });
  closeSync(fd);
  child.unref();
  return child.pid!;
}

function readText(f: string): string {
  try {
    return readFileSync(f, 'utf8');
  } catch {
    return '';
  }
}


async function stopPid(pid: number, timeoutMs = 15_000): Promise<void> {
  if (!pid || !processAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + timeoutMs;
  while (processAlive(pid) && Date.now() < deadline) await sleep(100);
  if (processAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    while (processAlive(pid)) await sleep(50);
  }
}

/**
 * KVM when it works, else TCG: boots the image's initramfs under KVM with `podnet.probe` (it prints a
 * line and powers off) and waits for that line. A nested, paravirtual KVM that cannot run a stock
 * kernel stops with "KVM internal error" instead, and so does a missing or inaccessible /dev/kvm.
 */
export async function probeAccel(image: string): Promise<{ accel: 'kvm' | 'tcg'; why: string }> {
  try {
    accessSync('/dev/kvm', fsc.R_OK | fsc.W_OK);
  } catch {
    return { accel: 'tcg', why: 'no usable /dev/kvm' };
  }
  const con = join(VM_DIR, 'kvm-probe.console');
  const log = join(VM_DIR, 'kvm-probe.log');
  const pid = startQemu(qemuArgs(image, 'kvm', { memoryMb: 256, cpus: 1, console: con, append: 'podnet.probe', disk: false, name: `${VM_PREFIX}probe` }), log);
  const deadline = Date.now() + 10_000;
  let ok = false;
  while (Date.now() < deadline && processAlive(pid)) {
    if (readText(con).includes('podnet-vm: probe ok')) {
      ok = true;
      break;
    }
    if (/KVM internal error|failed to initialize kvm|Could not access KVM/i.test(readText(log))) break;
    await sleep(100);
  }
  ok ||= readText(con).includes('podnet-vm: probe ok');
  await stopPid(pid, 3000);
  const err = readText(log).split('\n').find((l) => /kvm/i.test(l)) ?? 'the kernel did not reach its initramfs within 10 s';
  rmSync(con, { force: true });
  rmSync(log, { force: true });
  return ok ? { accel: 'kvm', why: 'KVM works' } : { accel: 'tcg', why: `KVM probe failed: ${err.trim()}` };
}

/** Runs a command in a demo VM through its exec agent (agent.ts), from the underlay namespace. */
export function vmExec(state: VmState, vm: string, argv: readonly string[], timeoutMs = 300_000, input?: string): Promise<ExecResult> {
  const rec = state.vms.find((v) => v.name === vm);
  if (!rec) throw new PodnetError(ErrorCode.NotFound, `no demo VM ${vm} (the VMs are ${state.vms.map((v) => v.name).join(', ')})`);
  return withToken(state, () =>
    execCapture('nsenter', [`--net=/run/netns/${state.underlayNs}`, '--', process.execPath, AGENT_CLIENT, rec.ip, String(state.agentPort), '--', ...argv], timeoutMs, input),
  );
}

async function withToken<T>(state: VmState, f: () => Promise<T>): Promise<T> {
  const before = process.env.PODNET_AGENT_TOKEN;
  process.env.PODNET_AGENT_TOKEN = state.token;
  try {
    return await f();
  } finally {
    if (before === undefined) delete process.env.PODNET_AGENT_TOKEN;
    else process.env.PODNET_AGENT_TOKEN = before;
  }
}

async function vmSh(state: VmState, vm: string, script: string, timeoutMs = 300_000): Promise<string> {
  const r = await vmExec(state, vm, ['sh', '-c', script], timeoutMs);
  if (r.code !== 0) throw new Error(`${vm}: \`${script.slice(0, 120)}\` failed (${r.code}): ${(r.stderr || r.stdout).trim().slice(-800)}`);
  return r.stdout;
}

/** Boot stages, in order, as the VM's console shows them (scripts/vm-rc.sh, agent.ts). */
const STAGES: Array<{ mark: string; label: string }> = [
  { mark: 'podnet-vm: initramfs', label: 'kernel booted' },
  { mark: 'podnet-vm: init ', label: 'root fs mounted, init running' },
  { mark: 'podnet-vm: network eth0', label: 'eth0 up' },
  { mark: 'podnet-vm: agent listening', label: 'exec agent listening' },
  { mark: 'podnet-vm: daemon serving', label: 'podnet daemon serving (scripts/vm-node.sh)' },
];

interface PodView {
  name: string;
  node: string;
  ip: string;
  netns: string;
}

/**
 * `podnet demo up --vms N`: N QEMU VMs, each with its own kernel and virtio NIC on a tap of a bridge in
 * the demo's underlay namespace (198.18.0.0/24), an etcd in that namespace, scripts/vm-node.sh in every
 * VM; then pods on every VM, a ping matrix, RTT, a TCP transfer and a NodePort service, as the
 * namespace demo shows them. The VMs keep running until `podnet demo down`.
 */
export async function demoVmUp(opts: VmDemoOptions): Promise<void> {
  const out = opts.out;
  if (readVmState() || (await listNetns()).includes(VM_UNDERLAY_NS)) {
    throw new PodnetError(ErrorCode.AlreadyExists, 'a VM demo is already up: run `podnet demo down` first');
  }
  rmSync(VM_DIR, { recursive: true, force: true });
  mkdirSync(VM_DIR, { recursive: true, mode: 0o700 });
  const state: VmState = { underlayNs: VM_UNDERLAY_NS, token: randomBytes(16).toString('hex'), agentPort: AGENT_PORT, accel: '', image: '', etcdPid: 0, vms: [] };
  writeState(state);
  const t0 = performance.now();
  // Ctrl-C (or SIGTERM) while booting: the VMs and etcd run detached, so remove them before exiting.
  const onSignal = () => {
    out('\ninterrupted: removing the VMs...\n');
    void demoVmDown(out).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    state.image = await buildImage(out);
    const acc = opts.accel && opts.accel !== 'auto' ? { accel: opts.accel, why: 'as asked (--accel)' } : await probeAccel(state.image);
    state.accel = acc.accel;
    out(acc.accel === 'kvm' ? `acceleration: KVM (${acc.why})\n` : `acceleration: TCG, software emulation, multi-threaded (${acc.why}); VMs are slow\n`);
    writeState(state);

    out(`Underlay: bridge br0 in namespace ${VM_UNDERLAY_NS} (198.18.0.0/24), etcd on ${UNDERLAY_IP}:2379\n`);
    await run('ip', ['netns', 'add', VM_UNDERLAY_NS]);
    await ip(['link', 'set', 'lo', 'up'], VM_UNDERLAY_NS);
    await ip(['link', 'add', 'br0', 'type', 'bridge'], VM_UNDERLAY_NS);
    await ip(['addr', 'add', `${UNDERLAY_IP}/24`, 'dev', 'br0'], VM_UNDERLAY_NS);
    await ip(['link', 'set', 'br0', 'up'], VM_UNDERLAY_NS);
    state.etcdPid = await startEtcd();
    writeState(state);

    const tokenFile = join(VM_DIR, 'token');
    writeFileSync(tokenFile, state.token, { mode: 0o600 });
    for (let i = 1; i <= opts.vms; i++) {
      const name = `vm${i}`;
      const rec: VmRecord = { name, ip: `198.18.0.${10 + i}`, tap: `${VM_PREFIX}tap${i}`, console: join(VM_DIR, `${name}.console`), pid: 0 };
      await ip(['tuntap', 'add', 'dev', rec.tap, 'mode', 'tap'], VM_UNDERLAY_NS);
      await ip(['link', 'set', rec.tap, 'master', 'br0', 'up'], VM_UNDERLAY_NS);
      const append = [
        `podnet.name=${name}`, `podnet.ip=${rec.ip}/24`, `podnet.etcd=http://${UNDERLAY_IP}:2379`,
        `podnet.agent=${AGENT_PORT}`, `podnet.allow=${UNDERLAY_IP}`,
      ].join(' ');
      const mac = `52:54:00:50:4e:${(i).toString(16).padStart(2, '0')}`;
      rec.pid = startQemu(
        qemuArgs(state.image, acc.accel, { memoryMb: opts.memoryMb, cpus: opts.cpus, console: rec.console, append, disk: true, tap: rec.tap, mac, name: `${VM_PREFIX}${name}`, tokenFile }),
        join(VM_DIR, `${name}.qemu.log`),
        VM_UNDERLAY_NS,
      );
      state.vms.push(rec);
      writeState(state);
      out(`  ${name}  qemu started (pid ${rec.pid}, ${opts.cpus} vCPU, ${opts.memoryMb} MB, ${rec.ip})  ${secs(t0)}\n`);
    }
    const bootS = opts.bootTimeoutS ?? (acc.accel === 'kvm' ? 120 : 600);
    const booted = await watchBoot(state, bootS, out);
    out(`Boot (qemu start to podnet daemon serving): ${state.vms.map((v) => `${v.name} ${booted.get(v.name)!.toFixed(1)} s`).join(', ')}\n`);

    // Every node has registered in etcd and sees the others.
    const names = state.vms.map((v) => v.name);
    const deadline = Date.now() + bootS * 1000;
    let nodes: Array<{ name: string; underlayIp: string; subnet: string; vtepMac: string }> = [];
    for (;;) {
      const r = await vmExec(state, names[0]!, ['podnet', 'nodes', '--json'], 120_000);
      if (r.code === 0) nodes = JSON.parse(r.stdout) as typeof nodes;
      if (nodes.length === names.length) break;
      if (Date.now() > deadline) throw new Error(`only ${nodes.length} of ${names.length} nodes registered in etcd: ${r.stderr.trim()}`);
      await sleep(1000);
    }
    out(`\nNodes (each a VM; each owns one subnet of 10.244.0.0/16), cluster up ${secs(t0)} after the start:\n`);
    out(formatTable(['NODE', 'UNDERLAY', 'SUBNET', 'VTEP MAC'], nodes.map((n) => [n.name, n.underlayIp, n.subnet, n.vtepMac])));

    const pods = (
      await Promise.all(
        names.map(async (n) => {
          const mine: PodView[] = [];
          for (let p = 0; p < opts.podsPerNode; p++) {
            const name = p === 0 ? 'web' : `client${p}`;
            const r = await vmExec(state, n, ['podnet', 'pod', 'add', name, '--label', `app=${p === 0 ? 'web' : 'client'}`, ...(p === 1 ? ['--device', 'tun'] : [])]);
            if (r.code !== 0) throw new Error(`pod add ${name} on ${n}: ${r.stderr.trim()}`);
            mine.push({ name, node: n, ip: r.stdout.trim(), netns: '' });
          }
          const list = JSON.parse(await vmSh(state, n, 'podnet pod list --json')) as Array<{ name: string; netns: string }>;
          for (const m of mine) m.netns = list.find((x) => x.name === m.name)?.netns ?? '';
          return mine;
        }),
      )
    ).flat();
    out('\nPods:\n');
    out(formatTable(['POD', 'VM', 'IP', 'NAMESPACE (in the VM)'], pods.map((p) => [p.name, p.node, p.ip, p.netns])));

    const failures = await pingMatrix(state, pods, out);
    if (names.length >= 2) {
      const a = pods.find((p) => p.node === names[0] && p.name === 'web')!;
      const b = pods.find((p) => p.node === names[1] && p.name === 'web')!;
      const rtt = await vmSh(state, a.node, `ip netns exec ${a.netns} ping -c 5 -i 0.2 -q ${b.ip} | tail -1`);
      out(`\nRTT ${a.node}/web -> ${b.node}/web: ${rtt.trim()}\n`);
      await tcpDemo(state, a, b, 50 * 1024 * 1024, out);
    }
    await serviceDemo(state, pods, names, out);
    out(`\nDemo up in ${secs(t0)}. Try it:\n`);
    out(`  podnet demo exec ${names[0]} -- podnet pod list\n`);
    out(`  podnet demo exec ${names[0]} -- podnet nodes\n`);
    out(`  podnet demo exec ${names[names.length - 1]} -- podnet exec web -- ping -c 2 ${pods[0]!.ip}\n`);
    out(`  podnet demo exec ${names[0]} -- podnet service list\n`);
    out(`  podnet demo exec ${names[0]} -- cat /var/log/podnet.log\n`);
    out('  podnet demo down\n');
    if (failures > 0) throw new Error(`${failures} pod-to-pod pings failed`);
  } catch (err) {
    // The error itself (with a console's tail) is printed once, by the CLI.
    out('\ndemo failed: cleaning up (removing the VMs, etcd and the underlay namespace)...\n');
    await demoVmDown(() => undefined).catch(() => undefined);
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** etcd (Debian's etcd-server) in the underlay namespace; resolves with its pid once it serves. */
async function startEtcd(): Promise<number> {
  const url = `http://${UNDERLAY_IP}:2379`;
  const log = join(VM_DIR, 'etcd.log');
  const fd = openSync(log, 'a');
  const child = spawn(
    'nsenter',
    [
      `--net=/run/netns/${VM_UNDERLAY_NS}`, '--', 'etcd', '--data-dir', join(VM_DIR, 'etcd'), '--name', 'podnet-vm',
      '--listen-client-urls', url, '--advertise-client-urls', url,
      '--listen-peer-urls', 'http://127.0.0.1:2380', '--initial-advertise-peer-urls', 'http://127.0.0.1:2380',
      '--initial-cluster', 'podnet-vm=http://127.0.0.1:2380',
    ],
    { stdio: ['ignore', fd, fd], detached: true },
  );
  closeSync(fd);
  child.unref();
  const deadline = Date.now() + 60_000;
  while (!readText(log).includes('ready to serve client requests')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`etcd did not start: ${readText(log).slice(-1500)}`);
    await sleep(100);
  }
  return child.pid!;
}

/** Prints a line per VM and boot stage with the time since its qemu started; throws with the console's tail on a timeout. */
async function watchBoot(state: VmState, boundS: number, out: (s: string) => void): Promise<Map<string, number>> {
  const start = performance.now();
  const seen = new Map<string, number>(state.vms.map((v) => [v.name, 0]));
  const done = new Map<string, number>();
  while (done.size < state.vms.length) {
    for (const v of state.vms) {
      if (done.has(v.name)) continue;
      const con = readText(v.console);
      let k = seen.get(v.name)!;
      while (k < STAGES.length && con.includes(STAGES[k]!.mark)) {
        out(`  ${v.name}  ${STAGES[k]!.label.padEnd(44)} ${secs(start)}\n`);
        k++;
      }
      seen.set(v.name, k);
      if (k === STAGES.length) done.set(v.name, (performance.now() - start) / 1000);
      const dead = !processAlive(v.pid);
      const exited = con.includes('podnet-vm: daemon exited');
      if (dead || exited || performance.now() - start > boundS * 1000) {
        const why = dead ? 'its qemu exited' : exited ? 'its podnet daemon exited' : `it was not serving within ${boundS} s`;
        const qlog = readText(join(VM_DIR, `${v.name}.qemu.log`)).trim();
        throw new Error(
          `${v.name} did not come up: ${why} (stage ${k}/${STAGES.length}). Last lines of its console:\n` +
            con.split('\n').slice(-40).join('\n') + (qlog ? `\nqemu: ${qlog.slice(-1000)}` : ''),
        );
      }
    }
    await sleep(250);
  }
  return done;
}

async function pingMatrix(state: VmState, pods: PodView[], out: (s: string) => void): Promise<number> {
  out('\nPing matrix (every pod to every pod, across VMs through userspace VXLAN on virtio NICs):\n');
  const header = ['FROM \\ TO', ...pods.map((p) => `${p.node}/${p.name}`)];
  let failures = 0;
  const rows = await Promise.all(
    pods.map(async (src) => {
      const targets = pods.filter((d) => d !== src).map((d) => d.ip);
      // The first packet to a pod may wait for ARP in a slow VM: one retry, 5 s each.
      const script = `for ip in ${targets.join(' ')}; do if ping -c 1 -W 5 $ip >/dev/null 2>&1 || ping -c 1 -W 5 $ip >/dev/null 2>&1; then echo ok; else echo FAIL; fi; done`;
      const res = (await vmSh(state, src.node, `ip netns exec ${src.netns} sh -c '${script}'`)).trim().split('\n');
      let j = 0;
      return [`${src.node}/${src.name}`, ...pods.map((d) => (d === src ? '-' : (res[j++] ?? 'FAIL')))];
    }),
  );
  for (const r of rows) failures += r.filter((c) => c === 'FAIL').length;
  out(formatTable(header, rows));
  return failures;
}

/** The demo's TCP sink and sender (node in the pods): SHA-256 of every byte both ways, the sender's time from connect to close. */
const TCP_SINK = `const h=require('crypto').createHash('sha256');let n=0;const s=require('net').createServer(c=>{c.on('data',d=>{h.update(d);n+=d.length});c.on('end',()=>{console.log(n+' '+h.digest('hex')+' '+c.remoteAddress);c.end();s.close()})}).listen(5201,'0.0.0.0',()=>console.error('listening'))`;
const TCP_SEND = `const [host,bytes]=[process.argv[1],+process.argv[2]];const b=require('crypto').randomBytes(65536);const h=require('crypto').createHash('sha256');let sent=0,t;const c=require('net').connect(5201,host,()=>{t=process.hrtime.bigint();pump()});function pump(){while(sent<bytes){const n=Math.min(b.length,bytes-sent);b.writeUInt32LE(sent,0);const p=Buffer.from(b.subarray(0,n));h.update(p);sent+=n;if(!c.write(p))return c.once('drain',pump)}c.end()}c.on('data',()=>{});c.on('close',()=>console.log(sent+' '+h.digest('hex')+' '+Number(process.hrtime.bigint()-t)/1e6))`;

async function tcpDemo(state: VmState, a: PodView, b: PodView, bytes: number, out: (s: string) => void): Promise<void> {
  const sink = vmExec(state, b.node, ['ip', 'netns', 'exec', b.netns, 'node', '-e', TCP_SINK], 600_000);
  // The sink is ready once it listens; ask the VM (ss is not in the image; /proc/net/tcp is).
  const deadline = Date.now() + 120_000;
  while ((await vmExec(state, b.node, ['ip', 'netns', 'exec', b.netns, 'grep', '-q', ':1451 00000000:0000 0A', '/proc/net/tcp'])).code !== 0) {
    if (Date.now() > deadline) throw new Error('the TCP sink did not start');
    await sleep(500);
  }
  const sent = await vmExec(state, a.node, ['ip', 'netns', 'exec', a.netns, 'node', '-e', TCP_SEND, b.ip, String(bytes)], 600_000);
  const got = await sink;
  const [sb, sh, ms] = sent.stdout.trim().split(' ');
  const [gb, gh, from] = got.stdout.trim().split(' ');
  const ok = sent.code === 0 && got.code === 0 && sb === gb && sh === gh;
  const mbit = (Number(sb) * 8) / (Number(ms) / 1000) / 1e6;
  out(
    `TCP ${a.node}/web -> ${b.node}/web: ${(bytes / 1048576).toFixed(0)} MB in ${(Number(ms) / 1000).toFixed(1)} s (${mbit.toFixed(0)} Mbit/s), ` +
      `SHA-256 ${ok ? 'matches' : `MISMATCH (${sent.stderr.trim()} ${got.stderr.trim()})`}, the receiver saw ${from?.replace(/^::ffff:/, '')}\n`,
  );
  if (!ok) throw new Error('the TCP transfer across VMs did not arrive intact');
}

const WEB_SERVER = `require('http').createServer((q,r)=>r.end(process.argv[1]+' saw client '+q.socket.remoteAddress+'\\n')).listen(8080,'0.0.0.0')`;

async function serviceDemo(state: VmState, pods: PodView[], names: string[], out: (s: string) => void): Promise<void> {
  const webs = pods.filter((p) => p.name === 'web');
  await Promise.all(
    webs.map((w) => vmSh(state, w.node, `ip netns exec ${w.netns} node -e "${WEB_SERVER.replace(/"/g, '\\"')}" ${w.node}/web >/var/log/web.log 2>&1 </dev/null &`)),
  );
  const r = await vmExec(state, names[0]!, ['podnet', 'service', 'add', 'web', '--type', 'NodePort', '--port', '80:8080', '--selector', 'app=web', '--json']);
  if (r.code !== 0) throw new Error(`service add: ${r.stderr.trim()}`);
  const svc = JSON.parse(r.stdout) as { clusterIp: string; ports: Array<{ nodePort: number }> };
  const np = svc.ports[0]!.nodePort;
  out(`\nService web: ClusterIP ${svc.clusterIp}:80 and NodePort ${np} over the web pods on every VM (conntrack NAT):\n`);
  const client = pods.find((p) => p.name !== 'web') ?? pods[0]!;
  // Wait until every web server answers (node starts slowly in a VM) and the service reached every node.
  await vmSh(state, client.node, `i=0; until [ $(for w in ${webs.map((w) => w.ip).join(' ')}; do curl -s -m 5 http://$w:8080/ >/dev/null && echo y; done | wc -l) = ${webs.length} ]; do i=$((i+1)); [ $i -gt 120 ] && exit 1; sleep 1; done`, 600_000);
  const answers = await vmSh(state, client.node, `for i in 1 2 3 4 5 6; do ip netns exec ${client.netns} curl -s -m 10 http://${svc.clusterIp}/ || echo "failed ($?)"; done`);
  for (const a of answers.trim().split('\n')) out(`  ${client.node}/${client.name} -> ${svc.clusterIp}: ${a}\n`);
  out(`NodePort from the underlay namespace (outside every VM):\n`);
  for (const v of state.vms) {
    const c = await execCapture('ip', ['netns', 'exec', state.underlayNs, 'curl', '-s', '-m', '10', `http://${v.ip}:${np}/`], 30_000);
    out(`  ${UNDERLAY_IP} -> ${v.ip}:${np}: ${c.code === 0 ? c.stdout.trim() : `failed (${c.code})`}\n`);
  }
}

/** `podnet demo down` for VMs: stops every qemu and etcd, removes the underlay namespace (taps, bridge) and VM_DIR. */
export async function demoVmDown(out: (s: string) => void): Promise<boolean> {
  const state = readVmState();
  const hadNs = (await listNetns()).includes(VM_UNDERLAY_NS);
  if (!state && !hadNs && !existsSync(VM_DIR)) return false;
  // SIGTERM first: qemu then removes its temporary snapshot overlay itself.
  await Promise.all((state?.vms ?? []).map((v) => stopPid(v.pid)));
  if (state?.etcdPid) await stopPid(state.etcdPid);
  if (hadNs) {
    // Anything else still in the namespace (a probe qemu, an exec client).
    try {
      const { stdout } = await run('ip', ['netns', 'pids', VM_UNDERLAY_NS]);
      await Promise.all(stdout.split(/\s+/).filter(Boolean).map((p) => stopPid(Number(p), 5000)));
    } catch {
      /* gone */
    }
    await deleteNetns(VM_UNDERLAY_NS).catch(() => undefined);
  }
  rmSync(VM_DIR, { recursive: true, force: true });
  out(`removed ${state?.vms.length ?? 0} VMs, etcd and the underlay namespace ${VM_UNDERLAY_NS}\n`);
  return true;
}

/**
 * `podnet demo exec NODE -- CMD...`: in a demo VM through its agent, or in a namespace demo's host
 * namespace (nsenter --net, so the host's mounts, /run/podnet included, stay visible). Resolves with
 * the command's exit code; its stdio is this process's.
 */
export async function demoExec(node: string, argv: string[], nsPrefix: string): Promise<number> {
  if (argv.length === 0) throw new PodnetError(ErrorCode.InvalidArgument, 'invalid demo exec: a command is required after --');
  const state = readVmState();
  const vm = state?.vms.find((v) => v.name === node);
  let cmd: string;
  let args: string[];
  if (state && vm) {
    cmd = 'nsenter';
    args = [`--net=/run/netns/${state.underlayNs}`, '--', process.execPath, AGENT_CLIENT, vm.ip, String(state.agentPort), '--', ...argv];
  } else if ((await listNetns()).includes(`${nsPrefix}${node}`)) {
    cmd = 'nsenter';
    args = [`--net=/run/netns/${nsPrefix}${node}`, '--', ...argv];
  } else {
    const known = [...(state?.vms.map((v) => v.name) ?? []), ...(await listNetns()).filter((n) => n.startsWith(nsPrefix) && !n.slice(nsPrefix.length).includes('-') && n !== `${nsPrefix}underlay`).map((n) => n.slice(nsPrefix.length))];
    throw new PodnetError(ErrorCode.NotFound, `no demo node ${node} (${known.length ? `the demo's nodes are ${known.join(', ')}` : 'no demo is up'})`);
  }
  const child = spawn(cmd, args, { stdio: 'inherit', env: state && vm ? { ...process.env, PODNET_AGENT_TOKEN: state.token } : process.env });
  return new Promise((resolve) => {
    child.on('error', () => resolve(127));
    child.on('close', (code, sig) => resolve(code ?? (sig ? 128 : 1)));
  });
}
