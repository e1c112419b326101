/**
 * relay.c's forwarding in Node.js on podnet's own addon (`TunTap`, `UdpSocket`: the same native
 * readers, rings and batched writes the daemon uses), for `npm run bench:floor`. Nothing of the data
 * plane (switch, router, NAT, VXLAN module) runs: the difference between its RTT and relay.c's is what
 * the runtime and the addon cost a sparse packet, and the difference between podnet's and its own is
 * what the data plane costs.
 *
 *   node dist/bench/floor/relay-node.js [--podnet-io] <local-ip> <peer-ip> <udp-port> <tap-name>...
 *
 * `--podnet-io` opens the devices as the daemon does: TAPs with offloads (virtio-net headers, 80 KB
 * slots), the UDP socket with GRO and 64 KB slots, datagrams sent from a per-flow source port through
 * the raw socket. Without it: plain TAPs, a plain socket, the bound port.
 */
import { TunTap } from '../../src/io/tuntap.js';
import { UdpSocket } from '../../src/io/udpsocket.js';

const VXLAN_HDR = 8;

function ipNumber(s: string): number {
  return s.split('.').reduce((a, o) => a * 256 + Number(o), 0);
}

function main(): void {
  const argv = process.argv.slice(2);
  const podnetIo = argv[0] === '--podnet-io';
  const [local, peer, portArg, ...names] = podnetIo ? argv.slice(1) : argv;
  const port = Number(portArg);
  if (local === undefined || peer === undefined || !Number.isInteger(port) || names.length === 0) {
    process.stderr.write('usage: relay-node <local-ip> <peer-ip> <udp-port> <tap-name>...\n');
    process.exit(1);
  }
  const sock = UdpSocket.bind(local, port, podnetIo ? { gro: true, slotSize: 65536 + 128 } : {});
  if (podnetIo) sock.enableFlowPorts();
  const taps = names.map((n) => TunTap.open(n, 'tap', { offload: podnetIo }));
  // Learned MACs (6 bytes each) and the TAP that owns each; a few pods, so a linear scan.
  const macs = Buffer.alloc(6 * 64);
  const owner = new Int32Array(64);
  let nmacs = 0;
  const find = (buf: Buffer, off: number): number => {
    for (let i = 0; i < nmacs; i++) if (buf.compare(macs, i * 6, i * 6 + 6, off, off + 6) === 0) return i;
    return -1;
  };
  const learn = (buf: Buffer, off: number, tap: number): void => {
    if ((buf[off]! & 1) !== 0) return;
    const i = find(buf, off);
    if (i >= 0) owner[i] = tap;
    else if (nmacs < 64) {
      buf.copy(macs, nmacs * 6, off, off + 6);
      owner[nmacs++] = tap;
    }
  };
  const lookup = (buf: Buffer, off: number): number => {
    if ((buf[off]! & 1) !== 0) return -1;
    const i = find(buf, off);
    return i < 0 ? -1 : owner[i]!;
  };
  // With offloads, a frame from one TAP goes to another with its own virtio-net header (a TSO
  // super-frame stays whole, as podnet's switch passes it); everything else goes with a zero one.
  const hdrOffs = new Uint32Array(1);
  const hdrLens = new Uint32Array(1);
  const withHdr = new Uint8Array([1]);
  const hdrBufs: Buffer[] = [Buffer.alloc(0)];
  const writeTo = (t: number, buf: Buffer, off: number, len: number, fromTap: boolean): void => {
    if (!podnetIo || !fromTap) {
      taps[t]!.write(buf, off, len);
      return;
    }
    hdrBufs[0] = buf;
    hdrOffs[0] = off;
    hdrLens[0] = len;
    taps[t]!.writeBatch(hdrBufs, hdrOffs, hdrLens, 1, withHdr);
  };
  const toTaps = (buf: Buffer, off: number, len: number, except: number, fromTap: boolean): void => {
    const t = lookup(buf, off);
    if (t >= 0) {
      if (t !== except) writeTo(t, buf, off, len, fromTap);
      return;
    }
    for (let i = 0; i < taps.length; i++) if (i !== except) writeTo(i, buf, off, len, fromTap);
  };
  const offs = new Uint32Array(1);
  const lens = new Uint32Array(1);
  const dstIps = new Uint32Array([ipNumber(peer)]);
  const dstPorts = new Uint16Array([port]);
  // One flow's source port (the daemon picks it by hashing the inner flow).
  const srcPorts = new Uint16Array([49152 + (port % 1000)]);
  const bufIdx = new Uint32Array(1);
  taps.forEach((tap, t) => {
    const buf = tap.rx.buffer;
    const one = [buf];
    tap.start((count) => {
      for (let i = 0; i < count; i++) {
        const off = tap.frameOffset(i);
        const len = tap.rx.lengths[i]!;
        learn(buf, off + 6, t);
        const dst = lookup(buf, off);
        if (dst >= 0) {
          if (dst !== t) writeTo(dst, buf, off, len, true);
          continue;
        }
        if ((buf[off]! & 1) !== 0) toTaps(buf, off, len, t, true);
        buf.fill(0, off - VXLAN_HDR, off);
        buf[off - VXLAN_HDR] = 0x08;
        buf[off - 2] = 1;
        offs[0] = off - VXLAN_HDR;
        lens[0] = len + VXLAN_HDR;
        if (podnetIo) sock.sendBatchIndexed(one, bufIdx, offs, lens, dstIps, dstPorts, 1, srcPorts);
        else sock.sendBatch(one, offs, lens, dstIps, dstPorts, 1);
      }
    });
  });
  sock.start((count) => {
    const buf = sock.rx.buffer;
    for (let i = 0; i < count; i++) {
      const off = sock.payloadOffset(i);
      const len = sock.rx.lengths[i]!;
      if (len < VXLAN_HDR + 14 || buf[off] !== 0x08) continue;
      toTaps(buf, off + VXLAN_HDR, len - VXLAN_HDR, -1, false);
    }
  });
  process.stdout.write('ready\n');
}

main();
