import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { chromium, type Browser, type Page } from 'playwright-core';
import { CLI, execCapture, Topology } from '../../src/topology/topology.js';
import { startIn, tcpTransfer, within } from '../helpers/net.js';

/** Debian's chromium package (.ci/run installs it). */
const CHROMIUM = '/usr/bin/chromium';

/**
 * Issue 14, item 4: `podnet ui` in a real headless Chromium. Three hosts with a daemon each; the CLI
 * serves the page on this machine's loopback (port 0: any free one) and reads every daemon's socket
 * in the topology's run dir. The page must show every node and pod, the service and its endpoint,
 * traffic sent between pods, and a pod added afterwards, without being reloaded.
 */
describe('ui: the live cluster map in a headless browser', function () {
  this.timeout(600_000);
  const t = new Topology({ prefix: `pnui${process.pid.toString(36)}-` });
  const ips: Record<string, string> = {};
  let clusterIp = '';
  let ui: ChildProcess | undefined;
  let uiOutput = '';
  let url = '';
  let browser: Browser | undefined;
  let page: Page;

  async function addPod(node: string, name: string, extra: string[] = []): Promise<void> {
    const r = await t.podnet(node, ['pod', 'add', name, ...extra]);
    expect(r.code, r.stderr).to.equal(0);
    ips[`${node}/${name}`] = r.stdout.trim();
  }

  before(async () => {
    await t.createUnderlay();
    for (const h of ['h1', 'h2', 'h3']) await t.addHost({ name: h });
    for (const h of ['h1', 'h2', 'h3']) await t.startDaemon(h);
    await addPod('h1', 'a');
    await addPod('h1', 'b', ['--device', 'tun']);
    await addPod('h2', 'a', ['--label', 'app=web']);
    await addPod('h3', 'a');
    const svc = await t.podnet('h1', ['service', 'add', 'web', '--port', '5001', '--selector', 'app=web']);
    expect(svc.code, svc.stderr).to.equal(0);
    clusterIp = svc.stdout.trim();

    // The UI runs in this machine's namespace, on its loopback, as a user would run it.
    ui = spawn(process.execPath, [CLI, '--run-dir', t.runDir, 'ui', '--address', '127.0.0.1:0', '--interval', '500'], { stdio: ['ignore', 'pipe', 'pipe'] });
    ui.stdout!.on('data', (d: Buffer) => (uiOutput += d.toString()));
    ui.stderr!.on('data', (d: Buffer) => (uiOutput += d.toString()));
    const started = new Promise<string>((resolve, reject) => {
      ui!.stdout!.on('data', () => {
        const m = /podnet ui: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(uiOutput);
        if (m) resolve(m[1]!);
      });
      ui!.on('exit', (c) => reject(new Error(`podnet ui exited with ${c}: ${uiOutput}`)));
    });
    url = await within(started, 60_000, '');
    expect(url, `podnet ui did not print its address: ${uiOutput}`).to.not.equal('');

    // --no-sandbox: Chromium's sandbox refuses to run as root, which the integration tests are.
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on('pageerror', (e) => (uiOutput += `\npage error: ${e.message}`));
  });

  after(async () => {
    await browser?.close().catch(() => undefined);
    if (ui && ui.exitCode === null) {
      const gone = new Promise((r) => ui!.once('exit', r));
      ui.kill('SIGTERM');
      await within(gone, 10_000, undefined);
      if (ui.exitCode === null) ui.kill('SIGKILL');
    }
    await t.destroy();
  });

  const attr = (sel: string, name: string) => page.locator(sel).getAttribute(name);

  it('shows every node and pod of the cluster, the service and its endpoint', async () => {
    await page.goto(url);
    await page.locator('[data-pod]').nth(3).waitFor({ timeout: 30_000 });
    const nodes = await page.locator('[data-node]').evaluateAll((els) => els.map((e) => e.getAttribute('data-node')));
    expect(nodes.sort()).to.deep.equal(['h1', 'h2', 'h3']);
    const pods = await page.locator('[data-pod]').evaluateAll((els) => els.map((e) => e.getAttribute('data-pod')));
    expect(pods.sort()).to.deep.equal(['h1/a', 'h1/b', 'h2/a', 'h3/a']);
    for (const [id, ip] of Object.entries(ips)) expect(await page.locator(`[data-pod="${id}"]`).textContent(), id).to.include(ip);
    expect(await page.locator('[data-pod="h1/b"]').getAttribute('class')).to.include('tun');
    for (const h of ['h1', 'h2', 'h3']) {
      const status = JSON.parse((await t.podnet(h, ['status', '--json'])).stdout) as { subnet: string };
      expect(await page.locator(`[data-node="${h}"]`).textContent(), h).to.include(status.subnet);
    }
    // Counters come from every daemon: all three are read here.
    await page.waitForFunction(() => document.querySelectorAll('.node.live').length === 3, undefined, { timeout: 30_000 });
    expect(await page.locator('[data-service="web"]').textContent()).to.include(clusterIp);
    expect(await page.locator('[data-endpoint]').evaluateAll((els) => els.map((e) => e.getAttribute('data-endpoint')))).to.deep.equal(['web>h2/a']);
    expect(await page.locator('#conn').textContent()).to.equal('live');
    expect(uiOutput).to.not.include('page error');
  });

  it('shows traffic: the rates of two pods pinging across nodes and of their nodes, and a connection through the service', async () => {
    type W = { podnetMap: { map: { pods: Array<{ id: string; rates?: { rxFramesPerSec: number; txFramesPerSec: number } }>; nodes: Array<{ name: string; vxlanTxPerSec?: number; vxlanRxPerSec?: number }> } } };
    // A ping stream from h1/a to h3/a while the page is watched (stopped once it is seen, or after 2 minutes).
    const pinger = startIn(t.podNs('h1', 'a'), 'ping', ['-i', '0.2', '-c', '600', ips['h3/a']!], 'bytes of data');
    try {
      await pinger.started;
      await page.waitForFunction(
        () => {
          const m = (window as unknown as W).podnetMap.map;
          const pod = (id: string) => m.pods.find((p) => p.id === id)?.rates;
          const node = (n: string) => m.nodes.find((x) => x.name === n);
          return (
            [pod('h1/a'), pod('h3/a')].every((r) => r !== undefined && r.rxFramesPerSec > 0 && r.txFramesPerSec > 0) &&
            (node('h1')?.vxlanTxPerSec ?? 0) > 0 &&
            (node('h3')?.vxlanRxPerSec ?? 0) > 0
          );
        },
        undefined,
        { timeout: 60_000 },
      );
      // What a person sees: the two pods marked active with their rates, the nodes with theirs.
      for (const id of ['h1/a', 'h3/a']) {
        expect(await attr(`[data-pod="${id}"]`, 'class'), id).to.include('active');
        expect(await page.locator(`[data-pod-rates="${id}"]`).textContent(), id).to.match(/^rx [1-9][\d.]*k?\/s {2}tx [1-9][\d.]*k?\/s$/);
      }
      expect(await page.locator('[data-node-rates="h1"]').textContent()).to.match(/vxlan tx [1-9][\d.]*k?\/s/);
      expect(await page.locator('[data-pod-row="h3/a"]').textContent()).to.include(ips['h3/a']);
      // Every node has two peers here: the overlay keeps no per-peer counts, so no link rate is made up.
      expect(await page.locator('[data-nodelink]').evaluateAll((els) => els.map((e) => e.getAttribute('data-nodelink')).sort())).to.deep.equal(['h1|h2', 'h1|h3', 'h2|h3']);
      expect(await attr('[data-nodelink="h1|h3"]', 'data-ab')).to.equal('');
    } finally {
      pinger.stop();
    }
    // A TCP connection to the service's cluster IP, which DNATs it to h2/a: conntrack has it, so it is
    // a line from h1/a to h2/a through web, with the packets it carried.
    const seen = page.waitForFunction(
      () => {
        const f = document.querySelector('[data-flow="h1/a>h2/a"]');
        return f !== null && Number(f.getAttribute('data-rate')) > 0;
      },
      undefined,
      { timeout: 60_000, polling: 'raf' },
    );
    expect(await tcpTransfer(t, t.podNs('h1', 'a'), t.podNs('h2', 'a'), clusterIp, 1024 * 1024, 5001)).to.equal(ips['h1/a']);
    await seen;
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll('#flows tbody tr')].some((tr) => {
          const c = [...tr.children].map((td) => td.textContent);
          return c[0] === 'h1/a' && c[1] === 'h2/a' && c[2] === 'web' && (c[3] ?? '').includes('tcp');
        }),
      undefined,
      { timeout: 30_000 },
    );
    expect(await page.locator('[data-flow="h1/a>h2/a"]').count()).to.equal(1);
    if (process.env.PODNET_UI_SCREENSHOT) await page.screenshot({ path: process.env.PODNET_UI_SCREENSHOT, fullPage: true });
  });

  it('shows a pod added to the cluster without a reload, as an endpoint of its service', async () => {
    await page.evaluate(() => ((window as unknown as { notReloaded: boolean }).notReloaded = true));
    const updates = await page.evaluate(() => (window as unknown as { podnetUpdates: number }).podnetUpdates);
    await addPod('h2', 'c', ['--label', 'app=web']);
    await page.locator('[data-pod="h2/c"]').waitFor({ timeout: 30_000 });
    expect(await page.locator('[data-pod="h2/c"]').textContent()).to.include(ips['h2/c']);
    await page.locator('[data-endpoint="web>h2/c"]').waitFor({ timeout: 30_000 });
    expect(await page.locator('[data-pod]').count()).to.equal(5);
    expect(await page.locator('[data-node="h2"]').count()).to.equal(1);
    // The same document: what the test put on it is still there, and it took further updates.
    expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded)).to.equal(true);
    expect(await page.evaluate(() => (window as unknown as { podnetUpdates: number }).podnetUpdates)).to.be.greaterThan(updates);
    // And one deleted goes the same way.
    const del = await t.podnet('h1', ['pod', 'del', 'b']);
    expect(del.code, del.stderr).to.equal(0);
    await page.locator('[data-pod="h1/b"]').waitFor({ state: 'detached', timeout: 30_000 });
    expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded)).to.equal(true);
    expect(uiOutput).to.not.include('page error');
  });

  it('serves on loopback only: another --address is refused with the field named', async () => {
    for (const [address, reason] of [
      ['0.0.0.0:9465', /invalid --address "0\.0\.0\.0:9465": the UI binds to a loopback address only/],
      ['198.18.0.11:9465', /invalid --address "198\.18\.0\.11:9465": the UI binds to a loopback address only/],
      ['127.0.0.1:http', /invalid --address "127\.0\.0\.1:http": port "http" is not a number/],
    ] as const) {
      const r = await execCapture(process.execPath, [CLI, '--run-dir', t.runDir, 'ui', '--address', address], 30_000);
      expect(r.code, address).to.equal(1);
      expect(r.stderr, address).to.match(reason);
    }
    const r = await execCapture(process.execPath, [CLI, '--run-dir', t.runDir, 'ui', '--interval', '5'], 30_000);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/--interval must be a whole number from 200 to 60000/);
    // A request naming another host (DNS rebinding) gets nothing.
    const port = new URL(url).port;
    const c = await execCapture('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', `Host: attacker.example:${port}`, url], 30_000);
    expect(c.stdout).to.equal('421');
  });
});
