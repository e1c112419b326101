import { expect } from 'chai';
import { Conntrack, CtStatus, CtUpdate, formatCtEntry, PREFETCH_MAX, TcpState } from '../../../src/nat/conntrack.js';
import { IpProtocol, TcpFlags } from '../../../src/packet/index.js';
import { ip } from './packets.js';

const { SYN, ACK, FIN, RST, PSH } = TcpFlags;
const TCP = IpProtocol.TCP;
const UDP = IpProtocol.UDP;
const ICMP = IpProtocol.ICMP;
const A = ip('10.244.1.2');
const B = ip('192.168.7.9'); // above 2^31: stored as a negative int32 inside

/** A plain (non-NAT) TCP connection A:1000 -> B:80; returns [orig ref, reply ref]. */
function tcpConn(ct: Conntrack, now = 0, sport = 1000): [number, number] {
  const id = ct.create(TCP, A, B, sport, 80, B, A, 80, sport, now);
  expect(id).to.be.at.least(0);
  return [id * 2, id * 2 + 1];
}

function expectState(ct: Conntrack, ref: number, state: TcpState, expires: number): void {
  expect(ct.tcpState(ref >> 1)).to.equal(state);
  expect(ct.expiresAt(ref >> 1)).to.be.closeTo(expires, 1e-9);
}

describe('Conntrack: table', () => {
  it('indexes both tuples of one entry: lookup returns id * 2 + dir', () => {
    const ct = new Conntrack({ max: 8, seed: 1 });
    const id = ct.create(TCP, A, B, 1000, 80, ip('10.244.2.7'), A, 8080, 1000, 0);
    expect(ct.lookup(TCP, A, B, 1000, 80, 1)).to.equal(id * 2);
    expect(ct.lookup(TCP, ip('10.244.2.7'), A, 8080, 1000, 1)).to.equal(id * 2 + 1);
    expect(ct.lookup(UDP, A, B, 1000, 80, 1)).to.equal(-1); // protocol is part of the tuple
    expect(ct.lookup(TCP, A, B, 1000, 81, 1)).to.equal(-1);
    expect(ct.src(id * 2 + 1)).to.equal(ip('10.244.2.7'));
    expect(ct.dst(id * 2)).to.equal(B); // unsigned on the way out
    expect(ct.sport(id * 2 + 1)).to.equal(8080);
    expect(ct.dport(id * 2 + 1)).to.equal(1000);
    expect(ct.status(id) & CtStatus.DstNat).to.not.equal(0);
    expect(ct.status(id) & CtStatus.SrcNat).to.equal(0);
    expect(ct.size).to.equal(1);
  });

  it('matches a reference map under random creates, deletes, expiry and lookups (index stays consistent)', () => {
    const ct = new Conntrack({ max: 300, seed: 99 });
    const ref = new Map<string, number>(); // tuple -> ref
    const key = (p: number, s: number, d: number, sp: number, dp: number) => `${p} ${s >>> 0} ${d >>> 0} ${sp} ${dp}`;
    let seed = 12345;
    const rnd = (n: number) => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) >>> 8) % n;
    // A small universe of addresses and ports so clusters, collisions and reuse all happen.
    const addr = (i: number) => (i % 3 === 0 ? ip('192.168.0.1') + i : ip('10.0.0.1') + i) >>> 0;
    let now = 0;
    for (let step = 0; step < 30000; step++) {
      now += 0.01;
      const p = rnd(2) ? TCP : UDP;
      const s = addr(rnd(8));
      const d = addr(rnd(8));
      const sp = rnd(6);
      const dp = rnd(6);
      const r = ct.lookup(p, s, d, sp, dp, now);
      const k = key(p, s, d, sp, dp);
      const expected = ref.get(k);
      if (expected !== undefined && ct.expiresAt(expected >> 1) <= now) {
        // lookup reclaimed it
        const id = expected >> 1;
        expect(r).to.equal(-1);
        ref.delete(key(ct.proto(id), ct.src(id * 2), ct.dst(id * 2), ct.sport(id * 2), ct.dport(id * 2)));
        ref.delete(key(ct.proto(id), ct.src(id * 2 + 1), ct.dst(id * 2 + 1), ct.sport(id * 2 + 1), ct.dport(id * 2 + 1)));
        continue;
      }
      expect(r, k).to.equal(expected ?? -1);
      if (r >= 0 && rnd(3) === 0) {
        const id = r >> 1;
        ref.delete(key(p, ct.src(id * 2), ct.dst(id * 2), ct.sport(id * 2), ct.dport(id * 2)));
        ref.delete(key(p, ct.src(id * 2 + 1), ct.dst(id * 2 + 1), ct.sport(id * 2 + 1), ct.dport(id * 2 + 1)));
        expect(ct.delete(id)).to.equal(true);
      } else if (r < 0) {
        // NAT-like reply tuple: a different address, unless it is taken.
        const rs = addr(8 + rnd(8));
        if (ref.has(key(p, rs, s, dp, sp)) || ct.size >= ct.max) continue;
        const id = ct.create(p, s, d, sp, dp, rs, s, dp, sp, now);
        expect(id).to.be.at.least(0);
        ct.update(id * 2, p === TCP ? SYN : 0, now);
        ref.set(k, id * 2);
        ref.set(key(p, rs, s, dp, sp), id * 2 + 1);
      }
      if (step % 97 === 0) {
        ct.gc(now, 50);
        // Entries gc reclaimed leave the reference too.
        for (const [kk, rr] of ref) if (!ct.isLive(rr >> 1)) ref.delete(kk);
      }
    }
    // The walk did exercise the table: many inserts, explicit deletes and expiries.
    expect(ct.stats.created).to.be.greaterThan(1000);
    expect(ct.stats.deleted).to.be.greaterThan(300);
    expect(ct.stats.expired).to.be.greaterThan(300);
    let live = 0;
    ct.forEach(() => live++);
    expect(ref.size).to.equal(2 * live);
    for (const [k, r] of ref) {
      const [p, s, d, sp, dp] = k.split(' ').map(Number) as [number, number, number, number, number];
      if (ct.expiresAt(r >> 1) > now) expect(ct.lookup(p, s, d, sp, dp, now)).to.equal(r);
    }
  });

  it('batch prefetch changes nothing a lookup sees, and takes at most PREFETCH_MAX tuples', () => {
    const ct = new Conntrack({ max: 64, seed: 21 });
    const refs: number[] = [];
    for (let p = 1; p <= 40; p++) refs.push(tcpConn(ct, 0, p)[0]);
    for (let round = 0; round < 2; round++) {
      for (let p = 1; p <= PREFETCH_MAX + 50; p++) ct.prefetch(TCP, A, B, p, 80); // present and absent tuples
      ct.prefetch(UDP, B, A, 53, 9);
      ct.prefetchTouch();
    }
    for (let p = 1; p <= 40; p++) expect(ct.lookup(TCP, A, B, p, 80, 1)).to.equal(refs[p - 1]);
    expect(ct.lookup(TCP, A, B, 41, 80, 1)).to.equal(-1);
    expect(ct.size).to.equal(40);
  });

  it('deletes, reuses freed ids and reports dead ids', () => {
    const ct = new Conntrack({ max: 2, seed: 2 });
    const [o] = tcpConn(ct, 0, 1);
    tcpConn(ct, 0, 2);
    expect(ct.delete(o >> 1)).to.equal(true);
    expect(ct.delete(o >> 1)).to.equal(false);
    expect(ct.lookup(TCP, A, B, 1, 80, 0)).to.equal(-1);
    expect(ct.lookup(TCP, B, A, 80, 1, 0)).to.equal(-1);
    const [o3] = tcpConn(ct, 0, 3);
    expect(o3 >> 1).to.equal(o >> 1);
    expect(ct.size).to.equal(2);
    expect(ct.stats.deleted).to.equal(1);
  });

  it('keeps ICMP echo tuples apart by type: ping A->B and ping B->A with one identifier are two connections', () => {
    const ct = new Conntrack({ max: 8, seed: 3 });
    const ab = ct.create(ICMP, A, B, 7, 8 << 8, B, A, 7, 0, 0);
    expect(ct.lookup(ICMP, B, A, 7, 0, 0)).to.equal(ab * 2 + 1); // B's echo reply
    expect(ct.lookup(ICMP, B, A, 7, 8 << 8, 0)).to.equal(-1); // B's own echo request: new
    const ba = ct.create(ICMP, B, A, 7, 8 << 8, A, B, 7, 0, 0);
    expect(ct.lookup(ICMP, A, B, 7, 0, 0)).to.equal(ba * 2 + 1);
    expect(ct.lookup(ICMP, A, B, 7, 8 << 8, 0)).to.equal(ab * 2);
  });

  it('lists entries for the CLI', () => {
    const ct = new Conntrack({ max: 8, seed: 4 });
    const [o, r] = tcpConn(ct, 0);
    ct.update(o, SYN, 0);
    ct.update(r, SYN | ACK, 0);
    ct.update(o, ACK, 0);
    ct.setMark(o >> 1, 42);
    const [x] = ct.list(10);
    expect(x).to.include({ proto: TCP, protoName: 'tcp', state: 'ESTABLISHED', assured: true, seenReply: true, mark: 42 });
    expect(x!.timeout).to.equal(432000 - 10);
    expect(x!.original).to.deep.equal({ src: '10.244.1.2', dst: '192.168.7.9', sport: 1000, dport: 80 });
    expect(x!.packetsOriginal).to.equal(2);
    expect(formatCtEntry(x!)).to.equal(
      'tcp 6 431990 ESTABLISHED src=10.244.1.2 dst=192.168.7.9 sport=1000 dport=80 src=192.168.7.9 dst=10.244.1.2 sport=80 dport=1000 [ASSURED] mark=42',
    );
  });
});

describe('Conntrack: TCP state machine (Linux states and default timeouts)', () => {
  it('walks open, half-close and close: SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT', () => {
    const ct = new Conntrack({ max: 8, seed: 5 });
    const [o, r] = tcpConn(ct);
    expect(ct.update(o, SYN, 0)).to.equal(CtUpdate.Ok);
    expectState(ct, o, TcpState.SynSent, 120);
    expect(ct.isAssured(o >> 1)).to.equal(false);
    expect(ct.update(r, SYN | ACK, 1)).to.equal(CtUpdate.Ok);
    expectState(ct, o, TcpState.SynRecv, 61);
    expect(ct.status(o >> 1) & CtStatus.SeenReply).to.not.equal(0);
    expect(ct.update(o, ACK, 2)).to.equal(CtUpdate.Ok);
    expectState(ct, o, TcpState.Established, 432002);
    expect(ct.isAssured(o >> 1)).to.equal(true);
    expect(ct.update(r, PSH | ACK, 3)).to.equal(CtUpdate.Ok);
    expect(ct.update(o, FIN | ACK, 4)).to.equal(CtUpdate.Ok);
    expectState(ct, o, TcpState.FinWait, 124);
    // The peer acks the FIN and goes on sending in the half-close; the FIN's sender acks that data.
    expect(ct.update(r, PSH | ACK, 5)).to.equal(CtUpdate.Ok);
    expectState(ct, o, TcpState.CloseWait, 65);
    expect(ct.update(o, ACK, 6)).to.equal(CtUpdate.Ok);
    expectState(ct, o, TcpState.CloseWait, 66);
    expect(ct.update(r, FIN | ACK, 7)).to.equal(CtUpdate.Ok);
    expectState(ct, o, TcpState.LastAck, 37);
    expect(ct.update(o, ACK, 8)).to.equal(CtUpdate.Ok);
    expectState(ct, o, TcpState.TimeWait, 128);
    expect(ct.lookup(TCP, A, B, 1000, 80, 127.9)).to.equal(o);
    expect(ct.lookup(TCP, B, A, 80, 1000, 128)).to.equal(-1); // expired: absent and reclaimed
    expect(ct.size).to.equal(0);
    expect(ct.stats.expired).to.equal(1);
  });

  it('does not take an ACK from the side that sent the FIN as the peer acking it', () => {
    const ct = new Conntrack({ max: 8, seed: 6 });
    const [o, r] = tcpConn(ct);
    ct.update(o, SYN, 0);
    ct.update(r, SYN | ACK, 0);
    ct.update(o, ACK, 0);
    ct.update(o, FIN | ACK, 1);
    ct.update(o, ACK, 2); // acking peer data in the half-close
    expectState(ct, o, TcpState.FinWait, 122);
    ct.update(o, FIN | ACK, 3); // retransmitted FIN
    expectState(ct, o, TcpState.FinWait, 123);
    ct.update(r, ACK, 4);
    expectState(ct, o, TcpState.CloseWait, 64);
  });

  it('handles simultaneous close: FIN both ways, then the ACKs', () => {
    const ct = new Conntrack({ max: 8, seed: 7 });
    const [o, r] = tcpConn(ct);
    ct.update(o, SYN, 0);
    ct.update(r, SYN | ACK, 0);
    ct.update(o, ACK, 0);
    expect(ct.update(o, FIN | ACK, 1)).to.equal(CtUpdate.Ok);
    expectState(ct, o, TcpState.FinWait, 121);
    expect(ct.update(r, FIN | ACK, 1)).to.equal(CtUpdate.Ok);
    expectState(ct, o, TcpState.LastAck, 31);
    expect(ct.update(o, ACK, 2)).to.equal(CtUpdate.Ok);
    expectState(ct, o, TcpState.TimeWait, 122);
    expect(ct.update(r, ACK, 2)).to.equal(CtUpdate.Ok);
    expectState(ct, o, TcpState.TimeWait, 122);
  });

  it('handles simultaneous open through SYN_SENT2', () => {
    const ct = new Conntrack({ max: 8, seed: 8 });
    const [o, r] = tcpConn(ct);
    ct.update(o, SYN, 0);
    expect(ct.update(r, SYN, 0)).to.equal(CtUpdate.Ok);
    expectState(ct, o, TcpState.SynSent2, 120);
    expect(ct.update(o, SYN | ACK, 1)).to.equal(CtUpdate.Ok);
    expectState(ct, o, TcpState.SynRecv, 61);
    expect(ct.update(r, SYN | ACK, 1)).to.equal(CtUpdate.Ignored);
    expect(ct.update(r, ACK, 2)).to.equal(CtUpdate.Ok);
    expect(ct.update(o, ACK, 2)).to.equal(CtUpdate.Ok);
    expectState(ct, o, TcpState.Established, 432002);
    expect(ct.isAssured(o >> 1)).to.equal(true);
  });

  it('moves to CLOSE on RST from either side and expires 10 s later; a new SYN restarts', () => {
    for (const dirOfRst of [0, 1]) {
      const ct = new Conntrack({ max: 8, seed: 9 });
      const [o, r] = tcpConn(ct);
      ct.update(o, SYN, 0);
      ct.update(r, SYN | ACK, 0);
      ct.update(o, ACK, 0);
      expect(ct.update(dirOfRst ? r : o, RST | (dirOfRst ? ACK : 0), 5)).to.equal(CtUpdate.Ok);
      expectState(ct, o, TcpState.Close, 15);
      expect(ct.update(o, SYN, 6)).to.equal(CtUpdate.Restart);
      expect(ct.stats.restarted).to.equal(1);
      expect(ct.lookup(TCP, A, B, 1000, 80, 15)).to.equal(-1);
    }
  });

  it('restarts on a SYN in TIME_WAIT (port reuse) and ignores a SYN on an established connection', () => {
    const ct = new Conntrack({ max: 8, seed: 10 });
    const [o, r] = tcpConn(ct);
    ct.update(o, SYN, 0);
    ct.update(r, SYN | ACK, 0);
    ct.update(o, ACK, 0);
    expect(ct.update(o, SYN, 1)).to.equal(CtUpdate.Ignored);
    expectState(ct, o, TcpState.Established, 432000); // not refreshed
    ct.update(o, FIN | ACK, 2);
    ct.update(r, FIN | ACK, 2);
    ct.update(o, ACK, 2);
    expect(ct.tcpState(o >> 1)).to.equal(TcpState.TimeWait);
    expect(ct.update(o, SYN, 3)).to.equal(CtUpdate.Restart);
  });

  it('rejects packets invalid for the state or with invalid flag combinations, changing nothing', () => {
    const ct = new Conntrack({ max: 8, seed: 11 });
    const [o, r] = tcpConn(ct);
    ct.update(o, SYN, 0);
    expect(ct.update(o, SYN | ACK, 1)).to.equal(CtUpdate.Invalid); // SYN/ACK from the client
    expect(ct.update(o, ACK, 1)).to.equal(CtUpdate.Invalid); // ACK before any SYN/ACK
    expect(ct.update(r, SYN | FIN, 1)).to.equal(CtUpdate.Invalid);
    expect(ct.update(r, FIN, 1)).to.equal(CtUpdate.Invalid); // FIN without ACK
    expect(ct.update(r, 0, 1)).to.equal(CtUpdate.Invalid);
    expectState(ct, o, TcpState.SynSent, 120);
    expect(ct.stats.invalid).to.equal(5);
    expect(ct.update(r, SYN | ACK | PSH, 1)).to.equal(CtUpdate.Ok); // PSH is ignored
  });

  it('picks up a mid-stream connection from a bare ACK (loose), unassured and capped at 300 s until the peer answers', () => {
    const ct = new Conntrack({ max: 8, seed: 12 });
    expect(ct.tcpCanStart(ACK)).to.equal(true);
    expect(ct.tcpCanStart(SYN)).to.equal(true);
    expect(ct.tcpCanStart(FIN | ACK)).to.equal(false);
    expect(ct.tcpCanStart(RST)).to.equal(false);
    expect(new Conntrack({ max: 1, tcpLoose: false }).tcpCanStart(ACK)).to.equal(false);
    const [o, r] = tcpConn(ct);
    expect(ct.update(o, ACK, 0)).to.equal(CtUpdate.Ok);
    expectState(ct, o, TcpState.Established, 300);
    expect(ct.update(o, PSH | ACK, 1)).to.equal(CtUpdate.Ok);
    expect(ct.isAssured(o >> 1)).to.equal(false);
    expectState(ct, o, TcpState.Established, 301);
    expect(ct.update(r, ACK, 2)).to.equal(CtUpdate.Ok);
    expect(ct.isAssured(o >> 1)).to.equal(true);
    expectState(ct, o, TcpState.Established, 432002);
  });

  it('takes configured timeouts', () => {
    const ct = new Conntrack({ max: 8, timeouts: { tcpSynSent: 5, udpUnreplied: 2 } });
    const [o] = tcpConn(ct);
    ct.update(o, SYN, 0);
    expect(ct.expiresAt(o >> 1)).to.equal(5);
    const u = ct.create(UDP, A, B, 1, 2, B, A, 2, 1, 0);
    ct.update(u * 2, 0, 0);
    expect(ct.expiresAt(u)).to.equal(2);
    expect(() => new Conntrack({ timeouts: { icmp: 0 } })).to.throw(RangeError);
  });
});

describe('Conntrack: UDP and ICMP timeouts', () => {
  it('UDP: 30 s unreplied, then assured with 120 s once a reply is seen', () => {
    const ct = new Conntrack({ max: 8, seed: 13 });
    const id = ct.create(UDP, A, B, 5353, 53, B, A, 53, 5353, 0);
    ct.update(id * 2, 0, 0);
    expect(ct.expiresAt(id)).to.equal(30);
    ct.update(id * 2, 0, 10);
    expect(ct.expiresAt(id)).to.equal(40);
    expect(ct.isAssured(id)).to.equal(false);
    ct.update(id * 2 + 1, 0, 11);
    expect(ct.isAssured(id)).to.equal(true);
    expect(ct.expiresAt(id)).to.equal(131);
    ct.update(id * 2, 0, 12);
    expect(ct.expiresAt(id)).to.equal(132);
    expect(ct.lookup(UDP, A, B, 5353, 53, 131.9)).to.equal(id * 2);
    expect(ct.lookup(UDP, A, B, 5353, 53, 132)).to.equal(-1);
  });

  it('UDP unreplied expires after 30 s; ICMP echo after 30 s', () => {
    const ct = new Conntrack({ max: 8, seed: 14 });
    const u = ct.create(UDP, A, B, 5353, 53, B, A, 53, 5353, 0);
    ct.update(u * 2, 0, 0);
    const i = ct.create(ICMP, A, B, 9, 8 << 8, B, A, 9, 0, 0);
    ct.update(i * 2, 0, 0);
    ct.update(i * 2 + 1, 0, 0);
    expect(ct.expiresAt(i)).to.equal(30);
    expect(ct.lookup(UDP, B, A, 53, 5353, 29.99)).to.equal(u * 2 + 1);
    expect(ct.lookup(UDP, B, A, 53, 5353, 30)).to.equal(-1);
    expect(ct.lookup(ICMP, B, A, 9, 0, 30)).to.equal(-1);
    expect(ct.size).to.equal(0);
  });
});

describe('Conntrack: expiry by gc, limits and eviction', () => {
  it('gc reclaims expired entries a bounded slice at a time', () => {
    const ct = new Conntrack({ max: 200, seed: 15 });
    const ids: number[] = [];
    for (let i = 0; i < 100; i++) {
      const id = ct.create(UDP, A, B, 10000 + i, 53, B, A, 53, 10000 + i, 0);
      ct.update(id * 2, 0, 0);
      ids.push(id);
    }
    for (let i = 0; i < 100; i += 2) ct.update(ids[i]! * 2, 0, 20); // half refreshed: expire at 50
    let reclaimed = 0;
    for (let k = 0; k < 10; k++) {
      // ten slices of 10 cover all 100 slots
      const n = ct.gc(40, 10);
      expect(n).to.be.at.most(5);
      reclaimed += n;
    }
    expect(reclaimed).to.equal(50);
    expect(ct.size).to.equal(50);
    expect(ct.stats.expired).to.equal(50);
    for (let i = 0; i < 100; i++) {
      expect(ct.lookup(UDP, A, B, 10000 + i, 53, 40) >= 0).to.equal(i % 2 === 0);
    }
    expect(ct.gc(50, 1000)).to.equal(50);
    expect(ct.size).to.equal(0);
    expect(ct.gc(60, 10)).to.equal(0);
  });

  it('under a flood of 10x the limit, evicts unassured entries, keeps the assured ones and counts refusals', () => {
    const max = 1000;
    const ct = new Conntrack({ max, seed: 16 });
    const client = (i: number) => (ip('10.1.0.0') + i) >>> 0;
    for (let i = 0; i < 300; i++) {
      const id = ct.create(UDP, client(i), B, 4000, 53, B, client(i), 53, 4000, 0);
      ct.update(id * 2, 0, 0);
      ct.update(id * 2 + 1, 0, 0);
    }
    let refused = 0;
    for (let i = 0; i < 10 * max; i++) {
      const src = (ip('172.16.0.0') + i) >>> 0;
      const id = ct.create(TCP, src, B, 30000, 80, B, src, 80, 30000, 1 + i * 1e-3);
      if (id < 0) refused++;
      else ct.update(id * 2, SYN, 1 + i * 1e-3);
      expect(ct.size).to.be.at.most(max);
    }
    expect(ct.size).to.equal(max);
    for (let i = 0; i < 300; i++) expect(ct.lookup(UDP, B, client(i), 53, 4000, 20), `assured ${i}`).to.be.at.least(0);
    expect(ct.stats.evicted).to.be.greaterThan(9000);
    expect(refused).to.be.lessThan(200); // only when a scan window held nothing but assured entries
    expect(ct.stats.dropFull).to.equal(refused);
    expect(ct.stats.created + refused).to.equal(300 + 10 * max);
  });

  it('refuses (and counts) new entries when every entry is assured; reuses expired ones', () => {
    const ct = new Conntrack({ max: 100, seed: 17 });
    for (let i = 0; i < 100; i++) {
      const id = ct.create(UDP, A, B, i, 53, B, A, 53, i, 0);
      ct.update(id * 2, 0, 0);
      ct.update(id * 2 + 1, 0, 0);
    }
    for (let i = 0; i < 1000; i++) expect(ct.create(UDP, B, A, i, 99, A, B, 99, i, 1)).to.equal(-1);
    expect(ct.stats.dropFull).to.equal(1000);
    expect(ct.size).to.equal(100);
    // 120 s later every entry has expired: a full table reclaims them instead of refusing.
    expect(ct.create(UDP, B, A, 1, 99, A, B, 99, 1, 121)).to.be.at.least(0);
    expect(ct.stats.expired).to.equal(1);
    expect(ct.stats.evicted).to.equal(0);
  });

  it('deleteWhere removes matching entries, e.g. UDP flows whose reply source is a removed endpoint', () => {
    const ct = new Conntrack({ max: 64, seed: 18 });
    const vip = ip('10.96.0.10');
    const e1 = ip('10.244.2.7');
    const e2 = ip('10.244.3.8');
    for (let i = 0; i < 20; i++) {
      const ep = i % 2 ? e1 : e2;
      ct.create(UDP, A, vip, 20000 + i, 53, ep, A, 53, 20000 + i, 0);
      ct.create(TCP, A, vip, 20000 + i, 53, ep, A, 53, 20000 + i, 0);
    }
    const n = ct.deleteWhere((id, t) => t.proto(id) === UDP && t.src(id * 2 + 1) === e1);
    expect(n).to.equal(10);
    expect(ct.size).to.equal(30);
    expect(ct.stats.deleted).to.equal(10);
    for (let i = 0; i < 20; i++) {
      expect(ct.lookup(UDP, A, vip, 20000 + i, 53, 1) >= 0).to.equal(i % 2 === 0);
      expect(ct.lookup(TCP, A, vip, 20000 + i, 53, 1)).to.be.at.least(0);
    }
    let live = 0;
    ct.forEach(() => live++);
    expect(live).to.equal(30);
  });

  it('works with 1,000,000 entries', function () {
    this.timeout(60000);
    const max = 1_000_000;
    const ct = new Conntrack({ max });
    expect(ct.indexSlots).to.be.at.least(4 * max);
    // Clients 10.0.0.0/12-ish, 40 ports each, to a handful of services.
    const src = (i: number) => (0x0a000000 + Math.floor(i / 40)) >>> 0;
    const sport = (i: number) => 32768 + (i % 40);
    const dst = (i: number) => (0xc0a80000 + (i % 7)) >>> 0;
    for (let i = 0; i < max; i++) {
      const id = ct.create(TCP, src(i), dst(i), sport(i), 443, dst(i), src(i), 443, sport(i), 0);
      if (id < 0) throw new Error(`create ${i} failed`);
    }
    expect(ct.size).to.equal(max);
    for (let k = 0; k < 20000; k++) {
      const i = (k * 7919) % max;
      const o = ct.lookup(TCP, src(i), dst(i), sport(i), 443, 1);
      expect(o & 1).to.equal(0);
      expect(ct.lookup(TCP, dst(i), src(i), 443, sport(i), 1)).to.equal(o + 1);
    }
    expect(ct.lookup(TCP, src(0), dst(0), 9, 443, 1)).to.equal(-1);
    // Full: one more evicts an unassured entry.
    expect(ct.create(UDP, 1, 2, 3, 4, 2, 1, 4, 3, 1)).to.be.at.least(0);
    expect(ct.stats.evicted).to.equal(1);
    expect(ct.size).to.equal(max);
  });
});
