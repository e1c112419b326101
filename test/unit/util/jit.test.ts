import { expect } from 'chai';
import { DATA_PLANE_V8_FLAGS, INLINE_BUDGET, jitFlagsFor } from '../../../src/util/jit.js';

describe('util/jit: the data plane\'s V8 flags', () => {
  it('sets the inlining budget and the faster tier-up when node\'s command line sets none of them', () => {
    expect(jitFlagsFor([])).to.deep.equal([...DATA_PLANE_V8_FLAGS]);
    expect(jitFlagsFor(['--expose-gc', '--perf-basic-prof'])).to.deep.equal([...DATA_PLANE_V8_FLAGS]);
    expect(DATA_PLANE_V8_FLAGS).to.include(`--max-inlined-bytecode-size-cumulative=${INLINE_BUDGET}`);
    expect(DATA_PLANE_V8_FLAGS.some((f) => f.startsWith('--interrupt-budget='))).to.equal(true);
  });

  it('leaves a flag that node\'s command line gives to the command line (an A/B run of it), in either spelling', () => {
    const got = jitFlagsFor(['--interrupt-budget=67584', '--minimum_invocations_after_ic_update=500']);
    expect(got).to.deep.equal([`--max-inlined-bytecode-size-cumulative=${INLINE_BUDGET}`]);
  });
});
