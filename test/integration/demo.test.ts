import { expect } from 'chai';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { execCapture, REPO_ROOT } from '../../src/topology/topology.js';
import { listNetns } from '../../src/netns/run.js';
import { DEMO_PREFIX } from '../../src/demo/demo.js';
import { ownDemoOnly } from '../helpers/demo.js';

const PODNET = join(REPO_ROOT, 'bin/podnet');

describe('podnet demo up / down', function () {
  this.timeout(300_000);
  ownDemoOnly();

  it('builds a working multi-host cluster and removes all of it', async () => {
    const up = await execCapture(PODNET, ['demo', 'up', '--nodes', '2', '--pods', '2'], 240_000);
    expect(up.code, up.stdout + up.stderr).to.equal(0);
    expect(up.stdout).to.match(/Ping matrix/);
    expect(up.stdout).to.not.match(/FAIL/);
    const st = await execCapture(PODNET, ['--node', 'demo2', 'status', '--json']);
    expect(st.code, st.stderr).to.equal(0);
    expect(JSON.parse(st.stdout).pods).to.have.length(2);
    // podnet demo restart: a crash (--kill) and a graceful restart; the pods are attached again, not
    // recreated, and cross-host traffic works.
    for (const args of [['demo1', '--kill'], ['demo1']]) {
      const r = await execCapture(PODNET, ['demo', 'restart', ...args], 120_000);
      expect(r.code, r.stdout + r.stderr).to.equal(0);
      expect(r.stdout).to.match(args[1] ? /daemon \d+ killed \(SIGKILL\), daemon \d+ serving again/ : /daemon \d+ stopped \(SIGTERM\), daemon \d+ serving again/);
      expect(r.stdout).to.match(/pods attached again 2, recreated 0, failed 0/);
      const pods = JSON.parse((await execCapture(PODNET, ['--node', 'demo1', 'pod', 'list', '--json'])).stdout) as Array<{ name: string; ip: string }>;
      const web1 = pods.find((p) => p.name === 'web')!;
      const ping = await execCapture(PODNET, ['--node', 'demo2', 'exec', 'web', '--', 'ping', '-c', '1', '-W', '5', web1.ip]);
      expect(ping.code, ping.stdout + ping.stderr).to.equal(0);
    }
    const bad = await execCapture(PODNET, ['demo', 'restart', 'nope']);
    expect(bad.code).to.not.equal(0);
    expect(bad.stderr).to.match(/no demo node nope/);
    const down = await execCapture(PODNET, ['demo', 'down']);
    expect(down.code, down.stderr).to.equal(0);
    expect((await listNetns()).filter((n) => n.startsWith(DEMO_PREFIX))).to.deep.equal([]);
    expect(existsSync('/run/podnet/demo1.sock')).to.equal(false);
    expect(existsSync('/var/lib/podnet-demo')).to.equal(false);
    expect(readdirSync('/dev/shm').filter((f) => f.startsWith(DEMO_PREFIX))).to.deep.equal([]);
  });
});
