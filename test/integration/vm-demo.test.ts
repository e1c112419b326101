import { expect } from 'chai';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execCapture, REPO_ROOT, type ExecResult } from '../../src/topology/topology.js';
import { listNetns } from '../../src/netns/run.js';
import { readVmState, VM_DIR, VM_PREFIX, VM_UNDERLAY_NS } from '../../src/demo/vm.js';
import { DEMO_PREFIX } from '../../src/demo/demo.js';
import { processAlive } from '../../src/util/process.js';
import { ownDemoOnly } from '../helpers/demo.js';

const PODNET = join(REPO_ROOT, 'bin/podnet');

/** `podnet demo exec NODE -- ARGV` (a VM through its agent, or a namespace host). */
function demoExec(node: string, argv: string[], timeoutMs = 600_000): Promise<ExecResult> {
  return execCapture(PODNET, ['demo', 'exec', node, '--', ...argv], timeoutMs);
}

async function ok(node: string, argv: string[], timeoutMs?: number): Promise<string> {
  const r = await demoExec(node, argv, timeoutMs);
  expect(r.code, `${node}: ${argv.join(' ')}: ${r.stdout}${r.stderr}`).to.equal(0);
  return r.stdout;
}


interface Pod {
  name: string;
  node: string;
  ip: string;
  netns: string;
}

// Boots two real VMs (KVM where it works, else TCG: slow, so the budget is generous; no timing is asserted).
describe('podnet demo up --vms 2: a cluster of QEMU VMs', function () {
  this.timeout(1_800_000);
  let pods: Pod[] = [];
  let upOut = '';
  ownDemoOnly();

  before(async function () {
    const up = await execCapture(PODNET, ['demo', 'up', '--vms', '2', '--pods', '2'], 1_500_000);
    upOut = up.stdout + up.stderr;
    // Figures of the run, for the log (not asserted).
    process.stdout.write(upOut.split('\n').filter((l) => /acceleration|Boot \(|RTT|TCP |Demo up/.test(l)).map((l) => `      ${l}\n`).join(''));
    expect(up.code, upOut).to.equal(0);
    for (const vm of ['vm1', 'vm2']) {
      const list = JSON.parse(await ok(vm, ['podnet', 'pod', 'list', '--json'])) as Pod[];
      pods.push(...list.map((p) => ({ name: p.name, node: vm, ip: p.ip, netns: p.netns })));
    }
  });

  it('says which acceleration it chose and shows every VM boot to a serving daemon', () => {
    expect(upOut).to.match(/acceleration: (KVM|TCG)/);
    for (const vm of ['vm1', 'vm2']) expect(upOut).to.match(new RegExp(`${vm}\\s+podnet daemon serving`));
    expect(upOut).to.match(/Ping matrix/);
    expect(upOut).to.not.match(/\bFAIL\b|MISMATCH|demo failed|: failed \(/);
  });

  it('runs every VM as its own kernel with a virtio NIC, and the VMs are nodes of one etcd cluster', async () => {
    const nodes = JSON.parse(await ok('vm2', ['podnet', 'nodes', '--json'])) as Array<{ name: string; underlayIp: string }>;
    expect(nodes.map((n) => n.name).sort()).to.deep.equal(['vm1', 'vm2']);
    const driver = await ok('vm1', ['readlink', '/sys/class/net/eth0/device/driver']);
    expect(driver.trim()).to.match(/virtio_net$/);
    const cfg = JSON.parse(await ok('vm1', ['cat', '/etc/podnet/config.json'])) as { store: { kind: string; endpoints: string[] } };
    expect(cfg.store).to.deep.equal({ kind: 'etcd', endpoints: ['http://198.18.0.1:2379'] });
    // The VM's kernel is not the host's own process space: its PID 1 is the VM's init.
    expect((await ok('vm1', ['cat', '/proc/1/comm'])).trim()).to.equal('init');
    expect((await ok('vm1', ['hostname'])).trim()).to.equal('vm1');
    // Exit codes and stdin pass through demo exec.
    expect((await demoExec('vm1', ['sh', '-c', 'exit 7'])).code).to.equal(7);
    const echoed = await execCapture('sh', ['-c', `echo through-the-agent | ${PODNET} demo exec vm2 -- cat`]);
    expect(echoed.stdout.trim()).to.equal('through-the-agent');
    const missing = await demoExec('vm9', ['true']);
    expect(missing.code).to.not.equal(0);
    expect(missing.stderr).to.match(/no demo node vm9/);
  });

  it('every pod pings every pod, across VMs', async () => {
    expect(pods).to.have.length(4);
    expect(new Set(pods.map((p) => p.node))).to.deep.equal(new Set(['vm1', 'vm2']));
    for (const src of pods) {
      const targets = pods.filter((d) => d !== src);
      const script = targets.map((d) => `ping -c 1 -W 5 ${d.ip} >/dev/null || ping -c 1 -W 5 ${d.ip} >/dev/null && echo ${d.ip} ok || echo ${d.ip} FAIL`).join('; ');
      const res = await ok(src.node, ['ip', 'netns', 'exec', src.netns, 'sh', '-c', script]);
      for (const d of targets) expect(res, `${src.node}/${src.name} -> ${d.node}/${d.name}`).to.include(`${d.ip} ok`);
    }
  });

  it('moves 50 MB over TCP between pods on different VMs intact, and the receiver sees the sender pod IP', async () => {
    const a = pods.find((p) => p.node === 'vm1' && p.name === 'web')!;
    const b = pods.find((p) => p.node === 'vm2' && p.name === 'web')!;
    const bytes = 50 * 1024 * 1024;
    const nettool = '/opt/podnet/test/fixtures/nettool.mjs';
    const sink = demoExec('vm2', ['ip', 'netns', 'exec', b.netns, 'node', nettool, 'sink', '5001']);
    // Ready once the sink listens on 5001 (0x1389) in the pod's namespace.
    for (let i = 0; ; i++) {
      const r = await demoExec('vm2', ['ip', 'netns', 'exec', b.netns, 'grep', '-q', ':1389 00000000:0000 0A', '/proc/net/tcp']);
      if (r.code === 0) break;
      expect(i, 'the sink did not start listening').to.be.lessThan(600);
      await new Promise((res) => setTimeout(res, 500));
    }
    const started = performance.now();
    const sent = await ok('vm1', ['ip', 'netns', 'exec', a.netns, 'node', nettool, 'send', b.ip, '5001', String(bytes)]);
    const seconds = (performance.now() - started) / 1000;
    const got = await sink;
    expect(got.code, got.stderr).to.equal(0);
    const [sentBytes, sentHash] = sent.trim().split(' ');
    const [gotBytes, gotHash, remote] = got.stdout.trim().split(' ');
    expect(Number(sentBytes)).to.equal(bytes);
    expect(Number(gotBytes)).to.equal(bytes);
    expect(gotHash).to.equal(sentHash);
    expect(remote!.replace(/^::ffff:/, '')).to.equal(a.ip);
    process.stdout.write(`      50 MB vm1/web -> vm2/web in ${seconds.toFixed(1)} s including the sender's start (${((bytes * 8) / seconds / 1e6).toFixed(0)} Mbit/s)\n`);
  });

  it('balances a ClusterIP over pods on both VMs and serves its NodePort to the underlay namespace, outside every VM', async () => {
    const svcs = JSON.parse(await ok('vm1', ['podnet', 'service', 'list', '--json'])) as Array<{ name: string; clusterIp: string; ports: Array<{ nodePort: number }> }>;
    const web = svcs.find((s) => s.name === 'web')!;
    expect(web, JSON.stringify(svcs)).to.not.equal(undefined);
    const client = pods.find((p) => p.node === 'vm1' && p.name === 'client1')!;
    const answers = await ok('vm1', ['ip', 'netns', 'exec', client.netns, 'sh', '-c', `for i in $(seq 20); do curl -s -m 10 http://${web.clusterIp}/; done`]);
    const servedBy = new Set([...answers.matchAll(/(vm\d)\/web saw client (\S+)/g)].map((m) => m[1]));
    expect([...servedBy].sort(), answers).to.deep.equal(['vm1', 'vm2']);
    // The client's own pod address reaches the endpoints (no NAT of the source inside the cluster).
    expect(answers).to.include(`saw client ${client.ip}`);
    const np = web.ports[0]!.nodePort;
    // Policy Cluster: a node port on either VM is balanced over the web pods of both.
    const seen = new Set<string>();
    for (const vmIp of ['198.18.0.11', '198.18.0.12']) {
      for (let i = 0; i < 10; i++) {
        const r = await execCapture('ip', ['netns', 'exec', VM_UNDERLAY_NS, 'curl', '-s', '-m', '10', `http://${vmIp}:${np}/`], 30_000);
        expect(r.code, `NodePort ${vmIp}:${np}: ${r.stderr}`).to.equal(0);
        const m = /(vm\d)\/web saw client/.exec(r.stdout);
        expect(m, r.stdout).to.not.equal(null);
        seen.add(m![1]!);
      }
    }
    expect([...seen].sort()).to.deep.equal(['vm1', 'vm2']);
  });

  it("keeps the agent's token off every command line, and the agent answers only with it", async () => {
    const state = readVmState()!;
    expect(state.token).to.match(/^[0-9a-f]{32}$/);
    for (const v of state.vms) {
      // qemu's command line is world-readable on the host; the guest's kernel command line in the VM.
      const qemu = readFileSync(`/proc/${v.pid}/cmdline`, 'utf8');
      expect(qemu, `${v.name}'s qemu`).to.include('opt/podnet/token').and.not.include(state.token);
      const cmdline = await ok(v.name, ['cat', '/proc/cmdline']);
      expect(cmdline, `${v.name}'s /proc/cmdline`).to.include(`podnet.name=${v.name}`).and.not.include(state.token);
    }
    const client = join(REPO_ROOT, 'dist/src/demo/agent-client.js');
    for (const token of ['', 'f'.repeat(32)]) {
      const r = await execCapture('env', [`PODNET_AGENT_TOKEN=${token}`, 'nsenter', `--net=/run/netns/${state.underlayNs}`, '--', process.execPath, client, state.vms[0]!.ip, String(state.agentPort), '--', 'true']);
      expect(r.code, `token ${JSON.stringify(token)}`).to.equal(255);
      expect(r.stderr).to.include('agent: wrong token');
    }
  });

  it('demo down leaves no VM process, tap, bridge, namespace or file behind', async () => {
    const state = readVmState()!;
    expect(state.vms).to.have.length(2);
    const pids = [...state.vms.map((v) => v.pid), state.etcdPid];
    for (const p of pids) expect(processAlive(p), `pid ${p} before down`).to.equal(true);
    const down = await execCapture(PODNET, ['demo', 'down'], 300_000);
    expect(down.code, down.stdout + down.stderr).to.equal(0);
    expect(down.stdout).to.match(/removed 2 VMs/);
    for (const p of pids) expect(processAlive(p), `pid ${p} after down`).to.equal(false);
    expect((await listNetns()).filter((n) => n.startsWith(VM_PREFIX))).to.deep.equal([]);
    // The taps and the bridge lived in the underlay namespace; nothing of ours is in the machine's own.
    const links = await execCapture('ip', ['-o', 'link', 'show']);
    expect(links.stdout).to.not.include(VM_PREFIX);
    expect(existsSync(VM_DIR)).to.equal(false);
    const qemus = await execCapture('pgrep', ['-f', '--', `-name ${VM_PREFIX}`]);
    expect(qemus.stdout.trim()).to.equal('');
    expect(readVmState()).to.equal(undefined);
    const again = await execCapture(PODNET, ['demo', 'down']);
    expect(again.code).to.equal(0);
    expect(again.stdout).to.match(/no demo was up/);
  });
});

describe('podnet demo up --vms: a VM that does not come up in time', function () {
  this.timeout(600_000);
  ownDemoOnly();

  it('is reported with the tail of its console, and everything is removed', async () => {
    // No VM reaches a serving daemon within 1 s, with KVM or without.
    const up = await execCapture(PODNET, ['demo', 'up', '--vms', '1', '--accel', 'tcg', '--boot-timeout', '1'], 300_000);
    const all = up.stdout + up.stderr;
    expect(up.code, all).to.not.equal(0);
    expect(all).to.match(/vm1 did not come up: it was not serving within 1 s \(stage \d\/5\)\. Last lines of its console:/);
    expect(all).to.match(/acceleration: TCG.*as asked/);
    expect(all).to.match(/cleaning up/);
    expect((await listNetns()).filter((n) => n.startsWith(VM_PREFIX))).to.deep.equal([]);
    expect(existsSync(VM_DIR)).to.equal(false);
    expect((await execCapture('pgrep', ['-f', '--', `-name ${VM_PREFIX}`])).stdout.trim()).to.equal('');
  });
});

describe('podnet demo exec on a namespace demo', function () {
  this.timeout(300_000);
  ownDemoOnly();

  it("runs a command in a demo host's namespace", async () => {
    const up = await execCapture(PODNET, ['demo', 'up', '--nodes', '1', '--pods', '1'], 240_000);
    expect(up.code, up.stdout + up.stderr).to.equal(0);
    const r = await demoExec('demo1', ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.include('198.18.0.11/24');
    expect((await demoExec('demo1', ['sh', '-c', 'exit 3'])).code).to.equal(3);
    const down = await execCapture(PODNET, ['demo', 'down']);
    expect(down.code).to.equal(0);
    expect(readdirSync('/run/netns').filter((n) => n.startsWith(DEMO_PREFIX))).to.deep.equal([]);
  });
});
