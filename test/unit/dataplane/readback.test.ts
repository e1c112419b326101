import { expect } from 'chai';
import type { Dataplane, RxRingLike } from '../../../src/dataplane/dataplane.js';
import { TapPort } from '../../../src/dataplane/ports.js';
import { parseIpv4, parseMac } from '../../../src/packet/index.js';
import { icmpEcho, RecordingSink, type Frame } from '../../helpers/frames.js';
import { routedDataplane } from '../../helpers/node.js';

const A = { mac: '0a:58:0a:f4:01:02', ip: '10.244.1.2' };
const B = { mac: '0a:58:0a:f4:01:03', ip: '10.244.1.3' };
const SLOT = 2048;
const HEADROOM = 128;

/** A receive ring holding `frames`, as a device's reader fills it. */
function ring(frames: Frame[]): RxRingLike {
  const buffer = Buffer.alloc(SLOT * Math.max(1, frames.length));
  const lengths = new Int32Array(Math.max(1, frames.length));
  frames.forEach((f, i) => {
    f.buf.copy(buffer, i * SLOT + HEADROOM, f.off, f.off + f.len);
    lengths[i] = f.len;
  });
  return { buffer, lengths, slotSize: SLOT, headroom: HEADROOM };
}

/**
 * A pod's device whose kernel answers within the write, as a TAP's does: `answer` says what the pod
 * queues for a written frame, and `readNow` hands what is queued to the port's batch, as the addon's
 * reader would (TunTap.readNow).
 */
class AnsweringSink extends RecordingSink {
  port: TapPort | undefined;
  queued: Frame[] = [];
  readNows = 0;
  answer: (written: Buffer) => Frame | undefined = () => undefined;
  constructor(private readonly dp: Dataplane) {
    super();
  }
  override writeBatch(bufs: Buffer[], offs: Uint32Array, lens: Uint32Array, count: number): number {
    const n = super.writeBatch(bufs, offs, lens, count);
    for (const f of this.frames.slice(-n)) {
      const a = this.answer(f);
      if (a !== undefined) this.queued.push(a);
    }
    return n;
  }
  readNow(): boolean {
    this.readNows++;
    const frames = this.queued;
    this.queued = [];
    if (frames.length > 0) this.dp.receiveRing(this.port!, ring(frames), frames.length);
    return true;
  }
}

function pods() {
  const { dp } = routedDataplane();
  const mk = (p: { mac: string; ip: string }) => {
    const sink = new AnsweringSink(dp);
    const m = parseMac(p.mac);
    const port = new TapPort(p.ip, dp, sink, { macHi: m.hi, macLo: m.lo, ip: parseIpv4(p.ip) });
    sink.port = port;
    dp.neighbors.set(parseIpv4(p.ip), m.hi, m.lo);
    dp.switch.attach(port);
    return { port, sink };
  };
  return { dp, a: mk(A), b: mk(B) };
}

// An echo request stands for any frame: the switch forwards by MAC whatever the frame is.
const echo = (from: typeof A, to: typeof A) => icmpEcho({ srcMac: from.mac, dstMac: to.mac, src: from.ip, dst: to.ip });

describe('dataplane: reading back a device the batch wrote to', () => {
  it("runs the pod's answer to a written frame in the same pass: B's reply reaches A before the batch returns", () => {
    const { dp, a, b } = pods();
    b.sink.answer = () => echo(B, A);
    dp.receiveRing(a.port, ring([echo(A, B)]), 1);
    expect(b.sink.take()).to.have.length(1);
    expect(b.sink.readNows).to.equal(1);
    expect(a.sink.take()).to.have.length(1, "B's answer was forwarded to A within A's batch");
    // The batch run by the read-back (B -> A) does not read A back in turn: one level only.
    expect(a.sink.readNows).to.equal(0);
  });

  it('reads a device back once per batch however many frames went to it, and not at all when nothing did', () => {
    const { dp, a, b } = pods();
    dp.receiveRing(a.port, ring([echo(A, B), echo(A, B), echo(A, B)]), 3);
    expect(b.sink.take()).to.have.length(3);
    expect(b.sink.readNows).to.equal(1);
    // A frame to nobody known (a MAC no port has) is flooded to B only: B read back, A (the ingress) never.
    const c = { mac: '0a:58:0a:f4:01:09', ip: '10.244.1.9' };
    dp.receiveRing(a.port, ring([echo(A, c)]), 1);
    expect(b.sink.take()).to.have.length(1);
    expect(b.sink.readNows).to.equal(2);
    expect(a.sink.readNows).to.equal(0);
    // A frame dropped at the switch (spoofed source IP) writes nothing: nothing is read back.
    dp.receiveRing(a.port, ring([icmpEcho({ srcMac: A.mac, dstMac: B.mac, src: '10.244.1.77', dst: B.ip })]), 1);
    expect(b.sink.take()).to.have.length(0);
    expect(b.sink.readNows).to.equal(2);
  });

  it('reads back the devices written by a single-frame batch (receiveOne) too', () => {
    const { dp, a, b } = pods();
    b.sink.answer = () => echo(B, A);
    const f = echo(A, B);
    dp.receiveOne(a.port, f.buf, f.off, f.len);
    expect(b.sink.readNows).to.equal(1);
    expect(a.sink.take()).to.have.length(1);
  });
});
