/**
 * The capture stream from the daemon to the CLI (the body of `GET /v1/capture`, chunked): messages of
 * `[u32 length][u8 type][body]` (length counts type and body, big-endian). Types:
 *   1 START  JSON: target, interface name, link type, snap length, filter
 *   2 PACKET f64 epoch milliseconds, u32 original length, u8 direction (0 in, 1 out), the captured bytes
 *   3 STATS  JSON: matched, lost (ring full), filtered — sent every second and before END
 *   4 END    JSON: why the capture ended (count reached, target gone, daemon stopping)
 */
export const Msg = { Start: 1, Packet: 2, Stats: 3, End: 4 } as const;

export interface CaptureStart {
  target: string;
  ifName: string;
  linkType: number;
  snaplen: number;
  filter: string;
  node: string;
}
export interface CaptureStats {
  matched: number;
  lost: number;
  filtered: number;
}
export interface CaptureEnd extends CaptureStats {
  reason: string;
}

export function encodeJson(type: number, value: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(value));
  const b = Buffer.alloc(5 + body.length);
  b.writeUInt32BE(1 + body.length, 0);
  b[4] = type;
  body.copy(b, 5);
  return b;
}

/** Writes a PACKET message for `data[off, off + cap)` into `out` at `at`; returns the new offset. */
export function encodePacket(out: Buffer, at: number, data: Buffer, off: number, cap: number, orig: number, dir: number, epochMs: number): number {
  out.writeUInt32BE(1 + 13 + cap, at);
  out[at + 4] = Msg.Packet;
  out.writeDoubleBE(epochMs, at + 5);
  out.writeUInt32BE(orig, at + 13);
  out[at + 17] = dir;
  data.copy(out, at + 18, off, off + cap);
  return at + 18 + cap;
}
export const PACKET_OVERHEAD = 18;

export type WireMessage =
  | { type: 1; start: CaptureStart }
  | { type: 2; epochMs: number; orig: number; dir: number; data: Buffer }
  | { type: 3; stats: CaptureStats }
  | { type: 4; end: CaptureEnd };

/** Splits the stream back into messages, whatever the chunking. */
export class WireDecoder {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): WireMessage[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const out: WireMessage[] = [];
    let p = 0;
    const b = this.pending;
    while (b.length - p >= 4) {
      const len = b.readUInt32BE(p);
      if (len < 1) throw new Error('capture stream: empty message');
      if (b.length - p - 4 < len) break;
      const type = b[p + 4]!;
      const body = b.subarray(p + 5, p + 4 + len);
      if (type === Msg.Packet) {
        if (body.length < 13) throw new Error('capture stream: short packet message');
        out.push({ type: 2, epochMs: body.readDoubleBE(0), orig: body.readUInt32BE(8), dir: body[12]!, data: Buffer.from(body.subarray(13)) });
      } else if (type === Msg.Start) out.push({ type: 1, start: JSON.parse(body.toString()) as CaptureStart });
      else if (type === Msg.Stats) out.push({ type: 3, stats: JSON.parse(body.toString()) as CaptureStats });
      else if (type === Msg.End) out.push({ type: 4, end: JSON.parse(body.toString()) as CaptureEnd });
      else throw new Error(`capture stream: unknown message type ${type}`);
      p += 4 + len;
    }
    this.pending = b.subarray(p);
    return out;
  }

  /** Bytes of an unfinished message left over. */
  get leftover(): number {
    return this.pending.length;
  }
}
