import { expect } from 'chai';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { Topology } from '../../src/topology/topology.js';
import { ping, statusJson } from '../helpers/net.js';

/**
 * Issue 14, item 1: a node's Prometheus endpoint, scraped with curl from inside the host's namespace
 * (the address is its loopback: the endpoint is never on the underlay unless asked) and read with a
 * real text-format parser; its counters are the ones `podnet status` shows, and follow traffic sent.
 */
describe('metrics: a node\'s Prometheus endpoint', function () {
  this.timeout(300_000);
  const t = new Topology();
  const ip: Record<string, string> = {};

  before(async () => {
    await t.createUnderlay();
    await t.addHost({ name: 'h1' });
    await t.addHost({ name: 'h2' });
    await t.startDaemon('h1', { metrics: { address: '127.0.0.1:9464' } });
    await t.startDaemon('h2');
    for (const [h, p] of [['h1', 'a'], ['h2', 'b']] as const) {
      const r = await t.podnet(h, ['pod', 'add', p]);
      expect(r.code, r.stderr).to.equal(0);
      ip[p] = r.stdout.trim();
    }
  });

  after(() => t.destroy());

  async function scrape(host: string) {
    const r = await t.exec(t.host(host).netns, 'curl', ['-sf', '-m', '10', 'http://127.0.0.1:9464/metrics']);
    expect(r.code, r.stderr).to.equal(0);
    const families = parsePrometheusTextFormat(r.stdout);
    const value = (name: string, labels: Record<string, string> = {}) => {
      const f = families.find((x) => x.name === name);
      expect(f, name).to.not.equal(undefined);
      const m = f!.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
      expect(m, `${name} ${JSON.stringify(labels)}`).to.not.equal(undefined);
      return Number(m!.value);
    };
    return { families, value };
  }

  it('counts the traffic sent: a pod\'s frames and the VXLAN datagrams of 10 pings across hosts', async () => {
    expect(await ping(t, t.podNs('h2', 'b'), ip.a!, { count: 1 })).to.equal(true); // routes and ARP settled
    const before = await scrape('h1');
    expect(await ping(t, t.podNs('h1', 'a'), ip.b!, { count: 10 })).to.equal(true);
    const after = await scrape('h1');
    const d = (name: string, labels: Record<string, string> = {}) => after.value(name, labels) - before.value(name, labels);
    expect(d('podnet_pod_receive_frames_total', { pod: 'a' })).to.be.at.least(10);
    expect(d('podnet_pod_transmit_frames_total', { pod: 'a' })).to.be.at.least(10);
    expect(d('podnet_vxlan_datagrams_total', { direction: 'tx' })).to.be.at.least(10);
    expect(d('podnet_vxlan_datagrams_total', { direction: 'rx' })).to.be.at.least(10);
    expect(d('podnet_router_forwarded_total')).to.be.at.least(10);
    expect(after.value('podnet_vxlan_peers')).to.equal(1);
    // The same datagrams, by peer: h2's underlay address.
    const h2 = t.host('h2').underlayIp;
    expect(d('podnet_vxlan_peer_datagrams_total', { peer: h2, direction: 'tx' })).to.be.at.least(10);
    expect(d('podnet_vxlan_peer_datagrams_total', { peer: h2, direction: 'rx' })).to.be.at.least(10);
    expect(after.families.find((f) => f.name === 'podnet_pod_receive_frames_total')!.type).to.equal('COUNTER');
  });

  it('shows what `podnet status` shows, between two scrapes', async () => {
    const s1 = await scrape('h1');
    const st = await statusJson(t, 'h1');
    const s2 = await scrape('h1');
    const pod = st.pods.find((p: any) => p.name === 'a').counters;
    for (const [metric, v] of [
      ['podnet_pod_receive_frames_total', pod.rxFrames],
      ['podnet_pod_receive_bytes_total', pod.rxBytes],
      ['podnet_pod_transmit_frames_total', pod.txFrames],
    ] as const) {
      expect(v).to.be.within(s1.value(metric, { pod: 'a' }), s2.value(metric, { pod: 'a' }));
    }
    expect(st.conntrack.max).to.equal(s2.value('podnet_conntrack_max_entries'));
    for (const [direction, v] of [['tx', st.cluster.vxlan.rcoSent], ['rx', st.cluster.vxlan.rcoReceived]] as const) {
      expect(v).to.be.within(s1.value('podnet_vxlan_rco_datagrams_total', { direction }), s2.value('podnet_vxlan_rco_datagrams_total', { direction }));
    }
  });

  it('counts connections by protocol and state, and reports the store as reachable', async () => {
    const w = await t.podnet('h2', ['pod', 'add', 'web', '--label', 'app=web']);
    expect(w.code, w.stderr).to.equal(0);
    const svc = await t.podnet('h1', ['service', 'add', 'dns', '--port', '53/udp', '--selector', 'app=web']);
    expect(svc.code, svc.stderr).to.equal(0);
    const vip = svc.stdout.trim();
    // One UDP datagram from pod a to the cluster IP: a DNAT connection on h1, never answered. The
    // service may take a moment to reach h1's data plane: send until the connection shows.
    let n = 0;
    for (let i = 0; i < 50 && n === 0; i++) {
      await t.exec(t.podNs('h1', 'a'), 'bash', ['-c', `echo hello > /dev/udp/${vip}/53`]);
      const m = await scrape('h1');
      const f = m.families.find((x) => x.name === 'podnet_conntrack_connections');
      n = Number(f?.metrics.find((x) => x.labels?.protocol === 'udp' && x.labels?.state === 'UNREPLIED')?.value ?? 0);
      if (n === 0) await new Promise((r) => setTimeout(r, 200));
    }
    expect(n).to.be.at.least(1);
    const m = await scrape('h1');
    expect(m.families.find((f) => f.name === 'podnet_conntrack_connections')!.type).to.equal('GAUGE');
    expect(m.value('podnet_store_reachable')).to.equal(1);
    expect(m.value('podnet_store_outages_total')).to.equal(0);
  });

  it('is off unless configured', async () => {
    const r = await t.exec(t.host('h2').netns, 'curl', ['-s', '-m', '5', 'http://127.0.0.1:9464/metrics']);
    expect(r.code).to.equal(7); // connection refused: nothing listens
  });
});
