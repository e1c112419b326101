import { expect } from 'chai';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { parseConfig } from '../../../src/daemon/config.js';
import { buildRegistry, parseListen, type NodeStatusView } from '../../../src/metrics/exporter.js';

function status(rx: number): NodeStatusView {
  return {
    pods: [{ name: 'web', counters: { rxFrames: rx, rxBytes: rx * 100, txFrames: 3, txBytes: 300, drops: { spoofed_source_ip: 2 } } }],
    router: { forwarded: 10, drops: { no_route: 1 } },
    conntrack: { entries: 4, max: 1024, created: 9, expired: 5, evicted: 0, dropFull: 0, invalid: 0 },
    cluster: { vxlan: { encapsulated: 7, decapsulated: 8, gsoRuns: 1, groSuperFrames: 2, drops: {}, peers: [{ underlayIp: '198.18.0.12' }] } },
  };
}

type Family = { name: string; type: string; metrics: Array<{ value: string; labels?: Record<string, string> }> };

describe('metrics: Prometheus exposition of the node counters', () => {
  it('exposes the node\'s counters under podnet_ names, counters as _total, read at scrape time', async () => {
    let rx = 5;
    const reg = buildRegistry({ status: () => status(rx) });
    const parse = async () => new Map((parsePrometheusTextFormat(await reg.metrics()) as Family[]).map((f) => [f.name, f]));
    let m = await parse();
    const value = (name: string, labels: Record<string, string> = {}) =>
      Number(m.get(name)!.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v))!.value);
    expect(m.get('podnet_pod_receive_frames_total')!.type).to.equal('COUNTER');
    expect(value('podnet_pod_receive_frames_total', { pod: 'web' })).to.equal(5);
    expect(value('podnet_pod_receive_bytes_total', { pod: 'web' })).to.equal(500);
    expect(value('podnet_pod_drops_total', { pod: 'web', reason: 'spoofed_source_ip' })).to.equal(2);
    expect(value('podnet_router_drops_total', { reason: 'no_route' })).to.equal(1);
    expect(value('podnet_vxlan_datagrams_total', { direction: 'tx' })).to.equal(7);
    expect(value('podnet_vxlan_datagrams_total', { direction: 'rx' })).to.equal(8);
    expect(value('podnet_vxlan_peers')).to.equal(1);
    expect(m.get('podnet_conntrack_entries')!.type).to.equal('GAUGE');
    expect(value('podnet_conntrack_entries')).to.equal(4);
    expect(m.has('podnet_process_cpu_seconds_total')).to.equal(true);
    for (const name of m.keys()) expect(name).to.match(/^podnet_/);
    rx = 12; // the next scrape reads the counters anew
    m = await parse();
    expect(value('podnet_pod_receive_frames_total', { pod: 'web' })).to.equal(12);
  });

  it('metrics.address is off by default and must be host:port; errors name the field', () => {
    expect(parseConfig({}).metrics.address).to.equal(undefined);
    expect(parseConfig({ metrics: { address: '127.0.0.1:9464' } }).metrics.address).to.equal('127.0.0.1:9464');
    expect(() => parseConfig({ metrics: { address: 'everywhere' } })).to.throw(/metrics\.address/);
    expect(() => parseConfig({ metrics: { adress: '127.0.0.1:1' } })).to.throw(/metrics/);
    expect(parseListen('[::1]:9464')).to.deep.equal({ host: '::1', port: 9464 });
    expect(() => parseListen('127.0.0.1:99999')).to.throw(/metrics\.address/);
  });
});
