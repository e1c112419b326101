import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CtStatus, TcpState } from '../../../src/nat/conntrack.js';
import { openSharedConntrack, SHARED_HEADER_BYTES } from '../../../src/nat/shared.js';
import { REPO_ROOT } from '../../../src/topology/topology.js';

const WRITER = join(REPO_ROOT, 'test/fixtures/ct-writer.mjs');

/** Runs the writer until it has filled the table, then kills it with SIGKILL (no chance to save anything). */
async function writeAndKill(path: string, max: number, count: number, base: number): Promise<void> {
  const child = spawn(process.execPath, [WRITER, path, String(max), String(count), String(base)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    child.on('exit', (c) => reject(new Error(`writer exited ${c}`)));
  });
  const gone = new Promise((r) => child.on('exit', r));
  child.kill('SIGKILL');
  await gone;
}

describe('conntrack in a shared file (survives the process)', function () {
  this.timeout(30_000);
  let dir = '';
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'podnet-ct-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('a table written by a process killed with SIGKILL is taken over whole by the next one', async () => {
    const path = join(dir, 'ct');
    await writeAndKill(path, 1024, 300, 1000);
    // The new process's clock started 50 s later: expiry times move by -50 s onto its clock.
    const { ct, restore } = openSharedConntrack(path, { max: 1024 }, 0, 1050);
    expect(restore).to.include({ restored: 300, expired: 0, discarded: 0, fresh: false });
    expect(ct.size).to.equal(300);
    expect(ct.dnatCount).to.equal(300);
    for (let i = 0; i < 300; i++) {
      const ref = ct.lookup(6, 0x0af40102, 0x0a60000a, 10000 + i, 80, 0);
      expect(ref, `connection ${i}`).to.be.at.least(0);
      expect(ref & 1).to.equal(0);
      const id = ref >> 1;
      expect(ct.tcpState(id)).to.equal(TcpState.Established);
      expect(ct.status(id) & CtStatus.Assured).to.not.equal(0);
      expect(ct.expiresAt(id)).to.equal(432000 - 50);
      // The reply tuple (the NAT decision) is found too, as the reply direction.
      expect(ct.lookup(6, 0x0af40203, 0x0af40102, 8080, 10000 + i, 0)).to.equal(ref + 1);
    }
    // New connections take free ids and never clash with the restored ones.
    const id = ct.create(6, 0x0af40109, 0x0a60000a, 999, 80, 0x0af40203, 0x0af40109, 8080, 999, 0);
    expect(id).to.equal(300);
    expect(ct.size).to.equal(301);
  });

  it('entries whose timeout ran out while no daemon ran are freed, not restored', async () => {
    const path = join(dir, 'ct');
    await writeAndKill(path, 256, 10, 0);
    const { ct, restore } = openSharedConntrack(path, { max: 256 }, 10, 432000);
    expect(restore).to.include({ restored: 0, expired: 10, discarded: 0 });
    expect(ct.size).to.equal(0);
  });

  it('a record torn by a crash (its stored hash no longer matches its tuple) is discarded; the others are kept', async () => {
    const path = join(dir, 'ct');
    await writeAndKill(path, 256, 20, 0);
    const buf = readFileSync(path);
    // Record 7, word 1 (ORIGINAL destination): as if the process died while rewriting it.
    buf.writeInt32LE(0x01020304, SHARED_HEADER_BYTES + 7 * 64 + 4);
    writeFileSync(path, buf);
    const { ct, restore } = openSharedConntrack(path, { max: 256 }, 0, 0);
    expect(restore).to.include({ restored: 19, discarded: 1 });
    expect(ct.lookup(6, 0x0af40102, 0x0a60000a, 10007, 80, 0)).to.equal(-1);
    expect(ct.lookup(6, 0x0af40102, 0x0a60000a, 10008, 80, 0)).to.be.at.least(0);
  });

  for (const [what, mutate, reason] of [
    ['another layout version', (b: Buffer) => b.writeInt32LE(99, 4), /layout version 99/],
    ['a corrupted header', (b: Buffer) => b.writeInt32LE(b.readInt32LE(16) ^ 1, 16), /checksum/],
    ['foreign bytes', (b: Buffer) => b.writeInt32LE(0x11223344, 0), /magic/],
  ] as const) {
    it(`a file with ${what} is discarded with its records, never trusted`, async () => {
      const path = join(dir, 'ct');
      await writeAndKill(path, 256, 20, 0);
      const buf = readFileSync(path);
      mutate(buf);
      writeFileSync(path, buf);
      const { ct, restore } = openSharedConntrack(path, { max: 256 }, 0, 0);
      expect(restore.fresh).to.equal(true);
      expect(restore.discardedReason).to.match(reason);
      expect(restore.restored).to.equal(0);
      expect(ct.size).to.equal(0);
      expect(ct.lookup(6, 0x0af40102, 0x0a60000a, 10000, 80, 0)).to.equal(-1);
      // ...and the file is a valid, empty table of this build afterwards.
      expect(openSharedConntrack(path, { max: 256 }, 0, 0).restore).to.include({ fresh: false, restored: 0 });
    });
  }

  it('a table of another size is discarded and the file resized to this one', async () => {
    const path = join(dir, 'ct');
    await writeAndKill(path, 512, 20, 0);
    const { ct, restore } = openSharedConntrack(path, { max: 256 }, 0, 0);
    expect(restore.fresh).to.equal(true);
    expect(restore.discardedReason).to.match(/bytes/);
    expect(ct.size).to.equal(0);
    expect(statSync(path).size).to.equal(SHARED_HEADER_BYTES + 256 * 64);
  });
});
