/**
 * A conntrack table whose records live in a file mapping that outlives the daemon (issue 11): the
 * records are typed arrays over a `MAP_SHARED` mapping of a file in /dev/shm (tmpfs), so every store
 * the data path makes is already in the file, and a daemon that is stopped or killed (SIGKILL, no
 * chance to save anything) leaves the table exactly as it was. The next daemon maps the file again
 * and takes the entries over (`Conntrack.restore`); the allocated NAT ports are these entries' REPLY
 * tuples, so they survive with them.
 *
 * File layout: one 4096-byte header page, then `max` records of 64 bytes (so records stay
 * page-aligned, one cache line each). Header (little-endian int32 words unless said):
 *   0 magic 'PNCT'   1 layout version   2 int32 words per record   3 max entries   4 hash seed
 *   5 reserved (0)   6-7 clock base: the CLOCK_MONOTONIC second at which the writer's data-plane
 *   clock read 0 (float64); its records' expiry times are on that clock
 *   8 checksum: FNV-1a over bytes 0-31
 * A header that does not match this build's layout and size (magic, version, record size, max,
 * checksum, file size) is discarded with its records, never trusted: the table starts empty. Each
 * record is checked again when it is taken over (its stored hashes are its checksum; see `restore`).
 */
import { statSync } from 'node:fs';
import { loadAddon } from '../io/addon.js';
import { Conntrack, REC_WORDS, type ConntrackOptions, type ConntrackRestore } from './conntrack.js';

export const SHARED_MAGIC = 0x50434e54; // 'PNCT'
/** Bump on any change to the record layout, the header or the meaning of a field. */
export const SHARED_LAYOUT_VERSION = 1;
export const SHARED_HEADER_BYTES = 4096;

const H_MAGIC = 0;
const H_VERSION = 1;
const H_REC_WORDS = 2;
const H_MAX = 3;
const H_SEED = 4;
const H_CLOCK_BASE_F64 = 3; // bytes 24-31
const H_CHECKSUM = 8;

/** The CLOCK_MONOTONIC time in seconds (the same clock in every process of this boot). */
export function monotonicSeconds(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

function fnv1a(bytes: Uint8Array, len: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < len; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return h | 0;
}

export interface SharedConntrack {
  ct: Conntrack;
  path: string;
  /** What was taken over from the file; `discardedReason` when the whole file was not trusted. */
  restore: ConntrackRestore & { discardedReason?: string; fresh: boolean };
}

/**
 * Opens (or creates) the table at `path` for `opts.max` entries. `now` is the data-plane clock's
 * current value (seconds) and `clockBase` the monotonic second at which that clock read 0, so the
 * previous writer's expiry times can be moved onto this clock.
 */
export function openSharedConntrack(path: string, opts: Omit<ConntrackOptions, 'memory' | 'seed'> & { max: number }, now: number, clockBase: number): SharedConntrack {
  const max = opts.max;
  const bytes = SHARED_HEADER_BYTES + max * REC_WORDS * 4;
  let size = -1;
  try {
    size = statSync(path).size;
  } catch {
    /* absent: a fresh table */
  }
  const mem = loadAddon().mapShared(path, bytes);
  const head = new Int32Array(mem, 0, SHARED_HEADER_BYTES / 4);
  const headF64 = new Float64Array(mem, 0, 4);
  const headBytes = new Uint8Array(mem, 0, 32);
  let reason: string | undefined;
  if (size < 0) reason = undefined;
  else if (size !== bytes) reason = `file is ${size} bytes, this layout needs ${bytes}`;
  else if (head[H_MAGIC] !== SHARED_MAGIC) reason = 'not a podnet conntrack file (magic)';
  else if (head[H_VERSION] !== SHARED_LAYOUT_VERSION) reason = `layout version ${head[H_VERSION]}, this build has ${SHARED_LAYOUT_VERSION}`;
  else if (head[H_REC_WORDS] !== REC_WORDS || head[H_MAX] !== max) reason = `layout ${head[H_MAX]} x ${head[H_REC_WORDS] * 4} bytes, this daemon wants ${max} x ${REC_WORDS * 4}`;
  else if (head[H_CHECKSUM] !== fnv1a(headBytes, 32)) reason = 'header checksum mismatch';
  const trusted = size >= 0 && reason === undefined;
  if (!trusted) new Uint8Array(mem).fill(0);
  const seed = trusted ? head[H_SEED]! : (Math.random() * 0x100000000) | 0;
  const ct = new Conntrack({ ...opts, seed, memory: mem, memoryOffset: SHARED_HEADER_BYTES });
  const restored = trusted ? ct.restore(headF64[H_CLOCK_BASE_F64]! - clockBase, now) : { restored: 0, expired: 0, discarded: 0 };
  // From here on the records are on this process's clock: say so in the header.
  head[H_MAGIC] = SHARED_MAGIC;
  head[H_VERSION] = SHARED_LAYOUT_VERSION;
  head[H_REC_WORDS] = REC_WORDS;
  head[H_MAX] = max;
  head[H_SEED] = seed;
  head[5] = 0;
  headF64[H_CLOCK_BASE_F64] = clockBase;
  head[H_CHECKSUM] = fnv1a(headBytes, 32);
  return { ct, path, restore: { ...restored, fresh: !trusted, ...(reason !== undefined ? { discardedReason: reason } : {}) } };
}

