import { expect } from 'chai';
import * as packet from '../../../src/packet/index.js';

describe('packet/index', () => {
  it('exports the API the data plane is written against', () => {
    const names = [
      'ParseError', 'parseErrorName', 'PacketError',
      'sum16', 'checksum', 'pseudoHeaderSum', 'updateChecksum16', 'updateChecksum32',
      'readIpv4', 'writeIpv4', 'ipv4ToString', 'parseIpv4', 'parseCidr', 'inSubnet',
      'readMacHi', 'readMacLo', 'writeMac', 'macToString', 'parseMac', 'isMulticastMacHi', 'isBroadcastMac',
      'ETH_HLEN', 'EtherType', 'EthernetView', 'EthernetViewMut', 'parseEthernet', 'emitEthernet',
      'ARP_LEN', 'ArpOp', 'ArpView', 'ArpViewMut', 'parseArp', 'emitArp',
      'IPV4_MIN_HLEN', 'IpProtocol', 'Ipv4View', 'Ipv4ViewMut', 'emitIpv4',
      'ICMP_HLEN', 'IcmpType', 'IcmpUnreachCode', 'IcmpView', 'IcmpViewMut', 'emitIcmpError',
      'UDP_HLEN', 'UdpView', 'UdpViewMut',
      'TCP_MIN_HLEN', 'TcpFlags', 'TcpView', 'TcpViewMut',
      'VXLAN_HLEN', 'VXLAN_FLAG_I', 'VXLAN_OVERHEAD', 'VxlanView', 'writeVxlanHeader',
    ];
    const exported = packet as unknown as Record<string, unknown>;
    for (const n of names) expect(exported[n], n).to.not.equal(undefined);
    expect(packet.VXLAN_OVERHEAD).to.equal(50);
  });

  it('parseIpv4 from index parses both address strings and IPv4 views', () => {
    expect(packet.parseIpv4('10.244.0.1')).to.equal(0x0af40001);
    const h = Buffer.alloc(20);
    packet.writeIpv4Header(h, 0, 1, 2, 17, 9, 0);
    expect(packet.parseIpv4(packet.Ipv4View.parse(h)).ttl).to.equal(9);
  });

  it('views are reusable across protocols of different frames', () => {
    const v = new packet.EthernetView();
    expect(v.reset(Buffer.alloc(14), 0, 14)).to.equal(packet.ParseError.Ok);
    expect(v.reset(Buffer.alloc(13), 0, 13)).to.equal(packet.ParseError.Truncated);
    // A failed reset still re-points the view (documented), so a Mut view can fill fresh memory.
    expect(v.len).to.equal(13);
  });
});
