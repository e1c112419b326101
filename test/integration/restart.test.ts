import { expect } from 'chai';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, REPO_ROOT, Topology } from '../../src/topology/topology.js';
import { listNetns } from '../../src/netns/run.js';
import { NETTOOL, ping, startIn, statusJson, within } from '../helpers/net.js';

const MB = 1024 * 1024;
const SIZE = 100 * MB;

/**
 * Issue 11: the node agent restarts, crashes and is upgraded while connections go through it.
 *
 * Hosts h1, m (the middle) and h3, and an external host on the underlay. Three transfers of 100 MB,
 * at the same time, each with m's daemon on its path:
 *   pod-to-pod across hosts     h1/client  -> m/sink               (m's switch and VXLAN)
 *   pod to a ClusterIP          m/client   -> ClusterIP -> h3/srv  (m's conntrack DNAT)
 *   outside client to NodePort  ext        -> m:nodePort -> h3/srv (m's uplink, DNAT + SNAT)
 * Every sender sends half, then waits; m's daemon is stopped (SIGKILL or SIGTERM), the senders are
 * told to go on while it is down, and it is started again. So each connection provably crosses the
 * outage (no timing involved). All three must complete with the sender's SHA-256 and no error
 * (a reset would fail the sender or the sink).
 */
describe('restart: connections survive the node agent (crash, graceful restart, upgrade)', function () {
  this.timeout(900_000);
  const t = new Topology();
  const EXT = '198.18.0.99';
  const ip: Record<string, string> = {};
  const servers: Array<ReturnType<typeof startIn>> = [];
  let clusterIp = '';
  let port = 6000;
  let otherBuild = '';

  async function pod(node: string, name: string, labels: string[] = []): Promise<string> {
    const r = await t.podnet(node, ['pod', 'add', name, ...labels.flatMap((l) => ['--label', l])]);
    expect(r.code, r.stderr).to.equal(0);
    ip[name] = r.stdout.trim();
    return ip[name]!;
  }

  before(async () => {
    await t.createUnderlay();
    for (const h of ['h1', 'm', 'h3']) await t.addHost({ name: h });
    await t.addExternal('ext', EXT);
    for (const h of ['h1', 'm', 'h3']) await t.startDaemon(h);
    await pod('h1', 'client');
    await pod('m', 'sink');
    await pod('m', 'client');
    await pod('h3', 'srv', ['app=srv']);
    await pod('h1', 'srv2', ['app=srv']);
    // One NodePort service (it has a cluster IP too) with endpoints on h3 and h1: both service paths
    // cross m, which picks an endpoint per connection at random. A daemon that lost its conntrack
    // table would pick again for a connection it sees mid-stream, and might pick the other endpoint.
    // Ports 7000-7011 of the service map to the same ports on the endpoints.
    const ports = Array.from({ length: 12 }, (_, i) => ['--port', `${7000 + i}/tcp`]).flat();
    const r = await t.podnet('m', ['service', 'add', 'bulk', '--type', 'NodePort', ...ports, '--selector', 'app=srv', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const svc = JSON.parse(r.stdout) as { clusterIp: string; ports: Array<{ port: number; nodePort: number }> };
    clusterIp = svc.clusterIp;

    expect(await ping(t, t.podNs('h1', 'client'), ip.sink!)).to.equal(true);
  });

  afterEach(function () {
    // A failure's evidence: the daemons' warnings and errors, before the topology (and its logs) goes.
    if (this.currentTest?.state !== 'failed') return;
    for (const h of ['h1', 'm', 'h3']) {
      const lines = t.daemonLog(h).split('\n').filter((l) => l && !l.includes('"level":30'));
      process.stderr.write(`--- ${h} daemon log (warnings and errors, last 30) ---\n${lines.slice(-30).join('\n')}\n`);
    }
  });

  after(async () => {
    for (const s of servers) s.stop();
    await t.destroy();
    if (otherBuild) rmSync(otherBuild, { recursive: true, force: true });
  });

  /**
   * A 100 MB transfer that sends half, then waits for `go()`. A sink listens in each of `toNs` (a
   * service's endpoints): the one the connection reaches reports it.
   */
  async function pausedTransfer(fromNs: string, toNs: string[], dstIp: string, dstPort: number, sinkPort: number) {
    const sinks = toNs.map((ns) => startIn(ns, process.execPath, [NETTOOL, 'sink', String(sinkPort)]));
    servers.push(...sinks);
    await Promise.all(sinks.map((k) => k.started));
    const sender = startIn(fromNs, process.execPath, [NETTOOL, 'send', dstIp, String(dstPort), String(SIZE), String(SIZE / 2)], 'paused');
    servers.push(sender);
    await sender.started;
    return {
      go: () => sender.child.kill('SIGUSR1'),
      async done(): Promise<{ sent: string; got: string }> {
        const sc = await within(sender.exited, 240_000, -1);
        expect(sc, `sender to ${dstIp}:${dstPort}: ${sender.errors()}`).to.equal(0);
        const sink = await within(Promise.race(sinks.map((k) => k.exited.then(() => k))), 60_000, undefined);
        expect(sink, `no sink for ${dstIp}:${dstPort} finished`).to.not.equal(undefined);
        expect(await sink!.exited, `sink for ${dstIp}:${dstPort}: ${sink!.errors()}`).to.equal(0);
        for (const k of sinks) if (k !== sink) k.stop();
        return { sent: sender.output().trim(), got: sink!.output().trim() };
      },
    };
  }

  interface Ct {
    protoName: string;
    original: { src: string; dst: string; sport: number; dport: number };
    reply: { src: string; dst: string; sport: number; dport: number };
    packetsOriginal: number;
    dnat: boolean;
  }
  /** m's conntrack entry of the connection to dst:dport. */
  async function ctOf(dst: string, dport: number): Promise<Ct | undefined> {
    const r = await t.podnet('m', ['conntrack', 'list', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    return (JSON.parse(r.stdout) as Ct[]).find((e) => e.protoName === 'tcp' && e.original.dst === dst && e.original.dport === dport);
  }

  /** The node port that leads to service port `p` (ports are listed in order). */
  async function nodePortFor(p: number): Promise<number> {
    const list = JSON.parse((await t.podnet('m', ['service', 'list', '--json'])).stdout) as Array<{ name: string; ports: Array<{ port: number; nodePort: number }> }>;
    return list.find((s) => s.name === 'bulk')!.ports.find((x) => x.port === p)!.nodePort;
  }

  async function threeTransfersAcross(restart: () => Promise<void>): Promise<void> {
    const p = port;
    port += 3;
    const svcA = 7000 + ((p - 6000) / 3) * 2;
    const svcB = svcA + 1;
    const np = await nodePortFor(svcB);
    const endpoints = [t.podNs('h3', 'srv'), t.podNs('h1', 'srv2')];
    const mIp = t.host('m').underlayIp;
    const transfers = [
      await pausedTransfer(t.podNs('h1', 'client'), [t.podNs('m', 'sink')], ip.sink!, p, p),
      await pausedTransfer(t.podNs('m', 'client'), endpoints, clusterIp, svcA, svcA),
      await pausedTransfer(t.host('ext').netns, endpoints, mIp, np, svcB),
    ];
    const before = [await ctOf(clusterIp, svcA), await ctOf(mIp, np)];
    for (const e of before) expect(e?.dnat).to.equal(true);
    const pidBefore = (await statusJson(t, 'm')).process.pid;
    await restart();
    const st = await statusJson(t, 'm');
    expect(st.process.pid).to.not.equal(pidBefore);
    // Every pod came back in its own namespace (processes kept), none was recreated.
    expect(st.restart).to.include({ reattached: 2, recreated: 0, failed: 0 });
    expect(st.restart.conntrack.restored).to.be.greaterThan(0);
    // The service connections' entries are the same ones (the senders are paused: no packet of
    // theirs has crossed since): same NAT decision (endpoint, ports), packet counts carried on.
    const after = [await ctOf(clusterIp, svcA), await ctOf(mIp, np)];
    for (let i = 0; i < 2; i++) {
      expect(after[i], `entry ${i} after the restart`).to.not.equal(undefined);
      expect(after[i]!.reply).to.deep.equal(before[i]!.reply);
      expect(after[i]!.packetsOriginal).to.be.at.least(before[i]!.packetsOriginal);
    }
    for (const x of transfers) x.go();
    const results = await Promise.all(transfers.map((x) => x.done()));
    for (const { sent, got } of results) {
      const [sentBytes, sentHash] = sent.split(' ');
      const [gotBytes, gotHash] = got.split(' ');
      expect(Number(sentBytes)).to.equal(SIZE);
      expect(Number(gotBytes)).to.equal(SIZE);
      expect(gotHash).to.equal(sentHash);
    }
  }

  it('kill -9 of the middle daemon and a start: all three transfers complete intact', async () => {
    await threeTransfersAcross(async () => {
      // The senders go on while no daemon runs: their data waits in socket buffers and retransmissions.
      const code = await t.stopDaemon('m', 'SIGKILL');
      expect(code).to.equal(null);
      await t.startDaemon('m');
    });
  });

  it('SIGTERM and a start (a restart): pods, devices and routes stay; all three transfers complete intact', async () => {
    await threeTransfersAcross(async () => {
      const code = await t.stopDaemon('m', 'SIGTERM');
      expect(code).to.equal(0);
      // Nothing was removed: the pod namespaces, their eth0 with its address, podnet0 and its routes.
      expect(await listNetns()).to.include.members([t.podNs('m', 'sink'), t.podNs('m', 'client')]);
      expect(await t.sh(t.podNs('m', 'sink'), 'ip -br addr show eth0')).to.include(ip.sink!);
      expect(await t.sh(t.host('m').netns, 'ip route')).to.match(/10\.244\.0\.0\/16 dev podnet0/);
      await t.startDaemon('m');
    });
  });

  it('a daemon of another build takes over from the running one (an upgrade): all three transfers complete intact', async () => {
    // The "other build": this build's compiled tree and native addon copied to a directory of its own,
    // so the new daemon loads nothing the old one had loaded. (Both come from the same source here.)
    otherBuild = mkdtempSync(join(tmpdir(), 'podnet-build-'));
    cpSync(join(REPO_ROOT, 'dist'), join(otherBuild, 'dist'), { recursive: true });
    cpSync(join(REPO_ROOT, 'build', 'Release', 'podnet_tuntap.node'), join(otherBuild, 'build', 'Release', 'podnet_tuntap.node'));
    cpSync(join(REPO_ROOT, 'package.json'), join(otherBuild, 'package.json'));
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(otherBuild, 'node_modules'));
    await threeTransfersAcross(async () => {
      expect(await t.stopDaemon('m', 'SIGTERM')).to.equal(0);
      await t.startDaemon('m', {}, { cli: join(otherBuild, 'dist/src/cli/main.js') });
      const pid = (await statusJson(t, 'm')).process.pid as number;
      expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).to.include(otherBuild);
    });
    // And back to this build, for the tests after this one.
    await t.restartDaemon('m', 'SIGTERM', { cli: CLI });
    expect((await statusJson(t, 'm')).restart).to.include({ reattached: 2, recreated: 0, failed: 0 });
  });

  it('a restarted daemon serves new pods and new connections as before', async () => {
    await t.restartDaemon('m', 'SIGKILL');
    const fresh = await pod('m', 'fresh');
    expect(await ping(t, t.podNs('h1', 'client'), fresh)).to.equal(true);
    expect(await ping(t, t.podNs('m', 'client'), ip.srv!)).to.equal(true);
    const r = await t.exec(t.podNs('m', 'fresh'), 'ping', ['-c', '1', '-W', '2', ip.client!]);
    expect(r.code, r.stdout + r.stderr).to.equal(0);
  });
});
