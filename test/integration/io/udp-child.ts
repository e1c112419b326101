// Scenarios for udp.test.ts, run inside the test's network namespace (nsenter) by the parent test:
// `node udp-child.js <scenario>`. Each scenario exercises the native UDP socket against plain `dgram`
// sockets on the namespace's loopback and prints one line `RESULT <json>` with what it observed; the
// parent makes the assertions. Waits have deadlines only so a broken build cannot hang the suite.

import { spawn } from 'node:child_process';
import dgram from 'node:dgram';

import type { UdpTransport } from '../../../src/dataplane/vxlan.js';
import { NativeUdpTransport } from '../../../src/io/udp.js';
import { UdpSocket, UdpSocketError } from '../../../src/io/udpsocket.js';
import { ipv4ToString as ipv4String, tryParseIpv4 as ipv4Number } from '../../../src/packet/addr.js';

const JUNK = 0xa5;
const LO = ipv4Number('127.0.0.1');

async function until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function dgramSocket(address: string, port = 0): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20, sendBufferSize: 8 << 20 });
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(port, address, () => {
      s.off('error', reject);
      resolve();
    });
  });
  return s;
}

/** Sends every buffer and waits for all the send callbacks; returns how many failed. */
async function sendAll(s: dgram.Socket, msgs: Buffer[], port: number, address: string): Promise<number> {
  let done = 0;
  let errors = 0;
  await new Promise<void>((resolve) => {
    for (const m of msgs) {
      s.send(m, port, address, (e) => {
        if (e) errors++;
        if (++done === msgs.length) resolve();
      });
    }
  });
  return errors;
}

/** Deterministic bytes of datagram `seq` from sender `id`: header [seq u32][id u8], then a pattern. */
function datagram(id: number, seq: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  b.writeUInt32BE(seq, 0);
  b[4] = id;
  for (let i = 5; i < len; i++) b[i] = (seq * 31 + id * 7 + i) & 255;
  return b;
}

function checkDatagram(b: Buffer): boolean {
  if (b.length < 5) return false;
  return datagram(b[4]!, b.readUInt32BE(0), b.length).equals(b);
}

/** Headroom bytes of the first `n` slots still JUNK (the addon never writes before a datagram). */
function headroomProblems(s: UdpSocket, n: number): string[] {
  const { buffer, slotSize, headroom } = s.rx;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    for (let j = i * slotSize; j < i * slotSize + headroom; j++) {
      if (buffer[j] !== JUNK) {
        out.push(`slot ${i}: headroom byte ${j - i * slotSize} was written`);
        break;
      }
    }
  }
  return out;
}

// ---- scenarios -------------------------------------------------------------------

const BATCH = 64;
const PER_SENDER = 1000;
const LIVE = 2000;

/** Thousands of datagrams from three dgram senders (two fixed ports, one ephemeral; three source addresses). */
async function rxBatch(): Promise<unknown> {
  const sock = UdpSocket.bind('127.0.0.1', 0, { slots: BATCH });
  sock.rx.buffer.fill(JUNK);
  const senders = [await dgramSocket('127.0.0.1', 40001), await dgramSocket('127.0.0.2', 40002), await dgramSocket('127.0.0.3')];
  const expectedSrc = senders.map((s) => ({ ip: ipv4Number(s.address().address), port: s.address().port }));
  const lenOf = (seq: number): number => 8 + ((seq * 7) % 500);

  const received: Array<[id: number, seq: number, len: number, srcIp: number, srcPort: number, ok: boolean]> = [];
  const batches: number[] = [];
  const problems: string[] = [];
  const onBatch = (n: number): void => {
    batches.push(n);
    problems.push(...headroomProblems(sock, n));
    const { buffer, lengths, srcIps, srcPorts } = sock.rx;
    for (let i = 0; i < n; i++) {
      const off = sock.payloadOffset(i);
      const b = buffer.subarray(off, off + lengths[i]!);
      received.push([b[4]!, b.readUInt32BE(0), lengths[i]!, srcIps[i]!, srcPorts[i]!, checkDatagram(b)]);
    }
  };

  // Phase 1: everything is queued in the kernel before reading starts, so batching is certain.
  const sendErrors = await Promise.all(
    senders.map((s, id) => sendAll(s, Array.from({ length: PER_SENDER }, (_, seq) => datagram(id, seq, lenOf(seq))), sock.port, '127.0.0.1')),
  );
  sock.start(onBatch);
  const queued = senders.length * PER_SENDER;
  await until(() => received.length >= queued, `${queued} queued datagrams`);
  const afterQueued = sock.stats();
  const batchesQueued = batches.length;

  // Phase 2: reading runs while a separate process in the namespace sends (all of it fits the receive
  // buffer, so none can be lost whatever the scheduling).
  const script = `const s = require('node:dgram').createSocket('udp4'); let done = 0, errors = 0;
    s.bind(0, '127.0.0.1', () => { for (let i = 0; i < ${LIVE}; i++) {
      const b = Buffer.alloc(40); b.writeUInt32BE(i, 0); b[4] = 9; for (let j = 5; j < 40; j++) b[j] = (i * 31 + 63 + j) & 255;
      s.send(b, ${sock.port}, '127.0.0.1', (e) => { if (e) errors++; if (++done === ${LIVE}) { console.log(JSON.stringify({ errors, port: s.address().port })); s.close(); } }); } });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const live = JSON.parse(out.trim() || '{}') as { errors?: number; port?: number };
  await until(() => received.length >= queued + LIVE, `${LIVE} live datagrams`);
  const stats = sock.stats();
  sock.close();
  for (const s of senders) s.close();
  return {
    expectedSrc,
    lens: Array.from({ length: PER_SENDER }, (_, seq) => lenOf(seq)),
    sendErrors,
    received,
    batches,
    batchesQueued,
    afterQueued,
    stats,
    problems,
    rcvbuf: sock.rcvbuf,
    sndbuf: sock.sndbuf,
    live: { code, ...live },
  };
}

/** sendBatch: many datagrams from shared and separate buffers in one call; buffers overwritten right after. */
async function txBatch(): Promise<unknown> {
  const sock = UdpSocket.bind('127.0.0.1', 0);
  const rx1 = await dgramSocket('127.0.0.1');
  const rx2 = await dgramSocket('127.0.0.1');
  const got: Array<{ to: number; from: string; port: number; data: Buffer }> = [];
  rx1.on('message', (m, r) => got.push({ to: 1, from: r.address, port: r.port, data: m }));
  rx2.on('message', (m, r) => got.push({ to: 2, from: r.address, port: r.port, data: m }));

  const N = 1000;
  const big = Buffer.alloc(N * 64);
  const small = [Buffer.alloc(1024), Buffer.alloc(1024)];
  const bufs: Buffer[] = [];
  const offs = new Uint32Array(N);
  const lens = new Uint32Array(N);
  const dstIps = new Uint32Array(N).fill(LO);
  const dstPorts = new Uint16Array(N);
  const expected = new Map<number, { to: number; data: Buffer }>();
  for (let i = 0; i < N; i++) {
    const len = 5 + (i % 60);
    let buf: Buffer;
    let off: number;
    if (i % 100 === 50) {
      buf = small[Math.floor(i / 100) & 1]!; // a few frames from two other buffers, interleaved
      off = Math.floor(i / 100) * 64 + 3;
    } else {
      buf = big;
      off = i * 64;
    }
    const d = datagram(1, i, len);
    d.copy(buf, off);
    bufs.push(buf);
    offs[i] = off;
    lens[i] = len;
    const to = i % 2 === 0 ? 1 : 2;
    dstPorts[i] = (to === 1 ? rx1 : rx2).address().port;
    expected.set(i, { to, data: d });
  }
  const before = sock.stats();
  const sent = sock.sendBatch(bufs, offs, lens, dstIps, dstPorts, N);
  // The kernel has copied everything: scribble over the sources at once.
  big.fill(0xee);
  for (const b of small) b.fill(0xee);
  const after = sock.stats();
  await until(() => got.length >= N, `${N} datagrams at the receivers`);
  const mismatches: string[] = [];
  for (const g of got) {
    const seq = g.data.length >= 4 ? g.data.readUInt32BE(0) : -1;
    const e = expected.get(seq);
    if (e === undefined || !e.data.equals(g.data) || e.to !== g.to) mismatches.push(`datagram ${seq} to ${g.to}: ${g.data.toString('hex', 0, 16)}`);
    if (g.from !== '127.0.0.1' || g.port !== sock.port) mismatches.push(`datagram ${seq} from ${g.from}:${g.port}`);
  }
  const distinct = new Set(got.map((g) => g.data.readUInt32BE(0))).size;

  // Bad entries are counted and skipped; the good ones around them still go out.
  const good1 = datagram(2, 1, 20);
  const good2 = datagram(2, 2, 20);
  const huge = Buffer.alloc(70_000); // more than a UDP datagram can carry: EMSGSIZE
  const got2Before = got.length;
  const badBefore = sock.stats();
  const badSent = sock.sendBatch(
    [good1, good1, huge, good2, good2],
    Uint32Array.from([0, 10, 0, 0, 0]),
    Uint32Array.from([20, 20, huge.length, 20, 20]),
    Uint32Array.from([LO, LO, LO, ipv4Number('203.0.113.9'), LO]), // no route there: ENETUNREACH
    Uint32Array.from([rx1.address().port, rx1.address().port, rx1.address().port, 9, rx1.address().port]),
    5,
  );
  const badAfter = sock.stats();
  await until(() => got.length >= got2Before + 2, 'the two good datagrams');
  const good = got.slice(got2Before).map((g) => g.data.toString('hex'));
  sock.close();
  rx1.close();
  rx2.close();
  return {
    N,
    sent,
    txCalls: after.txCalls - before.txCalls,
    txFrames: after.txFrames - before.txFrames,
    received: got.length - 2,
    distinct,
    mismatches: mismatches.slice(0, 20),
    bad: {
      sent: badSent,
      txFrames: badAfter.txFrames - badBefore.txFrames,
      txErrors: badAfter.txErrors - badBefore.txErrors,
      txDropped: badAfter.txDropped - badBefore.txDropped,
      good,
      expected: [good1.toString('hex'), good2.toString('hex')],
    },
  };
}

/** Datagrams larger than the slot are dropped and counted; the rest of the batch is intact and in order. */
async function truncation(): Promise<unknown> {
  const sock = UdpSocket.bind('127.0.0.1', 0, { slots: 16, slotSize: 256, headroom: 128 });
  sock.rx.buffer.fill(JUNK);
  const tx = await dgramSocket('127.0.0.1');
  const sizes = [100, 200, 128, 129, 50, 1000, 64];
  const errors = await sendAll(tx, sizes.map((len, seq) => datagram(3, seq, len)), sock.port, '127.0.0.1');
  const delivered: Array<{ seq: number; len: number; ok: boolean }> = [];
  const problems: string[] = [];
  const batches: number[] = [];
  sock.start((n) => {
    batches.push(n);
    problems.push(...headroomProblems(sock, n));
    for (let i = 0; i < n; i++) {
      const off = sock.payloadOffset(i);
      const b = sock.rx.buffer.subarray(off, off + sock.rx.lengths[i]!);
      delivered.push({ seq: b.readUInt32BE(0), len: b.length, ok: checkDatagram(b) });
    }
  });
  await until(() => {
    const s = sock.stats();
    return s.rxFrames + s.rxTruncated >= sizes.length;
  }, 'all datagrams read');
  const stats = sock.stats();
  sock.close();
  tx.close();
  return { sizes, capacity: 256 - 128, errors, delivered, batches, problems, stats };
}

function describeError(f: () => unknown): unknown {
  try {
    f();
    return { thrown: false };
  } catch (e) {
    const r = e as Record<string, unknown>;
    return {
      thrown: true,
      isUdpSocketError: e instanceof UdpSocketError,
      name: (e as Error).name,
      message: (e as Error).message,
      code: r['code'],
      errno: r['errno'],
      syscall: r['syscall'],
      address: r['address'],
    };
  }
}

async function bindErrors(): Promise<unknown> {
  const holder = await dgramSocket('127.0.0.1');
  const heldPort = holder.address().port;
  const native = UdpSocket.bind('127.0.0.1', 0);
  const result = {
    heldPort,
    nativePort: native.port,
    inUseByDgram: describeError(() => UdpSocket.bind('127.0.0.1', heldPort)),
    inUseByNative: describeError(() => UdpSocket.bind('127.0.0.1', native.port)),
    wildcardOverSpecific: describeError(() => UdpSocket.bind('0.0.0.0', native.port)),
    notAvailable: describeError(() => UdpSocket.bind('192.0.2.1', 4789)),
    malformed: describeError(() => UdpSocket.bind('10.0.0.256', 4789)),
    badPort: describeError(() => UdpSocket.bind('127.0.0.1', 70000)),
    badHeadroom: describeError(() => UdpSocket.bind('127.0.0.1', 0, { slotSize: 256, headroom: 250 })),
    badBatch: describeError(() => UdpSocket.bind('127.0.0.1', 0, { slots: 8, batch: 9 })),
    transport: await NativeUdpTransport.bind(native.port, '127.0.0.1', () => {}).then(
      () => ({ thrown: false }),
      (e: unknown) => describeError(() => {
        throw e;
      }),
    ),
  };
  native.close();
  holder.close();
  return result;
}

async function closing(): Promise<unknown> {
  const sock = UdpSocket.bind('127.0.0.1', 0);
  const port = sock.port;
  const fdBefore = sock.fd;
  sock.close();
  const secondClose = describeError(() => sock.close());
  const startAfter = describeError(() => sock.start(() => {}));
  const b = Buffer.alloc(10);
  const sentAfter = sock.sendBatch([b, b], Uint32Array.from([0, 0]), Uint32Array.from([10, 10]), Uint32Array.from([LO, LO]), Uint16Array.from([9, 9]), 2);
  const stats = sock.stats();
  // The port is free again: the fd really was closed.
  const again = UdpSocket.bind('127.0.0.1', port);
  const rebound = again.port;

  // close() from inside onBatch: the rest of the batch is not read, nothing breaks, close again is a no-op.
  const tx = await dgramSocket('127.0.0.1');
  await sendAll(tx, [datagram(4, 0, 10), datagram(4, 1, 10), datagram(4, 2, 10)], again.port, '127.0.0.1');
  let calls = 0;
  let closeInside: unknown;
  again.start(() => {
    calls++;
    closeInside = describeError(() => again.close());
  });
  await until(() => calls > 0, 'a batch');
  await new Promise((r) => setTimeout(r, 50)); // a later readiness event would call again
  const closeAfter = describeError(() => again.close());
  tx.close();

  // The transport: close twice.
  const t = await NativeUdpTransport.bind(0, '127.0.0.1', () => {});
  await t.close();
  let transportSecond = 'ok';
  await t.close().catch((e: unknown) => (transportSecond = String(e)));
  return {
    fdBefore,
    fdAfter: sock.fd,
    secondClose,
    startAfter,
    sentAfter,
    stats,
    port,
    rebound,
    calls,
    closeInside,
    closeAfter,
    fdAfterInside: again.fd,
    transportSecond,
    transportSendAfterClose: t.send(b, 0, 10, LO, 9, 0),
  };
}

/** The send buffer fills (a neighbour that never answers ARP holds the packets): EAGAIN is counted as txDropped. */
async function sendBufferFull(): Promise<unknown> {
  const sock = UdpSocket.bind('10.77.0.1', 0, { bufferBytes: 1 }); // the kernel's minimum send buffer
  const N = 200;
  const buf = Buffer.alloc(1400, 1);
  const r = sock.sendBatch(
    new Array<Buffer>(N).fill(buf),
    new Uint32Array(N),
    new Uint32Array(N).fill(1400),
    new Uint32Array(N).fill(ipv4Number('10.77.0.2')),
    new Uint16Array(N).fill(4789),
    N,
  );
  const stats = sock.stats();
  sock.close();
  return { N, sent: r, stats, sndbuf: sock.sndbuf };
}

/**
 * NativeUdpTransport both ways, used as the VXLAN overlay uses it: B answers every datagram from its
 * receive ring in place (writes a 4-byte prefix into the headroom before it, queues the slot by
 * reference) and flushes before its onBatch returns.
 */
async function transport(): Promise<unknown> {
  const replies: Array<{ data: string; srcIp: string; srcPort: number }> = [];
  const a = await NativeUdpTransport.bind(0, '127.0.0.1', (ring, n) => {
    for (let i = 0; i < n; i++) {
      const off = i * ring.slotSize + ring.headroom;
      replies.push({ data: ring.buffer.toString('hex', off, off + ring.lengths[i]!), srcIp: ipv4String(ring.srcIps[i]!), srcPort: ring.srcPorts[i]! });
    }
  });
  const bBatches: number[] = [];
  let bFlushed = 0;
  let bQueuedAtEnd = -1;
  const b = await NativeUdpTransport.bind(
    0,
    '127.0.0.1',
    (ring, n) => {
      bBatches.push(n);
      for (let i = 0; i < n; i++) {
        const off = b.payloadOffset(i);
        ring.buffer.writeUInt32BE(0xc0ffee00 + i, off - 4);
        b.send(ring.buffer, off - 4, ring.lengths[i]! + 4, ring.srcIps[i]!, ring.srcPorts[i]!, 0);
      }
      bFlushed += b.flush();
      bQueuedAtEnd = b.queued;
    },
    { slots: 32 },
  );
  const check: UdpTransport = a; // NativeUdpTransport is a UdpTransport
  void check;

  // send() queues; nothing goes out before flush().
  const N = 100;
  const src = Buffer.alloc(N * 32);
  for (let i = 0; i < N; i++) datagram(5, i, 32).copy(src, i * 32);
  const before = a.stats();
  const queuedResults: boolean[] = [];
  for (let i = 0; i < N; i++) queuedResults.push(a.send(src, i * 32, 32, LO, b.port, 40000 + i));
  const queued = a.queued;
  const txBeforeFlush = a.stats().txFrames - before.txFrames;
  const flushed = a.flush();
  const afterFlush = a.stats();
  src.fill(0xee); // sendmmsg copied it
  await until(() => replies.length >= N, `${N} replies`);

  // A full queue flushes by itself first.
  const small = await NativeUdpTransport.bind(0, '127.0.0.1', () => {}, { txQueue: 8, autoFlush: false });
  const sBefore = small.stats();
  const buf = datagram(6, 0, 16);
  for (let i = 0; i < 20; i++) small.send(buf, 0, 16, LO, b.port, 0);
  const fullQueue = { queued: small.queued, txFrames: small.stats().txFrames - sBefore.txFrames, txCalls: small.stats().txCalls - sBefore.txCalls };
  small.flush();

  // Without flush(), the microtask safety net sends before the event loop goes on.
  const c0 = a.stats().txFrames;
  a.send(buf, 0, 16, LO, b.port, 0);
  const queuedSync = a.queued;
  await new Promise((r) => setImmediate(r));
  const auto = { queuedSync, queuedAfter: a.queued, txFrames: a.stats().txFrames - c0 };
  await until(() => replies.length >= N + 1, 'the reply to the auto-flushed datagram');

  const expected = Array.from({ length: N }, (_, i) => datagram(5, i, 32).toString('hex'));
  const result = {
    N,
    queuedResults,
    queued,
    txBeforeFlush,
    flushed,
    txCalls: afterFlush.txCalls - before.txCalls,
    replies: replies.slice(0, N),
    expected,
    bPort: b.port,
    bBatches,
    bFlushed,
    bQueuedAtEnd,
    bStats: b.stats(),
    fullQueue,
    auto,
  };
  await a.close();
  await b.close();
  await small.close();
  return result;
}

/**
 * Per-datagram source ports (NativeUdpTransport with flowPorts: a raw socket sends, the addon writes the
 * IPv4 + UDP headers): B records the source port and bytes of everything it receives. A transport
 * without flowPorts sends from its bound port whatever `send` is given.
 */
async function flowPorts(): Promise<unknown> {
  const got: Array<{ srcIp: string; srcPort: number; data: string }> = [];
  const b = await NativeUdpTransport.bind(0, '127.0.0.1', (ring, n) => {
    for (let i = 0; i < n; i++) {
      const off = i * ring.slotSize + ring.headroom;
      got.push({ srcIp: ipv4String(ring.srcIps[i]!), srcPort: ring.srcPorts[i]!, data: ring.buffer.toString('hex', off, off + ring.lengths[i]!) });
    }
  });
  const a = await NativeUdpTransport.bind(0, '127.0.0.1', () => {}, { flowPorts: true, autoFlush: false });
  const plain = await NativeUdpTransport.bind(0, '127.0.0.1', () => {}, { autoFlush: false });
  const ports = [32768, 40001, 50002, 60999];
  const sent: Array<{ srcPort: number; data: string }> = [];
  const src = Buffer.alloc(ports.length * 2 * 1400);
  let off = 0;
  for (let k = 0; k < 2; k++) {
    for (const [j, port] of ports.entries()) {
      const len = 100 + 400 * j + k; // up to 1301 bytes
      const d = datagram(7, j * 2 + k, len);
      d.copy(src, off);
      a.send(src, off, len, LO, b.port, port);
      sent.push({ srcPort: port, data: d.toString('hex') });
      off += len;
    }
  }
  const flushed = a.flush();
  const aStats = a.stats();
  plain.send(src, 0, 100, LO, b.port, 40001);
  plain.flush();
  await until(() => got.length >= sent.length + 1, `${sent.length + 1} datagrams`);
  const result = { flowPorts: a.flowPorts, plainFlowPorts: plain.flowPorts, flushed, aStats, sent, got, aPort: a.port, plainPort: plain.port };
  await a.close();
  await b.close();
  await plain.close();
  return result;
}

/**
 * UDP GSO out and UDP GRO in: A (flowPorts + 4 GSO sockets) queues a single datagram, a run of 10
 * datagrams of 1000 bytes (the last 500) as one buffer, and another single datagram, all from one
 * of its GSO ports, in that order. B (a plain socket) gets 12 datagrams, in order, each from that
 * port; C (with gro) gets the run as one slot whose segment size is 1000 (loopback passes the GSO
 * skb on as it is, as a veth does).
 */
async function gsoGro(): Promise<unknown> {
  const plainGot: Array<{ srcPort: number; len: number; first: number }> = [];
  const b = await NativeUdpTransport.bind(0, '127.0.0.1', (ring, n) => {
    for (let i = 0; i < n; i++) {
      const off = i * ring.slotSize + ring.headroom;
      plainGot.push({ srcPort: ring.srcPorts[i]!, len: ring.lengths[i]!, first: ring.buffer[off]! });
    }
  });
  const groGot: Array<{ len: number; seg: number; data: string }> = [];
  const c = await NativeUdpTransport.bind(
    0,
    '127.0.0.1',
    (ring, n) => {
      for (let i = 0; i < n; i++) {
        const off = i * ring.slotSize + ring.headroom;
        groGot.push({ len: ring.lengths[i]!, seg: ring.segSizes[i]!, data: ring.buffer.toString('hex', off, off + ring.lengths[i]!) });
      }
    },
    { gro: true, slotSize: 80 * 1024 },
  );
  const a = await NativeUdpTransport.bind(0, '127.0.0.1', () => {}, { flowPorts: true, gsoSockets: 4, autoFlush: false });
  const port = a.sourcePorts![2]!;
  const run = Buffer.alloc(9 * 1000 + 500);
  for (let k = 0; k < 10; k++) run.fill(k + 1, k * 1000, Math.min(run.length, (k + 1) * 1000));
  const single = Buffer.alloc(200, 0xee);
  const sendTo = async (dst: number) => {
    a.send(single, 0, 100, LO, dst, port);
    a.sendSegmented(run, 0, run.length, 1000, LO, dst, port);
    a.send(single, 100, 100, LO, dst, port);
    return a.flush();
  };
  const flushedPlain = await sendTo(b.port);
  const flushedGro = await sendTo(c.port);
  await until(() => plainGot.length >= 12, '12 datagrams at the plain socket');
  await until(() => groGot.reduce((n, g) => n + g.len, 0) >= run.length + 200, 'the run at the GRO socket');
  const result = {
    gso: a.sourcePorts !== undefined,
    gro: c.socket.gro,
    ports: [...a.sourcePorts!],
    port,
    flushedPlain,
    flushedGro,
    aStats: a.stats(),
    plainGot,
    groGot: groGot.map((g) => ({ len: g.len, seg: g.seg })),
    groRunIntact: groGot.some((g) => g.data === run.toString('hex')),
    runs: a.gsoRuns,
    datagrams: a.gsoDatagrams,
  };
  await a.close();
  await b.close();
  await c.close();
  return result;
}

const scenarios: Record<string, () => Promise<unknown>> = {
  'gso-gro': gsoGro,
  'rx-batch': rxBatch,
  'tx-batch': txBatch,
  truncation,
  'bind-errors': bindErrors,
  closing,
  'send-buffer-full': sendBufferFull,
  transport,
  'flow-ports': flowPorts,
};

const name = process.argv[2] ?? '';
const scenario = scenarios[name];
if (scenario === undefined) {
  console.error(`unknown scenario ${name}; one of ${Object.keys(scenarios).join(', ')}`);
  process.exit(2);
}
scenario().then(
  (r) => {
    process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
    process.exit(0);
  },
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
