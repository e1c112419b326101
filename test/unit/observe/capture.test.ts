import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { classifyEthernet, classifyIp, compileFilter, FilterError, PacketFields } from '../../../src/observe/filter.js';
import { CaptureFileWriter, pcapHeader, pcapRecord, pcapngHeader, pcapngPacket } from '../../../src/observe/pcap.js';
import { CaptureRing, LinkType } from '../../../src/observe/ring.js';
import { encodeJson, encodePacket, Msg, WireDecoder } from '../../../src/observe/wire.js';
import { summarizePacket } from '../../../src/observe/summary.js';
import { TapDir } from '../../../src/dataplane/tap.js';

/** An Ethernet + IPv4 + TCP/UDP/ICMP frame with valid IP checksum. */
function frame(proto: number, src: string, dst: string, sport: number, dport: number, payload = 10): Buffer {
  const l4 = proto === 6 ? 20 : 8;
  const b = Buffer.alloc(14 + 20 + l4 + payload);
  b.writeUInt16BE(0x0800, 12);
  const ip = 14;
  b[ip] = 0x45;
  b.writeUInt16BE(20 + l4 + payload, ip + 2);
  b[ip + 8] = 64;
  b[ip + 9] = proto;
  src.split('.').forEach((x, i) => (b[ip + 12 + i] = Number(x)));
  dst.split('.').forEach((x, i) => (b[ip + 16 + i] = Number(x)));
  let s = 0;
  for (let i = 0; i < 20; i += 2) s += b.readUInt16BE(ip + i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  b.writeUInt16BE(~s & 0xffff, ip + 10);
  if (proto === 1) {
    b[ip + 20] = 8;
  } else {
    b.writeUInt16BE(sport, ip + 20);
    b.writeUInt16BE(dport, ip + 22);
    if (proto === 6) {
      b[ip + 20 + 12] = 5 << 4;
      b[ip + 20 + 13] = 0x02;
    } else b.writeUInt16BE(8 + payload, ip + 24);
  }
  return b;
}

function matches(expr: string, f: Buffer): boolean {
  const c = compileFilter(expr);
  const x = new PacketFields();
  classifyEthernet(x, f, 0, f.length);
  return c.match(x);
}

describe('observe: capture filter', () => {
  const tcp = frame(6, '10.244.0.2', '10.96.0.10', 40000, 80);
  const udp = frame(17, '10.244.0.3', '10.244.1.2', 5353, 53);
  const icmp = frame(1, '10.244.0.2', '10.244.0.1', 0, 0);

  it('matches protocols, hosts, nets, ports and port ranges, with direction', () => {
    expect(matches('', tcp)).to.equal(true);
    expect(matches('tcp', tcp)).to.equal(true);
    expect(matches('tcp', udp)).to.equal(false);
    expect(matches('icmp', icmp)).to.equal(true);
    expect(matches('ip', icmp)).to.equal(true);
    expect(matches('host 10.96.0.10', tcp)).to.equal(true);
    expect(matches('src host 10.96.0.10', tcp)).to.equal(false);
    expect(matches('dst host 10.96.0.10', tcp)).to.equal(true);
    expect(matches('net 10.244.0.0/16', udp)).to.equal(true);
    expect(matches('dst net 10.244.0.0/24', udp)).to.equal(false);
    expect(matches('port 80', tcp)).to.equal(true);
    expect(matches('src port 80', tcp)).to.equal(false);
    expect(matches('dst port 80', tcp)).to.equal(true);
    expect(matches('portrange 50-60', udp)).to.equal(true);
    expect(matches('port 80', icmp)).to.equal(false);
    expect(matches('proto 17', udp)).to.equal(true);
  });

  it('combines with and/or/not and parentheses, and binds and tighter than or', () => {
    expect(matches('tcp and dst port 80', tcp)).to.equal(true);
    expect(matches('tcp port 80', tcp)).to.equal(true);
    expect(matches('udp port 80', tcp)).to.equal(false);
    expect(matches('udp dst port 53 or tcp src port 80', udp)).to.equal(true);
    expect(matches('tcp src port 80', tcp)).to.equal(false);
    expect(matches('udp or icmp', tcp)).to.equal(false);
    expect(matches('not tcp', tcp)).to.equal(false);
    expect(matches('! tcp', udp)).to.equal(true);
    expect(matches('udp or tcp and port 81', tcp)).to.equal(false); // udp or (tcp and port 81)
    expect(matches('(udp or tcp) and port 80', tcp)).to.equal(true);
    expect(matches('tcp && (port 80 || port 443)', tcp)).to.equal(true);
  });

  it('matches ARP by its sender and target addresses', () => {
    const arp = Buffer.alloc(42);
    arp.writeUInt16BE(0x0806, 12);
    arp.writeUInt16BE(1, 14 + 6);
    [10, 244, 0, 2].forEach((x, i) => (arp[14 + 14 + i] = x));
    [10, 244, 0, 1].forEach((x, i) => (arp[14 + 24 + i] = x));
    expect(matches('arp', arp)).to.equal(true);
    expect(matches('arp and host 10.244.0.1', arp)).to.equal(true);
    expect(matches('ip', arp)).to.equal(false);
  });

  it('classifies a raw IP packet and a later fragment has no ports', () => {
    const x = new PacketFields();
    const p = frame(17, '1.2.3.4', '5.6.7.8', 1, 2).subarray(14);
    classifyIp(x, p, 0, p.length);
    expect([x.l3, x.proto, x.sport, x.dport]).to.deep.equal([1, 17, 1, 2]);
    p.writeUInt16BE(0x0010, 6); // fragment offset 128
    classifyIp(x, p, 0, p.length);
    expect([x.sport, x.dport]).to.deep.equal([-1, -1]);
  });

  it('names the problem and its position', () => {
    const err = (e: string) => {
      try {
        compileFilter(e);
      } catch (x) {
        expect(x).to.be.instanceOf(FilterError);
        return (x as Error).message;
      }
      throw new Error(`no error for ${e}`);
    };
    expect(err('host 10.0.0.256')).to.equal("filter: expected an IPv4 address after 'host' at position 6, got '10.0.0.256'");
    expect(err('port 70000')).to.match(/port number 0-65535 after 'port' at position 6/);
    expect(err('tcp host 10.0.0.1')).to.match(/expected 'and', 'or' or the end at position 5, got 'host'/);
    expect(err('(tcp')).to.match(/expected '\)' at the end/);
    expect(err('tcp)')).to.match(/unbalanced '\)'/);
    expect(err('bogus')).to.match(/unknown primitive .* at position 1, got 'bogus'/);
    expect(err('src tcp')).to.match(/expected 'host', 'net', 'port' or 'portrange' after 'src'/);
    expect(err('net 10.244.0.1/16')).to.match(/host bits set \(did you mean 10\.244\.0\.0\/16\?\)/);
    expect(err('portrange 90-80')).to.match(/N <= M/);
    expect(err('tcp & udp')).to.match(/write '&&' or 'and'/);
    expect(err('tcp and')).to.match(/at the end of 'tcp and'/);
  });
});

describe('observe: capture ring', () => {
  it('keeps frames in order, cut at the snap length, with their original length and direction', () => {
    const r = new CaptureRing({ linkType: LinkType.Ethernet, snaplen: 64, bytes: 4096, entries: 8 });
    const f = frame(6, '10.0.0.1', '10.0.0.2', 1, 2, 100);
    r.frame(f, 0, f.length, TapDir.In);
    r.frame(f, 0, 40, TapDir.Out);
    const got: Array<[number, number, number, string]> = [];
    r.drain(10, (d, off, cap, orig, dir) => got.push([cap, orig, dir, d.subarray(off, off + cap).toString('hex')]));
    expect(got.map((g) => g.slice(0, 3))).to.deep.equal([
      [64, f.length, 0],
      [40, 40, 1],
    ]);
    expect(got[0]![3]).to.equal(f.subarray(0, 64).toString('hex'));
    expect(got[1]![3]).to.equal(f.subarray(0, 40).toString('hex'));
  });

  it('counts what a full ring cannot take as lost, and takes frames again once drained', () => {
    const r = new CaptureRing({ linkType: LinkType.Ethernet, snaplen: 100, bytes: 1000, entries: 64 });
    const f = Buffer.alloc(100, 7);
    for (let i = 0; i < 15; i++) r.frame(f, 0, f.length, TapDir.In); // 10 fit in 1000 bytes
    expect(r.pending).to.equal(10);
    expect(r.lost).to.equal(5);
    expect(r.matched).to.equal(15);
    expect(r.drain(4, () => undefined)).to.equal(4);
    // 400 bytes free at the start, none at the end: 4 more fit (wrapping), the 5th is lost.
    for (let i = 0; i < 5; i++) r.frame(f, 0, f.length, TapDir.In);
    expect(r.pending).to.equal(10);
    expect(r.lost).to.equal(6);
    let n = 0;
    r.drain(100, (d, off, cap) => {
      expect(d.subarray(off, off + cap).equals(f)).to.equal(true);
      n++;
    });
    expect(n).to.equal(10);
  });

  it('counts a full record table as lost too', () => {
    const r = new CaptureRing({ linkType: LinkType.Raw, snaplen: 64, bytes: 1 << 20, entries: 4 });
    const f = Buffer.alloc(64);
    for (let i = 0; i < 6; i++) r.frame(f, 0, 64, TapDir.In);
    expect([r.pending, r.lost]).to.deep.equal([4, 2]);
  });

  it('applies the filter before taking a frame and stops at the limit', () => {
    const r = new CaptureRing({ linkType: LinkType.Ethernet, limit: 2, filter: compileFilter('udp').match });
    const u = frame(17, '1.1.1.1', '2.2.2.2', 1, 2);
    const t = frame(6, '1.1.1.1', '2.2.2.2', 1, 2);
    for (const f of [t, u, t, u, u]) r.frame(f, 0, f.length, TapDir.In);
    expect([r.matched, r.filtered, r.pending, r.full]).to.deep.equal([2, 2, 2, true]);
  });

  it('stores a VXLAN datagram as the IPv4/UDP packet it was on the underlay', () => {
    const r = new CaptureRing({ linkType: LinkType.Raw, localIp: 0xc6120001 }); // 198.18.0.1
    const payload = Buffer.alloc(50, 0xab);
    r.datagram(payload, 0, payload.length, TapDir.Out, 0xc6120002 | 0, 8472, 40000);
    r.drain(1, (d, off, cap, orig) => {
      expect(cap).to.equal(78);
      expect(orig).to.equal(78);
      const p = d.subarray(off, off + cap);
      expect(p.readUInt16BE(2)).to.equal(78);
      expect([...p.subarray(12, 20)]).to.deep.equal([198, 18, 0, 1, 198, 18, 0, 2]);
      expect([p.readUInt16BE(20), p.readUInt16BE(22), p.readUInt16BE(24)]).to.deep.equal([40000, 8472, 58]);
      let s = 0;
      for (let i = 0; i < 20; i += 2) s += p.readUInt16BE(i);
      while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
      expect(s).to.equal(0xffff); // header checksum valid
      expect(p.subarray(28).equals(payload)).to.equal(true);
    });
  });
});

describe('observe: pcap and pcapng writers', () => {
  const dir = mkdtempSync(join(tmpdir(), 'podnet-pcap-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const f = frame(17, '10.244.0.2', '10.244.0.3', 1234, 53, 4);

  it('writes the classic pcap header and records as the format defines them', () => {
    const h = pcapHeader(1, 65535);
    expect(h.toString('hex')).to.equal('d4c3b2a1' + '0200' + '0400' + '00000000' + '00000000' + 'ffff0000' + '01000000');
    const r = pcapRecord(1_700_000_000_123.456, f.subarray(0, 20), f.length);
    expect([r.readUInt32LE(0), r.readUInt32LE(4), r.readUInt32LE(8), r.readUInt32LE(12)]).to.deep.equal([1_700_000_000, 123456, 20, f.length]);
  });

  it('writes pcapng blocks with lengths at both ends, 4-byte aligned', () => {
    const h = pcapngHeader(101, 65535, 'n1:web');
    expect(h.readUInt32LE(0)).to.equal(0x0a0d0d0a);
    const shbLen = h.readUInt32LE(4);
    expect(h.readUInt32LE(8)).to.equal(0x1a2b3c4d);
    expect(h.readUInt32LE(shbLen - 4)).to.equal(shbLen);
    expect(h.readUInt32LE(shbLen)).to.equal(1); // IDB
    expect(h.readUInt16LE(shbLen + 8)).to.equal(101);
    const p = pcapngPacket(1000.5, f.subarray(0, 41), f.length, 1);
    expect(p.length % 4).to.equal(0);
    expect(p.readUInt32LE(0)).to.equal(6);
    expect(p.readUInt32LE(p.length - 4)).to.equal(p.length);
    expect([p.readUInt32LE(20), p.readUInt32LE(24)]).to.deep.equal([41, f.length]);
  });

  for (const format of ['pcap', 'pcapng'] as const) {
    it(`writes a ${format} file tshark reads: addresses, ports, direction`, () => {
      const chunks: Buffer[] = [];
      const w = new CaptureFileWriter(format, (b) => chunks.push(b));
      w.header(1, 65535, 'test');
      w.packet(Date.now(), f, f.length, 0);
      w.packet(Date.now(), f.subarray(0, 30), f.length, 1);
      w.stats(Date.now(), 2, 5);
      const file = join(dir, `t.${format}`);
      writeFileSync(file, Buffer.concat(chunks));
      const out = execFileSync('tshark', ['-r', file, '-T', 'fields', '-e', 'ip.src', '-e', 'udp.dstport', '-e', 'frame.len', '-e', 'frame.cap_len'], { encoding: 'utf8' });
      const lines = out.trim().split('\n').map((l) => l.split('\t'));
      expect(lines[0]).to.deep.equal(['10.244.0.2', '53', String(f.length), String(f.length)]);
      expect(lines[1]!.slice(2)).to.deep.equal([String(f.length), '30']);
      if (format === 'pcapng') {
        const d = execFileSync('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.packet_flags_direction'], { encoding: 'utf8' });
        expect(d.trim().split('\n').map(Number)).to.deep.equal([1, 2]); // inbound, outbound
      }
    });
  }
});

describe('observe: capture stream and summaries', () => {
  it('decodes messages whatever the chunking', () => {
    const out = Buffer.alloc(200);
    const data = Buffer.from('abcdef');
    const end = encodePacket(out, 0, data, 1, 4, 99, 1, 1234.5);
    const stream = Buffer.concat([encodeJson(Msg.Start, { target: 'pod/a' }), out.subarray(0, end), encodeJson(Msg.End, { reason: 'x', matched: 1, lost: 0, filtered: 0 })]);
    for (const step of [1, 3, 7, stream.length]) {
      const dec = new WireDecoder();
      const msgs = [];
      for (let i = 0; i < stream.length; i += step) msgs.push(...dec.push(stream.subarray(i, i + step)));
      expect(msgs.map((m) => m.type)).to.deep.equal([1, 2, 4]);
      const p = msgs[1] as { epochMs: number; orig: number; dir: number; data: Buffer };
      expect([p.epochMs, p.orig, p.dir, p.data.toString()]).to.deep.equal([1234.5, 99, 1, 'bcde']);
      expect(dec.leftover).to.equal(0);
    }
  });

  it('prints one line per packet', () => {
    const t = frame(6, '10.244.0.2', '10.96.0.10', 40000, 80);
    const line = summarizePacket(Date.UTC(2026, 0, 1, 12, 0, 1, 250), 0, t, LinkType.Ethernet, 8472);
    expect(line).to.equal('12:00:01.250000 in  TCP 10.244.0.2:40000 > 10.96.0.10:80 [S] seq 0 ack 0 len 10');
    const i = frame(1, '10.244.0.2', '10.244.0.1', 0, 0);
    expect(summarizePacket(0, 1, i.subarray(14), LinkType.Raw, 0)).to.match(/out ICMP 10\.244\.0\.2 > 10\.244\.0\.1: echo request id 0 seq 0/);
  });
});
