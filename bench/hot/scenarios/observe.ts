/**
 * Issue 14: what observing costs the paths that are not observed. Variants of three base scenarios
 * (L2 forward, route + VXLAN encapsulation, established ClusterIP, all 64 B):
 *   +capture_other_port  a `podnet capture` ring (rx and tx) attached to another pod's port, with a
 *                        filter: the measured path passes the same `undefined` checks as without it
 *   +metrics_1s          a Prometheus scrape every second of wall time during the timed runs,
 *                        through the exporter's real registry (`buildRegistry`) over the node's
 *                        counters. Its collectors and text rendering run between batches on the
 *                        data plane's thread, as in the daemon; the few KB a scrape allocates are
 *                        counted in the heap bytes per packet.
 * Compare each with its base scenario in the same run. The metrics variants also report a scrape's
 * own cost (`notes`: its median time and that as a share of each second), which does not depend on
 * how steady the machine's rate is.
 */
import { buildRegistry, type NodeStatusView } from '../../../src/metrics/exporter.js';
import { compileFilter } from '../../../src/observe/filter.js';
import { CaptureRing, LinkType } from '../../../src/observe/ring.js';
import { buildHooks, type BenchNode } from '../node.js';
import type { Scenario, Workload } from '../workload.js';

function statusView(node: BenchNode): NodeStatusView {
  return {
    pods: node.pods.map((p) => ({ name: p.name, counters: { ...p.port.traffic.toJSON(), drops: p.port.drops.toJSON() } })),
    router: { forwarded: node.router.forwarded, drops: node.router.drops.toJSON() },
    conntrack: { entries: node.conntrack.size, max: node.conntrack.max, ...node.conntrack.stats },
    cluster: { vxlan: { encapsulated: node.overlay.encapsulated, decapsulated: node.overlay.decapsulated, gsoRuns: node.overlay.segmentedRuns, groSuperFrames: 0, drops: node.overlay.drops.toJSON(), peers: node.peers.map((p) => ({ underlayIp: String(p.underlayIp) })) } },
  };
}

/** Runs the base workload in slices, scraping every second of wall time between slices. */
class ScrapedWorkload implements Workload {
  /** -Infinity: the first slice of the workload scrapes, so even a --quick run of 0.1 s has one. */
  private last = -Infinity;
  scrapes = 0;
  private pendingScrape: Promise<string> | undefined;
  constructor(
    private readonly base: Workload,
    private readonly scrape: () => Promise<string>,
  ) {}
  get frameBytes() {
    return this.base.frameBytes;
  }
  get batchSize() {
    return this.base.batchSize;
  }
  get restoreBytes() {
    return this.base.restoreBytes;
  }
  run(batches: number): void {
    for (let done = 0; done < batches; ) {
      const n = Math.min(256, batches - done);
      this.base.run(n);
      done += n;
      const now = performance.now();
      if (now - this.last >= 1000) {
        this.last = now;
        this.scrapes++;
        // The collectors run now (synchronously, inside metrics()); the text is joined when the
        // promise settles, which is after this run: the next scrape waits for it.
        if (this.pendingScrape === undefined) this.pendingScrape = this.scrape().finally(() => (this.pendingScrape = undefined));
      }
    }
  }
  restoreOnly(batches: number): void {
    this.base.restoreOnly(batches);
  }
  delivered(): number {
    return this.base.delivered();
  }
  drops(): Record<string, number> {
    return this.base.drops();
  }
  verify(): void {
    this.base.verify();
  }
  /**
   * What scraping costs, measured apart from the rate (which this machine's noise can hide): the
   * median of 21 whole scrapes (collectors and text, start to settled promise), and that as the
   * share of each second one scrape a second takes from the data plane's thread.
   */
  async notes(): Promise<Record<string, number>> {
    await this.pendingScrape;
    const ms: number[] = [];
    for (let i = 0; i < 21; i++) {
      const t0 = performance.now();
      await this.scrape();
      ms.push(performance.now() - t0);
    }
    ms.sort((a, b) => a - b);
    const median = ms[10]!;
    return { scrapes_in_runs: this.scrapes, scrape_ms: median, scrape_share_of_each_second: median / 1000 };
  }
}

function variants(base: Scenario): Scenario[] {
  const capture: Scenario = {
    ...base,
    name: `${base.name}+capture_other_port`,
    family: `${base.family}+capture_other_port`,
    description: `${base.description}; a capture (ring, filter 'tcp port 80') attached to another pod's port`,
    setup: async () => {
      let node: BenchNode | undefined;
      buildHooks.onBuilt = (n) => (node = n);
      try {
        const w = await base.setup();
        const other = node!.pods[node!.pods.length - 1]!;
        const ring = new CaptureRing({ linkType: LinkType.Ethernet, filter: compileFilter('tcp port 80').match });
        other.port.rxTap = ring;
        other.port.tx.tap = ring;
        return w;
      } finally {
        buildHooks.onBuilt = undefined;
      }
    },
  };
  const metrics: Scenario = {
    ...base,
    name: `${base.name}+metrics_1s`,
    family: `${base.family}+metrics_1s`,
    description: `${base.description}; /metrics scraped every second`,
    setup: async () => {
      let node: BenchNode | undefined;
      buildHooks.onBuilt = (n) => (node = n);
      try {
        const w = await base.setup();
        const n = node!;
        const registry = buildRegistry({ status: () => statusView(n) });
        await registry.metrics(); // once before timing: the text is what a scrape returns
        return new ScrapedWorkload(w, () => registry.metrics());
      } finally {
        buildHooks.onBuilt = undefined;
      }
    },
  };
  return [capture, metrics];
}

export function observeScenarios(bases: readonly Scenario[]): Scenario[] {
  const wanted = ['l2_forward/64B', 'route_vxlan_encap/64B', 'clusterip_established/1k'];
  return bases.filter((s) => wanted.includes(s.name)).flatMap(variants);
}
