import { expect } from 'chai';
import { Conntrack, CtRemoval } from '../../../src/nat/conntrack.js';
import { FlowLog } from '../../../src/observe/flows.js';
import { PacketContext, Ingress } from '../../../src/dataplane/hooks.js';
import { DropReason } from '../../../src/util/counters.js';
import { parseIpv4 } from '../../../src/packet/index.js';

const TCP = 6;
const UDP = 17;
const SYN = 0x02;
const ACK = 0x10;
const FIN = 0x01;
const ip = (s: string) => parseIpv4(s);
const CLIENT = ip('10.244.0.2');
const VIP = ip('10.96.0.10');
const EP = ip('10.244.1.5');

/** Records every call, to check what conntrack tells and when. */
class Calls {
  log: string[] = [];
  established(id: number) {
    this.log.push(`established ${id}`);
  }
  closed(id: number) {
    this.log.push(`closed ${id}`);
  }
  removed(id: number, why: CtRemoval) {
    this.log.push(`removed ${id} ${why}`);
  }
}

describe('conntrack events', () => {
  it('tells of assured and TCP closing once each, never for packets that change nothing, and of removal with why', () => {
    const ct = new Conntrack({ max: 8, seed: 1 });
    const calls = new Calls();
    ct.events = calls;
    const id = ct.create(TCP, CLIENT, VIP, 40000, 80, EP, CLIENT, 8080, 40000, 0);
    const o = id << 1;
    const r = o | 1;
    ct.update(o, SYN, 0);
    ct.update(r, SYN | ACK, 0);
    expect(calls.log).to.deep.equal([]);
    ct.update(o, ACK, 0);
    expect(calls.log).to.deep.equal([`established ${id}`]);
    for (let i = 0; i < 5; i++) ct.update(i % 2 === 0 ? o : r, ACK, 0); // data: no status change, no call
    expect(calls.log).to.have.length(1);
    ct.update(o, FIN | ACK, 1);
    ct.update(r, FIN | ACK, 1);
    ct.update(o, ACK, 1);
    expect(calls.log).to.deep.equal([`established ${id}`, `closed ${id}`]);
    ct.gc(1e9, 8);
    expect(calls.log.at(-1)).to.equal(`removed ${id} ${CtRemoval.Expired}`);
    const u = ct.create(UDP, CLIENT, VIP, 5000, 53, EP, CLIENT, 53, 5000, 0);
    ct.update(u << 1, 0, 0);
    ct.update((u << 1) | 1, 0, 0);
    ct.delete(u);
    expect(calls.log.slice(-2)).to.deep.equal([`established ${u}`, `removed ${u} ${CtRemoval.Deleted}`]);
  });
});

describe('observe: flow log', () => {
  function ctx(ct: Conntrack): PacketContext {
    const c = new PacketContext();
    c.proto = TCP;
    c.src = CLIENT | 0;
    c.dst = VIP | 0;
    c.sport = 40000;
    c.dport = 80;
    c.ingress = Ingress.Switch;
    const id = ct.create(TCP, CLIENT, VIP, 40000, 80, EP, CLIENT, 8080, 40000, 0);
    c.ctRef = id << 1;
    return c;
  }

  it('records a new connection with both tuples and the endpoint, then established and closed', () => {
    const ct = new Conntrack({ max: 8, seed: 2 });
    const log = new FlowLog(ct, 16);
    ct.events = log;
    const c = ctx(ct);
    log.accepted(c);
    const o = c.ctRef;
    ct.update(o, SYN, 0);
    ct.update(o | 1, SYN | ACK, 0);
    ct.update(o, ACK, 0);
    ct.update(o, FIN | ACK, 0);
    ct.update(o | 1, FIN | ACK, 0);
    ct.update(o, ACK, 0); // the last ACK: TIME_WAIT
    ct.gc(1e9, 8); // TIME_WAIT expiring: its close was told already
    const recs = log.read(0, 100, { pod: (a) => ({ '10.244.0.2': 'client', '10.244.1.5': 'web' })[a], service: (a, p) => (a === '10.96.0.10' && p === 80 ? 'web' : undefined) });
    expect(recs.map((x) => x.event)).to.deep.equal(['new', 'established', 'closed']);
    expect(recs[0]).to.deep.include({
      proto: 'tcp',
      original: { src: '10.244.0.2', dst: '10.96.0.10', sport: 40000, dport: 80 },
      reply: { src: '10.244.1.5', dst: '10.244.0.2', sport: 8080, dport: 40000 },
      nat: { endpoint: '10.244.1.5:8080' },
      verdict: 'accepted',
      from: 'pod',
      srcPod: 'client',
      endpointPod: 'web',
      service: 'web',
    });
    expect(recs[2]!.closedBy).to.equal('fin/rst');
  });

  it('skips untracked connections and records refusals with the reason and the hook', () => {
    const ct = new Conntrack({ max: 8, seed: 3 });
    const log = new FlowLog(ct, 16);
    const c = new PacketContext();
    c.ctRef = -1;
    log.accepted(c);
    expect(log.next).to.equal(0);
    c.proto = TCP;
    c.src = CLIENT | 0;
    c.dst = VIP | 0;
    c.refusedBy = 'services';
    log.refused(c, DropReason.ServiceNoEndpoints);
    const [d] = log.read(0, 10);
    expect(d).to.deep.include({ event: 'dropped', verdict: 'dropped', reason: 'service_no_endpoints', by: 'services' });
    expect(d!.reply).to.equal(undefined);
  });

  it('keeps the last `capacity` records, oldest first', () => {
    const ct = new Conntrack({ max: 64, seed: 4 });
    const log = new FlowLog(ct, 8);
    for (let i = 0; i < 20; i++) {
      const id = ct.create(UDP, CLIENT, VIP, 1000 + i, 53, EP, CLIENT, 53, 1000 + i, 0);
      log.established(id);
    }
    expect([log.first, log.next]).to.deep.equal([12, 20]);
    const recs = log.read(0, 100);
    expect(recs.map((x) => x.seq)).to.deep.equal([12, 13, 14, 15, 16, 17, 18, 19]);
    expect(recs.map((x) => x.original.sport)).to.deep.equal([1012, 1013, 1014, 1015, 1016, 1017, 1018, 1019]);
  });
});
