import { expect } from 'chai';
import { parseConfig } from '../../../src/daemon/config.js';

describe('daemon config: flows', () => {
  it('keeps 4096 flow records unless told otherwise', () => {
    expect(parseConfig({}).flows).to.deep.equal({ capacity: 4096 });
  });

  it('takes 0 (the flow log off) and a size', () => {
    expect(parseConfig({ flows: { capacity: 0 } }).flows.capacity).to.equal(0);
    expect(parseConfig({ flows: { capacity: 65536 } }).flows.capacity).to.equal(65536);
  });

  it('refuses a negative, fractional or too large capacity and unknown fields, naming the field', () => {
    for (const bad of [-1, 1.5, 2 ** 21, 'many']) {
      expect(() => parseConfig({ flows: { capacity: bad } })).to.throw(/flows\.capacity: /);
    }
    expect(() => parseConfig({ flows: { size: 10 } })).to.throw(/flows: Unrecognized key/);
  });
});

describe('daemon config: vxlan', () => {
  it('takes remote checksum offload unless told otherwise, with the other VXLAN defaults', () => {
    expect(parseConfig({}).vxlan).to.deep.equal({ vni: 1, port: 8472, transport: 'native', remoteChecksumOffload: true });
    expect(parseConfig({ vxlan: { vni: 7 } }).vxlan.remoteChecksumOffload).to.equal(true);
    expect(parseConfig({ vxlan: { remoteChecksumOffload: false } }).vxlan).to.include({ remoteChecksumOffload: false, vni: 1 });
  });

  it('refuses a remoteChecksumOffload that is not a boolean, naming the field', () => {
    expect(() => parseConfig({ vxlan: { remoteChecksumOffload: 'yes' } })).to.throw(/vxlan\.remoteChecksumOffload: /);
  });
});
