import dgram from 'node:dgram';

function ipString(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}
function ipNumber(s: string): number {
  let n = 0;
  let part = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      n = (n << 8) | part;
      part = 0;
    } else part = part * 10 + (c - 48);
  }
  return ((n << 8) | part) >>> 0;
}

/**
 * VXLAN transport on Node's `dgram`: one UDP socket bound to the VXLAN port. The source port is the
 * socket's (receivers accept any). `dgram` may keep a reference to a buffer it could not send at once,
 * so outgoing packets are copied first: the data plane reuses its buffers after each batch.
 */
export class DgramTransport {
  private readonly sock: dgram.Socket;
  private readonly names = new Map<number, string>();
  sent = 0;
  sendErrors = 0;

  private constructor(sock: dgram.Socket) {
    this.sock = sock;
  }

  static async bind(port: number, address: string | undefined, onMessage: (buf: Buffer, srcIp: number, srcPort: number) => void): Promise<DgramTransport> {
    const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(port, address, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    const t = new DgramTransport(sock);
    sock.on('message', (msg, rinfo) => onMessage(msg, ipNumber(rinfo.address), rinfo.port));
    sock.on('error', () => t.sendErrors++);
    return t;
  }

  send(buf: Buffer, off: number, len: number, dstIp: number, dstPort: number, _srcPort: number): boolean {
    let name = this.names.get(dstIp);
    if (name === undefined) {
      name = ipString(dstIp);
      this.names.set(dstIp, name);
    }
    const copy = Buffer.allocUnsafe(len);
    buf.copy(copy, 0, off, off + len);
    this.sock.send(copy, 0, len, dstPort, name, (err) => {
      if (err) this.sendErrors++;
    });
    this.sent++;
    return true;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.sock.close(() => resolve()));
  }
}
