import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execCapture, REPO_ROOT } from '../../../src/topology/topology.js';
import { freePort } from '../../helpers/net.js';

// The demo VMs' exec agent (src/demo/agent.ts) and its client, on loopback: no VM, no root.
const AGENT = join(REPO_ROOT, 'dist/src/demo/agent.js');
const CLIENT = join(REPO_ROOT, 'dist/src/demo/agent-client.js');
const TOKEN = '0123456789abcdef0123456789abcdef';

/** Starts the agent; resolves once it listens, or with its exit code and output if it exits first. */
function startAgent(tokenFile: string, port: number): Promise<{ child: ChildProcess; exit?: number; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [AGENT, '--listen', `127.0.0.1:${port}`, '--allow', '127.0.0.1', '--token-file', tokenFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => {
      output += d.toString();
      if (output.includes('agent listening')) resolve({ child, output });
    });
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    child.on('exit', (code) => resolve({ child, exit: code ?? -1, output }));
  });
}

function client(port: number, token: string, argv: string[]) {
  return execCapture('env', [`PODNET_AGENT_TOKEN=${token}`, process.execPath, CLIENT, '127.0.0.1', String(port), '--', ...argv]);
}

describe('demo exec agent', function () {
  this.timeout(30_000);
  let dir = '';
  const children: ChildProcess[] = [];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'podnet-agent-'));
  });
  after(() => {
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs a command only for a request with its token', async () => {
    const file = join(dir, 'token');
    writeFileSync(file, `${TOKEN}\n`, { mode: 0o600 });
    const port = await freePort();
    const agent = await startAgent(file, port);
    children.push(agent.child);
    expect(agent.exit, agent.output).to.equal(undefined);
    const okRun = await client(port, TOKEN, ['sh', '-c', 'echo out; echo err >&2; exit 3']);
    expect(okRun.code).to.equal(3);
    expect(okRun.stdout).to.equal('out\n');
    expect(okRun.stderr).to.equal('err\n');
    for (const token of ['', TOKEN.slice(1), 'f'.repeat(32)]) {
      const r = await client(port, token, ['true']);
      expect(r.code, `token ${JSON.stringify(token)}`).to.equal(255);
      expect(r.stderr).to.include('agent: wrong token');
    }
  });

  for (const [what, content] of [['an empty', ''], ['a short', 'abc\n']] as const) {
    it(`does not start with ${what} token file (it would match requests without a token)`, async () => {
      const file = join(dir, `token-${content.length}`);
      writeFileSync(file, content, { mode: 0o600 });
      const agent = await startAgent(file, await freePort());
      children.push(agent.child);
      expect(agent.exit, agent.output).to.not.equal(undefined);
      expect(agent.exit).to.not.equal(0);
      expect(agent.output).to.include('missing or shorter than 16 characters');
    });
  }

  it('does not start without its token file', async () => {
    const agent = await startAgent(join(dir, 'nope'), await freePort());
    children.push(agent.child);
    expect(agent.exit).to.not.equal(undefined).and.not.equal(0);
    expect(agent.output).to.include('ENOENT');
  });
});
