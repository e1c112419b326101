import { expect } from 'chai';
import { TapPort } from '../../../src/dataplane/ports.js';
import { VxlanOverlay, type UdpTransport } from '../../../src/dataplane/vxlan.js';
import { ETH_HLEN, Ipv4View, ParseError, parseIpv4, parseMac, VXLAN_HLEN, writeVxlanHeader } from '../../../src/packet/index.js';
import { ipIcmpEcho, RecordingSink, udpFrame } from '../../helpers/frames.js';
import { GATEWAY_MAC, routedDataplane } from '../../helpers/node.js';

const GW_MAC = GATEWAY_MAC;
const POD_MAC = '0a:58:0a:f4:01:02';
// Underlay addresses and VTEP MACs above 2^31, as 198.18.0.0/15 gives them.
const LOCAL_VTEP = '0a:5a:c6:12:00:0b';
const PEER_VTEP = '0a:5a:c6:12:00:0c';
const PEER_UNDERLAY = parseIpv4('198.18.0.12');

interface Sent {
  bytes: Buffer;
  off: number;
  len: number;
  dstIp: number;
  dstPort: number;
  srcPort: number;
}

class RecordingTransport implements UdpTransport {
  sent: Sent[] = [];
  send(buf: Buffer, off: number, len: number, dstIp: number, dstPort: number, srcPort: number): boolean {
    this.sent.push({ bytes: Buffer.from(buf.subarray(off, off + len)), off, len, dstIp, dstPort, srcPort });
    return true;
  }
}

function node() {
  const { dp, router } = routedDataplane();
  const sink = new RecordingSink();
  const m = parseMac(POD_MAC);
  const pod = new TapPort('a', dp, sink, { macHi: m.hi, macLo: m.lo, ip: parseIpv4('10.244.1.2') });
  dp.neighbors.set(parseIpv4('10.244.1.2'), m.hi, m.lo);
  dp.switch.attach(pod);
  const transport = new RecordingTransport();
  const local = parseMac(LOCAL_VTEP);
  const overlay = new VxlanOverlay(
    { vni: 0x123456, port: 8472, localVtepMacHi: local.hi, localVtepMacLo: local.lo, innerMtu: 1450, subnetMask: 0xffffff00 },
    transport,
    router,
  );
  router.overlay = overlay;
  const peer = parseMac(PEER_VTEP);
  overlay.setPeer({ subnetNetwork: parseIpv4('10.244.2.0'), underlayIp: PEER_UNDERLAY, vtepMacHi: peer.hi, vtepMacLo: peer.lo });
  return { dp, router, overlay, transport, sink };
}

describe('dataplane: VXLAN overlay', () => {
  it('writes the VXLAN header and the inner Ethernet header to the peer VTEP in front of the packet', () => {
    const n = node();
    const f = ipIcmpEcho({ src: '10.244.1.0', dst: '10.244.2.9' });
    n.dp.tick();
    n.router.fromHost(f.buf, f.off, f.len);
    expect(n.transport.sent).to.have.length(1);
    const s = n.transport.sent[0]!;
    expect(s.off).to.equal(f.off - ETH_HLEN - VXLAN_HLEN);
    expect(s.len).to.equal(f.len + ETH_HLEN + VXLAN_HLEN);
    expect(s.dstIp).to.equal(PEER_UNDERLAY); // unsigned, as the transport interface says
    expect(s.dstPort).to.equal(8472);
    expect(s.srcPort).to.be.within(32768, 60999);
    const hdr = s.bytes.subarray(0, VXLAN_HLEN + ETH_HLEN).toString('hex');
    expect(hdr).to.equal('08000000' + '12345600' + '0a5ac612000c' + '0a5ac612000b' + '0800');
    const ip = new Ipv4View();
    expect(ip.reset(s.bytes, VXLAN_HLEN + ETH_HLEN, f.len)).to.equal(ParseError.Ok);
    expect(ip.ttl).to.equal(63);
    expect(ip.verifyChecksum()).to.equal(true);
  });

  it('hashes the inner flow into the source port: flows spread, one flow keeps its port', () => {
    const n = node();
    const ports = new Set<number>();
    for (let sport = 40000; sport < 40016; sport++) {
      const f = udpFrame({ srcMac: POD_MAC, dstMac: GW_MAC, src: '10.244.1.0', dst: '10.244.2.9', sport, dport: 53 });
      n.router.fromHost(f.buf, f.off + ETH_HLEN, f.len - ETH_HLEN);
      ports.add(n.transport.sent.at(-1)!.srcPort);
    }
    expect(ports.size).to.be.greaterThan(8);
    // The same flow gives the same port.
    const again = udpFrame({ srcMac: POD_MAC, dstMac: GW_MAC, src: '10.244.1.0', dst: '10.244.2.9', sport: 40000, dport: 53 });
    n.router.fromHost(again.buf, again.off + ETH_HLEN, again.len - ETH_HLEN);
    expect(n.transport.sent.at(-1)!.srcPort).to.equal(n.transport.sent[0]!.srcPort);
  });

  it('decapsulates from a known peer to the local pod; drops unknown senders, other VNIs and other MACs', () => {
    const n = node();
    const inner = udpFrame({ srcMac: PEER_VTEP, dstMac: LOCAL_VTEP, src: '10.244.2.9', dst: '10.244.1.2', sport: 53, dport: 40000 });
    const payload = (vni: number, dstMac?: string) => {
      const buf = Buffer.alloc(128 + VXLAN_HLEN + inner.len, 0xa5);
      writeVxlanHeader(buf, 128, vni);
      inner.buf.copy(buf, 128 + VXLAN_HLEN, inner.off, inner.off + inner.len);
      if (dstMac !== undefined) {
        const m = parseMac(dstMac);
        buf.writeUInt16BE(m.hi, 128 + VXLAN_HLEN);
        buf.writeUInt32BE(m.lo, 128 + VXLAN_HLEN + 2);
      }
      return buf;
    };
    const len = VXLAN_HLEN + inner.len;
    n.dp.tick();
    n.overlay.receive(payload(0x123456), 128, len, PEER_UNDERLAY | 0); // the source as int32 works too
    n.dp.flush();
    const [f] = n.sink.take();
    expect(f).to.not.equal(undefined);
    expect(f!.subarray(0, 12).toString('hex')).to.equal('0a58 0af4 0102 0a59 0af4 0101'.replace(/ /g, ''));
    expect(n.overlay.decapsulated).to.equal(1);

    n.overlay.receive(payload(0x123456), 128, len, parseIpv4('198.18.0.99'));
    n.overlay.receive(payload(7), 128, len, PEER_UNDERLAY);
    n.overlay.receive(payload(0x123456, '0a:5a:c6:12:00:99'), 128, len, PEER_UNDERLAY);
    n.overlay.receive(payload(0x123456), 128, VXLAN_HLEN + 5, PEER_UNDERLAY);
    n.dp.flush();
    expect(n.sink.take()).to.have.length(0);
    expect(n.overlay.drops.toJSON()).to.deep.equal({ vxlan_unknown_sender: 1, vxlan_bad_vni: 1, not_for_router: 1, vxlan_malformed: 1 });
  });
});
