import { expect } from 'chai';
import { HostPort, TapPort } from '../../../src/dataplane/ports.js';
import { Conntrack } from '../../../src/nat/conntrack.js';
import { Nat } from '../../../src/nat/nat.js';
import { KubeProxy } from '../../../src/services/hooks.js';
import { emitTcp, ETH_HLEN, EtherType, IpProtocol, Ipv4View, parseIpv4, parseMac, TcpFlags, writeEthernetHeader, writeIpv4Header, ipv4ToString } from '../../../src/packet/index.js';
import { HEADROOM, RecordingSink } from '../../helpers/frames.js';
import { GATEWAY_MAC, routedDataplane } from '../../helpers/node.js';

const POD_MAC = '0a:58:0a:f4:01:02';

/** A pod's TCP segment to an address outside the cluster, with the given flags. */
function tcpOut(flags: number): { buf: Buffer; off: number; len: number } {
  const len = ETH_HLEN + 20 + 20;
  const buf = Buffer.alloc(HEADROOM + len, 0xa5);
  const s = parseMac(POD_MAC);
  const d = parseMac(GATEWAY_MAC);
  writeEthernetHeader(buf, HEADROOM, d.hi, d.lo, s.hi, s.lo, EtherType.IPv4);
  const ipOff = HEADROOM + ETH_HLEN;
  const src = parseIpv4('10.244.1.2');
  const dst = parseIpv4('198.18.0.50');
  emitTcp({ srcPort: 8080, dstPort: 40000, seq: 1, ack: flags & TcpFlags.ACK ? 100 : 0, flags, window: 65535, payloadLength: 0 }, buf, ipOff + 20, src, dst);
  writeIpv4Header(buf, ipOff, src, dst, IpProtocol.TCP, 64, 20);
  return { buf, off: HEADROOM, len };
}

function node() {
  const { dp, router } = routedDataplane();
  router.nat = new Nat(new Conntrack({ max: 1024 }));
  const kubeProxy = new KubeProxy(router);
  kubeProxy.nodeIp = parseIpv4('198.18.0.11');
  kubeProxy.masquerade.enabled = true;
  const sent: Buffer[] = [];
  router.uplink = { send: (b, o, l) => (sent.push(Buffer.from(b.subarray(o, o + l))), true) };
  const m = parseMac(POD_MAC);
  const pod = new TapPort('a', dp, new RecordingSink(), { macHi: m.hi, macLo: m.lo, ip: parseIpv4('10.244.1.2') });
  dp.neighbors.set(parseIpv4('10.244.1.2'), m.hi, m.lo);
  dp.switch.attach(pod);
  const hostSink = new RecordingSink();
  router.attachHost(new HostPort('podnet0', dp, hostSink));
  const send = (f: { buf: Buffer; off: number; len: number }) => {
    dp.tick();
    dp.receive(pod, f.buf, f.off, f.len);
    dp.flush();
  };
  return { send, sent, hostSink };
}

const ip = new Ipv4View();
const srcOf = (b: Buffer, off: number) => (ip.reset(b, off, b.length - off), ipv4ToString(ip.src));

describe('router: masquerade opens TCP connections only on a SYN', () => {
  it('masquerades a pod\'s SYN to the outside through the uplink, from the node address', () => {
    const n = node();
    n.send(tcpOut(TcpFlags.SYN));
    expect(n.sent).to.have.length(1);
    expect(srcOf(n.sent[0]!, 0)).to.equal('198.18.0.11');
    expect(n.hostSink.take()).to.have.length(0);
  });

  it('sends a segment conntrack does not know (a SYN-ACK answering a connection the host DNATed, as portmap does) to the host unchanged', () => {
    const n = node();
    n.send(tcpOut(TcpFlags.SYN | TcpFlags.ACK));
    n.send(tcpOut(TcpFlags.ACK));
    expect(n.sent).to.have.length(0);
    const toHost = n.hostSink.take();
    expect(toHost).to.have.length(2);
    for (const p of toHost) expect(srcOf(p, 0)).to.equal('10.244.1.2');
  });
});
