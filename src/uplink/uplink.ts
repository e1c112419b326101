/**
 * The node's uplink for Services: NodePort, LoadBalancer and external IPs, and the replies to pods'
 * masqueraded egress.
 *
 * Receive: a libpcap capture (`cap`) on the underlay interface whose BPF filter selects exactly the
 * traffic podnet owns (see `captureFilter`): TCP/UDP to the node IP in the NodePort and masquerade
 * port ranges, ICMP to the node IP, everything to an announced IP, and ARP requests for an announced
 * IP. IPv4 packets go to `onPacket` with the Ethernet header stripped; ARP requests are answered here
 * with the interface's MAC. iptables rules in the raw table (`UplinkRules`) drop the same TCP/UDP and
 * announced-IP traffic before the host kernel handles it (libpcap sees packets before netfilter).
 *
 * Send: complete IPv4 packets (our own header and checksums) on an IPPROTO_RAW socket (`raw-socket`,
 * IP_HDRINCL implied); the kernel routes them with the host's routing table, so replies to an external
 * client leave through the uplink.
 *
 * Data path: one receive buffer reused for every packet, one 60-byte ARP frame buffer, cached
 * destination address strings and a pre-bound send callback, so receiving, answering ARP and sending
 * allocate nothing in the common case. Nothing on the data path throws: every drop is counted under a
 * reason in `stats().drops`.
 */
import { readFile } from 'node:fs/promises';

import type { Logger } from 'pino';

import { run, Undo } from '../netns/run.js';
import {
  ArpOp,
  ArpView,
  ETH_HLEN,
  EtherType,
  ParseError,
  ethSrcHi,
  ethSrcLo32,
  ethType,
  ipv4Dst32,
  ipv4ToString,
  ipv4TotalLen,
  ipv4Version,
  parseIpv4,
  parseMac,
  writeArp,
  writeEthernetHeader,
} from '../packet/index.js';
import { DropCounters, DropReason } from '../util/counters.js';
import { ErrorCode, invalid, PodnetError } from '../util/errors.js';
import { captureFilter } from './filter.js';
import { openCapture, openRawSocket, type Capture, type RawSocket } from './native.js';
import { UplinkRules } from './rules.js';

export { UPLINK_CHAIN, UPLINK_OUT_CHAIN } from './rules.js';
export { captureFilter } from './filter.js';

export const DEFAULT_NODE_PORT_RANGE: readonly [number, number] = [30000, 32767];
export const DEFAULT_MASQUERADE_PORT_RANGE: readonly [number, number] = [61001, 65535];

export interface UplinkOptions {
  /** The node's underlay interface in this process's network namespace, e.g. 'eth0'. */
  interface: string;
  /** Its IPv4 address. */
  nodeIp: string;
  /** Default [30000, 32767]. */
  nodePortRange?: [number, number];
  /** Default [61001, 65535]: a range the host's own sockets never use. */
  masqueradePortRange?: [number, number];
  /** An IPv4 packet taken off the wire (Ethernet stripped); the buffer is reused after the call returns. */
  onPacket: (buf: Buffer, ipOff: number, ipLen: number) => void;
  log?: Logger;
  /** libpcap's kernel buffer in bytes (default 8 MiB). */
  captureBufferBytes?: number;
  /** The iptables command (default `iptables`, whichever backend it uses), e.g. `iptables-legacy`. */
  iptablesCommand?: string;
}

export interface UplinkStats {
  /** IPv4 packets handed to `onPacket`. */
  captured: number;
  /** Packets the kernel accepted on the raw socket. */
  sent: number;
  /** Packets the raw socket refused (each also counted as the drop `uplink_send_failed`). */
  sendErrors: number;
  /** ARP replies sent for announced IPs. */
  arpReplies: number;
  /** Gratuitous ARP frames sent (a request and a reply per newly announced IP). */
  gratuitousArps: number;
  /** Drops by reason (DropReason names, as every counter of the data plane). */
  drops: Record<string, number>;
}

const RX_BUFFER_BYTES = 65536 + ETH_HLEN;
const ARP_FRAME_BYTES = 60; // minimum Ethernet frame without FCS: ARP is padded with zeros
const ADDR_CACHE_MAX = 4096;
const DEFAULT_CAPTURE_BUFFER = 8 << 20;
const SEND_BUFFER_BYTES = 4 << 20;
const IFNAME_RE = /^[A-Za-z0-9_.@-]{1,15}$/;
const BROADCAST_HI = 0xffff;
const BROADCAST_LO = 0xffffffff;

export class Uplink {
  readonly interface: string;
  readonly nodeIp: string;
  readonly mac: string;
  readonly nodePortRange: readonly [number, number];
  readonly masqueradePortRange: readonly [number, number];

  private readonly onPacket: UplinkOptions['onPacket'];
  private readonly log: Logger | undefined;
  private readonly captureBufferBytes: number;
  private readonly macHi: number;
  private readonly macLo: number;
  /** `macLo` as int32, as `ethSrcLo32` reads it. */
  private readonly macLo32: number;
  /** Every captured frame is copied here by libpcap (through the binding), one at a time. */
  private readonly rx: Buffer;
  /** ARP replies and announcements; bytes 42..59 are the padding, zeros from `alloc`, never written. */
  private readonly arpTx = Buffer.alloc(ARP_FRAME_BYTES);
  private readonly arpView = new ArpView();
  private capture: Capture;
  private readonly sock: RawSocket;
  private readonly rules: UplinkRules;

  /** Announced IPs as numbers (ARP) and strings (filter, rules), in the order given. */
  private announcedIps = new Set<number>();
  private announcedList: string[] = [];
  private readonly addrCache = new Map<number, string>();

  private captured = 0;
  private sent = 0;
  private sendErrors = 0;
  private arpReplies = 0;
  private gratuitousArps = 0;
  private readonly drops = new DropCounters();
  private readonly warned = new Set<string>();

  private closed = false;
  private closing: Promise<void> | undefined;
  /** Serialises `setAnnounced` and `close`. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(init: {
    opts: UplinkOptions;
    mac: string;
    nodePortRange: readonly [number, number];
    masqueradePortRange: readonly [number, number];
    captureBufferBytes: number;
    rx: Buffer;
    sock: RawSocket;
    rules: UplinkRules;
    capture: Capture;
  }) {
    this.interface = init.opts.interface;
    this.nodeIp = init.opts.nodeIp;
    this.mac = init.mac;
    this.nodePortRange = init.nodePortRange;
    this.masqueradePortRange = init.masqueradePortRange;
    this.onPacket = init.opts.onPacket;
    this.log = init.opts.log;
    this.captureBufferBytes = init.captureBufferBytes;
    const m = parseMac(init.mac);
    this.macHi = m.hi;
    this.macLo = m.lo;
    this.macLo32 = m.lo | 0;
    this.rx = init.rx;
    this.sock = init.sock;
    this.rules = init.rules;
    this.capture = init.capture;
  }

  /**
   * Opens the capture, the raw socket and installs the iptables rules, in that order, so a bad
   * interface fails before anything is installed and the kernel stops seeing the traffic only once
   * podnet does. Errors name the interface (and the iptables rule that failed); nothing is left behind.
   */
  static async open(opts: UplinkOptions): Promise<Uplink> {
    const iface = opts.interface;
    if (typeof iface !== 'string' || !IFNAME_RE.test(iface)) throw invalid(`uplink: invalid interface name ${JSON.stringify(iface)}`);
    checkIp(opts.nodeIp, `uplink ${iface}: nodeIp`);
    if (typeof opts.onPacket !== 'function') throw invalid(`uplink ${iface}: onPacket must be a function`);
    const nodePortRange = checkRange(opts.nodePortRange ?? DEFAULT_NODE_PORT_RANGE, `uplink ${iface}: nodePortRange`);
    const masqueradePortRange = checkRange(opts.masqueradePortRange ?? DEFAULT_MASQUERADE_PORT_RANGE, `uplink ${iface}: masqueradePortRange`);
    const captureBufferBytes = opts.captureBufferBytes ?? DEFAULT_CAPTURE_BUFFER;
    if (!Number.isInteger(captureBufferBytes) || captureBufferBytes < 65536 || captureBufferBytes > 0x7fffffff) {
      throw invalid(`uplink ${iface}: captureBufferBytes must be an integer from 65536 to 2^31-1, got ${captureBufferBytes}`);
    }
    const log = opts.log;

    const mac = await interfaceMac(iface);
    await warnIfPortsShared(masqueradePortRange, iface, log);

    const undo = new Undo();
    try {
      // Frames are handled once the Uplink exists: `onPacket` is never called before `open`
      // resolves. Frames captured while the rules go in are ignored; the kernel still sees them
      // until the PREROUTING jump is in place, a few milliseconds before `open` resolves.
      let self: Uplink | undefined;
      const filter = captureFilter({ mac, nodeIp: opts.nodeIp, nodePortRange, masqueradePortRange, announced: [] });
      const rx = Buffer.alloc(RX_BUFFER_BYTES);
      const capture = openCaptureOrThrow(iface, filter, captureBufferBytes, rx, (n, t) => self?.onFrame(n, t));
      undo.push('capture', () => capture.close());

      let sock: RawSocket;
      try {
        const raw = openRawSocket();
        sock = raw.sock;
        try {
          sock.setOption(raw.mod.SocketLevel.SOL_SOCKET, raw.mod.SocketOption.SO_SNDBUF, SEND_BUFFER_BYTES);
        } catch {
          /* keep the default send buffer (capped by net.core.wmem_max anyway) */
        }
      } catch (err) {
        throw new PodnetError(ErrorCode.Internal, `uplink ${iface}: opening a raw IPv4 socket failed: ${(err as Error).message}`);
      }
      undo.push('raw socket', () => sock.close());

      const rules = await UplinkRules.install({
        iptables: opts.iptablesCommand ?? 'iptables',
        iface,
        nodeIp: opts.nodeIp,
        nodePortRange,
        masqueradePortRange,
        log,
      });
      undo.commit();
      const up = new Uplink({ opts, mac, nodePortRange, masqueradePortRange, captureBufferBytes, rx, sock, rules, capture });
      sock.on('error', (err) => up.warnOnce('rawSocketError', `uplink ${iface}: raw socket error: ${err?.message}`));
      self = up;
      log?.info({ interface: iface, nodeIp: opts.nodeIp, mac, nodePortRange, masqueradePortRange }, 'uplink open');
      return up;
    } catch (err) {
      await undo.unwind((what, e) => log?.error({ err: e }, `uplink ${iface}: could not undo ${what}`));
      throw err;
    }
  }

  /**
   * Sends a complete IPv4 packet (our own header, IP_HDRINCL); the kernel routes it. Trailing bytes
   * beyond the header's total length (Ethernet padding) are not sent. Returns false if dropped.
   */
  send(buf: Buffer, ipOff: number, ipLen: number): boolean {
    if (this.closed) return this.drop(DropReason.UplinkSendClosed);
    if (ipOff < 0 || ipLen < 20 || ipOff + ipLen > buf.length || ipv4Version(buf, ipOff) !== 4) return this.drop(DropReason.UplinkSendMalformed);
    const total = ipv4TotalLen(buf, ipOff);
    if (total < 20 || total > ipLen) return this.drop(DropReason.UplinkSendMalformed);
    const dst = ipv4Dst32(buf, ipOff);
    let addr = this.addrCache.get(dst);
    if (addr === undefined) {
      if (this.addrCache.size >= ADDR_CACHE_MAX) this.addrCache.clear();
      addr = ipv4ToString(dst);
      this.addrCache.set(dst, addr);
    }
    try {
      // The native send is a synchronous, non-blocking sendto that calls `onSent` before returning
      // and throws Error(strerror) on failure (EAGAIN when the socket buffer is full, EMSGSIZE above
      // the route MTU, ENETUNREACH, EPERM from a firewall).
      this.sock.wrap.send(buf, ipOff, total, addr, this.onSent);
      return true;
    } catch (err) {
      this.sendErrors++;
      this.drop(DropReason.UplinkSendFailed);
      this.warnOnce(`send: ${(err as Error).message}`, `uplink ${this.interface}: raw send to ${addr} failed: ${(err as Error).message}`);
      return false;
    }
  }

  /**
   * Sets the IPs this node answers ARP for on the uplink (LoadBalancer IPs it owns, external IPs).
   * Traffic to them is captured and dropped before the kernel handles (or forwards) it. Newly
   * announced IPs get a gratuitous ARP (request and reply, broadcast, as MetalLB's layer-2 mode does).
   * Replaces the set; idempotent. On failure the previous set stays in force.
   */
  setAnnounced(ips: string[]): Promise<void> {
    return this.serial(async () => {
      if (this.closed) throw new PodnetError(ErrorCode.Precondition, `uplink ${this.interface}: setAnnounced after close`);
      const next: string[] = [];
      const nextNums = new Set<number>();
      for (const ip of ips) {
        const n = checkIp(ip, `uplink ${this.interface}: announced IP`);
        if (ip === this.nodeIp) throw invalid(`uplink ${this.interface}: cannot announce the node IP ${ip}`);
        if (!nextNums.has(n)) {
          nextNums.add(n);
          next.push(ip);
        }
      }
      const added = next.filter((ip) => !this.announcedIps.has(parseIpv4(ip)));
      const removed = this.announcedList.filter((ip) => !nextNums.has(parseIpv4(ip)));
      if (added.length === 0 && removed.length === 0) return;

      const undo = new Undo();
      try {
        for (const ip of added) await this.rules.addAnnounced(ip, undo);
        // Make before break: the new capture is open before the old one closes, so a failure leaves
        // the old one working. Both copy into `rx`, which is safe: delivery is one packet at a time on
        // this thread. Only packets queued in the old one's ring and not yet read are lost.
        const filter = captureFilter({
          mac: this.mac,
          nodeIp: this.nodeIp,
          nodePortRange: this.nodePortRange,
          masqueradePortRange: this.masqueradePortRange,
          announced: next,
        });
        const capture = openCaptureOrThrow(this.interface, filter, this.captureBufferBytes, this.rx, (n, t) => this.onFrame(n, t));
        const old = this.capture;
        this.capture = capture;
        old.close();
      } catch (err) {
        await undo.unwind((what, e) => this.log?.error({ err: e }, `uplink ${this.interface}: could not undo ${what}`));
        throw err;
      }
      this.announcedIps = nextNums;
      this.announcedList = next;
      for (const ip of removed) await this.rules.removeAnnounced(ip);
      for (const ip of added) this.gratuitousArp(parseIpv4(ip));
      this.log?.info({ interface: this.interface, announced: next, added, removed }, 'uplink announced IPs');
    });
  }

  /** The announced IPs, in the order given to `setAnnounced`. */
  announced(): string[] {
    return [...this.announcedList];
  }

  stats(): UplinkStats {
    return {
      captured: this.captured,
      sent: this.sent,
      sendErrors: this.sendErrors,
      arpReplies: this.arpReplies,
      gratuitousArps: this.gratuitousArps,
      drops: this.drops.toJSON(),
    };
  }

  /**
   * Stops capturing (no `onPacket` call after this starts), closes the raw socket and removes every
   * iptables rule and chain installed. Idempotent: later calls return the first call's promise.
   */
  close(opts: { keepRules?: boolean } = {}): Promise<void> {
    this.closing ??= this.serial(async () => {
      this.closed = true;
      this.capture.close();
      this.sock.close();
      // keepRules (a daemon restart): the kernel goes on leaving podnet's traffic alone meanwhile.
      if (opts.keepRules) this.rules.keep();
      else await this.rules.remove();
      this.log?.info({ interface: this.interface }, 'uplink closed');
    });
    return this.closing;
  }

  // ---- receive path ------------------------------------------------------------------------

  private onFrame(nbytes: number, truncated: boolean): void {
    if (this.closed) return;
    const b = this.rx;
    if (truncated) {
      this.drop(DropReason.UplinkTruncated);
      return;
    }
    if (nbytes < ETH_HLEN) {
      this.drop(DropReason.UplinkRunt);
      return;
    }
    if (ethSrcHi(b, 0) === this.macHi && ethSrcLo32(b, 0) === this.macLo32) {
      this.drop(DropReason.UplinkOwnFrame);
      return;
    }
    const etherType = ethType(b, 0);
    if (etherType === EtherType.IPv4) {
      this.captured++;
      try {
        this.onPacket(b, ETH_HLEN, nbytes - ETH_HLEN);
      } catch (err) {
        this.drop(DropReason.UplinkHandlerError);
        this.warnOnce('handler', `uplink ${this.interface}: onPacket threw: ${(err as Error)?.stack ?? String(err)}`);
      }
    } else if (etherType === EtherType.ARP) {
      this.onArp(nbytes);
    } else {
      this.drop(DropReason.UplinkNotIpv4);
    }
  }

  private onArp(nbytes: number): void {
    const arp = this.arpView;
    if (arp.reset(this.rx, ETH_HLEN, nbytes - ETH_HLEN) !== ParseError.Ok) {
      this.drop(DropReason.MalformedArp);
      return;
    }
    if (arp.operation !== ArpOp.Request) {
      this.drop(DropReason.ArpNotRequest);
      return;
    }
    const tip = arp.targetIp;
    if (!this.announcedIps.has(tip)) {
      this.drop(DropReason.ArpNotAnnounced);
      return;
    }
    const sip = arp.senderIp;
    if (sip === tip) {
      this.drop(DropReason.ArpConflict);
      this.warnOnce(`arp-conflict:${tip}`, `uplink ${this.interface}: another station announces ${ipv4ToString(tip)}, which this node announces`);
      return;
    }
    // Reply to the sender's hardware address (a probe with sender IP 0.0.0.0 is answered the same way,
    // as Linux does: the prober learns the address is taken).
    const shaHi = arp.senderMacHi;
    const shaLo = arp.senderMacLo;
    writeEthernetHeader(this.arpTx, 0, shaHi, shaLo, this.macHi, this.macLo, EtherType.ARP);
    writeArp(this.arpTx, ETH_HLEN, ArpOp.Reply, this.macHi, this.macLo, tip, shaHi, shaLo, sip);
    if (this.sendFrame()) this.arpReplies++;
  }

  /** A gratuitous ARP request and reply for `ip`, both broadcast. */
  private gratuitousArp(ip: number): void {
    for (const op of [ArpOp.Request, ArpOp.Reply]) {
      writeEthernetHeader(this.arpTx, 0, BROADCAST_HI, BROADCAST_LO, this.macHi, this.macLo, EtherType.ARP);
      const thaHi = op === ArpOp.Request ? 0 : BROADCAST_HI;
      const thaLo = op === ArpOp.Request ? 0 : BROADCAST_LO;
      writeArp(this.arpTx, ETH_HLEN, op, this.macHi, this.macLo, ip, thaHi, thaLo, ip);
      if (this.sendFrame()) this.gratuitousArps++;
    }
  }

  /** Injects `arpTx` (ARP, zero-padded to 60 bytes) on the interface. */
  private sendFrame(): boolean {
    try {
      this.capture.send(this.arpTx, ARP_FRAME_BYTES);
      return true;
    } catch (err) {
      this.drop(DropReason.ArpSendFailed);
      this.warnOnce('arp-send', `uplink ${this.interface}: injecting an ARP frame failed: ${(err as Error).message}`);
      return false;
    }
  }

  private readonly onSent = (_bytes: number): void => {
    this.sent++;
  };

  private drop(reason: DropReason): false {
    this.drops.add(reason);
    return false;
  }

  private warnOnce(key: string, msg: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.log?.warn(msg);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => undefined);
    return p;
  }
}

function checkIp(ip: unknown, what: string): number {
  try {
    return parseIpv4(ip as string);
  } catch {
    throw invalid(`${what}: invalid IPv4 address ${JSON.stringify(ip)}`);
  }
}

function checkRange(r: readonly [number, number], what: string): readonly [number, number] {
  if (!Array.isArray(r) || r.length !== 2) throw invalid(`${what}: expected [first, last]`);
  const [lo, hi] = r;
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 1 || hi > 65535 || lo > hi) {
    throw invalid(`${what}: expected ports 1..65535 with first <= last, got [${lo}, ${hi}]`);
  }
  return [lo, hi];
}

function openCaptureOrThrow(iface: string, filter: string, bufBytes: number, rx: Buffer, onFrame: (n: number, t: boolean) => void): Capture {
  let capture: Capture;
  try {
    capture = openCapture(iface, filter, bufBytes, rx, onFrame);
  } catch (err) {
    throw new PodnetError(ErrorCode.Internal, `uplink ${iface}: opening the libpcap capture failed: ${(err as Error).message}`);
  }
  if (capture.linkType !== 'ETHERNET') {
    capture.close();
    throw new PodnetError(ErrorCode.InvalidArgument, `uplink ${iface}: not an Ethernet interface (libpcap link type ${capture.linkType})`);
  }
  return capture;
}

/** The interface's MAC, read over netlink (`ip -j link`) in this process's network namespace. */
async function interfaceMac(iface: string): Promise<string> {
  let links: Array<{ ifname?: string; link_type?: string; address?: string; operstate?: string }>;
  try {
    links = JSON.parse((await run('ip', ['-j', 'link', 'show', 'dev', iface])).stdout);
  } catch (err) {
    throw new PodnetError(ErrorCode.NotFound, `uplink: no interface ${iface} in this network namespace (${(err as Error).message})`);
  }
  const link = links[0];
  if (!link || link.link_type !== 'ether' || typeof link.address !== 'string') {
    throw new PodnetError(ErrorCode.InvalidArgument, `uplink ${iface}: not an Ethernet interface (link type ${link?.link_type ?? 'unknown'})`);
  }
  return link.address;
}

/** Warns when the host's ephemeral port range overlaps the masquerade range (replies would be taken from host sockets). */
async function warnIfPortsShared(masq: readonly [number, number], iface: string, log?: Logger): Promise<void> {
  if (!log) return;
  try {
    const [lo, hi] = (await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')).trim().split(/\s+/).map(Number);
    if (lo !== undefined && hi !== undefined && lo <= masq[1] && masq[0] <= hi) {
      log.warn(
        { ipLocalPortRange: [lo, hi], masqueradePortRange: masq },
        `uplink ${iface}: the host's ephemeral ports overlap the masquerade range; replies to host connections in the overlap will be taken by podnet`,
      );
    }
  } catch {
    /* not Linux /proc: nothing to check */
  }
}
