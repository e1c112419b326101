import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { Topology } from '../topology/topology.js';
import { listNetns } from '../netns/run.js';
import { formatTable } from '../util/table.js';
import { PodnetError, ErrorCode } from '../util/errors.js';

/** Everything the demo makes starts with this prefix (namespaces) or lives in this directory. */
export const DEMO_PREFIX = 'pndemo-';
export const DEMO_DIR = '/var/lib/podnet-demo';

export interface DemoOptions {
  nodes: number;
  podsPerNode: number;
  runDir: string;
  out: (s: string) => void;
}

interface PodView {
  name: string;
  node: string;
  ip: string;
  netns: string;
}

/**
 * `podnet demo up`: N hosts as namespaces on an underlay bridge (198.18.0.0/24), a podnet daemon on each
 * sharing the embedded cluster store, pods on every host, then cross-host traffic and a status table.
 * The daemons keep running (detached) until `podnet demo down`.
 */
export async function demoUp(opts: DemoOptions): Promise<void> {
  if ((await listNetns()).some((n) => n.startsWith(DEMO_PREFIX))) {
    throw new PodnetError(ErrorCode.AlreadyExists, 'a demo is already up: run `podnet demo down` first');
  }
  rmSync(DEMO_DIR, { recursive: true, force: true });
  mkdirSync(DEMO_DIR, { recursive: true });
  // The demo's daemons use the normal socket directory, so `podnet --node demo1 ...` just works.
  const t = new Topology({ prefix: DEMO_PREFIX, dir: DEMO_DIR, runDir: opts.runDir });
  const out = opts.out;
  try {
    out(`Building ${opts.nodes} hosts as network namespaces on an underlay bridge (198.18.0.0/24)...\n`);
    await t.createUnderlay();
    const names = Array.from({ length: opts.nodes }, (_, i) => `demo${i + 1}`);
    for (const n of names) await t.addHost({ name: n });
    for (const n of names) {
      await t.startDaemon(n, DEMO_DAEMON.extra, DEMO_DAEMON.opts);
      out(`  started podnet daemon on ${n} (${t.host(n).underlayIp})\n`);
    }
    const pods: PodView[] = [];
    for (const n of names) {
      for (let p = 0; p < opts.podsPerNode; p++) {
        const name = p === 0 ? 'web' : `client${p}`;
        const r = await t.podnet(n, ['pod', 'add', name, '--label', `app=${p === 0 ? 'web' : 'client'}`, ...(p === 1 ? ['--device', 'tun'] : [])]);
        if (r.code !== 0) throw new Error(`pod add on ${n}: ${r.stderr.trim()}`);
        pods.push({ name, node: n, ip: r.stdout.trim(), netns: t.podNs(n, name) });
      }
    }
    const nodes = JSON.parse((await t.podnet(names[0]!, ['nodes', '--json'])).stdout) as Array<{ name: string; underlayIp: string; subnet: string; vtepMac: string }>;
    out('\nNodes (each owns one subnet of 10.244.0.0/16):\n');
    out(formatTable(['NODE', 'UNDERLAY', 'SUBNET', 'VTEP MAC'], nodes.map((n) => [n.name, n.underlayIp, n.subnet, n.vtepMac])));
    out('\nPods:\n');
    out(formatTable(['POD', 'NODE', 'IP', 'NAMESPACE'], pods.map((p) => [p.name, p.node, p.ip, p.netns])));

    out('\nPing matrix (every pod to every pod, across hosts through userspace VXLAN):\n');
    const header = ['FROM \\ TO', ...pods.map((p) => `${p.node}/${p.name}`)];
    const rows: string[][] = [];
    let failures = 0;
    for (const src of pods) {
      const row = [`${src.node}/${src.name}`];
      const results = await Promise.all(
        pods.map(async (dst) => {
          if (dst === src) return '-';
          const r = await t.exec(src.netns, 'ping', ['-c', '1', '-W', '2', dst.ip], 10_000);
          if (r.code !== 0) failures++;
          return r.code === 0 ? 'ok' : 'FAIL';
        }),
      );
      rows.push([...row, ...results]);
    }
    out(formatTable(header, rows));

    if (pods.length >= 2 && names.length >= 2) {
      const a = pods.find((p) => p.node === names[0] && p.name === 'web')!;
      const b = pods.find((p) => p.node === names[1] && p.name === 'web')!;
      const ip = await t.exec(a.netns, 'sh', ['-c', `ping -c 3 -i 0.2 -q ${b.ip} | tail -1`]);
      out(`\nRTT ${a.node}/web -> ${b.node}/web: ${ip.stdout.trim()}\n`);
    }
    await demoService(t, pods, names, out);

    out('\nTry it:\n');
    out(`  podnet --node ${names[0]} status\n`);
    out(`  podnet --node ${names[0]} pod list --all\n`);
    out(`  podnet --node ${names[1] ?? names[0]} exec web -- ping -c 2 ${pods[0]!.ip}\n`);
    out(`  podnet --node ${names[0]} pod add mypod\n`);
    out(`  podnet --node ${names[0]} service list\n`);
    out(`  podnet --node ${names[0]} conntrack list\n`);
    out(`  podnet demo restart ${names[0]} --kill      (connections through it survive)\n`);
    out('  podnet demo down\n');
    if (failures > 0) throw new Error(`${failures} pod-to-pod pings failed (daemon logs in ${DEMO_DIR}/*.log)`);
  } catch (err) {
    out(`\ndemo failed: ${(err as Error).message}\ncleaning up...\n`);
    await demoDown(opts.out).catch(() => undefined);
    throw err;
  }
}

/** A tiny HTTP server for the demo's web pods: answers with its pod name and the client's address. */
const WEB_SERVER = `const h=require('http');h.createServer((q,r)=>r.end(process.argv[1]+' saw client '+q.socket.remoteAddress+'\\n')).listen(8080,'0.0.0.0')`;

/** Starts a web server in every `web` pod and puts a ClusterIP + NodePort service in front of them. */
async function demoService(t: Topology, pods: PodView[], names: string[], out: (s: string) => void): Promise<void> {
  const webs = pods.filter((p) => p.name === 'web');
  for (const w of webs) {
    const child = spawn('ip', ['netns', 'exec', w.netns, process.execPath, '-e', WEB_SERVER, `${w.node}/web`], { stdio: 'ignore', detached: true });
    child.unref();
  }
  const r = await t.podnet(names[0]!, ['service', 'add', 'web', '--type', 'NodePort', '--port', '80:8080', '--selector', 'app=web', '--json']);
  if (r.code !== 0) throw new Error(`service add: ${r.stderr.trim()}`);
  const svc = JSON.parse(r.stdout) as { clusterIp: string; ports: Array<{ nodePort: number }> };
  out(`\nService web: ClusterIP ${svc.clusterIp}:80 and NodePort ${svc.ports[0]!.nodePort} over the web pods (conntrack NAT):\n`);
  const client = pods.find((p) => p.name !== 'web') ?? pods[0]!;
  for (let i = 0; i < 30; i++) {
    const probe = await t.exec(client.netns, 'curl', ['-s', '-m', '2', `http://${svc.clusterIp}/`]);
    if (probe.code === 0) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  for (let i = 0; i < 6; i++) {
    const c = await t.exec(client.netns, 'curl', ['-s', '-m', '5', `http://${svc.clusterIp}/`]);
    out(`  ${client.node}/${client.name} -> ${svc.clusterIp}: ${c.code === 0 ? c.stdout.trim() : `failed (${c.code})`}\n`);
  }
}

/** How `demo up` starts a node's daemon (a restart starts it the same way). */
const DEMO_DAEMON = { extra: { logLevel: 'info' }, opts: { detached: true } };

/**
 * `podnet demo restart NODE [--kill]`: stops a demo node's daemon (SIGTERM, a graceful restart; with
 * `kill`, SIGKILL, a crash) and starts it again. Its pods keep their namespaces, processes and
 * connections: the new daemon attaches to their devices again and takes the conntrack table over.
 */
export async function demoRestart(opts: { node: string; kill: boolean; runDir: string; out: (s: string) => void }): Promise<void> {
  if (!existsSync(DEMO_DIR) || !(await listNetns()).some((n) => n.startsWith(DEMO_PREFIX))) {
    throw new PodnetError(ErrorCode.Precondition, 'no demo is up: run `podnet demo up` first');
  }
  const t = new Topology({ prefix: DEMO_PREFIX, dir: DEMO_DIR, runDir: opts.runDir });
  try {
    await t.adoptHost(opts.node);
  } catch {
    throw new PodnetError(ErrorCode.NotFound, `no demo node ${opts.node} (the demo's nodes are demo1, demo2, ...)`);
  }
  const old = t.recordedPid(opts.node);
  const started = performance.now();
  await t.restartDaemon(opts.node, opts.kill ? 'SIGKILL' : 'SIGTERM', { startedWith: DEMO_DAEMON });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const st = JSON.parse((await t.podnet(opts.node, ['status', '--json'])).stdout) as {
    restart: { reattached: number; recreated: number; failed: number; conntrack: { restored?: number } };
    process: { pid: number };
  };
  const r = st.restart;
  opts.out(
    `${opts.node}: daemon ${old} ${opts.kill ? 'killed (SIGKILL)' : 'stopped (SIGTERM)'}, daemon ${st.process.pid} serving again after ${seconds} s\n` +
      `  pods attached again ${r.reattached}, recreated ${r.recreated}, failed ${r.failed}; conntrack entries taken over ${r.conntrack.restored ?? 0}\n`,
  );
}

/** `podnet demo down`: stops the demo daemons and removes every namespace and file the demo made. */
export async function demoDown(out: (s: string) => void): Promise<void> {
  const before = (await listNetns()).filter((n) => n.startsWith(DEMO_PREFIX));
  await Topology.destroyByPrefix(DEMO_PREFIX, existsSync(DEMO_DIR) ? DEMO_DIR : undefined);
  out(before.length ? `removed ${before.length} namespaces and the demo's daemons\n` : 'no demo was up\n');
}
