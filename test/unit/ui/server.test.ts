import { expect } from 'chai';
import { request } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiServer } from '../../../src/daemon/api.js';
import { loopbackHost, parseUiAddress, UiServer, type UiPayload } from '../../../src/ui/server.js';
import { PAGE_JS } from '../../../src/ui/page.js';

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Reads Server-Sent Events from `url` until `count` `map` events came; returns their payloads. */
function events(url: string, count: number): Promise<UiPayload[]> {
  return new Promise((resolve, reject) => {
    const out: UiPayload[] = [];
    const req = request(url, (res) => {
      expect(res.headers['content-type']).to.equal('text/event-stream');
      let buf = '';
      res.on('data', (d: Buffer) => {
        buf += d.toString();
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = ev.split('\n').find((l) => l.startsWith('data: '));
          if (ev.includes('event: map') && data) out.push(JSON.parse(data.slice(6)) as UiPayload);
          if (out.length === count) {
            req.destroy();
            resolve(out);
          }
        }
      });
    });
    req.on('error', (e) => (out.length === count ? undefined : reject(e)));
    req.end();
  });
}

describe('ui: --address and Host checks', () => {
  it('takes loopback addresses only, and names the field and the reason otherwise', () => {
    expect(parseUiAddress('127.0.0.1:9465')).to.deep.equal({ host: '127.0.0.1', port: 9465 });
    expect(parseUiAddress('127.1.2.3:0')).to.deep.equal({ host: '127.1.2.3', port: 0 });
    expect(parseUiAddress('localhost:8080')).to.deep.equal({ host: '127.0.0.1', port: 8080 });
    expect(parseUiAddress('[::1]:8080')).to.deep.equal({ host: '::1', port: 8080 });
    expect(() => parseUiAddress('0.0.0.0:9465')).to.throw(/^invalid --address "0\.0\.0\.0:9465": the UI binds to a loopback address only/);
    expect(() => parseUiAddress('198.18.0.11:9465')).to.throw(/invalid --address .*loopback address only .*not 198\.18\.0\.11/);
    expect(() => parseUiAddress('[::]:9465')).to.throw(/invalid --address .*loopback address only/);
    expect(() => parseUiAddress('127.0.0.1:99999')).to.throw(/invalid --address .*port "99999" is not a number from 0 to 65535/);
    expect(() => parseUiAddress('127.0.0.1')).to.throw(/invalid --address "127\.0\.0\.1": expected HOST:PORT/);
    expect(() => parseUiAddress('127.0.0.256:80')).to.throw(/invalid --address .*not an IPv4 address/);
    expect(() => parseUiAddress('example.com:80')).to.throw(/invalid --address .*not an IPv4 address, \[::1\] or localhost/);
  });

  it('answers a request only when its Host is a loopback name with our port (no DNS rebinding)', () => {
    expect(loopbackHost('127.0.0.1:9465', 9465)).to.equal(true);
    expect(loopbackHost('localhost:9465', 9465)).to.equal(true);
    expect(loopbackHost('[::1]:9465', 9465)).to.equal(true);
    expect(loopbackHost('evil.example:9465', 9465)).to.equal(false);
    expect(loopbackHost('127.0.0.1:80', 9465)).to.equal(false);
    expect(loopbackHost(undefined, 9465)).to.equal(false);
  });

  it('the page script has nothing a template string would have replaced', () => {
    expect(PAGE_JS).to.not.include('`');
    expect(PAGE_JS).to.include("new EventSource('/events')");
  });
});

/**
 * The UI server against a daemon API on a unix socket (the real ApiServer, with the answers a
 * two-node cluster gives; no root, no devices): the page, the map as JSON and as Server-Sent Events
 * that follow the cluster.
 */
describe('ui: the server', () => {
  const dir = mkdtempSync(join(tmpdir(), 'podnet-ui-unit-'));
  const api = new ApiServer();
  const pods = [{ name: 'a', node: 'n1', ip: '10.244.0.2', mac: '02:00:0a:f4:00:02', labels: {} }];
  let rx = 0;
  let ui: UiServer | undefined;
  const sock = join(dir, 'n1.sock');

  before(async () => {
    api
      .route('GET', '/v1/nodes', () => [
        { name: 'n1', underlayIp: '198.18.0.11', vtepMac: '02:00:00:00:00:01', subnet: '10.244.0.0/24' },
        { name: 'n2', underlayIp: '198.18.0.12', vtepMac: '02:00:00:00:00:02', subnet: '10.244.1.0/24' },
      ])
      .route('GET', '/v1/cluster/pods', () => pods)
      .route('GET', '/v1/services', () => [])
      .route('GET', '/v1/status', () => {
        rx += 50;
        return {
          node: 'n1',
          subnet: '10.244.0.0/24',
          pods: pods.filter((p) => p.node === 'n1').map((p) => ({ name: p.name, ip: p.ip, device: 'tap', counters: { rxFrames: rx, rxBytes: rx * 60, txFrames: rx, txBytes: rx * 60, drops: {} } })),
          router: { forwarded: rx, drops: {} },
          conntrack: { entries: 0, max: 1024 },
          cluster: { vtepMac: '02:00:00:00:00:01', vxlan: { encapsulated: 0, decapsulated: 0, drops: {}, peers: [] } },
        };
      })
      .route('GET', '/v1/conntrack', () => []);
    await api.listen(sock);
  });

  after(async () => {
    await ui?.close();
    await api.close(sock);
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the page, its script and the map; refuses other hosts, methods and paths', async () => {
    ui = await UiServer.start({ address: '127.0.0.1:0', intervalMs: 100, runDir: dir });
    expect(ui.url).to.match(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const page = await get(ui.url);
    expect(page.status).to.equal(200);
    expect(page.headers['content-type']).to.match(/^text\/html/);
    expect(page.headers['content-security-policy']).to.include("script-src 'self'");
    expect(page.body).to.include('<script src="/app.js"');
    expect((await get(ui.url + 'app.js')).body).to.equal(PAGE_JS);
    const map = JSON.parse((await get(ui.url + 'api/map')).body) as UiPayload;
    expect(map.map!.source).to.equal('n1');
    expect(map.map!.nodes.map((n) => [n.name, n.counters])).to.deep.equal([
      ['n1', 'live'],
      ['n2', 'remote'], // no n2.sock in the run dir
    ]);
    expect(map.layout!.pods['n1/a']).to.not.equal(undefined);
    expect((await get(ui.url, { host: 'attacker.example:' + new URL(ui.url).port })).status).to.equal(421);
    expect((await get(ui.url + 'nothing')).status).to.equal(404);
    const post = await new Promise<number>((resolve, reject) => {
      const r = request(ui!.url + 'api/map', { method: 'POST' }, (res) => (res.resume(), resolve(res.statusCode!)));
      r.on('error', reject);
      r.end();
    });
    expect(post).to.equal(405);
  });

  it('sends every new reading as an event: a pod added shows in a later one, with its rates', async () => {
    const first = (await events(ui!.url + 'events', 1))[0]!;
    expect(first.map!.pods.map((p) => p.id)).to.deep.equal(['n1/a']);
    pods.push({ name: 'b', node: 'n1', ip: '10.244.0.3', mac: '02:00:0a:f4:00:03', labels: {} });
    // The stream delivers the readings after the change without being opened again.
    const later = await events(ui!.url + 'events', 4);
    const last = later[later.length - 1]!;
    expect(last.map!.pods.map((p) => p.id)).to.deep.equal(['n1/a', 'n1/b']);
    expect(last.map!.pods[0]!.rates!.rxFramesPerSec).to.be.greaterThan(0);
    expect(last.layout!.pods['n1/b']).to.not.equal(undefined);
  });

  it('keeps the last map and says why when the daemon stops answering', async () => {
    await api.close(sock);
    const start = ui!.readings;
    while (ui!.readings < start + 2) await new Promise((r) => setTimeout(r, 50));
    const p = ui!.current();
    expect(p.error).to.match(/no podnet daemon/);
    expect(p.map!.pods.map((x) => x.id)).to.deep.equal(['n1/a', 'n1/b']);
    await api.listen(sock);
  });
});
