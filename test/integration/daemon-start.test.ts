import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, execCapture } from '../../src/topology/topology.js';

/** Issue 2: the daemon refuses to start where it cannot work, and names what is wrong. */
describe('podnet daemon start-up checks', function () {
  this.timeout(60_000);
  const dir = mkdtempSync(join(tmpdir(), 'podnet-start-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses to run without root, with a one-line reason', async function () {
    const asNobody = ['--reuid=65534', '--regid=65534', '--clear-groups'];
    // The check needs an unprivileged user who can read the checkout (not the case under /root).
    if ((await execCapture('setpriv', [...asNobody, process.execPath, '-e', `require('fs').accessSync(${JSON.stringify(CLI)})`])).code !== 0) {
      this.skip();
    }
    const r = await execCapture('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, 'daemon', '--state-dir', dir, '--run-dir', dir]);
    expect(r.code).to.equal(1);
    expect(r.stderr.trim()).to.equal('podnet: error: podnet daemon must run as root (it creates namespaces and TUN/TAP devices)');
  });

  it('refuses to run without /dev/net/tun', async () => {
    // A private mount namespace where /dev/net is an empty tmpfs: nothing outside it changes.
    const r = await execCapture('unshare', ['-m', 'sh', '-c', `mount -t tmpfs none /dev/net && exec ${process.execPath} ${CLI} daemon --state-dir ${dir} --run-dir ${dir}`]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/\/dev\/net\/tun is missing or not accessible/);
  });

  it('names every bad config field and its reason', async () => {
    const cfg = join(dir, 'bad.json');
    writeFileSync(cfg, JSON.stringify({ podCidr: '10.244.0.0', vxlan: { vni: -1 }, node: 'Bad_Name', bogus: 1 }));
    const r = await execCapture(process.execPath, [CLI, 'daemon', '--config', cfg, '--run-dir', dir]);
    expect(r.code).to.equal(1);
    const line = r.stderr.trim();
    expect(line.split('\n')).to.have.length(1);
    expect(line).to.match(/podCidr: must be an IPv4 CIDR/);
    expect(line).to.match(/vxlan\.vni/);
    expect(line).to.match(/node: must be/);
    expect(line).to.match(/bogus/);
  });

  it('rejects a config file that is not JSON, naming the file', async () => {
    const cfg = join(dir, 'broken.json');
    writeFileSync(cfg, '{ nope');
    const r = await execCapture(process.execPath, [CLI, 'daemon', '--config', cfg, '--run-dir', dir]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.include(`config file ${cfg} is not valid JSON`);
  });

  it('tells the operator when no daemon is listening', async () => {
    const r = await execCapture(process.execPath, [CLI, '--run-dir', dir, '--node', 'nobody', 'status']);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/no podnet daemon is listening on .*nobody\.sock/);
  });
});
