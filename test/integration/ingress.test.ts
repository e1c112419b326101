import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, Topology, sleep, type ExecResult } from '../../src/topology/topology.js';
import { RouteTable } from '../../src/ingress/routes.js';
import { parseRuleArg, validateSpec, type IngressRecord } from '../../src/ingress/record.js';
import { parseConfig } from '../../src/daemon/config.js';
import { NETTOOL, startIn, within } from '../helpers/net.js';
import { apiCall } from '../../src/api/client.js';

const FIXTURE = join(REPO_ROOT, 'test/fixtures/ingress/server.mjs');
const MB = 1024 * 1024;

describe('ingress routing table (no root needed)', () => {
  const ing = (name: string, rules: string[], extra: Partial<IngressRecord> = {}, pathType: 'Prefix' | 'Exact' = 'Prefix'): IngressRecord => ({
    name,
    rules: rules.map((r) => parseRuleArg(r, pathType)),
    ...extra,
  });
  const route = (t: RouteTable, host: string, path: string) => {
    const r = t.match(host, path);
    return r ? `${r.backend.service}:${r.backend.port}` : '404';
  };

  it('matches path prefixes by whole elements, longest first, Exact before Prefix', () => {
    const t = new RouteTable([ing('a', ['/=root:80', '/api=api:80', '/api/v2/=v2:80']), ing('b', ['/api=exact:80'], {}, 'Exact')]);
    expect(route(t, 'x', '/')).to.equal('root:80');
    expect(route(t, 'x', '/apis')).to.equal('root:80');
    expect(route(t, 'x', '/api')).to.equal('exact:80');
    expect(route(t, 'x', '/api/')).to.equal('api:80');
    expect(route(t, 'x', '/api/v2')).to.equal('v2:80');
    expect(route(t, 'x', '/api/v2/x')).to.equal('v2:80');
    expect(route(t, 'x', '/api/v20')).to.equal('api:80');
  });

  it('prefers an exact host, then a one-label wildcard, then any host; only one host group is searched', () => {
    const t = new RouteTable([ing('a', ['a.example.test/x=exact:80', '*.example.test/=wild:80', '/=any:80', '*/y=any:81'])]);
    expect(route(t, 'A.Example.Test:8080', '/x/1')).to.equal('exact:80');
    expect(route(t, 'a.example.test', '/y')).to.equal('404');
    expect(route(t, 'b.example.test', '/y')).to.equal('wild:80');
    expect(route(t, 'c.b.example.test', '/y')).to.equal('any:81');
    expect(route(t, 'example.test', '/')).to.equal('any:80');
    expect(route(t, '', '/')).to.equal('any:80');
  });

  it('uses default backends when no rule matches, and the first ingress by name on conflicts', () => {
    const t = new RouteTable([
      ing('b', ['h.test/p=second:80'], { defaultBackend: { service: 'dflt-b', port: 80 } }),
      ing('a', ['h.test/p=first:80', 'other.test/=o:80'], { defaultBackend: { service: 'dflt-a', port: 80 } }),
    ]);
    expect(route(t, 'h.test', '/p')).to.equal('first:80');
    expect(route(t, 'h.test', '/q')).to.equal('dflt-a:80');
    expect(route(t, 'nowhere.test', '/')).to.equal('dflt-a:80');
    expect(route(new RouteTable([ing('c', ['h.test/p=x:80'])]), 'nowhere.test', '/')).to.equal('404');
  });

  it('rejects bad rules, backends, certificates and config with the field named', () => {
    expect(() => parseRuleArg('a.example.test/x')).to.throw(/--rule "a.example.test\/x".*SERVICE:PORT/);
    expect(() => parseRuleArg('a..b/=web:80')).to.throw(/host: must be/);
    expect(() => parseRuleArg('/x y=web:80')).to.throw(/path: must start with \//);
    expect(() => parseRuleArg('/x=Web:80')).to.throw(/service: must be a DNS label/);
    expect(() => parseRuleArg('/x=web:70000')).to.throw(/port: /);
    expect(() => validateSpec({ name: 'x', rules: [] })).to.throw(/rules: needs at least one --rule/);
    expect(() => validateSpec({ name: 'x', rules: [{ host: '', path: '/', backend: { service: 'a', port: 80 } }, { host: '*', path: '/', backend: { service: 'b', port: 80 } }] })).to.throw(
      /rules.1: \*\/ \(Prefix\) is already rule 0/,
    );
    expect(() => validateSpec({ name: 'x', rules: [{ host: '', path: '/', backend: { service: 'a', port: 80 } }], tls: { cert: 'nope', key: 'nope' } })).to.throw(/tls.cert: must be a PEM/);
    expect(() => validateSpec({ name: 'Bad_Name', defaultBackend: { service: 'a', port: 80 } })).to.throw(/name: must be a DNS label/);
    expect(() => parseConfig({ ingress: { httpPort: 'x' } })).to.throw(/ingress.httpPort/);
    expect(() => parseConfig({ ingress: { httpPort: 8443, httpsPort: 8443 } })).to.throw(/ingress.httpsPort: httpPort and httpsPort must differ/);
    expect(() => parseConfig({ ingress: { port: 80 } })).to.throw(/ingress/);
  });
});

/**
 * Issue 6: L7 ingress. Three podnet hosts and an external host on the underlay that has no route to the
 * pod or service CIDRs; every node serves the ingress on its underlay address and proxies to services'
 * cluster IPs through podnet's own router and conntrack NAT.
 */
describe('ingress: HTTP(S) from outside the cluster to services by host and path', function () {
  this.timeout(600_000);
  const t = new Topology();
  const servers: Array<ReturnType<typeof startIn>> = [];
  const nodes = ['h1', 'h2', 'h3'] as const;
  const nodeIp: Record<string, string> = {};
  const clusterIp: Record<string, string> = {};
  let extNs = '';
  let certDir = '';

  const cli = async (args: string[], node = 'h1'): Promise<ExecResult> => t.podnet(node, args);
  const ok = async (args: string[], node = 'h1'): Promise<string> => {
    const r = await cli(args, node);
    expect(r.code, `podnet ${args.join(' ')}: ${r.stderr}`).to.equal(0);
    return r.stdout.trim();
  };
  async function pod(node: string, name: string, label: string): Promise<string> {
    return ok(['pod', 'add', name, '--label', label], node);
  }
  function serve(node: string, podName: string, cmd: string, args: string[]) {
    const s = startIn(t.podNs(node, podName), process.execPath, [cmd, ...args]);
    servers.push(s);
    return s;
  }
  /** curl from the external host; returns status, body and time. */
  async function curl(args: string[], timeoutS = 20): Promise<{ code: number; status: number; body: string; seconds: number; stderr: string }> {
    const r = await t.exec(extNs, 'curl', ['-s', '-m', String(timeoutS), '-w', '\n%{http_code} %{time_total}', ...args], (timeoutS + 10) * 1000);
    const lines = r.stdout.split('\n');
    const [status, seconds] = (lines.pop() ?? '0 0').split(' ');
    return { code: r.code, status: Number(status), body: lines.join('\n'), seconds: Number(seconds), stderr: r.stderr };
  }
  async function get(ip: string, host: string, path: string) {
    return curl(['-H', `Host: ${host}`, `http://${ip}${path}`]);
  }
  /** Polls `check` until it returns true (rules reach every node through the store's watch). */
  async function eventually(what: string, check: () => Promise<boolean>, ms = 15_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`not reached within ${ms} ms: ${what}`);
      await sleep(200);
    }
  }
  const answer = (body: string) => body.trim().split(' ')[0];

  /** The daemon's node process (Topology starts it through nsenter, which execs it, or forks it). */
  function daemonPid(node: string): number {
    const pid = t.host(node).daemon!.pid!;
    if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'nsenter') return pid;
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const kids = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
      if (kids.length > 0) return Number(kids[0]);
    }
    throw new Error(`no node process under nsenter ${pid}`);
  }
  const procKb = (pid: number, field: 'VmRSS' | 'VmHWM') => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

  before(async () => {
    await t.createUnderlay();
    for (const h of nodes) nodeIp[h] = (await t.addHost({ name: h })).underlayIp;
    extNs = (await t.addExternal('ext', '198.18.0.99')).netns;
    for (const h of nodes) await t.startDaemon(h, {}, h === 'h2' ? { nodeArgs: ['--expose-gc'] } : {}); // h2's memory is measured
    // web: nettool HTTP servers on h1 and h2; api: the ingress fixture (uploads, downloads, WebSocket) on h3;
    // idle: a pod that runs no server (its service refuses: 502).
    await pod('h1', 'web1', 'app=web');
    await pod('h2', 'web2', 'app=web');
    await pod('h3', 'api1', 'app=api');
    await pod('h2', 'idle', 'app=idle');
    serve('h1', 'web1', NETTOOL, ['http', '8080', 'web1']);
    serve('h2', 'web2', NETTOOL, ['http', '8080', 'web2']);
    serve('h3', 'api1', FIXTURE, ['server', '8080', 'api1']);
    await Promise.all(servers.map((s) => s.started));
    for (const [name, sel] of [['web', 'app=web'], ['api', 'app=api'], ['empty', 'app=nothing'], ['broken', 'app=idle']]) {
      clusterIp[name!] = await ok(['service', 'add', name!, '--port', '80:8080', '--selector', sel!]);
    }
    certDir = join(t.dir, 'certs');
    mkdirSync(certDir, { recursive: true });
    for (const n of ['a', 'b']) {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${n}.example.test`, '-addext', `subjectAltName=DNS:${n}.example.test`, '-keyout', join(certDir, `${n}.key`), '-out', join(certDir, `${n}.crt`)], { stdio: 'ignore' });
    }
  });

  after(async () => {
    for (const s of servers) s.stop();
    await t.destroy();
  });

  it('the external host has no route to the pod or service CIDRs', async () => {
    const routes = (await t.exec(extNs, 'ip', ['-4', 'route'])).stdout;
    expect(routes).to.not.match(/^default|10\./m);
    const r = await curl([`http://${clusterIp.web}/`], 3);
    expect(r.code).to.not.equal(0);
  });

  it('routes two services behind one ingress by path and by host, via every node', async () => {
    await ok([
      'ingress', 'add', 'main',
      '--rule', '/web=web:80',
      '--rule', '/api=api:80',
      '--rule', 'api.example.test/=api:80',
      '--rule', '*.apps.example.test/=web:80',
      '--rule', '/empty=empty:80',
      '--rule', '/broken=broken:80',
      '--rule', '/missing=nosuch:80',
    ]);
    await ok(['ingress', 'add', 'exact', '--path-type', 'Exact', '--rule', 'api.example.test/exact=web:80']);
    for (const h of nodes) {
      const ip = nodeIp[h]!;
      await eventually(`ingress on ${h}`, async () => (await get(ip, 'x.test', '/web')).status === 200);
      expect(answer((await get(ip, 'x.test', '/web/page')).body)).to.match(/^web[12]$/);
      expect(answer((await get(ip, 'x.test', '/api/v1?q=1')).body)).to.equal('api1');
      expect(answer((await get(ip, 'api.example.test', '/anything')).body)).to.equal('api1');
      expect(answer((await get(ip, 'API.example.test:80', '/')).body)).to.equal('api1');
      expect(answer((await get(ip, 'api.example.test', '/exact')).body)).to.match(/^web[12]$/);
      expect(answer((await get(ip, 'api.example.test', '/exact/more')).body)).to.equal('api1');
      // An exact host group wins over any-host paths; a wildcard matches one label only.
      expect(answer((await get(ip, 'shop.apps.example.test', '/api')).body)).to.match(/^web[12]$/);
      expect((await get(ip, 'a.shop.apps.example.test', '/')).status).to.equal(404);
      // Host is kept; X-Forwarded-* say who asked and how; the upstream connection is kept alive.
      const hdr = JSON.parse((await get(ip, 'api.example.test:80', '/headers')).body);
      expect(hdr.headers.host).to.equal('api.example.test:80');
      expect(hdr.headers['x-forwarded-for']).to.equal('198.18.0.99');
      expect(hdr.headers['x-forwarded-proto']).to.equal('http');
      expect(hdr.headers['x-forwarded-host']).to.equal('api.example.test:80');
      expect(hdr.client).to.match(/^10\.244\.\d+\.0$/); // the node's own address on podnet0: a kernel socket to the ClusterIP
    }
    // Client side keep-alive: curl reuses its connection; upstream keep-alive: one pooled connection.
    const two = await t.exec(extNs, 'curl', ['-sv', '-H', 'Host: api.example.test', `http://${nodeIp.h2}/headers`, `http://${nodeIp.h2}/headers`]);
    expect(two.stderr).to.match(/Re-using existing connection/);
    const conns = two.stdout.split('}{').map((part, i, all) => JSON.parse((i > 0 ? '{' : '') + part + (i < all.length - 1 ? '}' : '')).conn);
    expect(conns).to.have.length(2);
    expect(conns[0]).to.equal(conns[1]);
    const list = JSON.parse(await ok(['ingress', 'list', '--json'], 'h3'));
    expect(list.map((i: { name: string }) => i.name)).to.deep.equal(['exact', 'main']);
    expect(await ok(['ingress', 'list'], 'h2')).to.match(/main +\*\/web=web:80 \*\/api=api:80 api\.example\.test\/=api:80/);
  });

  it('answers 404, 503 and 502 correctly and at once', async () => {
    // "At once" is shown by cause, not by a stopwatch: every answer names an immediate cause (no rule, no
    // endpoints, connection refused or reset) and no upstream timer fired on any node (gatewayTimeout).
    const timeouts = async (h: string) => (JSON.parse(await ok(['ingress', 'status', '--json'], h)) as { gatewayTimeout: number }).gatewayTimeout;
    let slowest = 0;
    for (const h of nodes) {
      const timedOut = await timeouts(h);
      const ip = nodeIp[h]!;
      const cases: Array<[string, string, number, RegExp]> = [
        ['nothing.test', '/nothing', 404, /no ingress rule for host "nothing.test"/],
        ['x.test', '/empty', 503, /service empty has no endpoints/],
        ['x.test', '/missing', 503, /service nosuch does not exist/],
        ['x.test', '/broken', 502, /upstream broken:80 .* failed: ECONNREFUSED/],
        ['api.example.test', '/reset', 502, /upstream api:80 .* failed/],
      ];
      for (const [host, path, status, body] of cases) {
        const r = await get(ip, host, path);
        expect(r.status, `${h} ${host}${path}: ${r.body}`).to.equal(status);
        expect(r.body).to.match(body);
        slowest = Math.max(slowest, r.seconds);
      }
      expect(await timeouts(h), `${h}: an upstream timer fired`).to.equal(timedOut);
    }
    console.log(`      slowest of the ${nodes.length * 5} error answers: ${(slowest * 1000).toFixed(0)} ms`);
    // A default backend takes what no rule matches; without it, 404 again.
    await ok(['ingress', 'add', 'fallback', '--default-backend', 'web:80']);
    await eventually('default backend', async () => answer((await get(nodeIp.h3!, 'nothing.test', '/nothing')).body).startsWith('web'));
    await ok(['ingress', 'del', 'fallback']);
    await eventually('default backend removed', async () => (await get(nodeIp.h3!, 'nothing.test', '/nothing')).status === 404);
    const st = JSON.parse(await ok(['ingress', 'status', '--json'], 'h1'));
    expect(st.listeners.http).to.include({ address: nodeIp.h1, port: 80, listening: true });
    expect(st.notFound).to.be.greaterThan(0);
    expect(st.unavailable).to.be.greaterThan(0);
    expect(st.badGateway).to.be.greaterThan(0);
  });

  it('streams a 100 MB download and a 100 MB upload intact without growing the daemon by more than a few MB', async () => {
    const file = join(t.dir, 'upload.bin');
    execFileSync('sh', ['-c', `head -c ${100 * MB} /dev/urandom > ${file}`]);
    const upHash = execFileSync('sha256sum', [file]).toString().split(' ')[0];
    const downHash = execFileSync(process.execPath, [FIXTURE, 'hash', String(100 * MB)]).toString().trim();
    const ip = nodeIp.h2!; // the api pod is on h3: ext -> h2 (ingress) -> ClusterIP -> VXLAN -> h3
    const download = (n: number) => t.sh(extNs, `curl -sf -m 300 -H 'Host: api.example.test' http://${ip}/bytes/${n} | sha256sum`, 330_000);
    const upload = async (path: string) => JSON.parse(await t.sh(extNs, `curl -sf -m 300 -H 'Host: api.example.test' -T ${path} -X POST http://${ip}/upload`, 330_000));

    // What is measured is the memory the daemon holds while bodies flow: every 200 ms the test asks it to
    // run a full garbage collection (it was started with --expose-gc) and report heap + buffers. A proxy
    // that buffered a body would hold tens of MB at mid-transfer; a streaming one holds its socket and
    // stream buffers only. (Plain RSS mostly shows when V8 last collected the garbage buffers of finished
    // chunks, so it is reported and bounded loosely, as a second look.)
    const sock = join(t.runDir, 'h2.sock');
    const pid = daemonPid('h2');
    type Mem = { rss: number; heapUsed: number; external: number };
    const held = async (): Promise<number> => {
      const s = await apiCall<{ process: { collected: boolean; memory: Mem } }>(sock, 'GET', '/v1/status?gc=1', undefined, 30_000);
      expect(s.process.collected, 'the daemon ran a full collection before reporting').to.equal(true);
      return s.process.memory.heapUsed + s.process.memory.external;
    };
    /** Runs the transfers while sampling what the daemon holds; returns the largest sample and the peak RSS. */
    const sampled = async (work: () => Promise<void>): Promise<{ maxHeld: number; samples: number; peakRss: number }> => {
      writeFileSync(`/proc/${pid}/clear_refs`, '5'); // resets VmHWM (peak RSS) to the current RSS
      let done = false;
      let maxHeld = 0;
      let samples = 0;
      const sampler = (async () => {
        while (!done) {
          maxHeld = Math.max(maxHeld, await held());
          samples++;
          await sleep(200);
        }
      })();
      try {
        await work();
      } finally {
        done = true;
        await sampler;
      }
      return { maxHeld, samples, peakRss: procKb(pid, 'VmHWM') * 1024 };
    };

    // Warm up with 30 MB each way: the socket buffers, the streams' pools and the JIT reach their working size.
    const warm = join(t.dir, 'warm.bin');
    execFileSync('sh', ['-c', `head -c ${30 * MB} /dev/urandom > ${warm}`]);
    await download(10 * MB);
    const warmRound = await sampled(async () => {
      await download(30 * MB);
      await upload(warm);
    });
    const base = await held();

    const started = Date.now();
    const round = await sampled(async () => {
      expect((await download(100 * MB)).split(' ')[0]).to.equal(downHash);
      const up = await upload(file);
      expect(up).to.include({ bytes: 100 * MB, sha256: upHash });
    });
    const seconds = (Date.now() - started) / 1000;
    const after = await held();

    const mb = (b: number) => (b / MB).toFixed(1);
    console.log(
      `      200 MB through the ingress in ${seconds.toFixed(1)} s; daemon holds ${mb(base)} MB (heap + buffers) before, ` +
        `at most ${mb(round.maxHeld)} MB in ${round.samples} samples while streaming, ${mb(after)} MB after; ` +
        `peak RSS ${mb(warmRound.peakRss)} MB over 30 MB each way, ${mb(round.peakRss)} MB over 100 MB each way`,
    );
    expect(round.samples, 'samples taken while streaming').to.be.greaterThan(3);
    expect((round.maxHeld - base) / MB, 'memory held while streaming 100 MB, above the level before (MB)').to.be.lessThan(8);
    expect((after - base) / MB, 'memory held after 100 MB each way, above the level before (MB)').to.be.lessThan(4);
    expect((round.peakRss - warmRound.peakRss) / MB, 'peak RSS over 100 MB above the peak over 30 MB (MB)').to.be.lessThan(32);
  });

  it('passes a WebSocket through (upgrade, text and 1 MiB binary echoes), and refuses one with no route', async () => {
    for (const h of nodes) {
      const r = await t.exec(extNs, process.execPath, [FIXTURE, 'ws', `ws://${nodeIp[h]}/api/echo`, 'x.test', '20'], 60_000);
      expect(r.stdout.trim(), `${h}: ${r.stderr}`).to.equal('ok 21');
    }
    const none = await t.exec(extNs, process.execPath, [FIXTURE, 'ws', `ws://${nodeIp.h1}/nowhere`, 'nothing.test', '1'], 60_000);
    expect(none.stderr).to.match(/refused: 404/);
  });

  it('serves HTTPS with the certificate of each host name (SNI), on every node', async () => {
    const crt = (n: string) => join(certDir, `${n}.crt`);
    const key = (n: string) => join(certDir, `${n}.key`);
    await ok(['ingress', 'add', 'tls-a', '--rule', 'a.example.test/=web:80', '--tls-cert', crt('a'), '--tls-key', key('a')]);
    await ok(['ingress', 'add', 'tls-b', '--rule', 'b.example.test/=api:80', '--tls-cert', crt('b'), '--tls-key', key('b')], 'h2');
    const https = (ip: string, host: string, ca: string, path = '/') => curl(['--cacert', crt(ca), '--resolve', `${host}:443:${ip}`, `https://${host}${path}`]);
    for (const h of nodes) {
      const ip = nodeIp[h]!;
      await eventually(`TLS on ${h}`, async () => (await https(ip, 'b.example.test', 'b')).status === 200);
      const a = await https(ip, 'a.example.test', 'a');
      expect(a.status, a.stderr).to.equal(200);
      expect(answer(a.body)).to.match(/^web[12]$/);
      const b = await https(ip, 'b.example.test', 'b', '/headers');
      expect(JSON.parse(b.body).headers).to.include({ 'x-forwarded-proto': 'https', host: 'b.example.test', 'x-forwarded-for': '198.18.0.99' });
      // Each name gets its own certificate: verifying a.example.test against b's certificate fails (60).
      expect((await https(ip, 'a.example.test', 'b')).code).to.equal(60);
      expect((await https(ip, 'b.example.test', 'a')).code).to.equal(60);
    }
    const v = await t.exec(extNs, 'curl', ['-sv', '-o', '/dev/null', '--cacert', crt('a'), '--resolve', `a.example.test:443:${nodeIp.h3}`, 'https://a.example.test/']);
    expect(v.stderr).to.match(/subject: CN=a\.example\.test/);
    const list = JSON.parse(await ok(['ingress', 'list', '--json']));
    const tlsA = list.find((i: { name: string }) => i.name === 'tls-a');
    expect(tlsA.tls.names).to.deep.equal(['a.example.test']);
    expect(JSON.stringify(list)).to.not.match(/PRIVATE KEY/);
    // Validation names the field: a key that is not the certificate's, a certificate without a key.
    const bad = await cli(['ingress', 'add', 'tls-bad', '--rule', 'c.example.test/=web:80', '--tls-cert', crt('a'), '--tls-key', key('b')]);
    expect(bad.stderr).to.match(/tls\.key: does not belong to the certificate/);
    const half = await cli(['ingress', 'add', 'tls-bad', '--rule', 'c.example.test/=web:80', '--tls-cert', crt('a')]);
    expect(half.stderr).to.match(/--tls-cert and --tls-key go together/);
    const dup = await cli(['ingress', 'add', 'tls-a', '--rule', 'a.example.test/=api:80']);
    expect(dup.stderr).to.match(/ingress tls-a already exists/);
  });

  it('applies rule changes on every node while requests flow, with no failed request', async () => {
    await ok(['ingress', 'add', 'switch', '--rule', 'switch.example.test/=web:80']);
    for (const h of nodes) await eventually(`switch on ${h}`, async () => (await get(nodeIp[h]!, 'switch.example.test', '/')).status === 200);
    // Clients run until told to stop (SIGTERM), once every node has taken the last change.
    const loops = nodes.map((h) => startIn(extNs, process.execPath, [FIXTURE, 'loop', `http://${nodeIp[h]}/`, 'switch.example.test', '120000', '4'], '{'));
    await sleep(2000);
    await ok(['ingress', 'add', 'switch', '--replace', '--rule', 'switch.example.test/=api:80'], 'h2');
    await sleep(1500);
    await ok(['ingress', 'add', 'unrelated', '--rule', 'other.example.test/=web:80'], 'h3');
    await sleep(1000);
    await ok(['ingress', 'add', 'switch', '--replace', '--rule', 'switch.example.test/=web:80', '--rule', 'switch.example.test/v2=api:80']);
    await sleep(1500);
    await ok(['ingress', 'add', 'switch', '--replace', '--rule', 'switch.example.test/=api:80']);
    for (const h of nodes) await eventually(`last change on ${h}`, async () => answer((await get(nodeIp[h]!, 'switch.example.test', '/')).body) === 'api1');
    await sleep(1500);
    for (const l of loops) l.child.kill('SIGTERM');
    const results = [];
    for (const [i, l] of loops.entries()) {
      const code = await within(l.exited, 60_000, -1);
      expect(code, `${nodes[i]} loop: ${l.errors()}`).to.equal(0);
      results.push(JSON.parse(l.output().trim()));
    }
    for (const [i, r] of results.entries()) {
      expect(r.failures, `${nodes[i]}: ${r.failures.slice(0, 5).join(' | ')}`).to.deep.equal([]);
      expect(r.total).to.be.greaterThan(100);
      expect(r.ok).to.equal(r.total);
      expect(Object.keys(r.answers).sort()).to.include.members(['api1']);
      expect(Object.keys(r.answers).some((k) => /^web[12]$/.test(k))).to.equal(true);
      expect(r.last, `${nodes[i]}: every client ends on the last rule`).to.deep.equal(['api1', 'api1', 'api1', 'api1']);
    }
    console.log(`      ${results.map((r, i) => `${nodes[i]}: ${r.total} requests ${JSON.stringify(r.answers)}`).join('; ')}`);
  });

  it('ingress del removes the routes on every node', async () => {
    await ok(['ingress', 'del', 'switch'], 'h3');
    for (const h of nodes) await eventually(`switch gone on ${h}`, async () => (await get(nodeIp[h]!, 'switch.example.test', '/')).status === 404);
    const r = await cli(['ingress', 'del', 'switch']);
    expect(r.stderr).to.match(/ingress switch not found/);
  });
});
