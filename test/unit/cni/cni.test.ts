import { expect } from 'chai';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, lstatSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labelsFor, parseCniArgs, parseEnv, parseNetConf, resolveSocket } from '../../../src/cni/config.js';
import { buildAddResult, checkPrevResult, type AttachmentView } from '../../../src/cni/result.js';
import { runPlugin, type Api } from '../../../src/cni/plugin.js';
import { conflist, installCni } from '../../../src/cni/install.js';
import { CniError } from '../../../src/cni/spec.js';
import { attachmentName, validateAttachment } from '../../../src/daemon/pods.js';
import { ErrorCode, PodnetError } from '../../../src/util/errors.js';

const base = { cniVersion: '1.1.0', name: 'podnet', type: 'podnet-cni', socket: '/run/podnet/n1.sock' };
const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/proc/42/ns/net', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };
const att: AttachmentView = {
  name: 'cni-c1-12345678',
  ip: '10.244.1.5',
  mac: '0a:58:0a:f4:01:05',
  prefix: 24,
  gateway: '10.244.1.1',
  mtu: 1450,
  device: 'tap',
  attachment: { containerId: 'c1', ifname: 'eth0', netns: '/proc/42/ns/net', network: 'podnet' },
};
const codeOf = (fn: () => unknown): number => {
  try {
    fn();
  } catch (e) {
    if (e instanceof CniError) return e.code;
    throw e;
  }
  throw new Error('did not throw');
};

describe('cni/config: network config and CNI_* environment', () => {
  it('parses podnet\'s fields with defaults', () => {
    const c = parseNetConf(JSON.stringify({ ...base, device: 'tun', dns: { nameservers: ['10.96.0.10'] }, runtimeConfig: { x: 1 } }));
    expect(c).to.deep.include({ cniVersion: '1.1.0', name: 'podnet', type: 'podnet-cni', socket: '/run/podnet/n1.sock', device: 'tun', runDir: '/run/podnet' });
    expect(c.dns).to.deep.equal({ nameservers: ['10.96.0.10'] });
    expect(parseNetConf(JSON.stringify({ ...base, socket: undefined })).device).to.equal('tap');
  });

  it('refuses with the spec\'s codes, naming the field', () => {
    expect(codeOf(() => parseNetConf('{"cniVersion":'))).to.equal(6);
    expect(codeOf(() => parseNetConf('[1]'))).to.equal(6);
    expect(codeOf(() => parseNetConf(JSON.stringify({ ...base, cniVersion: '0.4.0' })))).to.equal(1);
    expect(codeOf(() => parseNetConf(JSON.stringify({ ...base, cniVersion: undefined })))).to.equal(7);
    expect(codeOf(() => parseNetConf(JSON.stringify({ ...base, ipam: { type: 'host-local' } })))).to.equal(2);
    expect(codeOf(() => parseNetConf(JSON.stringify({ ...base, name: '-bad' })))).to.equal(7);
    expect(codeOf(() => parseNetConf(JSON.stringify({ ...base, socket: 'relative.sock' })))).to.equal(7);
    expect(codeOf(() => parseNetConf(JSON.stringify({ ...base, prevResult: { ips: 'x' } })))).to.equal(7);
    expect(() => parseNetConf(JSON.stringify({ ...base, device: 'veth' }))).to.throw(/device "veth": must be "tap" or "tun"/);
    expect(() => parseNetConf(JSON.stringify({ ...base, dns: { nameservers: [1] } }))).to.throw(/dns.nameservers/);
  });

  it('takes labels from args.labels, args.cni.labels and K8S_POD_* in CNI_ARGS', () => {
    const c = parseNetConf(JSON.stringify({ ...base, args: { labels: { app: 'web' }, cni: { labels: [{ key: 'tier', value: 'front' }] }, other: 1 } }));
    const e = parseEnv({ ...env, CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc' });
    expect(labelsFor(c, e)).to.deep.equal({ 'io.kubernetes.pod.namespace': 'shop', 'io.kubernetes.pod.name': 'web-0', app: 'web', tier: 'front' });
    expect(() => parseNetConf(JSON.stringify({ ...base, args: { cni: { labels: [{ key: 'a' }] } } }))).to.throw(/args.cni.labels\[0\]/);
  });

  it('reads cni.dev/valid-attachments for GC', () => {
    const c = parseNetConf(JSON.stringify({ ...base, 'cni.dev/valid-attachments': [{ containerID: 'a', ifname: 'eth0' }] }));
    expect(c.validAttachments).to.deep.equal([{ containerId: 'a', ifname: 'eth0' }]);
    expect(codeOf(() => parseNetConf(JSON.stringify({ ...base, 'cni.dev/valid-attachments': [{ containerID: 'a' }] })))).to.equal(7);
  });

  it('parses CNI_ARGS (values may hold =) and refuses a malformed entry', () => {
    expect(parseCniArgs('A=1;B=x=y;;')).to.deep.equal({ A: '1', B: 'x=y' });
    expect(parseCniArgs(undefined)).to.deep.equal({});
    expect(codeOf(() => parseCniArgs('novalue'))).to.equal(4);
  });

  it('requires the variables each command needs (code 4), DEL without CNI_NETNS', () => {
    expect(parseEnv(env)).to.deep.include({ command: 'ADD', containerId: 'c1', netns: '/proc/42/ns/net', ifname: 'eth0' });
    expect(codeOf(() => parseEnv({ ...env, CNI_NETNS: '' }))).to.equal(4);
    expect(codeOf(() => parseEnv({ ...env, CNI_COMMAND: 'ATTACH' }))).to.equal(4);
    expect(codeOf(() => parseEnv({ ...env, CNI_CONTAINERID: undefined }))).to.equal(4);
    expect(codeOf(() => parseEnv({ ...env, CNI_IFNAME: 'a-name-of-16-chr' }))).to.equal(4);
    expect(codeOf(() => parseEnv({ ...env, CNI_IFNAME: 'eth/0' }))).to.equal(4);
    expect(codeOf(() => parseEnv({ ...env, CNI_CONTAINERID: '-x' }))).to.equal(4);
    expect(codeOf(() => parseEnv({ ...env, CNI_NETNS: 'relative' }))).to.equal(4);
    const del = parseEnv({ ...env, CNI_COMMAND: 'DEL', CNI_NETNS: '' });
    expect(del.netns).to.equal(undefined);
    expect(parseEnv({ CNI_COMMAND: 'STATUS' }).command).to.equal('STATUS');
    expect(parseEnv({ CNI_COMMAND: 'VERSION' }).command).to.equal('VERSION');
  });

  it('finds the daemon socket: socket, runDir/node.sock, the only socket, else says which to set', () => {
    expect(resolveSocket({ socket: '/s.sock', runDir: '/r' })).to.equal('/s.sock');
    expect(resolveSocket({ node: 'n2', runDir: '/r' })).to.equal('/r/n2.sock');
    expect(resolveSocket({ runDir: '/r' }, () => ['n1.sock', 'x.log'])).to.equal('/r/n1.sock');
    expect(codeOf(() => resolveSocket({ runDir: '/r' }, () => []))).to.equal(11);
    expect(() => resolveSocket({ runDir: '/r' }, () => ['a.sock', 'b.sock'])).to.throw(/set "node" or "socket"/);
  });
});

describe('cni/result: ADD results and CHECK', () => {
  it('1.1.0 has the interface mtu, 1.0.0 not; a TUN has no MAC', () => {
    const r = buildAddResult('1.1.0', att);
    expect(r).to.deep.equal({
      cniVersion: '1.1.0',
      interfaces: [{ name: 'eth0', mac: '0a:58:0a:f4:01:05', mtu: 1450, sandbox: '/proc/42/ns/net' }],
      ips: [{ address: '10.244.1.5/24', gateway: '10.244.1.1', interface: 0 }],
      routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }],
    });
    expect(buildAddResult('1.0.0', att).interfaces![0]).to.deep.equal({ name: 'eth0', mac: '0a:58:0a:f4:01:05', sandbox: '/proc/42/ns/net' });
    expect(buildAddResult('1.0.0', { ...att, device: 'tun' }).interfaces![0]).to.deep.equal({ name: 'eth0', sandbox: '/proc/42/ns/net' });
  });

  it('appends to a prevResult and keeps its dns unless the config has its own', () => {
    const prev = { cniVersion: '1.0.0', interfaces: [{ name: 'lo' }], ips: [{ address: '127.0.0.1/8', interface: 0 }], routes: [{ dst: '10.0.0.0/8' }], dns: { search: ['a'] } };
    const r = buildAddResult('1.0.0', att, { prevResult: prev });
    expect(r.interfaces).to.have.length(2);
    expect(r.ips![1]!.interface).to.equal(1);
    expect(r.routes).to.deep.equal([{ dst: '10.0.0.0/8' }, { dst: '0.0.0.0/0', gw: '10.244.1.1' }]);
    expect(r.dns).to.deep.equal({ search: ['a'] });
    expect(buildAddResult('1.0.0', att, { prevResult: prev, dns: { nameservers: ['1.1.1.1'] } }).dns).to.deep.equal({ nameservers: ['1.1.1.1'] });
    expect(prev.interfaces).to.have.length(1); // not modified
  });

  it('CHECK finds a result that does not match the attachment', () => {
    const good = buildAddResult('1.1.0', att);
    expect(checkPrevResult(good, att)).to.equal(undefined);
    expect(checkPrevResult({ ...good, interfaces: [] }, att)).to.match(/no interface eth0/);
    expect(checkPrevResult({ ...good, ips: [{ address: '10.244.1.9/24', interface: 0 }] }, att)).to.match(/10.244.1.9\/24/);
    expect(checkPrevResult({ ...good, interfaces: [{ ...good.interfaces![0]!, mac: '0a:58:00:00:00:01' }] }, att)).to.match(/MAC/);
  });
});

describe('cni/plugin: one invocation, daemon API faked at its edge', () => {
  const calls: Array<{ method: string; path: string; body: unknown }> = [];
  const api =
    (answer: (path: string) => unknown): Api =>
    async <T>(_s: string, method: string, path: string, body?: unknown) => {
      calls.push({ method, path, body });
      const a = answer(path);
      if (a instanceof Error) throw a;
      return a as T;
    };
  beforeEach(() => (calls.length = 0));

  it('VERSION answers without a daemon', async () => {
    const o = await runPlugin({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}', api(() => new Error('no')));
    expect(o.exitCode).to.equal(0);
    expect(JSON.parse(o.stdout)).to.deep.equal({ cniVersion: '1.0.0', supportedVersions: ['1.0.0', '1.1.0'] });
    expect(JSON.parse((await runPlugin({ CNI_COMMAND: 'VERSION' }, '', api(() => ({})))).stdout).cniVersion).to.equal('1.1.0');
    expect(calls).to.have.length(0);
  });

  it('ADD sends the attachment with labels and prints the result', async () => {
    const o = await runPlugin({ ...env, CNI_ARGS: 'K8S_POD_NAME=p' }, JSON.stringify({ ...base, args: { labels: { app: 'x' } } }), api(() => att));
    expect(o.exitCode).to.equal(0);
    expect(JSON.parse(o.stdout).ips[0].address).to.equal('10.244.1.5/24');
    expect(calls[0]).to.deep.equal({
      method: 'POST',
      path: '/v1/cni/attachments',
      body: { containerId: 'c1', ifname: 'eth0', netns: '/proc/42/ns/net', network: 'podnet', labels: { 'io.kubernetes.pod.name': 'p', app: 'x' }, device: 'tap' },
    });
  });

  it('ADD passes K8S_POD_NAMESPACE on as the pod\'s namespace (NetworkPolicy)', async () => {
    const o = await runPlugin({ ...env, CNI_ARGS: 'K8S_POD_NAMESPACE=shop;K8S_POD_NAME=p' }, JSON.stringify(base), api(() => att));
    expect(o.exitCode).to.equal(0);
    expect((calls[0] as { body: { namespace?: string } }).body.namespace).to.equal('shop');
  });

  it('maps daemon errors: absent 11 (STATUS 50), invalid 7, not found 3, other 100; error JSON carries the config version', async () => {
    const cases: Array<[PodnetError, number]> = [
      [new PodnetError(ErrorCode.Precondition, 'no podnet daemon is listening on /x'), 11],
      [new PodnetError(ErrorCode.InvalidArgument, 'invalid label key'), 7],
      [new PodnetError(ErrorCode.NotFound, 'network namespace /proc/42/ns/net does not exist'), 3],
      [new PodnetError(ErrorCode.Exhausted, 'subnet exhausted'), 100],
    ];
    for (const [err, code] of cases) {
      const o = await runPlugin(env, JSON.stringify({ ...base, cniVersion: '1.0.0' }), api(() => err));
      expect(o.exitCode).to.equal(1);
      const j = JSON.parse(o.stdout);
      expect(j.code).to.equal(code);
      expect(j.cniVersion).to.equal('1.0.0');
      expect(j.msg).to.include(err.message);
    }
    const s = await runPlugin({ CNI_COMMAND: 'STATUS' }, JSON.stringify(base), api(() => cases[0]![0]));
    expect(JSON.parse(s.stdout).code).to.equal(50);
    const old = await runPlugin({ CNI_COMMAND: 'STATUS' }, JSON.stringify({ ...base, cniVersion: '1.0.0' }), api(() => ({})));
    expect(JSON.parse(old.stdout).code).to.equal(1);
  });

  it('DEL and GC print nothing on success; CHECK needs a prevResult and compares it', async () => {
    const del = await runPlugin({ ...env, CNI_COMMAND: 'DEL', CNI_NETNS: '' }, JSON.stringify(base), api(() => ({ removed: undefined })));
    expect(del).to.deep.equal({ stdout: '', exitCode: 0 });
    expect(calls[0]).to.deep.include({ method: 'DELETE', body: { containerId: 'c1', ifname: 'eth0' } });
    const gc = await runPlugin({ CNI_COMMAND: 'GC', CNI_PATH: '/x' }, JSON.stringify({ ...base, 'cni.dev/valid-attachments': [{ containerID: 'c1', ifname: 'eth0' }] }), api(() => ({ removed: [] })));
    expect(gc).to.deep.equal({ stdout: '', exitCode: 0 });
    expect(calls[1]!.body).to.deep.equal({ network: 'podnet', valid: [{ containerId: 'c1', ifname: 'eth0' }] });
    const noPrev = await runPlugin({ ...env, CNI_COMMAND: 'CHECK' }, JSON.stringify(base), api(() => att));
    expect(JSON.parse(noPrev.stdout).code).to.equal(7);
    const ok = await runPlugin({ ...env, CNI_COMMAND: 'CHECK' }, JSON.stringify({ ...base, prevResult: buildAddResult('1.1.0', att) }), api(() => att));
    expect(ok).to.deep.equal({ stdout: '', exitCode: 0 });
    const moved = await runPlugin({ ...env, CNI_COMMAND: 'CHECK' }, JSON.stringify({ ...base, prevResult: buildAddResult('1.1.0', { ...att, ip: '10.244.1.6' }) }), api(() => att));
    expect(JSON.parse(moved.stdout).code).to.equal(101);
  });
});

describe('cni/install and attachment names', () => {
  it('writes an executable launcher, the conflist, and links the chained plugins it lacks', () => {
    const d = mkdtempSync(join(tmpdir(), 'podnet-cni-unit-'));
    try {
      const from = join(d, 'lib');
      const main = join(d, 'main.js');
      writeFileSync(main, '');
      require_dir(from, ['portmap', 'bandwidth']);
      const o = { confDir: join(d, 'net.d'), binDir: join(d, 'bin'), file: '10-podnet.conflist', name: 'podnet', cniVersion: '1.0.0', node: 'n1', device: 'tap' as const, portmap: true, bandwidth: true, pluginsFrom: from, pluginMain: main, nodePath: '/usr/bin/node' };
      const r = installCni(o);
      expect(statSync(r.binary).mode & 0o111).to.equal(0o111);
      expect(readFileSync(r.binary, 'utf8')).to.include(`exec '/usr/bin/node' '${main}' "$@"`);
      expect(readlinkSync(join(o.binDir, 'portmap'))).to.equal(join(from, 'portmap'));
      expect(lstatSync(join(o.binDir, 'bandwidth')).isSymbolicLink()).to.equal(true);
      expect(JSON.parse(readFileSync(r.conflist, 'utf8'))).to.deep.equal(conflist(o));
      expect(conflist(o).plugins).to.deep.equal([{ type: 'podnet-cni', device: 'tap', node: 'n1' }, { type: 'portmap', capabilities: { portMappings: true } }, { type: 'bandwidth', capabilities: { bandwidth: true } }]);
      expect(installCni(o).linked).to.deep.equal([]); // again: already there
      expect(() => installCni({ ...o, cniVersion: '0.4.0' })).to.throw(/--cni-version/);
      expect(() => installCni({ ...o, binDir: join(d, 'bin2'), pluginsFrom: join(d, 'none') })).to.throw(/portmap plugin/);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('gives every container ID and interface a distinct valid pod name', () => {
    const a = attachmentName('default-c1', 'eth0');
    expect(a).to.match(/^cni-default-c1-[0-9a-f]{8}$/);
    expect(attachmentName('default-c1', 'net1')).to.not.equal(a);
    const long = attachmentName('A'.repeat(64) + '_x.y', 'eth0');
    expect(long).to.match(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/);
    expect(attachmentName('___', 'eth0')).to.match(/^cni-[0-9a-f]{8}$/);
    expect(() => validateAttachment({ containerId: 'c', ifname: '..', netns: '/x' }, true)).to.throw(/ifname/);
    expect(() => validateAttachment({ containerId: 'c', ifname: 'eth0' }, true)).to.throw(/netns/);
    expect(validateAttachment({ containerId: 'c', ifname: 'eth0' }, false).netns).to.equal('');
  });
});

function require_dir(dir: string, files: string[]): void {
  mkdirSync(dir, { recursive: true });
  for (const f of files) writeFileSync(join(dir, f), '');
}
