import { expect } from 'chai';
import { Dataplane } from '../../../src/dataplane/dataplane.js';
import { TapPort, TunPort, HostPort } from '../../../src/dataplane/ports.js';
import { dropReasonName } from '../../../src/util/counters.js';
import {
  ArpOp,
  ArpView,
  ETH_HLEN,
  EthernetView,
  EtherType,
  IcmpType,
  IcmpUnreachCode,
  IcmpView,
  Ipv4View,
  parseIpv4,
  parseMac,
  ipv4ToString,
  macToString,
} from '../../../src/packet/index.js';
import { arpRequest, icmpEcho, ipIcmpEcho, RecordingSink, udpFrame, type Frame } from '../../helpers/frames.js';
import { GATEWAY_MAC, routedDataplane } from '../../helpers/node.js';

const GW_MAC = GATEWAY_MAC;
const A_MAC = '0a:58:0a:f4:01:02';
const B_MAC = '0a:58:0a:f4:01:03';
const T_MAC = '0a:58:0a:f4:01:04';

function node() {
  const { dp, router } = routedDataplane();
  const mk = (name: string, mac: string, ip: string) => {
    const sink = new RecordingSink();
    const m = parseMac(mac);
    const port = new TapPort(name, dp, sink, { macHi: m.hi, macLo: m.lo, ip: parseIpv4(ip) });
    dp.neighbors.set(parseIpv4(ip), m.hi, m.lo);
    dp.switch.attach(port);
    return { port, sink };
  };
  const a = mk('a', A_MAC, '10.244.1.2');
  const b = mk('b', B_MAC, '10.244.1.3');
  const hostSink = new RecordingSink();
  const host = new HostPort('podnet0', dp, hostSink);
  router.attachHost(host);
  return { dp, router, a, b, host, hostSink };
}

function send(dp: Dataplane, port: { receive(b: Buffer, o: number, l: number): void }, f: Frame) {
  dp.tick();
  dp.receive(port, f.buf, f.off, f.len);
  dp.flush();
}

const eth = new EthernetView();
const ipv = new Ipv4View();
const icmp = new IcmpView();
const arp = new ArpView();

describe('dataplane: switch', () => {
  it('answers a pod ARP for the gateway with the gateway MAC', () => {
    const n = node();
    send(n.dp, n.a.port, arpRequest(A_MAC, '10.244.1.2', '10.244.1.1'));
    const replies = n.a.sink.take();
    expect(replies).to.have.length(1);
    expect(eth.reset(replies[0]!, 0, replies[0]!.length)).to.equal(0);
    expect(eth.etherType).to.equal(EtherType.ARP);
    expect(macToString(eth.dstHi, eth.dstLo)).to.equal(A_MAC);
    arp.reset(replies[0]!, ETH_HLEN, 28);
    expect(arp.operation).to.equal(ArpOp.Reply);
    expect(macToString(arp.senderMacHi, arp.senderMacLo)).to.equal(GW_MAC);
    expect(ipv4ToString(arp.senderIp)).to.equal('10.244.1.1');
    // The broadcast request was also flooded to the other pod (it may be for it).
    expect(n.b.sink.take()).to.have.length(1);
  });

  it('forwards known unicast to one port and never back to the ingress', () => {
    const n = node();
    send(n.dp, n.a.port, icmpEcho({ srcMac: A_MAC, dstMac: B_MAC, src: '10.244.1.2', dst: '10.244.1.3' }));
    expect(n.b.sink.take()).to.have.length(1);
    expect(n.a.sink.take()).to.have.length(0);
    expect(n.a.port.traffic.rxFrames).to.equal(1);
    expect(n.b.port.traffic.txFrames).to.equal(1);
  });

  it('floods unknown unicast to every port but the ingress', () => {
    const n = node();
    send(n.dp, n.a.port, icmpEcho({ srcMac: A_MAC, dstMac: '0a:58:0a:f4:01:63', src: '10.244.1.2', dst: '10.244.1.99' }));
    expect(n.b.sink.take()).to.have.length(1);
    expect(n.a.sink.take()).to.have.length(0);
    expect(n.router.ignored).to.equal(1);
  });

  it('drops and counts spoofed source MAC, source IP and ARP sender', () => {
    const n = node();
    send(n.dp, n.a.port, icmpEcho({ srcMac: '0a:58:0a:f4:01:77', dstMac: B_MAC, src: '10.244.1.2', dst: '10.244.1.3' }));
    send(n.dp, n.a.port, icmpEcho({ srcMac: A_MAC, dstMac: B_MAC, src: '10.244.1.3', dst: '10.244.1.3' }));
    send(n.dp, n.a.port, arpRequest(A_MAC, '10.244.1.9', '10.244.1.3'));
    expect(n.b.sink.take()).to.have.length(0);
    expect(n.a.port.drops.toJSON()).to.deep.equal({ spoofed_source_mac: 1, spoofed_source_ip: 1, spoofed_arp: 1 });
    // The other pod is unaffected.
    send(n.dp, n.b.port, icmpEcho({ srcMac: B_MAC, dstMac: A_MAC, src: '10.244.1.3', dst: '10.244.1.2' }));
    expect(n.a.sink.take()).to.have.length(1);
  });

  it('counts malformed frames by reason and survives random bytes', () => {
    const n = node();
    let seed = 42;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) & 0xff;
    for (let i = 0; i < 5000; i++) {
      const len = rnd() % 120;
      const buf = Buffer.alloc(128 + len);
      for (let j = 0; j < len; j++) buf[128 + j] = rnd();
      if (i % 3 === 0 && len >= 14) {
        // Valid MAC header of the pod, garbage IPv4 after it.
        const m = parseMac(A_MAC);
        buf.writeUInt16BE(m.hi, 134);
        buf.writeUInt32BE(m.lo, 136);
        buf.writeUInt16BE(0x0800, 140);
      }
      send(n.dp, n.a.port, { buf, off: 128, len });
    }
    const drops = n.a.port.drops.toJSON();
    expect(n.a.port.drops.total).to.equal(5000);
    expect(drops.malformed_ethernet).to.be.greaterThan(0);
    expect(drops.malformed_ipv4).to.be.greaterThan(0);
    send(n.dp, n.a.port, icmpEcho({ srcMac: A_MAC, dstMac: B_MAC, src: '10.244.1.2', dst: '10.244.1.3' }));
    expect(n.b.sink.take().length).to.be.at.most(1 + 5000); // floods of random-but-valid frames reached b
  });

  it('names every drop reason', () => {
    expect(dropReasonName(0)).to.equal('malformed_ethernet');
    expect(dropReasonName(5)).to.equal('spoofed_source_mac');
  });
});

describe('dataplane: router', () => {
  it('answers ICMP echo to the gateway', () => {
    const n = node();
    send(n.dp, n.a.port, icmpEcho({ srcMac: A_MAC, dstMac: GW_MAC, src: '10.244.1.2', dst: '10.244.1.1', ident: 99, seq: 5 }));
    const [r] = n.a.sink.take();
    expect(r).to.not.equal(undefined);
    eth.reset(r!, 0, r!.length);
    expect(macToString(eth.srcHi, eth.srcLo)).to.equal(GW_MAC);
    ipv.reset(r!, ETH_HLEN, r!.length - ETH_HLEN);
    expect(ipv.verifyChecksum()).to.equal(true);
    expect(ipv4ToString(ipv.src)).to.equal('10.244.1.1');
    expect(ipv4ToString(ipv.dst)).to.equal('10.244.1.2');
    icmp.reset(r!, ipv.payloadOffset, ipv.payloadLength);
    expect(icmp.type).to.equal(IcmpType.EchoReply);
    expect(icmp.ident).to.equal(99);
    expect(icmp.verifyChecksum()).to.equal(true);
  });

  it('routes host -> pod with TTL decremented and the pod MAC, and pod -> host without Ethernet', () => {
    const n = node();
    send(n.dp, n.host, ipIcmpEcho({ src: '10.244.1.0', dst: '10.244.1.3', ttl: 64 }));
    const [f] = n.b.sink.take();
    eth.reset(f!, 0, f!.length);
    expect(macToString(eth.dstHi, eth.dstLo)).to.equal(B_MAC);
    expect(macToString(eth.srcHi, eth.srcLo)).to.equal(GW_MAC);
    ipv.reset(f!, ETH_HLEN, f!.length - ETH_HLEN);
    expect(ipv.ttl).to.equal(63);
    expect(ipv.verifyChecksum()).to.equal(true);

    send(n.dp, n.b.port, icmpEcho({ srcMac: B_MAC, dstMac: GW_MAC, src: '10.244.1.3', dst: '10.244.1.0' }));
    const [h] = n.hostSink.take();
    ipv.reset(h!, 0, h!.length);
    expect(ipv4ToString(ipv.dst)).to.equal('10.244.1.0');
    expect(ipv.ttl).to.equal(63);
  });

  it('hands routed frames straight to the pod port, counted as if switched, and follows a pod whose port changed', () => {
    const n = node();
    const routerRx = n.router.port.traffic.rxFrames;
    send(n.dp, n.host, ipIcmpEcho({ src: '10.244.1.0', dst: '10.244.1.3' }));
    expect(n.b.sink.take()).to.have.length(1);
    expect(n.router.port.traffic.rxFrames - routerRx).to.equal(1);
    expect(n.b.port.traffic.txFrames).to.equal(1);
    expect(n.dp.injectOverflow).to.equal(0);

    // Pod b goes away and a new port takes its switch index with another MAC and b's address: the
    // router must not use the index it remembered for b's old MAC.
    const index = n.b.port.index;
    n.dp.switch.detach(n.b.port);
    const sink = new RecordingSink();
    const c = parseMac('0a:58:0a:f4:01:33');
    const port = new TapPort('c', n.dp, sink, { macHi: c.hi, macLo: c.lo, ip: parseIpv4('10.244.1.3') });
    n.dp.neighbors.set(parseIpv4('10.244.1.3'), c.hi, c.lo);
    n.dp.switch.attach(port);
    expect(port.index).to.equal(index);
    send(n.dp, n.host, ipIcmpEcho({ src: '10.244.1.0', dst: '10.244.1.3' }));
    expect(n.b.sink.take()).to.have.length(0);
    const [f] = sink.take();
    eth.reset(f!, 0, f!.length);
    expect(macToString(eth.dstHi, eth.dstLo)).to.equal('0a:58:0a:f4:01:33');
  });

  it('sends ICMP time exceeded when TTL runs out', () => {
    const n = node();
    send(n.dp, n.a.port, icmpEcho({ srcMac: A_MAC, dstMac: GW_MAC, src: '10.244.1.2', dst: '10.244.1.3', ttl: 1 }));
    expect(n.b.sink.take()).to.have.length(0);
    const [r] = n.a.sink.take();
    ipv.reset(r!, ETH_HLEN, r!.length - ETH_HLEN);
    expect(ipv.verifyChecksum()).to.equal(true);
    icmp.reset(r!, ipv.payloadOffset, ipv.payloadLength);
    expect(icmp.type).to.equal(IcmpType.TimeExceeded);
    expect(icmp.verifyChecksum()).to.equal(true);
    expect(n.router.drops.toJSON()).to.deep.equal({ ttl_exceeded: 1 });
  });

  it('answers host unreachable for an unused address of the subnet and net unreachable off the cluster without a route', () => {
    const n = node();
    send(n.dp, n.a.port, udpFrame({ srcMac: A_MAC, dstMac: GW_MAC, src: '10.244.1.2', dst: '10.244.1.50', sport: 1000, dport: 53 }));
    let [r] = n.a.sink.take();
    ipv.reset(r!, ETH_HLEN, r!.length - ETH_HLEN);
    icmp.reset(r!, ipv.payloadOffset, ipv.payloadLength);
    expect([icmp.type, icmp.code]).to.deep.equal([IcmpType.DestUnreachable, IcmpUnreachCode.Host]);
    // Another node's subnet with no overlay configured.
    send(n.dp, n.a.port, udpFrame({ srcMac: A_MAC, dstMac: GW_MAC, src: '10.244.1.2', dst: '10.244.7.5', sport: 1000, dport: 53 }));
    [r] = n.a.sink.take();
    ipv.reset(r!, ETH_HLEN, r!.length - ETH_HLEN);
    icmp.reset(r!, ipv.payloadOffset, ipv.payloadLength);
    expect([icmp.type, icmp.code]).to.deep.equal([IcmpType.DestUnreachable, IcmpUnreachCode.Net]);
  });

  it('never answers an ICMP error with an ICMP error', () => {
    const n = node();
    const f = icmpEcho({ srcMac: A_MAC, dstMac: GW_MAC, src: '10.244.1.2', dst: '10.244.1.50' });
    f.buf[f.off + ETH_HLEN + 20] = IcmpType.DestUnreachable; // now an ICMP error (checksum irrelevant)
    send(n.dp, n.a.port, f);
    expect(n.a.sink.take()).to.have.length(0);
  });
});

describe('dataplane: TUN pods', () => {
  it('bridges a TUN pod and a TAP pod: ARP answered for the TUN pod, Ethernet added and stripped', () => {
    const n = node();
    const tunSink = new RecordingSink();
    const t = parseMac(T_MAC);
    const gw = parseMac(GW_MAC);
    const tun = new TunPort('t', n.dp, tunSink, { macHi: t.hi, macLo: t.lo, ip: parseIpv4('10.244.1.4') }, { macHi: gw.hi, macLo: gw.lo, network: parseIpv4('10.244.1.0'), mask: 0xffffff00, broadcast: parseIpv4('10.244.1.255') });
    n.dp.neighbors.set(parseIpv4('10.244.1.4'), t.hi, t.lo);
    n.dp.switch.attach(tun);

    // TAP pod a asks who has the TUN pod's address: the TUN port answers.
    send(n.dp, n.a.port, arpRequest(A_MAC, '10.244.1.2', '10.244.1.4'));
    const replies = n.a.sink.take();
    expect(replies).to.have.length(1);
    arp.reset(replies[0]!, ETH_HLEN, 28);
    expect(macToString(arp.senderMacHi, arp.senderMacLo)).to.equal(T_MAC);
    expect(tunSink.take()).to.have.length(0); // ARP never reaches a TUN device

    // a -> t: the TUN device gets the bare IP packet.
    send(n.dp, n.a.port, icmpEcho({ srcMac: A_MAC, dstMac: T_MAC, src: '10.244.1.2', dst: '10.244.1.4' }));
    const [ipPkt] = tunSink.take();
    expect(ipv.reset(ipPkt!, 0, ipPkt!.length)).to.equal(0);
    expect(ipv4ToString(ipv.src)).to.equal('10.244.1.2');

    // t -> a: framed to a's MAC directly (the neighbour table knows it).
    send(n.dp, tun, ipIcmpEcho({ src: '10.244.1.4', dst: '10.244.1.2' }));
    const [fr] = n.a.sink.take();
    eth.reset(fr!, 0, fr!.length);
    expect(macToString(eth.srcHi, eth.srcLo)).to.equal(T_MAC);
    expect(macToString(eth.dstHi, eth.dstLo)).to.equal(A_MAC);

    // A TUN pod cannot spoof either.
    send(n.dp, tun, ipIcmpEcho({ src: '10.244.1.9', dst: '10.244.1.2' }));
    expect(n.a.sink.take()).to.have.length(0);
    expect(tun.drops.toJSON()).to.deep.equal({ spoofed_source_ip: 1 });
  });
});
