/**
 * Conntrack entries for people: the snapshot shapes `Conntrack.list` returns (API, CLI) and the
 * `conntrack -L`-style line the CLI prints.
 */
import { IpProtocol } from '../packet/ipv4.js';

/** One tuple for display (`list`). For ICMP, `sport` is the identifier and `dport` is `type << 8`. */
export interface CtTupleInfo {
  src: string;
  dst: string;
  sport: number;
  dport: number;
}

/** A snapshot of one entry for the CLI/API (`list`). */
export interface CtEntryInfo {
  id: number;
  proto: number;
  protoName: string;
  /** TCP state name; '' for other protocols. */
  state: string;
  /** Seconds until expiry. */
  timeout: number;
  assured: boolean;
  seenReply: boolean;
  snat: boolean;
  dnat: boolean;
  mark: number;
  original: CtTupleInfo;
  reply: CtTupleInfo;
  packetsOriginal: number;
  packetsReply: number;
}

// ---- record layout (exported for nat.ts, which reads tuples straight from `rec`) ----------------

/** One line per entry in the style of `conntrack -L`. */
export function formatCtEntry(x: CtEntryInfo): string {
  const t = (u: CtTupleInfo) =>
    x.proto === IpProtocol.ICMP
      ? `src=${u.src} dst=${u.dst} type=${u.dport >> 8} id=${u.sport}`
      : `src=${u.src} dst=${u.dst} sport=${u.sport} dport=${u.dport}`;
  const parts = [x.protoName, String(x.proto), String(Math.ceil(x.timeout))];
  if (x.state !== '') parts.push(x.state);
  parts.push(t(x.original));
  if (!x.seenReply) parts.push('[UNREPLIED]');
  parts.push(t(x.reply));
  if (x.assured) parts.push('[ASSURED]');
  parts.push(`mark=${x.mark}`);
  return parts.join(' ');
}

/** A protocol's name as conntrack -L prints it. */
export function protoName(proto: number): string {
  return proto === IpProtocol.TCP ? 'tcp' : proto === IpProtocol.UDP ? 'udp' : proto === IpProtocol.ICMP ? 'icmp' : `proto${proto}`;
}

/** Unexpired connections by protocol and state, and the source-NATed ones (ports in use) by protocol. */
export interface CtCensus {
  states: Array<{ protocol: string; state: string; count: number }>;
  snat: Record<string, number>;
}

