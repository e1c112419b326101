// Integration tests for the addon's batched UDP socket (native-bindings/udp.cc) through
// src/io/udpsocket.ts and NativeUdpTransport (src/io/udp.ts).
//
// Needs root. Everything runs in a private namespace `pnudp-<pid>` (its loopback, and a veth pair made
// inside it), never on the machine's interfaces: each scenario is a child node process entered into the
// namespace with nsenter (udp-child.ts), which reports what it saw as JSON; the assertions are here.
// The namespace is removed in after(), whatever happened. No timing thresholds: batching is made
// certain by letting datagrams queue in the kernel before reading starts.

import { expect } from 'chai';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const NS = `pnudp-${process.pid}`;
const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'udp-child.js');
const LO = 0x7f000001;

function run(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${err.stderr?.trim() || err.message}`);
  }
}

function tryRun(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const ipNs = (...args: string[]): string => run('ip', ['-n', NS, ...args]);

const children = new Set<ChildProcess>();

/** Runs one scenario of udp-child.js inside the namespace and returns its RESULT. */
function scenario<T = any>(name: string): Promise<T> {
  const child = spawn('nsenter', [`--net=/run/netns/${NS}`, process.execPath, CHILD, name], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      children.delete(child);
      const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || line === undefined) {
        reject(new Error(`scenario ${name} exited ${code ?? signal}:\n${stderr.trim()}\n${stdout.slice(0, 2000)}`));
        return;
      }
      resolve(JSON.parse(line.slice('RESULT '.length)) as T);
    });
  });
}

describe('native UDP socket (integration, needs root)', function () {
  let txResult: Promise<any> | undefined;
  const txBatch = (): Promise<any> => (txResult ??= scenario('tx-batch'));

  before(function () {
    if (process.getuid?.() !== 0) this.skip();
    run('ip', ['netns', 'add', NS]);
    ipNs('link', 'set', 'lo', 'up');
    // A link whose far end never answers ARP: packets to 10.77.0.2 wait in the neighbour queue.
    ipNs('link', 'add', 'pnudp0', 'type', 'veth', 'peer', 'name', 'pnudp1');
    ipNs('addr', 'add', '10.77.0.1/24', 'dev', 'pnudp0');
    ipNs('link', 'set', 'pnudp0', 'up');
    ipNs('link', 'set', 'pnudp1', 'up');
  });

  after(function () {
    for (const c of children) {
      if (c.pid !== undefined) {
        try {
          process.kill(c.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    tryRun('ip', ['netns', 'del', NS]); // takes the veth pair with it
  });

  it('receives thousands of datagrams in batches, with lengths, source addresses and ports', async function () {
    const r = await scenario('rx-batch');
    expect(r.sendErrors).to.deep.equal([0, 0, 0]);
    expect(r.rcvbuf, 'SO_RCVBUFFORCE as root: 2 x 4 MiB').to.be.at.least(4 << 20);
    expect(r.sndbuf).to.be.at.least(4 << 20);
    expect(r.problems, 'headroom untouched').to.deep.equal([]);
    const queued = 3 * 1000;
    expect(r.received).to.have.length(queued + 2000);

    // Phase 1 (queued before reading): every datagram once, intact, with its sender's address and port.
    const seen = new Set<string>();
    for (const [id, seq, len, srcIp, srcPort, ok] of r.received.slice(0, queued)) {
      const key = `${id}/${seq}`;
      expect(seen.has(key), `duplicate ${key}`).to.equal(false);
      seen.add(key);
      expect(ok, `content of ${key}`).to.equal(true);
      expect(len, `length of ${key}`).to.equal(r.lens[seq]);
      expect(srcIp, `source of ${key}`).to.equal(r.expectedSrc[id].ip);
      expect(srcPort, `source port of ${key}`).to.equal(r.expectedSrc[id].port);
    }
    expect(seen.size).to.equal(queued);
    expect(r.expectedSrc.map((s: { ip: number }) => s.ip)).to.deep.equal([LO, LO + 1, LO + 2]);
    expect(r.expectedSrc[0].port).to.equal(40001);
    expect(r.expectedSrc[1].port).to.equal(40002);
    // Per-sender order is kept.
    for (const id of [0, 1, 2]) {
      const seqs = r.received.slice(0, queued).filter((x: number[]) => x[0] === id).map((x: number[]) => x[1]);
      expect(seqs).to.deep.equal([...seqs].sort((a: number, b: number) => a - b));
    }
    expect(r.afterQueued.rxFrames).to.equal(queued);
    expect(r.afterQueued.rxBatches).to.equal(r.batchesQueued);
    expect(r.afterQueued.rxBatches, 'batched').to.be.lessThan(r.afterQueued.rxFrames);
    expect(r.afterQueued.rxBatches).to.be.at.least(Math.ceil(queued / 64));
    expect(r.afterQueued.rxCalls, 'one recvmmsg per batch, plus the empty ones').to.be.lessThan(r.afterQueued.rxFrames);

    // Phase 2 (a separate sender process while reading runs).
    expect(r.live.code).to.equal(0);
    expect(r.live.errors).to.equal(0);
    const live = r.received.slice(queued);
    expect(new Set(live.map((x: number[]) => x[1])).size).to.equal(2000);
    for (const [id, , len, srcIp, srcPort, ok] of live) {
      expect([id, len, srcIp, srcPort, ok]).to.deep.equal([9, 40, LO, r.live.port, true]);
    }

    for (const n of r.batches) expect(n).to.be.within(1, 64);
    expect(r.batches.reduce((a: number, b: number) => a + b, 0)).to.equal(queued + 2000);
    expect(r.stats.rxFrames).to.equal(queued + 2000);
    expect(r.stats.rxBatches).to.equal(r.batches.length);
    expect(r.stats.rxErrors).to.equal(0);
    expect(r.stats.rxTruncated).to.equal(0);
  });

  it('sendBatch delivers many datagrams in one call, and the buffers may be reused as soon as it returns', async function () {
    const r = await txBatch();
    expect(r.sent).to.equal(r.N);
    expect(r.txFrames).to.equal(r.N);
    expect(r.txCalls, '1000 datagrams in sendmmsg calls of up to 256').to.equal(Math.ceil(r.N / 256));
    // Every datagram arrived once with its original bytes, though the sources were overwritten with 0xee
    // right after sendBatch returned, at the right receiver and from the socket's port.
    expect(r.received).to.equal(r.N);
    expect(r.distinct).to.equal(r.N);
    expect(r.mismatches).to.deep.equal([]);
  });

  it('sendBatch counts out-of-bounds and refused datagrams in txErrors and sends the rest', async function () {
    const r = await txBatch();
    // [good, out of bounds, 70000 bytes (EMSGSIZE), unroutable (ENETUNREACH), good]
    expect(r.bad.sent).to.equal(2);
    expect(r.bad.txFrames).to.equal(2);
    expect(r.bad.txErrors).to.equal(3);
    expect(r.bad.txDropped).to.equal(0);
    expect(r.bad.good).to.deep.equal(r.bad.expected);
  });

  it('counts a full send buffer (EAGAIN) as txDropped for the rest of the call, without throwing', async function () {
    const r = await scenario('send-buffer-full');
    expect(r.sent).to.be.at.least(1).and.lessThan(r.N);
    expect(r.stats.txFrames).to.equal(r.sent);
    expect(r.stats.txDropped).to.equal(r.N - r.sent);
    expect(r.stats.txErrors).to.equal(0);
  });

  it('drops datagrams larger than a slot, counts them, and keeps the rest of the batch in order', async function () {
    const r = await scenario('truncation');
    expect(r.errors).to.equal(0);
    const fits = r.sizes.map((len: number, seq: number) => ({ seq, len })).filter((x: { len: number }) => x.len <= r.capacity);
    expect(r.delivered).to.deep.equal(fits.map((x: { seq: number; len: number }) => ({ ...x, ok: true })));
    expect(r.delivered.map((d: { len: number }) => d.len)).to.deep.equal([100, 128, 50, 64]); // 128 fits exactly
    expect(r.stats.rxTruncated).to.equal(3);
    expect(r.stats.rxErrors).to.equal(3);
    expect(r.stats.rxFrames).to.equal(4);
    expect(r.batches).to.deep.equal([4]); // one recvmmsg: the survivors were moved down into slots 0..3
    expect(r.problems).to.deep.equal([]);
  });

  it('bind errors carry code, errno, syscall and address', async function () {
    const r = await scenario('bind-errors');
    const inUse = (e: any, port: number, ip = '127.0.0.1'): void => {
      expect(e).to.include({ thrown: true, isUdpSocketError: true, name: 'UdpSocketError', code: 'EADDRINUSE', errno: 98, syscall: 'bind', address: `${ip}:${port}` });
      expect(e.message).to.include(`${ip}:${port}`).and.include('EADDRINUSE');
    };
    inUse(r.inUseByDgram, r.heldPort);
    inUse(r.inUseByNative, r.nativePort);
    inUse(r.wildcardOverSpecific, r.nativePort, '0.0.0.0');
    inUse(r.transport, r.nativePort);
    expect(r.notAvailable).to.include({ thrown: true, isUdpSocketError: true, code: 'EADDRNOTAVAIL', errno: 99, syscall: 'bind', address: '192.0.2.1:4789' });
    expect(r.malformed).to.include({ thrown: true, isUdpSocketError: true, code: 'EINVAL', errno: 22, syscall: 'inet_pton', address: '10.0.0.256:4789' });
    expect(r.badPort).to.include({ thrown: true, name: 'RangeError' });
    expect(r.badPort.message).to.match(/port/);
    expect(r.badHeadroom).to.include({ thrown: true, name: 'RangeError' });
    expect(r.badHeadroom.message).to.match(/headroom/);
    expect(r.badBatch).to.include({ thrown: true, name: 'RangeError' });
    expect(r.badBatch.message).to.match(/batch/);
  });

  it('close() twice is safe, also from inside onBatch; a closed socket counts sends as errors and frees its port', async function () {
    const r = await scenario('closing');
    expect(r.fdBefore).to.be.at.least(0);
    expect(r.fdAfter).to.equal(-1);
    expect(r.secondClose).to.deep.equal({ thrown: false });
    expect(r.startAfter).to.include({ thrown: true });
    expect(r.startAfter.message).to.match(/closed/);
    expect(r.sentAfter).to.equal(0);
    expect(r.stats.txErrors).to.equal(2);
    expect(r.rebound).to.equal(r.port);
    expect(r.calls).to.equal(1);
    expect(r.closeInside).to.deep.equal({ thrown: false });
    expect(r.closeAfter).to.deep.equal({ thrown: false });
    expect(r.fdAfterInside).to.equal(-1);
    expect(r.transportSecond).to.equal('ok');
    expect(r.transportSendAfterClose).to.equal(false);
  });

  it('NativeUdpTransport queues sends until flush(), receives into its ring, and replies from the ring in place', async function () {
    const r = await scenario('transport');
    // Queued, not sent, until flush(); then one sendmmsg.
    expect(r.queuedResults.every((x: boolean) => x)).to.equal(true);
    expect(r.queued).to.equal(r.N);
    expect(r.txBeforeFlush).to.equal(0);
    expect(r.flushed).to.equal(r.N);
    expect(r.txCalls).to.equal(1);
    // B answered each datagram from its ring slot with a prefix written into the headroom, queued by
    // reference and flushed before its onBatch returned; A got them from B's port. The source buffer was
    // overwritten right after flush().
    expect(r.bQueuedAtEnd).to.equal(0);
    expect(r.bFlushed).to.equal(r.bStats.txFrames);
    const got = r.replies.map((x: { data: string }) => x.data);
    for (const x of r.replies) {
      expect(x.srcIp).to.equal('127.0.0.1');
      expect(x.srcPort).to.equal(r.bPort);
      expect(x.data.slice(0, 6)).to.equal('c0ffee'); // the prefix B wrote before the slot's datagram
    }
    expect(got.map((d: string) => d.slice(8)).sort()).to.deep.equal([...r.expected].sort());
    expect(r.bBatches.reduce((a: number, b: number) => a + b, 0)).to.equal(r.bStats.rxFrames);
    // A queue of 8 flushed itself twice for 20 sends, leaving 4.
    expect(r.fullQueue).to.deep.equal({ queued: 4, txFrames: 16, txCalls: 2 });
    // Without flush(), the microtask sends it before the event loop goes on.
    expect(r.auto).to.deep.equal({ queuedSync: 1, queuedAfter: 0, txFrames: 1 });
  });
  it('NativeUdpTransport with flowPorts sends each datagram from the source port it is given (raw socket), bytes intact', async function () {
    const r = await scenario('flow-ports');
    expect(r.flowPorts).to.equal(true);
    expect(r.plainFlowPorts).to.equal(false);
    expect(r.flushed).to.equal(r.sent.length);
    expect(r.aStats.txCalls).to.equal(1); // still one sendmmsg for the batch
    expect(r.aStats.txErrors).to.equal(0);
    const fromA = r.got.filter((g: { srcPort: number }) => g.srcPort !== r.plainPort);
    for (const g of r.got) expect(g.srcIp).to.equal('127.0.0.1');
    expect(fromA.map((g: { srcPort: number; data: string }) => `${g.srcPort} ${g.data}`).sort()).to.deep.equal(
      r.sent.map((s: { srcPort: number; data: string }) => `${s.srcPort} ${s.data}`).sort(),
    );
    // Without flowPorts the port given to send() is ignored: the datagram comes from the bound port.
    expect(r.got.filter((g: { srcPort: number }) => g.srcPort === r.plainPort)).to.have.length(1);
  });

  it('UDP GSO: a run leaves as one buffer and arrives as its datagrams, in order with the flow\'s single ones, from one port; UDP GRO hands it over whole', async function () {
    const r = await scenario('gso-gro');
    expect(r.gso).to.equal(true);
    expect(r.gro).to.equal(true);
    expect(r.ports).to.have.length(4);
    for (const p of r.ports) expect(p).to.be.within(1024, 65535);
    expect(r.flushedPlain).to.equal(3); // three queue entries, the run one of them
    expect(r.aStats.txErrors).to.equal(0);
    expect(r.runs).to.equal(2);
    expect(r.datagrams).to.equal(20);
    // The plain socket: single, the ten datagrams of the run in order, single; all from one port.
    expect(r.plainGot.map((g: { len: number }) => g.len)).to.deep.equal([100, ...Array(9).fill(1000), 500, 100]);
    expect(r.plainGot.slice(1, 11).map((g: { first: number }) => g.first)).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    for (const g of r.plainGot) expect(g.srcPort).to.equal(r.port);
    // The GRO socket: the run in one slot, with its segment size.
    expect(r.groGot).to.deep.include({ len: 9500, seg: 1000 });
    expect(r.groRunIntact).to.equal(true);
  });
});
