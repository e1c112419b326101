// Integration tests for the native TUN/TAP addon through src/io/tuntap.ts.
//
// Needs root and /dev/net/tun. Devices are opened in the current namespace and
// moved into a private namespace `pntt-<pid>` where the kernel is the peer: it
// sends ARP, ICMP and UDP to us and answers what we write. Frames are built by
// hand below (no dependency on src/packet). The namespace and every device are
// removed in after(), whatever happened.

import { expect } from 'chai';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';

import { TunTap, TunTapError } from '../../src/io/tuntap.js';

const NS = `pntt-${process.pid}`;
const P = `pntt${process.pid}`; // device name prefix; with a one-letter suffix at most 12 chars
const JUNK = 0xa5; // the ring is pre-filled with it, so a write into the headroom shows

// ---- processes -----------------------------------------------------------------

function run(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${err.stderr?.trim() || err.message}`);
  }
}

const ip = (...args: string[]): string => run('ip', args);
const ipNs = (...args: string[]): string => run('ip', ['-n', NS, ...args]);

function tryRun(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const linkExists = (name: string): boolean => tryRun('ip', ['link', 'show', 'dev', name]);

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a CommonJS node script inside the test namespace. */
function nsNode(script: string, ...args: string[]): Promise<Exit> {
  const child = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e', script, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Polls `cond` until true; the deadline only keeps a broken test from hanging. */
async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

// ---- frames by hand -------------------------------------------------------------

const ETH_ARP = 0x0806;
const ETH_IPV4 = 0x0800;
const PROTO_ICMP = 1;
const PROTO_UDP = 17;

function mac(s: string): Buffer {
  return Buffer.from(s.split(':').map((h) => parseInt(h, 16)));
}

function ip4(s: string): Buffer {
  return Buffer.from(s.split('.').map(Number));
}

function checksum(buf: Buffer, off: number, len: number, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < len; i += 2) sum += buf.readUInt16BE(off + i);
  if (len % 2 === 1) sum += buf[off + len - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function ethernet(dst: Buffer, src: Buffer, type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(14);
  dst.copy(h, 0);
  src.copy(h, 6);
  h.writeUInt16BE(type, 12);
  return Buffer.concat([h, payload]);
}

function arp(op: 1 | 2, sha: Buffer, spa: Buffer, tha: Buffer, tpa: Buffer): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt16BE(1, 0); // Ethernet
  b.writeUInt16BE(ETH_IPV4, 2);
  b[4] = 6;
  b[5] = 4;
  b.writeUInt16BE(op, 6);
  sha.copy(b, 8);
  spa.copy(b, 14);
  tha.copy(b, 18);
  tpa.copy(b, 24);
  return b;
}

function ipv4(src: Buffer, dst: Buffer, proto: number, payload: Buffer, id = 1): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + payload.length, 2);
  h.writeUInt16BE(id, 4);
  h[8] = 64;
  h[9] = proto;
  src.copy(h, 12);
  dst.copy(h, 16);
  h.writeUInt16BE(checksum(h, 0, 20), 10);
  return Buffer.concat([h, payload]);
}

function icmpEcho(type: 0 | 8, id: number, seq: number, data: Buffer): Buffer {
  const b = Buffer.alloc(8 + data.length);
  b[0] = type;
  b.writeUInt16BE(id, 4);
  b.writeUInt16BE(seq, 6);
  data.copy(b, 8);
  b.writeUInt16BE(checksum(b, 0, b.length), 2);
  return b;
}

function udp(src: Buffer, dst: Buffer, sport: number, dport: number, data: Buffer): Buffer {
  const b = Buffer.alloc(8 + data.length);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b.writeUInt16BE(b.length, 4);
  data.copy(b, 8);
  const pseudo = Buffer.concat([src, dst, Buffer.from([0, PROTO_UDP]), Buffer.from([b.length >> 8, b.length & 0xff])]);
  const c = checksum(Buffer.concat([pseudo, b]), 0, pseudo.length + b.length);
  b.writeUInt16BE(c === 0 ? 0xffff : c, 6);
  return b;
}

/** An IPv4 packet's fields, or undefined if `p` is not one. */
function parseIpv4(p: Buffer): { src: string; dst: string; proto: number; totalLen: number; l4: Buffer } | undefined {
  if (p.length < 20 || p[0]! >> 4 !== 4) return undefined;
  const ihl = (p[0]! & 0x0f) * 4;
  const totalLen = p.readUInt16BE(2);
  return {
    src: [...p.subarray(12, 16)].join('.'),
    dst: [...p.subarray(16, 20)].join('.'),
    proto: p[9]!,
    totalLen,
    l4: p.subarray(ihl, totalLen),
  };
}

const ethType = (f: Buffer): number => (f.length >= 14 ? f.readUInt16BE(12) : -1);
const macStr = (b: Buffer): string => [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');

// ---- capture ----------------------------------------------------------------------

/** Copies every frame the device delivers and checks the ring's invariants per batch. */
class Capture {
  readonly frames: Buffer[] = [];
  readonly batches: number[] = [];
  readonly problems: string[] = [];
  onFrame: ((f: Buffer) => void) | undefined;

  constructor(
    readonly dev: TunTap,
    readonly batchLimit: number,
  ) {
    dev.rx.buffer.fill(JUNK);
  }

  start(): void {
    this.dev.start((n) => this.onBatch(n));
  }

  private onBatch(n: number): void {
    this.batches.push(n);
    const { buffer, lengths, slotSize, headroom } = this.dev.rx;
    if (!Number.isInteger(n) || n < 1 || n > this.batchLimit) this.problems.push(`batch of ${n}`);
    for (let i = 0; i < n; i++) {
      const base = i * slotSize;
      for (let j = base; j < base + headroom; j++) {
        if (buffer[j] !== JUNK) {
          this.problems.push(`slot ${i}: headroom byte ${j - base} was written`);
          break;
        }
      }
      const len = lengths[i]!;
      if (len <= 0 || len > slotSize - headroom) this.problems.push(`slot ${i}: length ${len}`);
      const off = this.dev.frameOffset(i);
      if (off !== base + headroom) this.problems.push(`slot ${i}: frameOffset ${off}`);
      const f = Buffer.from(buffer.subarray(off, off + len));
      this.frames.push(f);
      this.onFrame?.(f);
    }
  }

  async waitFor(pred: (f: Buffer) => boolean, what: string): Promise<Buffer> {
    let hit: Buffer | undefined;
    await until(() => (hit = this.frames.find(pred)) !== undefined, what);
    return hit!;
  }
}

// ---- the suite ----------------------------------------------------------------------

describe('TunTap native addon (integration, needs root)', function () {
  const opened: TunTap[] = [];
  const names: string[] = [];

  function open(name: string, mode: 'tap' | 'tun', opts?: Parameters<typeof TunTap.open>[2]): TunTap {
    names.push(name);
    const d = TunTap.open(name, mode, opts);
    opened.push(d);
    return d;
  }

  before(function () {
    if (process.getuid?.() !== 0 || !existsSync('/dev/net/tun')) this.skip();
    ip('netns', 'add', NS);
    ipNs('link', 'set', 'lo', 'up');
    // Fewer unrelated frames (IPv6 router solicitations); optional.
    tryRun('ip', ['netns', 'exec', NS, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
    tryRun('ip', ['netns', 'exec', NS, 'sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1']);
  });

  after(function () {
    for (const d of opened) {
      try {
        d.close();
      } catch {
        /* keep tearing down */
      }
    }
    tryRun('ip', ['netns', 'del', NS]);
    for (const n of names) if (linkExists(n)) tryRun('ip', ['link', 'del', 'dev', n]);
  });

  describe('TAP moved into a namespace', function () {
    const NAME = `${P}a`;
    const KERNEL_IP = '10.254.77.1';
    const PEER_IP = '10.254.77.2'; // us
    const BURST_IP = '10.254.77.3'; // a static neighbour that is also us
    const PEER_MAC = mac('02:00:5e:77:00:02');
    const BATCH = 16;
    let dev: TunTap;
    let cap: Capture;
    let kernelMac: Buffer;

    before(function () {
      dev = open(NAME, 'tap', { slots: 32, slotSize: 2048, headroom: 96, batch: BATCH });
      expect(dev.name).to.equal(NAME);
      expect(dev.mode).to.equal('tap');
      expect(dev.fd).to.be.a('number').and.to.be.at.least(0);
      expect(dev.rx.slots).to.equal(32);
      expect(dev.rx.buffer.length).to.equal(32 * 2048);
      expect(dev.rx.lengths.length).to.equal(32);
      ip('link', 'set', 'dev', NAME, 'netns', NS);
      ipNs('addr', 'add', `${KERNEL_IP}/24`, 'dev', NAME);
      ipNs('link', 'set', 'dev', NAME, 'up');
      const link = JSON.parse(ipNs('-j', 'link', 'show', 'dev', NAME)) as Array<{ address: string }>;
      kernelMac = mac(link[0]!.address);
      cap = new Capture(dev, BATCH);
      cap.start();
    });

    afterEach(function () {
      expect(cap.problems, 'ring invariants').to.deep.equal([]);
    });

    it('(a) receives the ARP requests the kernel sends, after the headroom, with their lengths', async function () {
      const before = dev.stats();
      // The kernel has to resolve PEER_IP before it can send this datagram.
      const sender = nsNode(`require('node:dgram').createSocket('udp4').send('x', 9, '${PEER_IP}', (e) => process.exit(e ? 1 : 0))`);
      const f = await cap.waitFor(
        (f) => ethType(f) === ETH_ARP && f.readUInt16BE(20) === 1 && f.subarray(38, 42).equals(ip4(PEER_IP)),
        `ARP request for ${PEER_IP}`,
      );
      expect((await sender).code).to.equal(0);
      expect(f.length).to.equal(42); // 14 Ethernet + 28 ARP, no padding on a TAP
      expect(macStr(f.subarray(0, 6))).to.equal('ff:ff:ff:ff:ff:ff');
      expect(f.subarray(6, 12).equals(kernelMac)).to.equal(true);
      expect(f.subarray(22, 28).equals(kernelMac)).to.equal(true); // sender hardware address
      expect(f.subarray(28, 32).equals(ip4(KERNEL_IP))).to.equal(true);
      const after = dev.stats();
      expect(after.rxFrames - before.rxFrames).to.be.at.least(1);
      expect(after.rxBatches - before.rxBatches).to.be.at.least(1);
      expect(after.rxErrors).to.equal(0);
      const total = cap.batches.reduce((a, b) => a + b, 0);
      expect(total).to.equal(after.rxFrames).and.to.equal(cap.frames.length);
      expect(cap.batches.length).to.equal(after.rxBatches);
    });

    it('(b) the kernel receives frames given to write() and writeBatch()', async function () {
      const before = dev.stats();
      // write(): an ARP request for the kernel's address; it answers and learns us.
      const req = ethernet(mac('ff:ff:ff:ff:ff:ff'), PEER_MAC, ETH_ARP, arp(1, PEER_MAC, ip4(PEER_IP), Buffer.alloc(6), ip4(KERNEL_IP)));
      const framed = Buffer.concat([Buffer.alloc(5, 0xee), req, Buffer.alloc(7, 0xee)]);
      expect(dev.write(framed, 5, req.length)).to.equal(true);
      const reply = await cap.waitFor(
        (f) => ethType(f) === ETH_ARP && f.readUInt16BE(20) === 2 && f.subarray(38, 42).equals(ip4(PEER_IP)),
        'ARP reply from the kernel',
      );
      expect(reply.length).to.equal(42);
      expect(reply.subarray(0, 6).equals(PEER_MAC)).to.equal(true);
      expect(reply.subarray(22, 28).equals(kernelMac)).to.equal(true);
      expect(reply.subarray(28, 32).equals(ip4(KERNEL_IP))).to.equal(true);
      expect(ipNs('neigh', 'show', PEER_IP, 'dev', NAME)).to.include(macStr(PEER_MAC));

      // writeBatch(): three ICMP echo requests at different offsets of different buffers.
      const data = Buffer.alloc(56, 0x5a);
      const echo = (seq: number): Buffer =>
        ethernet(kernelMac, PEER_MAC, ETH_IPV4, ipv4(ip4(PEER_IP), ip4(KERNEL_IP), PROTO_ICMP, icmpEcho(8, 0x4242, seq, data), seq));
      const pads = [0, 3, 100];
      const bufs = [1, 2, 3].map((seq, i) => Buffer.concat([Buffer.alloc(pads[i]!, 0xee), echo(seq), Buffer.alloc(9, 0xee)]));
      const offs = Uint32Array.from(pads);
      const lens = Uint32Array.from(bufs.map(() => echo(1).length));
      expect(dev.writeBatch(bufs, offs, lens, 3)).to.equal(3);
      const isReply = (seq: number) => (f: Buffer) => {
        const p = ethType(f) === ETH_IPV4 ? parseIpv4(f.subarray(14)) : undefined;
        return p !== undefined && p.proto === PROTO_ICMP && p.l4[0] === 0 && p.l4.readUInt16BE(4) === 0x4242 && p.l4.readUInt16BE(6) === seq;
      };
      for (const seq of [1, 2, 3]) {
        const r = await cap.waitFor(isReply(seq), `echo reply ${seq}`);
        const p = parseIpv4(r.subarray(14))!;
        expect(r.length).to.equal(14 + p.totalLen); // 98: the length in the ring is the frame's
        expect(r.length).to.equal(98);
        expect(p.src).to.equal(KERNEL_IP);
        expect(p.dst).to.equal(PEER_IP);
        expect(r.subarray(0, 6).equals(PEER_MAC)).to.equal(true);
        expect(p.l4.subarray(8).equals(data)).to.equal(true);
      }
      const after = dev.stats();
      expect(after.txFrames - before.txFrames).to.equal(4);
      expect(after.txErrors - before.txErrors).to.equal(0);
    });

    it("readNow() hands over the kernel's answer to a written frame within the call, and nothing from inside the device's own batch", function () {
      // Synchronous from the write to the last check: the event loop never turns, so a frame the
      // capture got in between came through readNow(). The kernel of a TAP handles a written frame
      // within write() and queues its echo reply then; the loop only allows for a busy qdisc.
      const data = Buffer.alloc(16, 7);
      const req = ethernet(kernelMac, PEER_MAC, ETH_IPV4, ipv4(ip4(PEER_IP), ip4(KERNEL_IP), PROTO_ICMP, icmpEcho(8, 0x4444, 1, data), 44));
      const isReply = (f: Buffer) => {
        const p = ethType(f) === ETH_IPV4 ? parseIpv4(f.subarray(14)) : undefined;
        return p !== undefined && p.proto === PROTO_ICMP && p.l4[0] === 0 && p.l4.readUInt16BE(4) === 0x4444;
      };
      const seen = cap.frames.length;
      const batches = cap.batches.length;
      let inside: boolean | undefined;
      cap.onFrame = () => (inside = dev.readNow());
      expect(dev.write(req, 0, req.length)).to.equal(true);
      let reads = 0;
      for (let tries = 0; tries < 100_000 && !cap.frames.slice(seen).some(isReply); tries++) {
        expect(dev.readNow()).to.equal(true);
        reads++;
      }
      cap.onFrame = undefined;
      const replies = cap.frames.slice(seen).filter(isReply);
      expect(replies, 'the echo reply, read by readNow before any turn of the event loop').to.have.length(1);
      expect(replies[0]!.subarray(0, 6).equals(PEER_MAC)).to.equal(true);
      expect(cap.batches.length).to.be.at.least(batches + 1);
      expect(reads).to.be.at.least(1);
      expect(inside, "readNow from the device's own onBatch").to.equal(false);
    });

    it('readNow() reads nothing before start() and after stop()', function () {
      const idle = open(`${P}r`, 'tap', { slots: 4 });
      try {
        expect(idle.readNow()).to.equal(false);
        idle.start(() => undefined);
        expect(idle.readNow()).to.equal(true);
        idle.stop();
        expect(idle.readNow()).to.equal(false);
      } finally {
        idle.close();
      }
    });

    it('(b) writeBatch counts a bad frame and carries on with the rest', async function () {
      const before = dev.stats();
      const data = Buffer.alloc(8, 1);
      const echo = (seq: number): Buffer =>
        ethernet(kernelMac, PEER_MAC, ETH_IPV4, ipv4(ip4(PEER_IP), ip4(KERNEL_IP), PROTO_ICMP, icmpEcho(8, 0x4343, seq, data), seq));
      const good1 = echo(10);
      const good2 = echo(11);
      const bufs = [good1, good1, good1, good2];
      const offs = Uint32Array.from([0, 10, 0, 0]);
      // frame 1 runs past its buffer; frame 2 is shorter than an Ethernet header (the kernel says EINVAL)
      const lens = Uint32Array.from([good1.length, good1.length, 6, good2.length]);
      expect(dev.writeBatch(bufs, offs, lens, 4)).to.equal(2);
      const after = dev.stats();
      expect(after.txFrames - before.txFrames).to.equal(2);
      expect(after.txErrors - before.txErrors).to.equal(2);
      expect(dev.write(good1, 1, good1.length)).to.equal(false); // out of bounds: counted, not thrown
      expect(dev.stats().txErrors - before.txErrors).to.equal(3);
      for (const seq of [10, 11]) {
        await cap.waitFor((f) => {
          const p = ethType(f) === ETH_IPV4 ? parseIpv4(f.subarray(14)) : undefined;
          return p !== undefined && p.proto === PROTO_ICMP && p.l4[0] === 0 && p.l4.readUInt16BE(4) === 0x4343 && p.l4.readUInt16BE(6) === seq;
        }, `echo reply ${seq}`);
      }
    });

    it('(f) counts a burst of thousands of kernel frames across batches', async function () {
      const N = 4000;
      // Let the burst queue in the kernel while we are not reading, then drain it:
      // the batching is then certain, not a matter of scheduling.
      dev.stop();
      ipNs('link', 'set', 'dev', NAME, 'txqueuelen', '10000');
      ipNs('neigh', 'replace', BURST_IP, 'lladdr', '02:00:5e:77:00:03', 'dev', NAME, 'nud', 'permanent');
      const seen = new Set<number>();
      cap.onFrame = (f) => {
        const p = ethType(f) === ETH_IPV4 ? parseIpv4(f.subarray(14)) : undefined;
        if (p !== undefined && p.proto === PROTO_UDP && p.dst === BURST_IP && p.l4.readUInt16BE(2) === 9) {
          if (f.length !== 14 + 20 + 8 + 16) cap.problems.push(`burst frame of ${f.length} bytes`);
          seen.add(p.l4.readUInt32BE(8));
        }
      };
      const sender = await nsNode(
        `const s = require('node:dgram').createSocket('udp4'); const N = Number(process.argv[1]);
         let done = 0, errors = 0;
         for (let i = 0; i < N; i++) {
           const b = Buffer.alloc(16); b.writeUInt32BE(i, 0);
           s.send(b, 9, '${BURST_IP}', (e) => { if (e) errors++; if (++done === N) { console.log(JSON.stringify({ errors })); s.close(); } });
         }`,
        String(N),
      );
      expect(sender.code, sender.stderr).to.equal(0);
      expect(JSON.parse(sender.stdout)).to.deep.equal({ errors: 0 });
      const before = dev.stats();
      const batchesBefore = cap.batches.length;
      cap.start();
      try {
        await until(() => seen.size === N, `all ${N} burst frames (have ${seen.size})`);
      } finally {
        cap.onFrame = undefined;
      }
      const after = dev.stats();
      const frames = after.rxFrames - before.rxFrames;
      const batches = after.rxBatches - before.rxBatches;
      const counts = cap.batches.slice(batchesBefore);
      expect(frames).to.be.at.least(N);
      expect(counts.reduce((a, b) => a + b, 0)).to.equal(frames);
      expect(counts.length).to.equal(batches);
      expect(batches).to.be.below(frames);
      expect(batches).to.be.at.least(Math.ceil(N / BATCH));
      expect(Math.max(...counts)).to.equal(BATCH);
      expect(after.rxErrors).to.equal(0);
    });

    it('an exception thrown by onBatch reaches uncaughtException, and reading goes on', async function () {
      dev.stop();
      const boom = new Error('boom from onBatch');
      const caught: unknown[] = [];
      let thrown = false;
      let laterFrames = 0;
      const saved = process.listeners('uncaughtException');
      process.removeAllListeners('uncaughtException');
      process.on('uncaughtException', (e) => caught.push(e));
      const arpReq = ethernet(mac('ff:ff:ff:ff:ff:ff'), PEER_MAC, ETH_ARP, arp(1, PEER_MAC, ip4(PEER_IP), Buffer.alloc(6), ip4(KERNEL_IP)));
      try {
        dev.start((n) => {
          if (!thrown) {
            thrown = true;
            throw boom;
          }
          laterFrames += n;
        });
        expect(dev.write(arpReq, 0, arpReq.length)).to.equal(true);
        await until(() => caught.length > 0, 'the uncaught exception');
        expect(dev.write(arpReq, 0, arpReq.length)).to.equal(true);
        await until(() => laterFrames > 0, 'a batch after the exception');
      } finally {
        dev.stop();
        process.removeAllListeners('uncaughtException');
        for (const l of saved) process.on('uncaughtException', l);
      }
      expect(caught).to.deep.equal([boom]);
      cap.start();
    });

    it('start() twice throws; stop() is idempotent', function () {
      expect(() => cap.start()).to.throw(/already started/);
      dev.stop();
      dev.stop();
      cap.start();
    });
  });

  describe('TUN moved into a namespace', function () {
    const NAME = `${P}u`;
    const KERNEL_IP = '10.254.78.1';
    const PEER_IP = '10.254.78.2';
    let dev: TunTap;
    let cap: Capture;

    before(function () {
      dev = open(NAME, 'tun');
      expect(dev.mode).to.equal('tun');
      expect(dev.rx.slots).to.equal(64);
      expect(dev.rx.slotSize).to.equal(2048);
      expect(dev.rx.headroom).to.equal(128);
      expect(dev.frameOffset(3)).to.equal(3 * 2048 + 128);
      ip('link', 'set', 'dev', NAME, 'netns', NS);
      ipNs('addr', 'add', KERNEL_IP, 'peer', `${PEER_IP}/32`, 'dev', NAME);
      ipNs('link', 'set', 'dev', NAME, 'up');
      cap = new Capture(dev, 64);
      // A UDP echo server on PEER_IP:7, answering in place from the batch callback.
      cap.onFrame = (f) => {
        const p = parseIpv4(f);
        if (p === undefined || p.proto !== PROTO_UDP || p.dst !== PEER_IP || p.l4.readUInt16BE(2) !== 7) return;
        const sport = p.l4.readUInt16BE(0);
        const reply = ipv4(ip4(PEER_IP), ip4(p.src), PROTO_UDP, udp(ip4(PEER_IP), ip4(p.src), 7, sport, p.l4.subarray(8)));
        if (!dev.write(reply, 0, reply.length)) cap.problems.push('echo reply not written');
      };
      cap.start();
    });

    afterEach(function () {
      expect(cap.problems, 'ring invariants').to.deep.equal([]);
    });

    it('(c) carries IP packets without an Ethernet header, both ways', async function () {
      const client = await nsNode(
        `const s = require('node:dgram').createSocket('udp4');
         s.on('message', (m) => { console.log(m.toString()); process.exit(0); });
         s.send('hello over tun', 7, '${PEER_IP}');`,
      );
      expect(client.code, client.stderr).to.equal(0);
      expect(client.stdout.trim()).to.equal('hello over tun');
      const f = await cap.waitFor((f) => parseIpv4(f)?.proto === PROTO_UDP, 'the UDP datagram');
      const p = parseIpv4(f)!;
      expect(f[0]! >> 4).to.equal(4); // first byte is the IP version: no Ethernet, no packet-info header
      expect(f.length).to.equal(p.totalLen);
      expect(f.length).to.equal(20 + 8 + 'hello over tun'.length);
      expect(p.src).to.equal(KERNEL_IP);
      expect(p.dst).to.equal(PEER_IP);

      // And an ICMP echo request written by us is answered by the kernel.
      const req = ipv4(ip4(PEER_IP), ip4(KERNEL_IP), PROTO_ICMP, icmpEcho(8, 0x7777, 1, Buffer.from('ping over tun')));
      const offs = Uint32Array.of(0);
      const lens = Uint32Array.of(req.length);
      expect(dev.writeBatch([req], offs, lens, 1)).to.equal(1);
      const r = await cap.waitFor((f) => {
        const q = parseIpv4(f);
        return q !== undefined && q.proto === PROTO_ICMP && q.l4[0] === 0 && q.l4.readUInt16BE(4) === 0x7777;
      }, 'the echo reply');
      expect(r.length).to.equal(req.length);
      expect(parseIpv4(r)!.dst).to.equal(PEER_IP);
    });

    it('reports a deleted interface through onError and stops reading', async function () {
      dev.stop();
      const errors: TunTapError[] = [];
      dev.start(
        () => {},
        (e) => errors.push(e),
      );
      ipNs('link', 'del', 'dev', NAME);
      await until(() => errors.length > 0, 'onError');
      expect(errors).to.have.length(1);
      const e = errors[0]!;
      expect(e).to.be.instanceOf(TunTapError);
      expect(e.device).to.equal(NAME);
      expect(e.code).to.equal('EBADFD');
      expect(e.syscall).to.equal('readv');
      expect(dev.stats().rxErrors).to.be.at.least(1);
      dev.stop(); // already stopped: no-op
      expect(dev.write(Buffer.alloc(20), 0, 20)).to.equal(false);
      dev.close();
      dev.close();
    });
  });

  describe('frames larger than a slot', function () {
    it('are counted in rxErrors, not delivered truncated', async function () {
      const NAME = `${P}s`;
      // 128 bytes of room per frame: a 28-byte-header UDP datagram with 100 bytes fits exactly.
      const dev = open(NAME, 'tun', { slots: 4, slotSize: 256, headroom: 128 });
      ip('link', 'set', 'dev', NAME, 'netns', NS);
      ipNs('addr', 'add', '10.254.79.1', 'peer', '10.254.79.2/32', 'dev', NAME);
      ipNs('link', 'set', 'dev', NAME, 'up');
      const cap = new Capture(dev, 4);
      const sizes: number[] = [];
      cap.onFrame = (f) => {
        const p = parseIpv4(f);
        if (p?.proto === PROTO_UDP && p.dst === '10.254.79.2') sizes.push(p.l4.length - 8);
      };
      cap.start();
      // 100 bytes fits exactly, 101 is one byte too many, then 10 as a marker that all arrived.
      const sender = await nsNode(
        `const s = require('node:dgram').createSocket('udp4');
         const send = (n, next) => s.send(Buffer.alloc(n, 1), 9, '10.254.79.2', next);
         send(100, () => send(101, () => send(10, () => s.close())));`,
      );
      expect(sender.code, sender.stderr).to.equal(0);
      await until(() => sizes.includes(10), 'the marker datagram');
      expect(sizes).to.deep.equal([100, 10]);
      expect(cap.frames.filter((f) => parseIpv4(f)?.dst === '10.254.79.2').map((f) => f.length)).to.deep.equal([128, 38]);
      expect(dev.stats().rxErrors).to.equal(1);
      expect(cap.problems).to.deep.equal([]);
      dev.close();
    });
  });

  describe('open errors', function () {
    it('(d) a name already open gives EBUSY with code, errno, syscall and device', function () {
      const name = `${P}d`;
      open(name, 'tap');
      let err: unknown;
      try {
        TunTap.open(name, 'tap');
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(TunTapError);
      const e = err as TunTapError;
      expect(e.code).to.equal('EBUSY');
      expect(e.errno).to.equal(16);
      expect(e.syscall).to.equal('ioctl(TUNSETIFF)');
      expect(e.device).to.equal(name);
      expect(e.message).to.equal(`TUNSETIFF on ${name}: Device or resource busy (EBUSY)`);
    });

    it('(d) the wrong mode for an existing device, or a non-TUN device, gives EINVAL', function () {
      const name = `${P}d`; // the TAP opened above
      expect(() => TunTap.open(name, 'tun')).to.throw(TunTapError).with.property('code', 'EINVAL');
      expect(() => TunTap.open('lo', 'tap')).to.throw(TunTapError).with.property('device', 'lo');
    });

    it('(d) a name of 16 or more bytes is rejected before the kernel truncates it', function () {
      const long = `${P}-toolong-name`.padEnd(16, 'x');
      expect(Buffer.byteLength(long)).to.be.at.least(16);
      let err: unknown;
      try {
        TunTap.open(long, 'tap');
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(TunTapError);
      expect(err).to.include({ code: 'EINVAL', errno: 22, device: long, syscall: 'ioctl(TUNSETIFF)' });
      expect(linkExists(long.slice(0, 15))).to.equal(false);
    });

    it('rejects bad options and modes with clear errors', function () {
      const n = `${P}o`;
      expect(() => TunTap.open(n, 'bridge' as 'tap')).to.throw(TypeError, /mode must be 'tap' or 'tun'/);
      expect(() => TunTap.open(n, 'tap', { slots: 0 })).to.throw(RangeError, /slots must be an integer/);
      expect(() => TunTap.open(n, 'tap', { slots: 1.5 })).to.throw(RangeError, /slots/);
      expect(() => TunTap.open(n, 'tap', { slotSize: 2048, headroom: 2048 })).to.throw(RangeError, /headroom/);
      expect(() => TunTap.open(n, 'tap', { headroom: -1 })).to.throw(RangeError, /headroom/);
      expect(() => TunTap.open(n, 'tap', { slots: 8, batch: 9 })).to.throw(RangeError, /batch/);
      expect(linkExists(n)).to.equal(false);
    });
  });

  describe('names and closing', function () {
    it('an empty name lets the kernel pick one, and that name is returned', function () {
      const tap = TunTap.open('', 'tap');
      const tun = TunTap.open('', 'tun');
      try {
        expect(tap.name).to.match(/^tap\d+$/);
        expect(tun.name).to.match(/^tun\d+$/);
        expect(linkExists(tap.name)).to.equal(true);
        expect(linkExists(tun.name)).to.equal(true);
      } finally {
        tap.close();
        tun.close();
      }
      expect(linkExists(tap.name)).to.equal(false);
      expect(linkExists(tun.name)).to.equal(false);
    });

    it('a persistent offload device is left without offloads when closed (for whatever attaches next); an offload open offers them again', function () {
      const name = `${P}o`;
      const tso = () => /tcp-segmentation-offload: on/.test(run('ethtool', ['-k', name]));
      for (const mode of ['tun', 'tap'] as const) {
        const d = open(name, mode, { offload: true });
        d.setPersist(true);
        expect(tso(), `${mode}: TSO offered while open`).to.equal(true);
        d.close();
        expect(linkExists(name)).to.equal(true);
        expect(tso(), `${mode}: TSO withdrawn once let go`).to.equal(false);
        const plain = open(name, mode); // as an older release would attach: no virtio-net headers
        expect(tso()).to.equal(false);
        plain.close();
        const again = open(name, mode, { offload: true });
        expect(tso(), `${mode}: TSO offered again`).to.equal(true);
        again.setPersist(false);
        again.close();
        expect(linkExists(name)).to.equal(false);
      }
    });

    it('(e) close() twice is safe and the device disappears', function () {
      const name = `${P}e`;
      const d = open(name, 'tap');
      d.start(() => {});
      expect(linkExists(name)).to.equal(true);
      d.close();
      d.close();
      expect(linkExists(name)).to.equal(false);
      expect(d.fd).to.equal(-1);
      expect(d.write(Buffer.alloc(60), 0, 60)).to.equal(false);
      expect(d.writeBatch([Buffer.alloc(60)], Uint32Array.of(0), Uint32Array.of(60), 1)).to.equal(0);
      expect(d.stats().txErrors).to.equal(2);
      expect(() => d.start(() => {})).to.throw(/closed/);
      d.stop();
    });

    it('closes the devices of a worker thread when it is terminated or exits', async function () {
      const mod = new URL('../../src/io/tuntap.js', import.meta.url).href;
      const started = `${P}w`;
      const idle = `${P}x`;
      names.push(started, idle);
      // Terminated while reading.
      const w1 = new Worker(
        `const { parentPort } = require('node:worker_threads');
         import(${JSON.stringify(mod)}).then(({ TunTap }) => {
           TunTap.open(${JSON.stringify(started)}, 'tap').start(() => {});
           parentPort.postMessage('open');
         });`,
        { eval: true },
      );
      expect(await once(w1, 'message')).to.deep.equal(['open']);
      expect(linkExists(started)).to.equal(true);
      await w1.terminate();
      expect(linkExists(started)).to.equal(false);
      // Exits on its own (an open but idle device does not keep the loop alive).
      const w2 = new Worker(
        `import(${JSON.stringify(mod)}).then(({ TunTap }) => { TunTap.open(${JSON.stringify(idle)}, 'tun'); });`,
        { eval: true },
      );
      const [code] = (await once(w2, 'exit')) as [number];
      expect(code).to.equal(0);
      expect(linkExists(idle)).to.equal(false);
    });
  });
});
