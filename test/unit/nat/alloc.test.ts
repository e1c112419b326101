import { expect } from 'chai';
import { PerformanceObserver, performance, type PerformanceEntry } from 'node:perf_hooks';
import v8 from 'node:v8';
import { Conntrack } from '../../../src/nat/conntrack.js';
import { Nat, Verdict } from '../../../src/nat/nat.js';
import { IcmpType, IcmpUnreachCode, TcpFlags } from '../../../src/packet/index.js';
import { echo, icmpError, ip, seen, tcp, udp, type Pkt } from './packets.js';

// Node 20's v8.getHeapStatistics() has no total_allocated_bytes, so "allocates nothing" is checked
// the other way round: a million packets through `translate` with no garbage collection at all while
// they run (a single 16-byte heap number per packet would fill the young generation several times
// over), and the young generation barely growing (without a GC it grows by exactly what was
// allocated). Only the young generation: V8 puts what it compiles (optimised code, feedback) in old
// space, and a re-optimisation during the run (type feedback from the tests before this one) would
// otherwise look like 250 KB of per-packet garbage.

function youngUsed(): number {
  let n = 0;
  for (const s of v8.getHeapSpaceStatistics()) {
    if (s.space_name === 'new_space' || s.space_name === 'new_large_object_space') n += s.space_used_size;
  }
  return n;
}

const { SYN, ACK, PSH } = TcpFlags;
// Addresses above 2^31 on purpose: as plain uint32 numbers they would not be small integers.
const C = '192.168.1.2';
const VIP = '172.30.0.10';
const E = '192.168.2.7';
const N = '198.51.100.11';
const D = '203.0.113.80';

interface Case {
  template: Buffer;
  work: Buffer;
  off: number;
  len: number;
}

function caseOf(p: Pkt): Case {
  return { template: Buffer.from(p.buf), work: Buffer.from(p.buf), off: p.off, len: p.len };
}

/** The packets of established connections, in both directions, plus an ICMP error; all NATed. */
function buildCases(nat: Nat): Case[] {
  const cases: Case[] = [];
  // ClusterIP TCP.
  const syn = tcp(C, VIP, 40000, 80, SYN);
  expect(nat.createDnat(syn.buf, syn.off, syn.len, 0, ip(E), 8080)).to.equal(Verdict.Ok);
  const synack = tcp(E, C, 8080, 40000, SYN | ACK);
  expect(nat.translate(synack.buf, synack.off, synack.len, 0)).to.equal(Verdict.Ok);
  cases.push(caseOf(tcp(C, VIP, 40000, 80, PSH | ACK, { payload: 200 })));
  cases.push(caseOf(tcp(E, C, 8080, 40000, PSH | ACK, { payload: 1200 })));
  // Masqueraded UDP.
  const q = udp(C, D, 5353, 53);
  expect(nat.createSnat(q.buf, q.off, q.len, 0, ip(N), 61001, 65535)).to.equal(Verdict.Ok);
  const port = seen(q).sport;
  cases.push(caseOf(udp(C, D, 5353, 53, { payload: 60 })));
  cases.push(caseOf(udp(D, N, 53, port, { payload: 300 })));
  // Masqueraded ping.
  const req = echo(C, D, IcmpType.EchoRequest, 7);
  expect(nat.createSnat(req.buf, req.off, req.len, 0, ip(N), 61001, 65535)).to.equal(Verdict.Ok);
  const id = seen(req).sport;
  cases.push(caseOf(echo(C, D, IcmpType.EchoRequest, 7)));
  cases.push(caseOf(echo(D, N, IcmpType.EchoReply, id)));
  // Port unreachable about the masqueraded UDP flow.
  const translated = udp(C, D, 5353, 53);
  expect(nat.translate(translated.buf, translated.off, translated.len, 0)).to.equal(Verdict.Ok);
  cases.push(caseOf(icmpError(D, N, IcmpType.DestUnreachable, IcmpUnreachCode.Port, 0, translated)));
  return cases;
}

/** Runs one batch, as the data plane does: `now` is the batch's clock, a parameter. */
function batch(nat: Nat, cases: Case[], n: number, now: number): number {
  let bad = 0;
  for (let i = 0; i < n; i++) {
    const c = cases[i % cases.length]!;
    c.work.set(c.template); // a fresh copy of the packet (translation rewrites it in place)
    if (nat.translate(c.work, c.off, c.len, now) !== Verdict.Ok) bad++;
  }
  return bad;
}

describe('NAT: the per-packet path allocates nothing', () => {
  it('translates 1,000,000 packets without a single garbage collection', async function () {
    this.timeout(60000);
    const ct = new Conntrack({ max: 4096, seed: 3 });
    const nat = new Nat(ct, { seed: 3 });
    const cases = buildCases(nat);
    let now = 1.25;
    let bad = 0;
    for (let b = 0; b < 200; b++, now += 0.0137) bad += batch(nat, cases, 256, now); // warm up (JIT)
    expect(bad).to.equal(0);
    // Every case was translated: spot-check the results are valid packets.
    for (const c of cases) seen({ buf: c.work, off: c.off, len: c.len });

    const gcs: PerformanceEntry[] = [];
    const obs = new PerformanceObserver((list) => gcs.push(...list.getEntries()));
    obs.observe({ entryTypes: ['gc'] });
    await new Promise((r) => setTimeout(r, 20)); // let pending GC entries arrive before we start
    gcs.length = 0;
    const t0 = performance.now();
    const h0 = youngUsed();
    for (let b = 0; b < 4000; b++, now += 0.0137) bad += batch(nat, cases, 250, now);
    const h1 = youngUsed();
    const t1 = performance.now();
    await new Promise((r) => setTimeout(r, 50));
    obs.disconnect();
    expect(bad).to.equal(0);
    const during = gcs.filter((e) => e.startTime >= t0 && e.startTime <= t1);
    expect(during, 'garbage collections while translating').to.have.length(0);
    // The only allocation allowed is the test's own: one heap number for `now` per batch (4000).
    expect(h1 - h0, 'heap growth over 1e6 packets (bytes)').to.be.below(256 * 1024);
    expect(nat.stats.translated).to.be.greaterThan(1_000_000);
  });

  it('creates and expires connections without allocating either', async function () {
    this.timeout(60000);
    const ct = new Conntrack({ max: 2048, seed: 4 });
    const nat = new Nat(ct, { seed: 4 });
    const synT = tcp('10.244.1.2', VIP, 40000, 80, SYN);
    const qT = udp('10.244.1.2', D, 5000, 53);
    const syn = Buffer.from(synT.buf);
    const q = Buffer.from(qT.buf);
    const ep = ip(E);
    const node = ip(N);
    let seq = 0;
    const run = (n: number, now: number): number => {
      let bad = 0;
      for (let k = 0; k < n; k++) {
        const i = seq++;
        // A new client port each time: a new connection, DNAT or masquerade, then gc.
        syn.set(synT.buf);
        syn.writeUInt16BE(1024 + (i % 60000), synT.off + 20);
        if (nat.translate(syn, synT.off, synT.len, now) === Verdict.New) {
          if (nat.createDnat(syn, synT.off, synT.len, now, ep, 8080) !== Verdict.Ok) bad++;
        }
        q.set(qT.buf);
        q.writeUInt16BE(1024 + (i % 60000), qT.off + 20);
        if (nat.translate(q, qT.off, qT.len, now) === Verdict.New) {
          if (nat.createSnat(q, qT.off, qT.len, now, node, 61001, 65535) !== Verdict.Ok) bad++;
        }
        ct.gc(now, 4);
      }
      return bad;
    };
    let now = 0.5;
    for (let b = 0; b < 100; b++, now += 0.01) run(200, now);
    const gcs: PerformanceEntry[] = [];
    const obs = new PerformanceObserver((list) => gcs.push(...list.getEntries()));
    obs.observe({ entryTypes: ['gc'] });
    await new Promise((r) => setTimeout(r, 20));
    gcs.length = 0;
    const t0 = performance.now();
    const h0 = youngUsed();
    let bad = 0;
    for (let b = 0; b < 1000; b++, now += 0.5) bad += run(200, now); // table full: eviction and expiry too
    const h1 = youngUsed();
    const t1 = performance.now();
    await new Promise((r) => setTimeout(r, 50));
    obs.disconnect();
    expect(bad).to.equal(0);
    expect(ct.stats.evicted + ct.stats.expired).to.be.greaterThan(0);
    expect(gcs.filter((e) => e.startTime >= t0 && e.startTime <= t1), 'garbage collections').to.have.length(0);
    expect(h1 - h0).to.be.below(64 * 1024);
  });
});
