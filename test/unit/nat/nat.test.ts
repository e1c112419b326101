import { expect } from 'chai';
import { DropReason } from '../../../src/util/counters.js';
import { Conntrack, CtStatus, TcpState } from '../../../src/nat/conntrack.js';
import { Nat, Verdict } from '../../../src/nat/nat.js';
import {
  checksum,
  IcmpTimeExceededCode,
  IcmpType,
  IcmpUnreachCode,
  IcmpView,
  IpProtocol,
  Ipv4View,
  TcpFlags,
} from '../../../src/packet/index.js';
import { echo, flow, icmpError, ip, seen, tcp, udp, type Pkt } from './packets.js';

const { SYN, ACK, FIN, RST, PSH } = TcpFlags;

const C = '10.244.1.2'; // client pod
const C2 = '10.244.1.3';
const GW = '10.244.1.1'; // the node's gateway
const VIP = '10.96.0.10'; // ClusterIP
const VIP2 = '10.96.0.20';
const E = '10.244.2.7'; // endpoint pod on another node
const N = '192.168.50.11'; // the node's underlay address
const D = '93.184.216.34'; // outside the cluster
const R = '192.168.50.1'; // a router on the way

function setup(max = 1024) {
  const ct = new Conntrack({ max, seed: 1 });
  const nat = new Nat(ct, { seed: 1 });
  return { ct, nat };
}

const tr = (nat: Nat, p: Pkt, now = 0) => nat.translate(p.buf, p.off, p.len, now);
const copy = (p: Pkt): Pkt => ({ buf: Buffer.from(p.buf), off: p.off, len: p.len });
const drops = (nat: Nat, r: DropReason) => nat.drops.counts[r];

describe('NAT: ClusterIP DNAT', () => {
  it('DNATs a TCP SYN to the endpoint and un-DNATs the reply; the connection walks to ESTABLISHED', () => {
    const { ct, nat } = setup();
    const syn = tcp(C, VIP, 40000, 80, SYN);
    expect(tr(nat, syn)).to.equal(Verdict.New);
    expect([nat.proto, nat.src, nat.dst, nat.sport, nat.dport]).to.deep.equal([IpProtocol.TCP, ip(C), ip(VIP), 40000, 80]);
    expect(nat.createDnat(syn.buf, syn.off, syn.len, 0, ip(E), 8080)).to.equal(Verdict.Ok);
    expect(flow(seen(syn))).to.equal(`${C}:40000 > ${E}:8080`);
    const id = nat.ref >> 1;
    expect(nat.ref & 1).to.equal(0);
    expect(ct.status(id) & (CtStatus.DstNat | CtStatus.SrcNat)).to.equal(CtStatus.DstNat);

    const synack = tcp(E, C, 8080, 40000, SYN | ACK);
    expect(tr(nat, synack, 0.001)).to.equal(Verdict.Ok);
    expect(nat.ref).to.equal(id * 2 + 1);
    expect(flow(seen(synack))).to.equal(`${VIP}:80 > ${C}:40000`);

    const data = tcp(C, VIP, 40000, 80, PSH | ACK, { payload: 101 }); // odd length
    expect(tr(nat, data, 0.002)).to.equal(Verdict.Ok);
    expect(flow(seen(data))).to.equal(`${C}:40000 > ${E}:8080`);
    expect(ct.tcpState(id)).to.equal(TcpState.Established);
    expect(ct.isAssured(id)).to.equal(true);
    expect(nat.stats.translated).to.equal(3);
    expect(nat.stats.created).to.equal(1);
  });

  it('DNATs ICMP echo to a service address (identifier unchanged)', () => {
    const { nat } = setup();
    const req = echo(C, VIP, IcmpType.EchoRequest, 77, 1);
    expect(tr(nat, req)).to.equal(Verdict.New);
    expect(nat.createDnat(req.buf, req.off, req.len, 0, ip(E), 0)).to.equal(Verdict.Ok);
    expect(seen(req)).to.include({ src: C, dst: E, sport: 77 });
    const rep = echo(E, C, IcmpType.EchoReply, 77, 1);
    expect(tr(nat, rep)).to.equal(Verdict.Ok);
    expect(seen(rep)).to.include({ src: VIP, dst: C, sport: 77, flags: IcmpType.EchoReply });
    // The next request finds the same connection.
    const req2 = echo(C, VIP, IcmpType.EchoRequest, 77, 2);
    expect(tr(nat, req2)).to.equal(Verdict.Ok);
    expect(seen(req2)).to.include({ dst: E });
  });

  it('resolves a REPLY tuple clash (one client port to two services with one endpoint) by remapping the source port', () => {
    const { nat } = setup();
    const a = tcp(C, VIP, 40000, 80, SYN);
    expect(nat.createDnat(a.buf, a.off, a.len, 0, ip(E), 8080)).to.equal(Verdict.Ok);
    const b = tcp(C, VIP2, 40000, 80, SYN);
    expect(nat.createDnat(b.buf, b.off, b.len, 0, ip(E), 8080)).to.equal(Verdict.Ok);
    const sb = seen(b);
    expect(sb).to.include({ src: C, dst: E, dport: 8080 });
    expect(sb.sport).to.not.equal(40000);
    expect(sb.sport).to.be.within(1024, 65535);
    expect(nat.stats.clashResolved).to.equal(1);
    const ra = tcp(E, C, 8080, 40000, SYN | ACK);
    expect(tr(nat, ra)).to.equal(Verdict.Ok);
    expect(flow(seen(ra))).to.equal(`${VIP}:80 > ${C}:40000`);
    const rb = tcp(E, C, 8080, sb.sport, SYN | ACK);
    expect(tr(nat, rb)).to.equal(Verdict.Ok);
    expect(flow(seen(rb))).to.equal(`${VIP2}:80 > ${C}:40000`);
  });

  it('reopens a connection in TIME_WAIT as a new one (the router may pick another endpoint)', () => {
    const { ct, nat } = setup();
    const send = (p: Pkt, now: number) => tr(nat, p, now);
    const syn = tcp(C, VIP, 40000, 80, SYN);
    nat.createDnat(syn.buf, syn.off, syn.len, 0, ip(E), 8080);
    send(tcp(E, C, 8080, 40000, SYN | ACK), 0);
    send(tcp(C, VIP, 40000, 80, ACK), 0);
    send(tcp(C, VIP, 40000, 80, FIN | ACK), 1);
    send(tcp(E, C, 8080, 40000, FIN | ACK), 1);
    expect(send(tcp(C, VIP, 40000, 80, ACK), 1)).to.equal(Verdict.Ok);
    expect(ct.tcpState(nat.ref >> 1)).to.equal(TcpState.TimeWait);
    const again = tcp(C, VIP, 40000, 80, SYN);
    expect(send(again, 2)).to.equal(Verdict.New);
    expect(ct.size).to.equal(0);
    expect(nat.createDnat(again.buf, again.off, again.len, 2, ip('10.244.3.9'), 8080)).to.equal(Verdict.Ok);
    expect(seen(again).dst).to.equal('10.244.3.9');
  });

  it('drops (and counts) packets invalid for the connection, and first packets that cannot open one', () => {
    const { ct, nat } = setup();
    const syn = tcp(C, VIP, 40000, 80, SYN);
    nat.createDnat(syn.buf, syn.off, syn.len, 0, ip(E), 8080);
    const bogus = tcp(C, VIP, 40000, 80, SYN | ACK);
    const before = Buffer.from(bogus.buf);
    expect(tr(nat, bogus)).to.equal(Verdict.Drop);
    expect(bogus.buf.equals(before)).to.equal(true); // not rewritten
    expect(drops(nat, DropReason.ConntrackInvalid)).to.equal(1);
    expect(ct.stats.invalid).to.equal(1);

    const fin = tcp(C, VIP, 40001, 80, FIN | ACK);
    expect(tr(nat, fin)).to.equal(Verdict.New);
    expect(nat.createDnat(fin.buf, fin.off, fin.len, 0, ip(E), 8080)).to.equal(Verdict.Drop);
    expect(drops(nat, DropReason.ConntrackInvalid)).to.equal(2);
    expect(nat.createTracked(fin.buf, fin.off, fin.len, 0)).to.equal(Verdict.NotTracked); // forwarded as is
    const stray = echo(D, C, IcmpType.EchoReply, 5);
    expect(nat.createTracked(stray.buf, stray.off, stray.len, 0)).to.equal(Verdict.NotTracked);
    expect(ct.size).to.equal(1);
  });

  it('does not track fragments after the first nor other protocols', () => {
    const { nat } = setup();
    const frag = udp(C, VIP, 5000, 53, { payload: 64 });
    frag.buf.writeUInt16BE(0x0002, frag.off + 6); // fragment offset 16 bytes
    expect(tr(nat, frag)).to.equal(Verdict.NotTracked);
    expect(nat.createDnat(frag.buf, frag.off, frag.len, 0, ip(E), 53)).to.equal(Verdict.Drop);
    expect(drops(nat, DropReason.NatUntrackable)).to.equal(1);
    const gre = udp(C, D, 1, 2);
    gre.buf[gre.off + 9] = 47;
    expect(tr(nat, gre)).to.equal(Verdict.NotTracked);
    const short = tcp(C, VIP, 1, 2, SYN);
    expect(nat.translate(short.buf, short.off, 10, 0)).to.equal(Verdict.Drop);
    expect(drops(nat, DropReason.MalformedIpv4)).to.equal(1);
  });

  it('translates the first fragment (ports present, checksum updated incrementally over a partial datagram)', () => {
    const { nat } = setup();
    const whole = udp(C, VIP, 5000, 53, { payload: 64 });
    const expected = copy(whole);
    // The first fragment: MF set and only 24 of the 72 UDP bytes present.
    const first: Pkt = { buf: Buffer.from(whole.buf), off: whole.off, len: 20 + 24 };
    first.buf.writeUInt16BE(20 + 24, first.off + 2);
    first.buf.writeUInt16BE(0x2000, first.off + 6);
    first.buf.writeUInt16BE(0, first.off + 10);
    first.buf.writeUInt16BE(checksum(first.buf, first.off, 20), first.off + 10);
    expect(Ipv4View.parse(first.buf, first.off, first.len).moreFragments).to.equal(true);
    expect(nat.createDnat(first.buf, first.off, first.len, 0, ip(E), 5353)).to.equal(Verdict.Ok);
    // Its UDP checksum field must be what the whole datagram's would be after the same translation.
    expect(nat.createDnat(expected.buf, expected.off, expected.len, 0, ip(E), 5353)).to.equal(Verdict.Ok); // same tuple: translate
    expect(first.buf.readUInt16BE(first.off + 26)).to.equal(expected.buf.readUInt16BE(expected.off + 26));
    expect(seen(expected)).to.include({ dst: E, dport: 5353 });
  });
});

describe('NAT: SNAT (masquerade)', () => {
  it('masquerades UDP to the node address with a port from 61001-65535 and translates the reply back', () => {
    const { ct, nat } = setup();
    const q = udp(C, D, 5353, 53);
    expect(tr(nat, q)).to.equal(Verdict.New);
    expect(nat.createSnat(q.buf, q.off, q.len, 0, ip(N), 61001, 65535)).to.equal(Verdict.Ok);
    const sq = seen(q);
    expect(sq).to.include({ src: N, dst: D, dport: 53 });
    expect(sq.sport).to.be.within(61001, 65535);
    expect(ct.status(nat.ref >> 1) & (CtStatus.DstNat | CtStatus.SrcNat)).to.equal(CtStatus.SrcNat);
    const a = udp(D, N, 53, sq.sport);
    expect(tr(nat, a, 1)).to.equal(Verdict.Ok);
    expect(flow(seen(a))).to.equal(`${D}:53 > ${C}:5353`);
    expect(ct.isAssured(nat.ref >> 1)).to.equal(true);
    expect(ct.expiresAt(nat.ref >> 1)).to.equal(121);
  });

  it('leaves a UDP checksum of 0 ("none") at 0', () => {
    const { nat } = setup();
    const q = udp(C, D, 5353, 53, { noChecksum: true });
    expect(nat.createSnat(q.buf, q.off, q.len, 0, ip(N), 61001, 65535)).to.equal(Verdict.Ok);
    expect(q.buf.readUInt16BE(q.off + 26)).to.equal(0);
    const sq = seen(q);
    const a = udp(D, N, 53, sq.sport, { noChecksum: true });
    expect(tr(nat, a)).to.equal(Verdict.Ok);
    expect(a.buf.readUInt16BE(a.off + 26)).to.equal(0);
    expect(flow(seen(a))).to.equal(`${D}:53 > ${C}:5353`);
  });

  it('keeps the source port when it is inside the range and free', () => {
    const { nat } = setup();
    const q = tcp(C, D, 40000, 443, SYN);
    expect(nat.createSnat(q.buf, q.off, q.len, 0, ip(N), 1024, 65535)).to.equal(Verdict.Ok);
    expect(flow(seen(q))).to.equal(`${N}:40000 > ${D}:443`);
    const q2 = tcp(C2, D, 40000, 443, SYN); // same port from another pod: must move
    expect(nat.createSnat(q2.buf, q2.off, q2.len, 0, ip(N), 1024, 65535)).to.equal(Verdict.Ok);
    expect(seen(q2).sport).to.not.equal(40000);
  });

  it('masquerades ICMP echo by allocating the identifier', () => {
    const { nat } = setup();
    const r1 = echo(C, D, IcmpType.EchoRequest, 7, 1);
    const r2 = echo(C2, D, IcmpType.EchoRequest, 7, 1);
    expect(nat.createSnat(r1.buf, r1.off, r1.len, 0, ip(N), 61001, 65535)).to.equal(Verdict.Ok);
    expect(nat.createSnat(r2.buf, r2.off, r2.len, 0, ip(N), 61001, 65535)).to.equal(Verdict.Ok);
    const s1 = seen(r1);
    const s2 = seen(r2);
    expect(s1).to.include({ src: N, dst: D });
    expect(s1.sport).to.be.within(61001, 65535);
    expect(s2.sport).to.not.equal(s1.sport);
    const a2 = echo(D, N, IcmpType.EchoReply, s2.sport, 1);
    expect(tr(nat, a2)).to.equal(Verdict.Ok);
    expect(seen(a2)).to.include({ src: D, dst: C2, sport: 7 });
    const a1 = echo(D, N, IcmpType.EchoReply, s1.sport, 1);
    expect(tr(nat, a1)).to.equal(Verdict.Ok);
    expect(seen(a1)).to.include({ src: D, dst: C, sport: 7 });
  });
});

describe('NAT: DNAT + SNAT', () => {
  it('hairpin: a pod reaching itself through its service is DNATed to itself and SNATed to the gateway', () => {
    const { ct, nat } = setup();
    const syn = tcp(C, VIP, 40000, 80, SYN);
    expect(tr(nat, syn)).to.equal(Verdict.New);
    expect(nat.createDnatSnat(syn.buf, syn.off, syn.len, 0, ip(C), 8080, ip(GW), 61001, 65535)).to.equal(Verdict.Ok);
    const s = seen(syn);
    expect(s).to.include({ src: GW, dst: C, dport: 8080 });
    expect(s.sport).to.be.within(61001, 65535);
    expect(ct.status(nat.ref >> 1) & (CtStatus.DstNat | CtStatus.SrcNat)).to.equal(CtStatus.DstNat | CtStatus.SrcNat);
    const synack = tcp(C, GW, 8080, s.sport, SYN | ACK);
    expect(tr(nat, synack)).to.equal(Verdict.Ok);
    expect(flow(seen(synack))).to.equal(`${VIP}:80 > ${C}:40000`);
    const ack = tcp(C, VIP, 40000, 80, ACK, { payload: 17 });
    expect(tr(nat, ack)).to.equal(Verdict.Ok);
    expect(flow(seen(ack))).to.equal(`${GW}:${s.sport} > ${C}:8080`);
  });

  it('NodePort with policy Cluster: DNAT to an endpoint and SNAT to the node', () => {
    const { nat } = setup();
    const X = '203.0.113.5';
    const syn = tcp(X, N, 55555, 30080, SYN);
    expect(nat.createDnatSnat(syn.buf, syn.off, syn.len, 0, ip(E), 8080, ip(N), 61001, 65535)).to.equal(Verdict.Ok);
    const s = seen(syn);
    expect(s).to.include({ src: N, dst: E, dport: 8080 });
    const synack = tcp(E, N, 8080, s.sport, SYN | ACK);
    expect(tr(nat, synack)).to.equal(Verdict.Ok);
    expect(flow(seen(synack))).to.equal(`${N}:30080 > ${X}:55555`);
  });
});

describe('NAT: ICMP errors', () => {
  it('port unreachable from a DNATed endpoint reaches the client as coming from the service, all checksums valid', () => {
    const { nat } = setup();
    const q = udp(C, VIP, 5353, 53, { payload: 40 });
    const sent = copy(q); // what the client sent
    expect(nat.createDnat(q.buf, q.off, q.len, 0, ip(E), 5353)).to.equal(Verdict.Ok);
    const err = icmpError(E, C, IcmpType.DestUnreachable, IcmpUnreachCode.Port, 0, q);
    expect(tr(nat, err)).to.equal(Verdict.Ok);
    const s = seen(err); // outer, ICMP, quoted IPv4 and (whole quote) quoted UDP checksums
    expect(s).to.include({ src: VIP, dst: C, flags: IcmpType.DestUnreachable });
    expect(flow(s.inner!)).to.equal(`${C}:5353 > ${VIP}:53`);
    // The quote is byte for byte what the client sent.
    const quote = err.buf.subarray(err.off + 28, err.off + err.len);
    expect(quote.equals(sent.buf.subarray(sent.off, sent.off + sent.len))).to.equal(true);
    expect(nat.stats.icmpErrors).to.equal(1);
  });

  it('frag-needed from a router on the path reaches the masqueraded client (router address and MTU kept)', () => {
    const { nat } = setup();
    const big = tcp(C, D, 40000, 443, PSH | ACK, { payload: 1400 });
    // Open the connection first with a SYN, as a client would.
    const syn = tcp(C, D, 40000, 443, SYN);
    expect(nat.createSnat(syn.buf, syn.off, syn.len, 0, ip(N), 61001, 65535)).to.equal(Verdict.Ok);
    const port = seen(syn).sport;
    expect(tr(nat, tcp(D, N, 443, port, SYN | ACK))).to.equal(Verdict.Ok);
    const sent = copy(big);
    expect(tr(nat, big)).to.equal(Verdict.Ok);
    expect(flow(seen(big))).to.equal(`${N}:${port} > ${D}:443`);
    const err = icmpError(R, N, IcmpType.DestUnreachable, IcmpUnreachCode.FragNeeded, 1400, big);
    expect(err.len).to.equal(20 + 8 + 548); // truncated quote: the TCP checksum is inside, the payload is not all there
    expect(tr(nat, err)).to.equal(Verdict.Ok);
    const s = seen(err);
    expect(s).to.include({ src: R, dst: C });
    expect(flow(s.inner!)).to.equal(`${C}:40000 > ${D}:443`);
    expect(IcmpView.parse(err.buf, err.off + 20, err.len - 20).nextHopMtu).to.equal(1400);
    // Quoted header and TCP checksum are back to what the client sent.
    const quote = err.buf.subarray(err.off + 28, err.off + err.len);
    expect(quote.equals(sent.buf.subarray(sent.off, sent.off + 548))).to.equal(true);
  });

  it('time exceeded about a masqueraded ping restores the identifier in the quote', () => {
    const { nat } = setup();
    const req = echo(C, D, IcmpType.EchoRequest, 99, 3);
    const sent = copy(req);
    expect(nat.createSnat(req.buf, req.off, req.len, 0, ip(N), 61001, 65535)).to.equal(Verdict.Ok);
    const err = icmpError(R, N, IcmpType.TimeExceeded, IcmpTimeExceededCode.TtlExceeded, 0, req);
    expect(tr(nat, err)).to.equal(Verdict.Ok);
    const s = seen(err);
    expect(s).to.include({ src: R, dst: C });
    expect(s.inner).to.include({ src: C, dst: D, sport: 99, flags: IcmpType.EchoRequest });
    expect(err.buf.subarray(err.off + 28, err.off + err.len).equals(sent.buf.subarray(sent.off, sent.off + sent.len))).to.equal(true);
  });

  it('hairpin: port unreachable from the pod itself goes back as from the service', () => {
    const { nat } = setup();
    const q = udp(C, VIP, 6000, 53);
    const sent = copy(q);
    expect(nat.createDnatSnat(q.buf, q.off, q.len, 0, ip(C), 5353, ip(GW), 61001, 65535)).to.equal(Verdict.Ok);
    const err = icmpError(C, GW, IcmpType.DestUnreachable, IcmpUnreachCode.Port, 0, q);
    expect(tr(nat, err)).to.equal(Verdict.Ok);
    const s = seen(err);
    expect(s).to.include({ src: VIP, dst: C });
    expect(err.buf.subarray(err.off + 28, err.off + err.len).equals(sent.buf.subarray(sent.off, sent.off + sent.len))).to.equal(true);
  });

  it('leaves errors that match no connection alone (including errors about a packet before its translation)', () => {
    const { nat } = setup();
    const q = udp(C, VIP, 5353, 53);
    const before = copy(q);
    expect(nat.createDnat(q.buf, q.off, q.len, 0, ip(E), 5353)).to.equal(Verdict.Ok);
    const early = icmpError(GW, C, IcmpType.DestUnreachable, IcmpUnreachCode.FragNeeded, 1450, before);
    const untouched = Buffer.from(early.buf);
    expect(tr(nat, early)).to.equal(Verdict.NotTracked);
    expect(early.buf.equals(untouched)).to.equal(true);
    const other = icmpError(R, C, IcmpType.DestUnreachable, IcmpUnreachCode.Host, 0, udp(C, D, 1, 2));
    expect(tr(nat, other)).to.equal(Verdict.NotTracked);
  });
});

describe('NAT: source port allocation', () => {
  /** Every tuple in the table, as strings: no two may be equal. */
  function assertUniqueTuples(ct: Conntrack): number {
    const all = new Set<string>();
    let n = 0;
    ct.forEach((id) => {
      for (const ref of [id * 2, id * 2 + 1]) {
        const k = `${ct.proto(id)} ${ct.src(ref)} ${ct.dst(ref)} ${ct.sport(ref)} ${ct.dport(ref)}`;
        expect(all.has(k), `duplicate tuple ${k}`).to.equal(false);
        all.add(k);
        n++;
      }
    });
    return n;
  }

  it('finds the last free port of a small range and fails cleanly (counted) when it is exhausted', () => {
    const { ct, nat } = setup();
    const used = new Set<number>();
    for (let i = 0; i < 10; i++) {
      const p = tcp(`10.244.1.${10 + i}`, D, 40000, 443, SYN);
      expect(nat.createSnat(p.buf, p.off, p.len, 0, ip(N), 61001, 61010), `client ${i}`).to.equal(Verdict.Ok);
      const port = seen(p).sport;
      expect(port).to.be.within(61001, 61010);
      expect(used.has(port)).to.equal(false);
      used.add(port);
    }
    expect(used.size).to.equal(10);
    const p = tcp('10.244.1.99', D, 40000, 443, SYN);
    const before = Buffer.from(p.buf);
    expect(nat.createSnat(p.buf, p.off, p.len, 0, ip(N), 61001, 61010)).to.equal(Verdict.Drop);
    expect(p.buf.equals(before)).to.equal(true);
    expect(drops(nat, DropReason.NatPortsExhausted)).to.equal(1);
    expect(nat.stats.portsExhausted).to.equal(1);
    expect(ct.size).to.equal(10);
    // Another destination has its own 10 ports.
    const q = tcp('10.244.1.99', '93.184.216.35', 40000, 443, SYN);
    expect(nat.createSnat(q.buf, q.off, q.len, 0, ip(N), 61001, 61010)).to.equal(Verdict.Ok);
    assertUniqueTuples(ct);
  });

  it('never hands out a colliding REPLY tuple when most of a range is taken, across expiry and reuse', () => {
    const ct = new Conntrack({ max: 4096, seed: 7 });
    const nat = new Nat(ct, { seed: 7 });
    const lo = 62000;
    const hi = 62299; // 300 ports: more than one round of 128 attempts
    let ok = 0;
    let failed = 0;
    let now = 0;
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < 290; i++) {
        const p = udp(`10.244.${1 + (i >> 8)}.${i & 0xff}`, D, 5000 + round, 53);
        const v = nat.createSnat(p.buf, p.off, p.len, now, ip(N), lo, hi);
        if (v === Verdict.Ok) {
          ok++;
          expect(seen(p).sport).to.be.within(lo, hi);
        } else {
          expect(v).to.equal(Verdict.Drop);
          failed++;
        }
      }
      assertUniqueTuples(ct);
      expect(ct.size).to.be.at.most(300);
      now += 31; // everything unreplied expires: the range is free again
    }
    expect(ok + failed).to.equal(6 * 290);
    expect(failed).to.equal(nat.stats.portsExhausted);
    expect(ok).to.be.greaterThan(6 * 280);
  });
});

describe('NAT: expiry seen through translate', () => {
  it('an expired connection is new again', () => {
    const { ct, nat } = setup();
    const q = udp(C, VIP, 5353, 53);
    expect(nat.createDnat(q.buf, q.off, q.len, 0, ip(E), 53)).to.equal(Verdict.Ok);
    expect(tr(nat, udp(E, C, 53, 5353), 29)).to.equal(Verdict.Ok); // replied: 120 s now
    expect(tr(nat, udp(E, C, 53, 5353), 148)).to.equal(Verdict.Ok);
    expect(tr(nat, udp(C, VIP, 5353, 53), 268.5)).to.equal(Verdict.New);
    expect(ct.size).to.equal(0);
    expect(ct.stats.expired).to.equal(1);
  });

  it('RST closes the NATed connection and it goes 10 s later', () => {
    const { ct, nat } = setup();
    const syn = tcp(C, VIP, 40000, 80, SYN);
    nat.createDnat(syn.buf, syn.off, syn.len, 0, ip(E), 8080);
    const rst = tcp(E, C, 8080, 40000, RST | ACK);
    expect(tr(nat, rst, 1)).to.equal(Verdict.Ok);
    expect(flow(seen(rst))).to.equal(`${VIP}:80 > ${C}:40000`);
    expect(ct.tcpState(nat.ref >> 1)).to.equal(TcpState.Close);
    expect(ct.gc(11, 100)).to.equal(1);
    expect(tr(nat, tcp(E, C, 8080, 40000, ACK), 11)).to.equal(Verdict.New);
  });
});

describe('NAT: what translate carries over to create*', () => {
  it('create* right after New reuses the parsed tuple; on another packet it parses and looks up itself', () => {
    const { ct, nat } = setup();
    const a = tcp(C, VIP, 40000, 80, SYN);
    const b = tcp(C2, VIP, 40001, 80, SYN);
    expect(tr(nat, a)).to.equal(Verdict.New);
    // create* for a different packet than the one translate saw: its own tuple, not a's.
    expect(nat.createDnat(b.buf, b.off, b.len, 0, ip(E), 8080)).to.equal(Verdict.Ok);
    expect(flow(seen(b))).to.equal(`${C2}:40001 > ${E}:8080`);
    expect(ct.lookup(IpProtocol.TCP, ip(C2), ip(VIP), 40001, 80, 0)).to.equal(nat.ref);
    // ... and a's remembered parse is gone: creating a now parses a afresh.
    expect(nat.createDnat(a.buf, a.off, a.len, 0, ip(E), 8080)).to.equal(Verdict.Ok);
    expect(flow(seen(a))).to.equal(`${C}:40000 > ${E}:8080`);
    expect(ct.size).to.equal(2);
    expect(ct.dnatCount).to.equal(2);
  });

  it('translateValidated gives what translate gives for a valid header', () => {
    const { nat } = setup();
    const syn = tcp(C, VIP, 40000, 80, SYN);
    expect(nat.translateValidated(syn.buf, syn.off, syn.len, 0)).to.equal(Verdict.New);
    expect(nat.createDnat(syn.buf, syn.off, syn.len, 0, ip(E), 8080)).to.equal(Verdict.Ok);
    const synack = tcp(E, C, 8080, 40000, SYN | ACK);
    expect(nat.translateValidated(synack.buf, synack.off, synack.len, 0)).to.equal(Verdict.Ok);
    expect(flow(seen(synack))).to.equal(`${VIP}:80 > ${C}:40000`);
  });

  it('tracks() tells whether translate would find a connection, changing nothing', () => {
    const { ct, nat } = setup();
    const syn = tcp(C, VIP, 40000, 80, SYN);
    expect(nat.createDnat(syn.buf, syn.off, syn.len, 0, ip(E), 8080)).to.equal(Verdict.Ok);
    const id = nat.ref >> 1;
    const reply = tcp(E, C, 8080, 40000, SYN | ACK);
    const before = Buffer.from(reply.buf);
    expect(nat.tracks(reply.buf, reply.off, reply.len, 0)).to.equal(true);
    expect(reply.buf.equals(before)).to.equal(true);
    expect(ct.packets(id * 2 + 1)).to.equal(0);
    const other = tcp(C2, E, 40001, 8080, SYN);
    expect(nat.tracks(other.buf, other.off, other.len, 0)).to.equal(false);
  });

  it('counts live DNAT entries (what the bridge hook checks), not SNAT-only ones', () => {
    const { ct, nat } = setup();
    expect(ct.dnatCount).to.equal(0);
    const q = udp(C, D, 5353, 53);
    expect(nat.createSnat(q.buf, q.off, q.len, 0, ip(N), 61001, 65535)).to.equal(Verdict.Ok);
    expect(ct.dnatCount).to.equal(0);
    const syn = tcp(C, VIP, 40000, 80, SYN);
    expect(nat.createDnat(syn.buf, syn.off, syn.len, 0, ip(E), 8080)).to.equal(Verdict.Ok);
    expect(ct.dnatCount).to.equal(1);
    ct.delete(nat.ref >> 1);
    expect(ct.dnatCount).to.equal(0);
    const syn2 = tcp(C, VIP, 40002, 80, SYN);
    expect(nat.createDnat(syn2.buf, syn2.off, syn2.len, 0, ip(E), 8080)).to.equal(Verdict.Ok);
    expect(ct.dnatCount).to.equal(1);
    ct.gc(1000, 1024); // expired (SYN_SENT: 120 s)
    expect(ct.dnatCount).to.equal(0);
  });
});
