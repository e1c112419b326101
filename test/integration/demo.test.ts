import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { execCapture, REPO_ROOT } from '../../src/topology/topology.js';
import { listNetns } from '../../src/netns/run.js';
import { DEMO_PREFIX } from '../../src/demo/demo.js';

const PODNET = join(REPO_ROOT, 'bin/podnet');

describe('podnet demo up / down', function () {
  this.timeout(300_000);

  after(async () => {
    await execCapture(PODNET, ['demo', 'down']);
  });

  it('builds a working multi-host cluster and removes all of it', async () => {
    if ((await listNetns()).some((n) => n.startsWith(DEMO_PREFIX))) await execCapture(PODNET, ['demo', 'down']);
    const up = await execCapture(PODNET, ['demo', 'up', '--nodes', '2', '--pods', '2'], 240_000);
    expect(up.code, up.stdout + up.stderr).to.equal(0);
    expect(up.stdout).to.match(/Ping matrix/);
    expect(up.stdout).to.not.match(/FAIL/);
    const st = await execCapture(PODNET, ['--node', 'demo2', 'status', '--json']);
    expect(st.code, st.stderr).to.equal(0);
    expect(JSON.parse(st.stdout).pods).to.have.length(2);
    const down = await execCapture(PODNET, ['demo', 'down']);
    expect(down.code, down.stderr).to.equal(0);
    expect((await listNetns()).filter((n) => n.startsWith(DEMO_PREFIX))).to.deep.equal([]);
    expect(existsSync('/run/podnet/demo1.sock')).to.equal(false);
    expect(existsSync('/var/lib/podnet-demo')).to.equal(false);
  });
});
