import { expect } from 'chai';
import { DropReason } from '../../../src/util/counters.js';
import { HookPoint, HookVerdict, Hooks, Ingress, PacketContext, type ConnectionHook, type ConnectionObserver } from '../../../src/dataplane/hooks.js';
import { ServiceTable } from '../../../src/dataplane/services.js';
import { TapPort } from '../../../src/dataplane/ports.js';
import { Conntrack } from '../../../src/nat/conntrack.js';
import { Nat } from '../../../src/nat/nat.js';
import { IpProtocol, Ipv4View, ipv4ToString, parseIpv4, parseMac } from '../../../src/packet/index.js';
import { KubeProxy } from '../../../src/services/hooks.js';
import { RecordingSink, udpFrame } from '../../helpers/frames.js';
import { GATEWAY_MAC, routedDataplane } from '../../helpers/node.js';

const A = { name: 'a', mac: '0a:58:0a:f4:01:02', ip: '10.244.1.2' };
const B = { name: 'b', mac: '0a:58:0a:f4:01:03', ip: '10.244.1.3' };
const VIP = '10.96.0.10';

/** A node with two pods, conntrack, kube-proxy and one service 10.96.0.10:53/udp -> b:5353. */
function node() {
  const { dp, router } = routedDataplane();
  const ct = new Conntrack({ max: 1024 });
  router.nat = new Nat(ct, { drops: router.drops });
  const kp = new KubeProxy(router);
  kp.services.table = new ServiceTable({
    vips: [
      {
        vip: parseIpv4(VIP),
        ports: [
          { service: 'dns', proto: IpProtocol.UDP, port: 53, targetPort: 5353, nodePort: 0, endpoints: [parseIpv4(B.ip)], localEndpoints: [parseIpv4(B.ip)], sessionAffinity: false, affinityTimeout: 0, policyLocal: false },
        ],
      },
    ],
  });
  const pods: Record<string, { port: TapPort; sink: RecordingSink }> = {};
  for (const p of [A, B]) {
    const m = parseMac(p.mac);
    const sink = new RecordingSink();
    const port = new TapPort(p.name, dp, sink, { macHi: m.hi, macLo: m.lo, ip: parseIpv4(p.ip) });
    dp.neighbors.set(parseIpv4(p.ip), m.hi, m.lo);
    dp.switch.attach(port);
    pods[p.name] = { port, sink };
  }
  dp.switch.bridgeHook = (buf, ipOff, ipLen) => router.bridgeIp(buf, ipOff, ipLen);
  const send = (from: typeof A, dstMac: string, dst: string, dport: number, sport = 40000) => {
    const f = udpFrame({ srcMac: from.mac, dstMac, src: from.ip, dst, sport, dport });
    dp.tick();
    dp.receive(pods[from.name]!.port, f.buf, f.off, f.len);
    dp.flush();
  };
  return { dp, router, ct, kp, pods, send };
}

/** A FORWARD hook that records what it saw and answers `verdict`. */
class Recorder implements ConnectionHook {
  readonly name = 'recorder';
  readonly podToPod = true;
  seen: Array<{ ingress: number; dst: string; finalDst: string; finalDport: number }> = [];
  constructor(
    public verdict: HookVerdict,
    private readonly track = false,
  ) {}
  newConnection(ctx: PacketContext): HookVerdict {
    this.seen.push({ ingress: ctx.ingress, dst: ipv4ToString(ctx.dst >>> 0), finalDst: ipv4ToString(ctx.finalDst >>> 0), finalDport: ctx.finalDport });
    if (this.verdict !== HookVerdict.Continue) ctx.dropReason = DropReason.PolicyDeniedIngress;
    if (this.track) ctx.track = true;
    return this.verdict;
  }
}

const ipv = new Ipv4View();
const dstOf = (frame: Buffer) => (ipv.reset(frame, 14, frame.length - 14), ipv4ToString(ipv.dst));

describe('hooks: new connections through PRE_ROUTING, FORWARD and POST_ROUTING', () => {
  it('runs the points in order and stops at the first verdict that is not Continue', () => {
    const hooks = new Hooks();
    const order: string[] = [];
    const hook = (name: string, v: HookVerdict): ConnectionHook => ({ name, podToPod: true, newConnection: () => (order.push(name), v) });
    hooks.register(HookPoint.PostRouting, hook('post', HookVerdict.Continue));
    hooks.register(HookPoint.Forward, hook('fwd1', HookVerdict.Continue));
    const remove = hooks.register(HookPoint.Forward, hook('fwd2', HookVerdict.Drop));
    hooks.register(HookPoint.PreRouting, hook('pre', HookVerdict.Continue));
    const ctx = new PacketContext();
    ctx.resetDecisions();
    expect(hooks.run(ctx)).to.equal(HookVerdict.Drop);
    expect(order).to.deep.equal(['pre', 'fwd1', 'fwd2']);
    expect(ctx.refusedBy).to.equal('fwd2');
    remove();
    order.length = 0;
    ctx.resetDecisions();
    expect(hooks.run(ctx)).to.equal(HookVerdict.Continue);
    expect(order).to.deep.equal(['pre', 'fwd1', 'post']);
    expect(hooks.count(HookPoint.Forward)).to.equal(1);
  });

  it('shows FORWARD the real endpoint of a ClusterIP connection, after the services decision', () => {
    const n = node();
    const rec = new Recorder(HookVerdict.Continue);
    n.router.hooks.register(HookPoint.Forward, rec);
    n.send(A, GATEWAY_MAC, VIP, 53);
    expect(rec.seen).to.deep.equal([{ ingress: Ingress.Switch, dst: VIP, finalDst: B.ip, finalDport: 5353 }]);
    const got = n.pods.b!.sink.take();
    expect(got).to.have.length(1);
    expect(dstOf(got[0]!)).to.equal(B.ip);
    // Later packets of the connection never see the hooks: conntrack carries the decision.
    n.send(A, GATEWAY_MAC, VIP, 53);
    expect(rec.seen).to.have.length(1);
    expect(n.pods.b!.sink.take()).to.have.length(1);
  });

  it('drops a connection a FORWARD hook refuses, counts it with the hook\'s reason and tells the observer', () => {
    const n = node();
    const refused: Array<{ reason: number; by: string }> = [];
    const accepted: number[] = [];
    const obs: ConnectionObserver = { accepted: (c) => accepted.push(c.ctRef), refused: (c, r) => refused.push({ reason: r, by: c.refusedBy }) };
    n.router.hooks.observer = obs;
    n.router.hooks.register(HookPoint.Forward, new Recorder(HookVerdict.Drop));
    n.send(A, GATEWAY_MAC, VIP, 53);
    expect(n.pods.b!.sink.take()).to.have.length(0);
    expect(n.router.drops.toJSON()).to.have.property('policy_denied_ingress', 1);
    expect(refused).to.deep.equal([{ reason: DropReason.PolicyDeniedIngress, by: 'recorder' }]);
    expect(accepted).to.have.length(0);
    expect(n.ct.size).to.equal(0);
  });

  it('runs FORWARD on packets bridged between two pods, and creates a tracked entry when a hook asks for one', () => {
    const n = node();
    const rec = new Recorder(HookVerdict.Continue, true);
    n.router.hooks.register(HookPoint.Forward, rec);
    const accepted: number[] = [];
    n.router.hooks.observer = { accepted: (c) => accepted.push(c.ctRef), refused: () => undefined };
    n.send(A, B.mac, B.ip, 7000);
    expect(rec.seen).to.deep.equal([{ ingress: Ingress.Bridge, dst: B.ip, finalDst: B.ip, finalDport: 7000 }]);
    expect(n.pods.b!.sink.take()).to.have.length(1);
    expect(n.ct.size).to.equal(1);
    expect(accepted).to.have.length(1);
    expect(accepted[0]).to.be.greaterThanOrEqual(0);
    // The reply matches the tracked entry: no new connection, no hook.
    n.send(B, A.mac, A.ip, 40000, 7000);
    expect(rec.seen).to.have.length(1);
    expect(n.pods.a!.sink.take()).to.have.length(1);

    rec.verdict = HookVerdict.Drop;
    n.send(A, B.mac, B.ip, 7001);
    expect(n.pods.b!.sink.take()).to.have.length(0);
    expect(n.router.drops.toJSON()).to.have.property('policy_denied_ingress', 1);
  });

  it('lets traffic between pods skip the hooks while none decides about it (no policy), and runs them once one does', () => {
    const n = node();
    const seen: number[] = [];
    const notPods: ConnectionHook = { name: 'outside-only', podToPod: false, newConnection: (c) => (seen.push(c.dst), HookVerdict.Continue) };
    n.router.hooks.register(HookPoint.Forward, notPods);
    const OTHER_NODE_POD = '10.244.2.5'; // routed (another node's subnet: no overlay here, so no route)
    n.send(A, GATEWAY_MAC, OTHER_NODE_POD, 7000);
    expect(seen).to.have.length(0);
    n.send(A, GATEWAY_MAC, VIP, 53); // a service address is not a pod address: the hooks run
    expect(seen).to.have.length(1);
    const rec = new Recorder(HookVerdict.Continue);
    n.router.hooks.register(HookPoint.Forward, rec);
    n.send(A, GATEWAY_MAC, OTHER_NODE_POD, 7001);
    expect(rec.seen.map((x) => x.dst)).to.deep.equal([OTHER_NODE_POD]);
  });
});
