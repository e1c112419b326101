/**
 * The TCP connection-tracking state machine, as Linux's nf_conntrack_proto_tcp.c: states, the
 * transition table by direction, packet class and state, and the status word it works on (the low
 * bits of an entry's status are its TCP state). Pure functions over numbers: the table
 * (conntrack.ts) keeps the records and timeouts, this decides what a segment does to a connection.
 */
import { TcpFlags } from '../packet/tcp.js';

/** TCP conntrack states, Linux's names and order (SYN_SENT2 is the simultaneous-open state). */
export const TcpState = {
  None: 0,
  SynSent: 1,
  SynRecv: 2,
  Established: 3,
  FinWait: 4,
  CloseWait: 5,
  LastAck: 6,
  TimeWait: 7,
  Close: 8,
  SynSent2: 9,
} as const;
export type TcpState = (typeof TcpState)[keyof typeof TcpState];

const TCP_STATE_NAMES = [
  'NONE',
  'SYN_SENT',
  'SYN_RECV',
  'ESTABLISHED',
  'FIN_WAIT',
  'CLOSE_WAIT',
  'LAST_ACK',
  'TIME_WAIT',
  'CLOSE',
  'SYN_SENT2',
] as const;

export function tcpStateName(s: number): string {
  return TCP_STATE_NAMES[s] ?? `STATE_${s}`;
}

/** Bits of the status word (`Conntrack.status(id)`); the low 4 bits are the TCP state. */
export const CtStatus = {
  StateMask: 0x0f,
  /** A packet was seen in the REPLY direction. */
  SeenReply: 0x10,
  /** Traffic both ways (TCP: established); evicted last when the table is full. */
  Assured: 0x20,
  /** ORIGINAL-direction packets get their source (address or port) rewritten. */
  SrcNat: 0x40,
  /** ORIGINAL-direction packets get their destination (address or port) rewritten. */
  DstNat: 0x80,
  /** TCP: a FIN was seen in the ORIGINAL / REPLY direction. */
  FinOriginal: 0x100,
  FinReply: 0x200,
  /** The record holds a live entry. */
  InUse: 0x8000,
} as const;

// Packet classes (Linux's index into its table).
const C_SYN = 0;
const C_SYNACK = 1;
const C_FIN = 2;
const C_ACK = 3;
const C_RST = 4;
const C_NONE = 5;
// Pseudo states in the table.
const S_IV = 10; // invalid
const S_IG = 11; // ignore

/** Packet class from the flags byte. */
function tcpClass(flags: number): number {
  if ((flags & TcpFlags.RST) !== 0) return C_RST;
  if ((flags & TcpFlags.SYN) !== 0) return (flags & TcpFlags.ACK) !== 0 ? C_SYNACK : C_SYN;
  if ((flags & TcpFlags.FIN) !== 0) return C_FIN;
  if ((flags & TcpFlags.ACK) !== 0) return C_ACK;
  return C_NONE;
}

/**
 * Flag combinations a TCP segment may carry (PSH, ECE and CWR aside), as Linux's tcp_error accepts:
 * SYN, SYN|URG, SYN|ACK, RST, RST|ACK, FIN|ACK, FIN|ACK|URG, ACK, ACK|URG. Everything else (a bare
 * FIN, SYN|FIN, SYN|RST, no flags, ...) is invalid.
 */
const TCP_VALID_FLAGS = (() => {
  const t = new Uint8Array(256);
  const { SYN, ACK, RST, FIN, URG } = TcpFlags;
  for (const f of [SYN, SYN | URG, SYN | ACK, RST, RST | ACK, FIN | ACK, FIN | ACK | URG, ACK, ACK | URG]) t[f] = 1;
  return t;
})();
const TCP_IGNORED_FLAGS = TcpFlags.PSH | TcpFlags.ECE | TcpFlags.CWR;

/**
 * Next state by [dir][class][state]. Rows are packet classes, columns the current state in the
 * order NO SS SR ES FW CW LA TW CL S2. The semantics are Linux's (see the comments in
 * nf_conntrack_proto_tcp.c): a SYN opens, SYN/ACK answers, the first FIN moves to FIN_WAIT, its ACK to
 * CLOSE_WAIT, the second FIN to LAST_ACK, the last ACK to TIME_WAIT, RST to CLOSE.
 */
const TCP_TRANSITIONS = (() => {
  const code: Record<string, number> = { NO: 0, SS: 1, SR: 2, ES: 3, FW: 4, CW: 5, LA: 6, TW: 7, CL: 8, S2: 9, IV: S_IV, IG: S_IG };
  const rows = (lines: string[]): number[] => lines.flatMap((l) => l.trim().split(/\s+/).map((s) => code[s]!));
  const original = rows([
    /* SYN    */ 'SS SS IG IG IG IG IG SS SS S2',
    /* SYNACK */ 'IV IV SR IV IV IV IV IV IV SR',
    /* FIN    */ 'IV IV FW FW LA LA LA TW CL IV',
    /* ACK    */ 'ES IV ES ES CW CW TW TW CL IV',
    /* RST    */ 'IV CL CL CL CL CL CL CL CL CL',
    /* NONE   */ 'IV IV IV IV IV IV IV IV IV IV',
  ]);
  const reply = rows([
    /* SYN    */ 'IV S2 IV IV IV IV IV SS IV S2',
    /* SYNACK */ 'IV SR IG IG IG IG IG IG IG SR',
    /* FIN    */ 'IV IV FW FW LA LA LA TW CL IV',
    /* ACK    */ 'IV IG SR ES CW CW TW TW CL IG',
    /* RST    */ 'IV CL CL CL CL CL CL CL CL CL',
    /* NONE   */ 'IV IV IV IV IV IV IV IV IV IV',
  ]);
  return Uint8Array.from([...original, ...reply]);
})();


/** `tcpStep` results that are not a status word (all negative). */
export const TCP_INVALID = -1;
export const TCP_IGNORE = -2;
export const TCP_RESTART = -3;

/** Whether the flags byte is a combination a segment may carry (PSH, ECE and CWR aside). */
export function tcpFlagsValid(flags: number): boolean {
  return TCP_VALID_FLAGS[flags & ~TCP_IGNORED_FLAGS & 0xff] === 1;
}

/** Whether a segment with these flags may open a connection: a SYN, or a bare ACK when `loose`. */
export function tcpOpens(flags: number, loose: boolean): boolean {
  if (!tcpFlagsValid(flags)) return false;
  const cls = tcpClass(flags);
  return cls === C_SYN || (cls === C_ACK && loose);
}

/**
 * One segment in direction `d` (0 = ORIGINAL) with `flags` against an entry whose status word is
 * `st`: the new status word (state in the low bits, FIN, SeenReply and Assured bits updated), or
 * TCP_INVALID (not valid in this state, or invalid flags), TCP_IGNORE (pass, change nothing) or
 * TCP_RESTART (an ORIGINAL SYN on a TIME_WAIT/CLOSE entry: the caller starts a new connection).
 */
export function tcpStep(st: number, d: number, flags: number): number {
  if (!tcpFlagsValid(flags)) return TCP_INVALID;
  const cls = tcpClass(flags);
  const old = st & CtStatus.StateMask;
  let next = TCP_TRANSITIONS[d * 60 + cls * 10 + old]!;
  if (next === S_IV) return TCP_INVALID;
  if (next === S_IG) return TCP_IGNORE;
  if (d === 0 && cls === C_SYN && (old === TcpState.TimeWait || old === TcpState.Close)) return TCP_RESTART;
  const mine = d === 0 ? CtStatus.FinOriginal : CtStatus.FinReply;
  const theirs = d === 0 ? CtStatus.FinReply : CtStatus.FinOriginal;
  if (cls === C_FIN) {
    if ((st & mine) !== 0) next = old; // retransmitted FIN
    st |= mine;
  } else if (cls === C_ACK && old === TcpState.FinWait && (st & mine) !== 0 && (st & theirs) === 0) {
    next = old; // the FIN's sender acking the peer's data, not the peer acking the FIN
  }
  if (d === 1) st |= CtStatus.SeenReply;
  if (next === TcpState.Established && (old === TcpState.SynRecv || old === TcpState.Established) && (st & CtStatus.SeenReply) !== 0) {
    st |= CtStatus.Assured;
  }
  return (st & ~CtStatus.StateMask) | next;
}
