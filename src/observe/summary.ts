/** One line per captured packet (`podnet capture` without -w), in the manner of tcpdump's. */
import { LinkType } from './ring.js';

const ip = (b: Buffer, o: number) => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
const mac = (b: Buffer, o: number) => [...b.subarray(o, o + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');

function tcpFlags(f: number): string {
  let s = '';
  if (f & 0x02) s += 'S';
  if (f & 0x01) s += 'F';
  if (f & 0x04) s += 'R';
  if (f & 0x08) s += 'P';
  if (f & 0x10) s += '.';
  return s || 'none';
}

/** The IPv4 packet at `o` (`len` bytes captured, `orig` on the wire). `vxlanPort`: decode UDP to it as VXLAN. */
export function summarizeIp(b: Buffer, o: number, len: number, vxlanPort: number): string {
  if (len < 20 || b[o]! >> 4 !== 4) return `IP? ${len} bytes`;
  const ihl = (b[o]! & 0x0f) << 2;
  const total = b.readUInt16BE(o + 2);
  const proto = b[o + 9]!;
  const src = ip(b, o + 12);
  const dst = ip(b, o + 16);
  const frag = b.readUInt16BE(o + 6) & 0x1fff;
  const l4 = o + ihl;
  const have = len - ihl;
  if (frag !== 0) return `IP ${src} > ${dst}: fragment offset ${frag * 8}, proto ${proto}, length ${total}`;
  if (proto === 6 && have >= 14) {
    const sp = b.readUInt16BE(l4);
    const dp = b.readUInt16BE(l4 + 2);
    const doff = (b[l4 + 12]! >> 4) << 2;
    return `TCP ${src}:${sp} > ${dst}:${dp} [${tcpFlags(b[l4 + 13]!)}] seq ${b.readUInt32BE(l4 + 4)} ack ${b.readUInt32BE(l4 + 8)} len ${total - ihl - doff}`;
  }
  if (proto === 17 && have >= 8) {
    const sp = b.readUInt16BE(l4);
    const dp = b.readUInt16BE(l4 + 2);
    const ulen = b.readUInt16BE(l4 + 4);
    if (vxlanPort > 0 && dp === vxlanPort && have >= 8 + 8 + 14) {
      const vni = b.readUInt32BE(l4 + 12) >>> 8;
      return `UDP ${src}:${sp} > ${dst}:${dp} VXLAN vni ${vni}: ${summarizeEthernet(b, l4 + 16, len - ihl - 16, 0)}`;
    }
    return `UDP ${src}:${sp} > ${dst}:${dp} len ${ulen - 8}`;
  }
  if (proto === 1 && have >= 8) {
    const t = b[l4]!;
    const code = b[l4 + 1]!;
    const id = b.readUInt16BE(l4 + 4);
    const seq = b.readUInt16BE(l4 + 6);
    const name = t === 8 ? `echo request id ${id} seq ${seq}` : t === 0 ? `echo reply id ${id} seq ${seq}` : t === 3 ? `unreachable code ${code}` : t === 11 ? 'time exceeded' : `type ${t} code ${code}`;
    return `ICMP ${src} > ${dst}: ${name}, length ${total - ihl}`;
  }
  return `IP ${src} > ${dst}: proto ${proto}, length ${total}`;
}

export function summarizeEthernet(b: Buffer, o: number, len: number, vxlanPort: number): string {
  if (len < 14) return `runt frame, ${len} bytes`;
  const type = b.readUInt16BE(o + 12);
  if (type === 0x0800) return summarizeIp(b, o + 14, len - 14, vxlanPort);
  if (type === 0x0806 && len >= 14 + 28) {
    const a = o + 14;
    const op = b.readUInt16BE(a + 6);
    if (op === 1) return `ARP who-has ${ip(b, a + 24)} tell ${ip(b, a + 14)}`;
    if (op === 2) return `ARP reply ${ip(b, a + 14)} is-at ${mac(b, a + 8)}`;
    return `ARP op ${op}`;
  }
  return `${mac(b, o + 6)} > ${mac(b, o)} ethertype 0x${type.toString(16).padStart(4, '0')}, length ${len}`;
}

function clock(epochMs: number): string {
  const d = new Date(Math.floor(epochMs));
  const us = Math.round((epochMs % 1000) * 1000) % 1_000_000;
  return `${String(d.getUTCHours()).padStart(2, '0')}:${String(d.getUTCMinutes()).padStart(2, '0')}:${String(d.getUTCSeconds()).padStart(2, '0')}.${String(us).padStart(6, '0')}`;
}

/** `HH:MM:SS.uuuuuu in|out <packet>` (UTC). */
export function summarizePacket(epochMs: number, dir: number, data: Buffer, linkType: number, vxlanPort: number): string {
  const what = linkType === LinkType.Ethernet ? summarizeEthernet(data, 0, data.length, vxlanPort) : summarizeIp(data, 0, data.length, vxlanPort);
  return `${clock(epochMs)} ${dir === 0 ? 'in ' : 'out'} ${what}`;
}
