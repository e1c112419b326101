import { expect } from 'chai';
import { layoutMap, L } from '../../../src/ui/layout.js';
import { MapBuilder, MAX_EXTERNALS, RateTracker, type ClusterSnapshot, type ConnView, type NodeStatusView, type PodRecordView } from '../../../src/ui/model.js';

/** A node's `podnet status` as the daemon answers it (the parts the map reads, and some it does not). */
function status(node: string, subnet: string, vtepMac: string, pods: Array<[string, string, number, number]>, vx: [number, number], forwarded: number, peers: string[]): NodeStatusView {
  return {
    node,
    subnet,
    pods: pods.map(([name, ip, rx, tx]) => ({
      name,
      ip,
      device: name === 'b' ? 'tun' : 'tap',
      counters: { rxFrames: rx, rxBytes: rx * 100, txFrames: tx, txBytes: tx * 100, drops: (name === 'a' ? { spoofed_source_ip: 3 } : {}) as Record<string, number> },
    })),
    router: { forwarded, drops: { no_route: 1 } },
    conntrack: { entries: 2, max: 1024 },
    cluster: { vtepMac, underlayIp: '', vxlan: { encapsulated: vx[0], decapsulated: vx[1], drops: {}, peers: peers.map((underlayIp) => ({ underlayIp })) } },
  };
}

function conn(id: number, proto: string, o: [string, number, string, number], r: [string, number, string, number], packets: [number, number], dnat = false): ConnView {
  return {
    id,
    protoName: proto,
    state: proto === 'tcp' ? 'ESTABLISHED' : '',
    dnat,
    snat: false,
    original: { src: o[0], sport: o[1], dst: o[2], dport: o[3] },
    reply: { src: r[0], sport: r[1], dst: r[2], dport: r[3] },
    packetsOriginal: packets[0],
    packetsReply: packets[1],
  };
}

const NODES = [
  { name: 'h1', underlayIp: '198.18.0.11', vtepMac: '02:00:00:00:00:01', subnet: '10.244.0.0/24' },
  { name: 'h2', underlayIp: '198.18.0.12', vtepMac: '02:00:00:00:00:02', subnet: '10.244.1.0/24' },
];
const PODS: PodRecordView[] = [
  { name: 'a', node: 'h1', ip: '10.244.0.2', mac: '02:00:0a:f4:00:02', labels: { app: 'client' } },
  { name: 'b', node: 'h1', ip: '10.244.0.3', mac: '02:00:0a:f4:00:03', labels: {} },
  { name: 'c', node: 'h2', ip: '10.244.1.2', mac: '02:00:0a:f4:01:02', labels: { app: 'web' } },
];
const WEB = { name: 'web', type: 'NodePort', clusterIp: '10.96.0.10', externalIps: [], ports: [{ port: 80, targetPort: 8080, protocol: 'tcp', nodePort: 30080 }], endpoints: ['10.244.1.2', '10.244.7.7'] };

/**
 * A cluster at time `t` (ms) whose pods have sent `k` times a base amount: pod a talks to the web
 * service (endpoint c on h2, seen by h1 before and by h2 after the DNAT), b pings c, a reaches the
 * outside (masqueraded) and an outside client reaches c through h2's node port.
 */
function snapshot(t: number, k: number, opts: { h2?: 'error' | 'other-cluster' | 'absent' } = {}): ClusterSnapshot {
  const h1 = {
    at: t,
    status: status('h1', '10.244.0.0/24', NODES[0]!.vtepMac, [['a', '10.244.0.2', 100 * k, 90 * k], ['b', '10.244.0.3', 10 * k, 10 * k]], [50 * k, 40 * k], 200 * k, ['198.18.0.12']),
    conntrack: [
      conn(7, 'tcp', ['10.244.0.2', 40000, '10.96.0.10', 80], ['10.244.1.2', 8080, '10.244.0.2', 40000], [30 * k, 20 * k], true),
      conn(8, 'icmp', ['10.244.0.3', 5, '10.244.1.2', 2048], ['10.244.1.2', 5, '10.244.0.3', 0], [10 * k, 10 * k]),
      conn(9, 'udp', ['10.244.0.2', 5353, '192.0.2.53', 53], ['192.0.2.53', 53, '198.18.0.11', 61001], [k, k]),
      // a pod reaching itself through a service (hairpin): no line from a pod to itself
      conn(10, 'tcp', ['10.244.0.3', 40001, '10.96.0.11', 80], ['10.244.0.3', 80, '10.244.0.1', 40001], [k, k], true),
    ],
  };
  const h2 = {
    at: t + 5,
    status: status('h2', '10.244.1.0/24', NODES[1]!.vtepMac, [['c', '10.244.1.2', 60 * k, 70 * k]], [40 * k, 50 * k], 150 * k, ['198.18.0.11']),
    conntrack: [
      // the same two connections, seen after the DNAT; h2 counts a little more of the first
      conn(3, 'tcp', ['10.244.0.2', 40000, '10.244.1.2', 8080], ['10.244.1.2', 8080, '10.244.0.2', 40000], [32 * k, 20 * k]),
      conn(4, 'icmp', ['10.244.0.3', 5, '10.244.1.2', 2048], ['10.244.1.2', 5, '10.244.0.3', 0], [10 * k, 10 * k]),
      conn(5, 'tcp', ['198.51.100.7', 50000, '198.18.0.12', 30080], ['10.244.1.2', 8080, '10.244.1.1', 50000], [4 * k, 4 * k], true),
    ],
  };
  const readings: ClusterSnapshot['readings'] = { h1 };
  if (opts.h2 === 'error') readings.h2 = { at: t, error: 'daemon did not answer within 5000 ms' };
  else if (opts.h2 !== 'absent') readings.h2 = h2;
  return { at: t, source: 'h1', nodes: NODES, pods: PODS, services: [WEB], readings };
}

describe('ui: the cluster map from API data', () => {
  it('shows every node, pod and service, the endpoints as pods, and no rates after one reading', () => {
    const m = new MapBuilder().update(snapshot(1000, 1));
    expect(m.nodes.map((n) => [n.name, n.counters, n.podCount])).to.deep.equal([
      ['h1', 'live', 2],
      ['h2', 'live', 1],
    ]);
    expect(m.pods.map((p) => [p.id, p.ip, p.device])).to.deep.equal([
      ['h1/a', '10.244.0.2', 'tap'],
      ['h1/b', '10.244.0.3', 'tun'],
      ['h2/c', '10.244.1.2', 'tap'],
    ]);
    expect(m.pods.every((p) => p.rates === undefined)).to.equal(true);
    expect(m.pods.find((p) => p.id === 'h1/a')!.drops).to.equal(3);
    expect(m.services).to.have.length(1);
    expect(m.services[0]).to.include({ name: 'web', type: 'NodePort', clusterIp: '10.96.0.10', ports: '80:30080>8080/tcp' });
    expect(m.services[0]!.endpoints).to.deep.equal(['h2/c']);
    expect(m.services[0]!.otherEndpoints).to.deep.equal(['10.244.7.7']);
    expect(m.pods.find((p) => p.id === 'h2/c')!.services).to.deep.equal(['web']);
    // Connections are there, with no rate yet.
    expect(m.flows.map((f) => f.key).sort()).to.deep.equal(['ext:198.51.100.7>pod:h2/c', 'pod:h1/a>ext:192.0.2.53', 'pod:h1/a>pod:h2/c', 'pod:h1/b>pod:h2/c']);
    expect(m.flows.every((f) => f.packetsPerSec === undefined)).to.equal(true);
    expect(m.externals).to.deep.equal(['192.0.2.53', '198.51.100.7']);
    expect(m.nodeLinks).to.deep.equal([{ a: 'h1', b: 'h2', peered: true, packetsPerSec: 0, connections: 2 }]);
  });

  it('derives per-second rates from two readings of the counters', () => {
    const b = new MapBuilder();
    b.update(snapshot(1000, 1));
    const m = b.update(snapshot(3000, 3)); // 2 s later, every counter tripled
    const a = m.pods.find((p) => p.id === 'h1/a')!;
    expect(a.rates).to.deep.equal({ rxFramesPerSec: 100, txFramesPerSec: 90, rxBytesPerSec: 10000, txBytesPerSec: 9000 });
    expect(m.pods.find((p) => p.id === 'h2/c')!.rates!.txFramesPerSec).to.equal(70);
    const h1 = m.nodes.find((n) => n.name === 'h1')!;
    expect(h1).to.include({ vxlanTxPerSec: 50, vxlanRxPerSec: 40, forwardedPerSec: 200, conntrackEntries: 2, drops: 1 });
    const flow = (key: string) => m.flows.find((f) => f.key === key)!;
    // a -> web -> c: h1 counted 50 packets per k, h2 52 (it saw the first after the DNAT): the larger, not the sum.
    expect(flow('pod:h1/a>pod:h2/c')).to.deep.include({ services: ['web'], protocols: ['tcp'], connections: 1, packetsPerSec: 52 });
    expect(flow('pod:h1/b>pod:h2/c')).to.deep.include({ services: [], protocols: ['icmp'], packetsPerSec: 20 });
    expect(flow('pod:h1/a>ext:192.0.2.53')).to.deep.include({ protocols: ['udp'], packetsPerSec: 2 });
    // An outside client through h2's node port: the service is found by the node port.
    expect(flow('ext:198.51.100.7>pod:h2/c')).to.deep.include({ services: ['web'], packetsPerSec: 8 });
    // Busiest first.
    expect(m.flows[0]!.key).to.equal('pod:h1/a>pod:h2/c');
    // Between the nodes: each has the other as its only peer, so its VXLAN datagrams all went there;
    // and the tracked connections from h1's pods to h2's.
    expect(m.nodeLinks).to.deep.equal([{ a: 'h1', b: 'h2', peered: true, abPerSec: 50, baPerSec: 40, packetsPerSec: 72, connections: 2 }]);
  });

  it('gives a link between two nodes a datagram rate only where one side has no other peer', () => {
    const withThird = (t: number, k: number) => {
      const s = snapshot(t, k);
      s.nodes = [...NODES, { name: 'h3', underlayIp: '198.18.0.13', vtepMac: '02:00:00:00:00:03', subnet: '10.244.2.0/24' }];
      const h1 = s.readings.h1 as { status: NodeStatusView };
      h1.status.cluster!.vxlan!.peers.push({ underlayIp: '198.18.0.13' }); // h1 has two peers, h2 still one
      return s;
    };
    const b = new MapBuilder();
    b.update(withThird(1000, 1));
    const m = b.update(withThird(3000, 3));
    const link = (x: string, y: string) => m.nodeLinks.find((l) => l.a === x && l.b === y)!;
    // h1 -> h2: h1 sends to two nodes, but h2 hears only from h1: h2's received datagrams (50/s).
    // h2 -> h1: h2 sends to h1 alone (40/s).
    expect(link('h1', 'h2')).to.include({ abPerSec: 50, baPerSec: 40 });
    // h1 <-> h3: h1 has two peers and h3's daemon is not read here: not known, not guessed.
    expect(link('h1', 'h3')).to.include({ peered: true });
    expect(link('h1', 'h3').abPerSec).to.equal(undefined);
    expect(link('h1', 'h3').baPerSec).to.equal(undefined);
  });

  it('counts a connection first seen between two readings with all its packets, and none for one seen at the first', () => {
    const b = new MapBuilder();
    const s1 = snapshot(1000, 1);
    s1.readings.h1 = { ...(s1.readings.h1 as { at: number; status: NodeStatusView; conntrack: ConnView[] }), conntrack: [] };
    s1.readings.h2 = { ...(s1.readings.h2 as { at: number; status: NodeStatusView; conntrack: ConnView[] }), conntrack: [] };
    b.update(s1);
    const m = b.update(snapshot(2000, 1)); // every connection is new, 1 s after the reading before
    expect(m.flows.find((f) => f.key === 'pod:h1/b>pod:h2/c')!.packetsPerSec).to.equal(20);
  });

  it('gives no rate for a port counter that went down (a restarted daemon), and rates again after', () => {
    const b = new MapBuilder();
    b.update(snapshot(1000, 5));
    const m = b.update(snapshot(2000, 1));
    expect(m.pods.every((p) => p.rates === undefined)).to.equal(true);
    expect(m.nodes[0]!.vxlanTxPerSec).to.equal(undefined);
    // A connection whose packet count went down is another connection in the same slot: new since the
    // reading before, so all of its packets count.
    expect(m.flows.find((f) => f.key === 'pod:h1/b>pod:h2/c')!.packetsPerSec).to.equal(20);
    const m2 = b.update(snapshot(3000, 2));
    expect(m2.pods.find((p) => p.id === 'h1/b')!.rates!.rxFramesPerSec).to.equal(10);
  });

  it('tells a node whose daemon failed from one with no daemon socket here, and still shows their pods', () => {
    const failed = new MapBuilder().update(snapshot(1000, 1, { h2: 'error' }));
    const h2 = failed.nodes.find((n) => n.name === 'h2')!;
    expect(h2.counters).to.equal('unreachable');
    expect(h2.error).to.match(/did not answer/);
    const remote = new MapBuilder().update(snapshot(1000, 1, { h2: 'absent' }));
    expect(remote.nodes.find((n) => n.name === 'h2')!.counters).to.equal('remote');
    expect(remote.pods.find((p) => p.id === 'h2/c')!.rates).to.equal(undefined);
    // Its connections are still known from h1's side.
    expect(remote.flows.map((f) => f.key)).to.include('pod:h1/a>pod:h2/c');
  });

  it('shows pods of a node the cluster no longer has under that node, marked unregistered', () => {
    const s = snapshot(1000, 1);
    s.pods = [...PODS, { name: 'z', node: 'gone', ip: '10.244.5.2', mac: '02:00:0a:f4:05:02', labels: {} }];
    const m = new MapBuilder().update(s);
    expect(m.nodes.map((n) => [n.name, n.counters])).to.deep.include(['gone', 'unregistered']);
    const l = layoutMap(m);
    expect(l.pods['gone/z']).to.not.equal(undefined);
  });

  it(`shows at most ${MAX_EXTERNALS} outside addresses, the busiest, and folds the rest into "other"`, () => {
    const s = snapshot(1000, 1);
    const h1 = s.readings.h1 as { at: number; status: NodeStatusView; conntrack: ConnView[] };
    for (let i = 0; i < 20; i++) h1.conntrack.push(conn(100 + i, 'udp', ['10.244.0.2', 1000 + i, `203.0.113.${i + 1}`, 53], [`203.0.113.${i + 1}`, 53, '198.18.0.11', 62000 + i], [i, i]));
    const m = new MapBuilder().update(s);
    expect(m.externals).to.have.length(MAX_EXTERNALS + 1);
    expect(m.externals[m.externals.length - 1]).to.equal('other');
    const refs = m.flows.flatMap((f) => [f.from, f.to]).filter((r) => r.kind === 'external').map((r) => (r as { ip: string }).ip);
    for (const ip of refs) expect(m.externals).to.include(ip);
    // The folded ones are one flow, with all their connections.
    const other = m.flows.filter((f) => f.key === 'pod:h1/a>ext:other');
    expect(other).to.have.length(1);
    expect(other[0]!.connections).to.equal(22 - MAX_EXTERNALS);
    expect(new Set(m.flows.map((f) => f.key)).size).to.equal(m.flows.length);
  });

  it('RateTracker: per second between readings, nothing for the first or after a reset, forgets what a reading left out', () => {
    const r = new RateTracker();
    expect(r.rate('x', 10, 1000)).to.equal(undefined);
    r.commit();
    expect(r.rate('x', 30, 3000)).to.equal(10);
    r.commit();
    expect(r.rate('x', 5, 4000)).to.equal(undefined); // reset
    r.commit();
    r.commit(); // a reading without x
    expect(r.rate('x', 50, 5000)).to.equal(undefined);
  });
});

describe('ui: the map layout', () => {
  it('puts every node, pod and service in its own place, pods inside their node', () => {
    const m = new MapBuilder().update(snapshot(1000, 1));
    const l = layoutMap(m);
    expect(Object.keys(l.nodes).sort()).to.deep.equal(['h1', 'h2']);
    expect(Object.keys(l.pods).sort()).to.deep.equal(['h1/a', 'h1/b', 'h2/c']);
    expect(Object.keys(l.services)).to.deep.equal(['web']);
    expect(Object.keys(l.externals).sort()).to.deep.equal(['192.0.2.53', '198.51.100.7']);
    for (const p of m.pods) {
      const c = l.pods[p.id]!;
      const n = l.nodes[p.node]!;
      expect(c.x).to.be.within(n.x + L.podRadius, n.x + n.w - L.podRadius);
      expect(c.y).to.be.within(n.y + L.podRadius, n.y + n.h - L.podRadius);
    }
    const centres = Object.values(l.pods).map((c) => `${c.x},${c.y}`);
    expect(new Set(centres).size).to.equal(centres.length);
    // No two boxes overlap, and all lie within the picture.
    const boxes = [...Object.values(l.nodes), ...Object.values(l.services), ...Object.values(l.externals)];
    for (const [i, a] of boxes.entries()) {
      expect(a.x + a.w).to.be.at.most(l.width);
      expect(a.y + a.h).to.be.at.most(l.height);
      for (const b of boxes.slice(i + 1)) expect(a.x + a.w <= b.x || b.x + b.w <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y, `${JSON.stringify(a)} ${JSON.stringify(b)}`).to.equal(true);
    }
  });

  it('moves nothing that was there when a pod is added, and grows its node to hold it', () => {
    const s = snapshot(1000, 1);
    const before = layoutMap(new MapBuilder().update(s));
    s.pods = [...PODS, { name: 'd', node: 'h1', ip: '10.244.0.4', mac: '02:00:0a:f4:00:04', labels: {} }];
    const after = layoutMap(new MapBuilder().update(s));
    for (const id of Object.keys(before.pods)) expect(after.pods[id]).to.deep.equal(before.pods[id]);
    expect(after.pods['h1/d']).to.not.equal(undefined);
    expect(after.nodes.h1!.h).to.be.greaterThan(before.nodes.h1!.h);
  });
});
