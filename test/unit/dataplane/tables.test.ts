import { expect } from 'chai';
import { MacTable } from '../../../src/dataplane/mactable.js';
import { U32Map } from '../../../src/util/u32map.js';

describe('MacTable', () => {
  it('learns, looks up and ages entries out without a timer', () => {
    const t = new MacTable(16, 300);
    t.learn(0x0a58, 0x0af40102, 3, 1000);
    expect(t.lookup(0x0a58, 0x0af40102, 1100)).to.equal(3);
    expect(t.lookup(0x0a58, 0x0af40102, 1301)).to.equal(-1);
    t.learn(0x0a58, 0x0af40102, 4, 1302); // moved port
    expect(t.lookup(0x0a58, 0x0af40102, 1303)).to.equal(4);
  });
  it('keeps static entries forever and does not let learning move them', () => {
    const t = new MacTable(16, 1);
    t.learn(1, 2, 5, Infinity);
    t.learn(1, 2, 6, 10);
    expect(t.lookup(1, 2, 1e9)).to.equal(5);
    t.flushPort(5);
    expect(t.lookup(1, 2, 10)).to.equal(-1);
  });
  it('stops learning when full and reuses aged slots', () => {
    const t = new MacTable(4, 10);
    for (let i = 0; i < 4; i++) expect(t.learn(1, i, i, 0)).to.equal(true);
    expect(t.learn(1, 99, 9, 5)).to.equal(false);
    expect(t.learn(1, 99, 9, 100)).to.equal(true); // others aged out
    expect(t.lookup(1, 99, 100)).to.equal(9);
  });
});

describe('U32Map', () => {
  it('matches a Map under random inserts and deletes (backward-shift deletion keeps keys reachable)', () => {
    const m = new U32Map(4);
    const ref = new Map<number, number>();
    let seed = 7;
    const rnd = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0);
    for (let i = 0; i < 20000; i++) {
      const k = (rnd() % 512) * 0x01000193 >>> 0;
      if (rnd() % 3 === 0) {
        expect(m.delete(k)).to.equal(ref.delete(k));
      } else {
        const v = rnd() & 0x7fffffff;
        m.set(k, v);
        ref.set(k, v);
      }
    }
    expect(m.size).to.equal(ref.size);
    for (const [k, v] of ref) expect(m.get(k)).to.equal(v);
    expect(m.get(0xdeadbeef)).to.equal(ref.get(0xdeadbeef) ?? -1);
  });
});
