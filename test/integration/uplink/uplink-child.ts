// Runs inside a node's network namespace for uplink.test.ts (`nsenter --net=... node uplink-child.js`).
// It holds one Uplink and plays a tiny Service behind it, with every reply built by hand and sent
// with `Uplink.send()`:
//   - UDP to port 30080 (node IP) or 80 (announced IP): answers "pong:<payload>" from the same address/port;
//   - TCP SYN to the same ports: answers SYN-ACK (so a real client's connect() succeeds);
//   - everything else is only reported.
// Control: one JSON command per line on stdin ({id, cmd, ...}); answers `REPLY {id, ok, value|error}`.
// Every packet handed to onPacket is reported as `EVENT {...}`. The parent makes the assertions.

import { createInterface } from 'node:readline';

import {
  IcmpView,
  IpProtocol,
  Ipv4View,
  ParseError,
  TcpFlags,
  TcpView,
  UdpView,
  emitTcp,
  ipv4ToString,
  parseIpv4,
  writeIpv4Header,
  writeUdpHeader,
} from '../../../src/packet/index.js';
import { Uplink, type UplinkOptions } from '../../../src/uplink/uplink.js';

const SERVICE_NODE_PORT = 30080;
const SERVICE_LB_PORT = 80;

let uplink: Uplink | undefined;
const ip = new Ipv4View();
const udp = new UdpView();
const tcp = new TcpView();
const icmp = new IcmpView();
const tx = Buffer.alloc(2048);
const announced = new Set<number>();

function out(kind: 'EVENT' | 'REPLY', v: unknown): void {
  process.stdout.write(`${kind} ${JSON.stringify(v)}\n`);
}

function isService(dst: number, dport: number, nodeIp: number): boolean {
  return (dst === nodeIp && dport === SERVICE_NODE_PORT) || (announced.has(dst) && dport === SERVICE_LB_PORT);
}

function onPacket(buf: Buffer, off: number, len: number): void {
  if (ip.reset(buf, off, len) !== ParseError.Ok) {
    out('EVENT', { bad: true, len });
    return;
  }
  const src = ip.src;
  const dst = ip.dst;
  const nodeIp = parseIpv4(uplink!.nodeIp);
  const base = { src: ipv4ToString(src), dst: ipv4ToString(dst), ipLen: len };
  const plen = ip.totalLength - ip.headerLength;
  if (ip.protocol === IpProtocol.UDP && udp.reset(buf, ip.payloadOffset, plen) === ParseError.Ok) {
    const payload = buf.toString('utf8', udp.payloadOffset, udp.payloadOffset + udp.payloadLength);
    out('EVENT', { ...base, proto: 'udp', sport: udp.srcPort, dport: udp.dstPort, payload });
    if (isService(dst, udp.dstPort, nodeIp)) {
      const n = tx.write(`pong:${payload}`, 28, 'utf8');
      writeUdpHeader(tx, 20, udp.dstPort, udp.srcPort, n, dst, src);
      writeIpv4Header(tx, 0, dst, src, IpProtocol.UDP, 64, 8 + n);
      const ok = uplink!.send(tx, 0, 28 + n);
      out('EVENT', { kind: 'sent', proto: 'udp', ok });
    }
  } else if (ip.protocol === IpProtocol.TCP && tcp.reset(buf, ip.payloadOffset, plen) === ParseError.Ok) {
    const flags = tcp.flags;
    out('EVENT', { ...base, proto: 'tcp', sport: tcp.srcPort, dport: tcp.dstPort, flags });
    if (isService(dst, tcp.dstPort, nodeIp) && (flags & (TcpFlags.SYN | TcpFlags.ACK)) === TcpFlags.SYN) {
      const hlen = emitTcp(
        {
          srcPort: tcp.dstPort,
          dstPort: tcp.srcPort,
          seq: 0x1000,
          ack: (tcp.seq + 1) >>> 0,
          flags: TcpFlags.SYN | TcpFlags.ACK,
          window: 65535,
          options: Buffer.from([2, 4, 0x05, 0xb4]), // MSS 1460
          payloadLength: 0,
        },
        tx,
        20,
        dst,
        src,
      );
      writeIpv4Header(tx, 0, dst, src, IpProtocol.TCP, 64, hlen);
      const ok = uplink!.send(tx, 0, 20 + hlen);
      out('EVENT', { kind: 'sent', proto: 'tcp', ok });
    }
  } else if (ip.protocol === IpProtocol.ICMP && icmp.reset(buf, ip.payloadOffset, plen) === ParseError.Ok) {
    out('EVENT', { ...base, proto: 'icmp', type: icmp.type, code: icmp.code });
  } else {
    out('EVENT', { ...base, proto: ip.protocol });
  }
}

async function handle(msg: { id: number; cmd: string; [k: string]: any }): Promise<unknown> {
  switch (msg.cmd) {
    case 'open': {
      const opts: UplinkOptions = { ...(msg.opts as Omit<UplinkOptions, 'onPacket'>), onPacket };
      uplink = await Uplink.open(opts);
      return { mac: uplink.mac };
    }
    case 'announce': {
      await uplink!.setAnnounced(msg.ips as string[]);
      announced.clear();
      for (const a of msg.ips as string[]) announced.add(parseIpv4(a));
      return uplink!.announced();
    }
    case 'stats':
      return uplink!.stats();
    case 'send-malformed':
      return uplink!.send(Buffer.alloc(10), 0, 10);
    case 'close':
      await uplink!.close();
      await uplink!.close(); // idempotent
      return uplink!.stats();
    case 'exit':
      setImmediate(() => process.exit(0));
      return null;
    default:
      throw new Error(`unknown command ${msg.cmd}`);
  }
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  const msg = JSON.parse(line);
  handle(msg).then(
    (value) => out('REPLY', { id: msg.id, ok: true, value }),
    (err: Error) => out('REPLY', { id: msg.id, ok: false, error: err.message, code: (err as { code?: string }).code }),
  );
});
rl.on('close', () => process.exit(0));
out('EVENT', { kind: 'ready' });
