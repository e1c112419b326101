import { expect } from 'chai';
import { pino } from 'pino';
import { StoreHealth } from '../../../src/daemon/storehealth.js';

const log = pino({ level: 'silent' });
const until = async (cond: () => boolean) => {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
};

describe('StoreHealth: is the cluster store reachable, and since when', () => {
  it('reports an outage with its start, keeps probing while it lasts, and recovers by itself', async () => {
    let up = true;
    const probes: number[] = [];
    let reachableCalls = 0;
    const h = new StoreHealth(
      async () => {
        probes.push(Date.now());
        if (!up) throw new Error('connect ECONNREFUSED 198.18.0.1:2379');
      },
      log,
      { intervalMs: 5, minBackoffMs: 5, maxBackoffMs: 40, onReachable: async () => void reachableCalls++ },
    );
    h.start();
    try {
      await until(() => probes.length >= 2);
      expect(h.status()).to.deep.equal({ reachable: true, outages: 0 });
      const downAt = Date.now();
      up = false;
      await until(() => !h.reachable);
      const st = h.status();
      expect(st.reachable).to.equal(false);
      expect(Date.parse(st.unreachableSince!)).to.be.at.least(downAt);
      expect(st.lastError).to.match(/ECONNREFUSED/);
      expect(st.outages).to.equal(1);
      // It keeps probing while the outage lasts.
      const from = probes.length;
      await until(() => probes.length >= from + 3);
      expect(h.reachable).to.equal(false);
      const before = reachableCalls;
      up = true;
      await until(() => h.reachable);
      expect(h.status()).to.deep.equal({ reachable: true, outages: 1 });
      expect(reachableCalls).to.be.greaterThan(before);
    } finally {
      h.stop();
    }
  });

  it('a probe that never answers counts as an outage (deadline)', async () => {
    const h = new StoreHealth(() => new Promise(() => undefined), log, { intervalMs: 1, timeoutMs: 20 });
    h.start();
    try {
      await until(() => !h.reachable);
      expect(h.status().lastError).to.match(/no answer within 20 ms/);
    } finally {
      h.stop();
    }
  });

  it('stays unreachable while the follow-up (registering again) fails', async () => {
    let fail = true;
    const h = new StoreHealth(async () => undefined, log, {
      intervalMs: 1,
      minBackoffMs: 1,
      onReachable: async () => {
        if (fail) throw new Error('lease grant failed');
      },
    });
    h.failed(new Error('lease lost'));
    h.start();
    try {
      await until(() => h.status().lastError === 'lease grant failed');
      expect(h.reachable).to.equal(false);
      fail = false;
      await until(() => h.reachable);
    } finally {
      h.stop();
    }
  });
});
