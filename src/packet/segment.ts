/**
 * TCP segmentation on the wire: the headers of one segment of a TSO/GSO super-frame, written the way
 * the kernel's tcp_gso_segment does. The data plane lays the segments out (in place, or into fresh
 * frames); this writes what each one's headers must say.
 */
import { ipv4HeaderSum, pseudoHeaderSum, sum16 } from './checksum.js';
import { ipv4Dst32, ipv4Src32, setIpv4Checksum, setIpv4Ident, setIpv4TotalLen, setTcpChecksum, setTcpFlags, setTcpSeq } from './fields.js';
import { IpProtocol } from './ipv4.js';
import { TcpFlags } from './tcp.js';

/**
 * Segment `i` of `n` of a TCP super-frame, laid out at `ip` as IPv4 header (`ihl`) + TCP header
 * (`doff`) + `size` payload bytes: its length, IP ID, sequence number, flags and both checksums,
 * as Linux's tcp_gso_segment writes them (FIN and PSH on the last segment only, CWR on the first).
 */
export function writeTcpSegmentHeaders(buf: Buffer, ip: number, ihl: number, doff: number, size: number, ident: number, seq: number, tflags: number, i: number, n: number, mss: number): void {
  const tcp = ip + ihl;
  const tcpLen = doff + size;
  setIpv4TotalLen(buf, ip, ihl + tcpLen);
  setIpv4Ident(buf, ip, ident + i);
  setIpv4Checksum(buf, ip, 0);
  setIpv4Checksum(buf, ip, ~ipv4HeaderSum(buf, ip, ihl));
  setTcpSeq(buf, tcp, seq + i * mss);
  let f = tflags;
  if (i > 0) f &= ~TcpFlags.CWR;
  if (i < n - 1) f &= ~(TcpFlags.FIN | TcpFlags.PSH);
  setTcpFlags(buf, tcp, f);
  setTcpChecksum(buf, tcp, 0);
  setTcpChecksum(buf, tcp, ~sum16(buf, tcp, tcpLen, pseudoHeaderSum(ipv4Src32(buf, ip), ipv4Dst32(buf, ip), IpProtocol.TCP, tcpLen)));
}

