/**
 * The capture filter: a small expression language over addresses, ports and protocol, a subset of
 * tcpdump's (pcap-filter) syntax with the same meaning:
 *
 *   expr     := term ( ('or' | '||') term )*
 *   term     := factor ( ('and' | '&&') factor )*
 *   factor   := ('not' | '!') factor | '(' expr ')' | primitive
 *   primitive:= 'tcp' | 'udp' | 'icmp' | 'arp' | 'ip'
 *             | [dir] 'host' IPV4          an address (for ARP: sender or target address)
 *             | [dir] 'net' IPV4/LEN       an address in a CIDR
 *             | [l4] [dir] 'port' N        a TCP or UDP port (0-65535); with 'tcp'/'udp' first: of that protocol
 *             | [l4] [dir] 'portrange' N-M a TCP or UDP port in N..M
 *             | 'proto' N                  an IPv4 protocol number (0-255)
 *   dir      := 'src' | 'dst'              (without: either)
 *   l4       := 'tcp' | 'udp'
 *
 * `and` binds tighter than `or`; apart from `tcp port 80`, juxtaposition is not `and` (write it). The filter looks at the
 * first IPv4 header of a frame (for the VXLAN underlay: the outer one) and the TCP/UDP header after
 * it; a non-first fragment has no ports. The empty expression matches everything. Errors name the
 * token and its position (`FilterError`).
 *
 * Compiled once (control plane) into a tree of closures over one reused `PacketFields`: matching a
 * frame allocates nothing.
 */
import { readI32, readU16 } from '../packet/index.js';

/** What the filter sees of a frame; one instance, refilled per frame (`classifyEthernet`, `classifyIp`). */
export class PacketFields {
  /** 0: neither IPv4 nor ARP; 1: IPv4; 2: ARP. */
  l3 = 0;
  proto = -1;
  /** int32 addresses (the same bits as the unsigned ones). For ARP: sender and target address. */
  src = 0;
  dst = 0;
  /** -1 when the packet has no ports (not TCP/UDP, a later fragment, too short). */
  sport = -1;
  dport = -1;
}

export type Matcher = (f: PacketFields) => boolean;

export class FilterError extends Error {
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(message);
    this.name = 'FilterError';
  }
}

/** A compiled filter: the expression as given, and its matcher. */
export interface CompiledFilter {
  readonly expr: string;
  readonly match: Matcher;
}

interface Token {
  text: string;
  pos: number;
}

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  const re = /\s*(\(|\)|&&|\|\||!|[^\s()!&|]+|[&|])/gy;
  let m: RegExpExecArray | null;
  re.lastIndex = 0;
  while (re.lastIndex < src.length) {
    const start = re.lastIndex;
    m = re.exec(src);
    if (m === null) {
      if (/^\s*$/.test(src.slice(start))) break;
      throw new FilterError(`filter: unexpected character at position ${start + 1}`, start + 1);
    }
    if (m[1] === '&' || m[1] === '|') throw new FilterError(`filter: '${m[1]}' at position ${m.index + m[0].length} (write '${m[1]}${m[1]}' or '${m[1] === '&' ? 'and' : 'or'}')`, m.index + m[0].length);
    out.push({ text: m[1]!, pos: m.index + m[0].length - m[1]!.length + 1 });
  }
  return out;
}

function parseIpv4(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const b = Number(m[i]);
    if (b > 255) return undefined;
    v = v * 256 + b;
  }
  return v | 0;
}

function parsePort(s: string): number | undefined {
  if (!/^\d{1,5}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 65535 ? n : undefined;
}

function ipString(v: number): string {
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

const PROTOS: Record<string, number> = { tcp: 6, udp: 17, icmp: 1 };

class Parser {
  private i = 0;
  constructor(
    private readonly toks: Token[],
    private readonly src: string,
  ) {}

  private peek(): Token | undefined {
    return this.toks[this.i];
  }
  private next(what: string): Token {
    const t = this.toks[this.i++];
    if (t === undefined) throw new FilterError(`filter: expected ${what} at the end of '${this.src}'`, this.src.length + 1);
    return t;
  }
  private fail(t: Token, msg: string): never {
    throw new FilterError(`filter: ${msg} at position ${t.pos}, got '${t.text}'`, t.pos);
  }

  parse(): Matcher {
    if (this.toks.length === 0) return () => true;
    const m = this.expr();
    const t = this.peek();
    if (t !== undefined) this.fail(t, t.text === ')' ? "unbalanced ')'" : "expected 'and', 'or' or the end");
    return m;
  }

  private expr(): Matcher {
    let left = this.term();
    for (let t = this.peek(); t !== undefined && (t.text === 'or' || t.text === '||'); t = this.peek()) {
      this.i++;
      const a = left;
      const b = this.term();
      left = (f) => a(f) || b(f);
    }
    return left;
  }

  private term(): Matcher {
    let left = this.factor();
    for (let t = this.peek(); t !== undefined && (t.text === 'and' || t.text === '&&'); t = this.peek()) {
      this.i++;
      const a = left;
      const b = this.factor();
      left = (f) => a(f) && b(f);
    }
    return left;
  }

  private factor(): Matcher {
    const t = this.next("a primitive (tcp, udp, icmp, arp, ip, host, net, port, portrange, proto), 'not' or '('");
    if (t.text === 'not' || t.text === '!') {
      const m = this.factor();
      return (f) => !m(f);
    }
    if (t.text === '(') {
      const m = this.expr();
      const c = this.next("')'");
      if (c.text !== ')') this.fail(c, "expected ')'");
      return m;
    }
    return this.primitive(t);
  }

  private primitive(t: Token): Matcher {
    const w = t.text.toLowerCase();
    if (w in PROTOS) {
      const p = PROTOS[w]!;
      const isProto: Matcher = (f) => f.l3 === 1 && f.proto === p;
      // 'tcp port 80', 'udp dst portrange 5000-5100': the port of that protocol (as pcap-filter reads it).
      const n = this.peek();
      const nw = n?.text.toLowerCase();
      const nn = this.toks[this.i + 1]?.text.toLowerCase();
      if (p !== 1 && (nw === 'port' || nw === 'portrange' || ((nw === 'src' || nw === 'dst') && (nn === 'port' || nn === 'portrange')))) {
        const port = this.primitive(this.next('a port'));
        return (f) => isProto(f) && port(f);
      }
      return isProto;
    }
    if (w === 'ip') return (f) => f.l3 === 1;
    if (w === 'arp') return (f) => f.l3 === 2;
    if (w === 'proto') {
      const n = this.next('a protocol number');
      if (!/^\d{1,3}$/.test(n.text) || Number(n.text) > 255) this.fail(n, 'expected a protocol number 0-255');
      const p = Number(n.text);
      return (f) => f.l3 === 1 && f.proto === p;
    }
    let dir = 0; // 0 either, 1 src, 2 dst
    let kw = t;
    if (w === 'src' || w === 'dst') {
      dir = w === 'src' ? 1 : 2;
      kw = this.next("'host', 'net', 'port' or 'portrange'");
    }
    const k = kw.text.toLowerCase();
    if (k === 'host') {
      const a = this.next('an IPv4 address');
      const ip = parseIpv4(a.text);
      if (ip === undefined) this.fail(a, "expected an IPv4 address after 'host'");
      if (dir === 1) return (f) => f.l3 !== 0 && f.src === ip;
      if (dir === 2) return (f) => f.l3 !== 0 && f.dst === ip;
      return (f) => f.l3 !== 0 && (f.src === ip || f.dst === ip);
    }
    if (k === 'net') {
      const a = this.next('a network (A.B.C.D/LEN)');
      const m = /^([^/]+)\/(\d{1,2})$/.exec(a.text);
      const ip = m ? parseIpv4(m[1]!) : undefined;
      const len = m ? Number(m[2]) : -1;
      if (ip === undefined || len < 0 || len > 32) this.fail(a, "expected a network A.B.C.D/LEN (LEN 0-32) after 'net'");
      const mask = len === 0 ? 0 : (~0 << (32 - len)) | 0;
      if ((ip! & mask) !== ip) this.fail(a, `the network has host bits set (did you mean ${ipString(ip! & mask)}/${len}?)`);
      if (dir === 1) return (f) => f.l3 !== 0 && (f.src & mask) === ip;
      if (dir === 2) return (f) => f.l3 !== 0 && (f.dst & mask) === ip;
      return (f) => f.l3 !== 0 && ((f.src & mask) === ip || (f.dst & mask) === ip);
    }
    if (k === 'port' || k === 'portrange') {
      const a = this.next(k === 'port' ? 'a port number' : 'a port range N-M');
      let lo: number | undefined;
      let hi: number | undefined;
      if (k === 'port') {
        lo = hi = parsePort(a.text);
        if (lo === undefined) this.fail(a, "expected a port number 0-65535 after 'port'");
      } else {
        const m = /^(\d+)-(\d+)$/.exec(a.text);
        lo = m ? parsePort(m[1]!) : undefined;
        hi = m ? parsePort(m[2]!) : undefined;
        if (lo === undefined || hi === undefined || lo > hi) this.fail(a, "expected a port range N-M (0-65535, N <= M) after 'portrange'");
      }
      const l = lo!;
      const h = hi!;
      if (dir === 1) return (f) => f.sport >= l && f.sport <= h;
      if (dir === 2) return (f) => f.dport >= l && f.dport <= h;
      return (f) => (f.sport >= l && f.sport <= h) || (f.dport >= l && f.dport <= h);
    }
    if (dir !== 0) this.fail(kw, `expected 'host', 'net', 'port' or 'portrange' after '${t.text}'`);
    this.fail(t, 'unknown primitive (tcp, udp, icmp, arp, ip, host, net, port, portrange, proto)');
  }
}

/** Parses and compiles a filter expression; throws `FilterError` naming what is wrong and where. */
export function compileFilter(expr: string): CompiledFilter {
  const match = new Parser(tokenize(expr), expr.trim()).parse();
  return { expr: expr.trim(), match };
}

/** Fills `f` from an IPv4 packet at `off` (anything else: l3 = 0). */
export function classifyIp(f: PacketFields, buf: Buffer, off: number, len: number): void {
  f.sport = -1;
  f.dport = -1;
  if (len < 20 || buf[off]! >> 4 !== 4) {
    f.l3 = 0;
    return;
  }
  f.l3 = 1;
  const proto = buf[off + 9]!;
  f.proto = proto;
  f.src = readI32(buf, off + 12);
  f.dst = readI32(buf, off + 16);
  const ihl = (buf[off]! & 0x0f) << 2;
  if ((proto === 6 || proto === 17) && (readU16(buf, off + 6) & 0x1fff) === 0 && ihl + 4 <= len) {
    f.sport = readU16(buf, off + ihl);
    f.dport = readU16(buf, off + ihl + 2);
  }
}

/** Fills `f` from an Ethernet frame at `off`: IPv4, ARP (sender and target address) or neither. */
export function classifyEthernet(f: PacketFields, buf: Buffer, off: number, len: number): void {
  if (len < 14) {
    f.l3 = 0;
    f.sport = f.dport = -1;
    return;
  }
  const type = readU16(buf, off + 12);
  if (type === 0x0800) return classifyIp(f, buf, off + 14, len - 14);
  f.sport = f.dport = -1;
  if (type === 0x0806 && len >= 14 + 28) {
    f.l3 = 2;
    f.proto = -1;
    f.src = readI32(buf, off + 14 + 14);
    f.dst = readI32(buf, off + 14 + 24);
    return;
  }
  f.l3 = 0;
}
