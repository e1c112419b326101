import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiServer } from '../../../src/daemon/api.js';
import { CLI } from '../../../src/topology/topology.js';

/**
 * Issue 11, item 4: every CLI output reaches a pipe whole, whatever its size. The CLI (the real one,
 * dist/src/cli/main.js, as `podnet` runs it) talks to the daemon's real API server class on a
 * socket of its own in a temporary run directory, serving listings of thousands of entries; its
 * stdout is a real pipe that the test reads only once the CLI had a chance to exit. A CLI that exits
 * before its output has drained leaves exactly one pipe's capacity (64 KB) behind.
 */
describe('CLI output through a pipe', function () {
  this.timeout(60_000);
  const dir = mkdtempSync(join(tmpdir(), 'podnet-cli-'));
  const sock = join(dir, 'big.sock');
  const api = new ApiServer();
  const services = Array.from({ length: 3000 }, (_, i) => ({
    name: `svc-${i}`,
    type: 'NodePort',
    clusterIp: `10.96.${i >> 8}.${i & 255}`,
    externalIps: [],
    ports: [{ port: 80, targetPort: 8080, protocol: 'tcp', nodePort: 30000 + (i % 2768) }],
    endpoints: [`10.244.1.${(i % 250) + 2}:8080`, `10.244.2.${(i % 250) + 2}:8080`],
  }));
  const conntrack = Array.from({ length: 5000 }, (_, i) => ({
    id: i,
    proto: 6,
    protoName: 'tcp',
    state: 'ESTABLISHED',
    timeout: 431999,
    assured: true,
    seenReply: true,
    snat: false,
    dnat: true,
    mark: 0,
    original: { src: '10.244.1.2', dst: '10.96.0.10', sport: 10000 + i, dport: 80 },
    reply: { src: '10.244.2.3', dst: '10.244.1.2', sport: 8080, dport: 10000 + i },
    packetsOriginal: 10,
    packetsReply: 9,
  }));

  before(async () => {
    api.route('GET', '/v1/services', () => services).route('GET', '/v1/conntrack', () => conntrack);
    await api.listen(sock);
  });

  after(async () => {
    await api.close(sock);
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs the CLI with stdout on a pipe nobody reads until the CLI exited (or 1 s passed); then reads it all. */
  async function throughPipe(args: string[]): Promise<{ code: number; out: Buffer }> {
    const child = spawn(process.execPath, [CLI, '--run-dir', dir, '--node', 'big', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.pause();
    const exited = new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 1000)))]);
    clearTimeout(timer);
    const chunks: Buffer[] = [];
    for await (const c of child.stdout) chunks.push(c as Buffer);
    return { code: await exited, out: Buffer.concat(chunks) };
  }

  /** The same command with stdout redirected to a file by the shell. */
  async function toFile(args: string[]): Promise<Buffer> {
    const file = join(dir, 'out');
    const code = await new Promise<number>((resolve) => {
      const child = spawn('sh', ['-c', `"${process.execPath}" "${CLI}" --run-dir "${dir}" --node big ${args.join(' ')} > "${file}"`], { stdio: 'inherit' });
      child.on('exit', (c) => resolve(c ?? 1));
    });
    expect(code).to.equal(0);
    return readFileSync(file);
  }

  it('service list --json: 3000 services, every byte, the same as to a file', async () => {
    const { code, out } = await throughPipe(['service', 'list', '--json']);
    expect(code).to.equal(0);
    const expected = JSON.stringify(services, null, 2) + '\n';
    expect(out.length).to.equal(Buffer.byteLength(expected));
    expect(out.length).to.be.greaterThan(8 * 65536);
    expect(out.toString()).to.equal(expected);
    expect(out.equals(await toFile(['service', 'list', '--json']))).to.equal(true);
  });

  it('service list as a table: 3000 rows and the header', async () => {
    const { code, out } = await throughPipe(['service', 'list']);
    expect(code).to.equal(0);
    const lines = out.toString().trimEnd().split('\n');
    expect(lines).to.have.length(3001);
    expect(lines[3000]).to.match(/^svc-2999\s/);
    expect(out.equals(await toFile(['service', 'list']))).to.equal(true);
  });

  it('conntrack list: 5000 entries, one line each', async () => {
    const { code, out } = await throughPipe(['conntrack', 'list']);
    expect(code).to.equal(0);
    const lines = out.toString().trimEnd().split('\n');
    expect(lines).to.have.length(5000);
    expect(lines[4999]).to.include('sport=14999');
    const json = await throughPipe(['conntrack', 'list', '--json']);
    expect(JSON.parse(json.out.toString())).to.deep.equal(conntrack);
  });

  it('a reader that stops early (head) ends the CLI quietly', async () => {
    const r = await new Promise<{ code: number; stderr: string; stdout: string }>((resolve) => {
      const child = spawn('sh', ['-c', `"${process.execPath}" "${CLI}" --run-dir "${dir}" --node big service list --json | head -c 100`], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('exit', (c) => resolve({ code: c ?? 1, stdout, stderr }));
    });
    expect(r.code).to.equal(0);
    expect(r.stdout.startsWith('[\n  {')).to.equal(true);
    expect(r.stderr).to.equal('');
  });
});
