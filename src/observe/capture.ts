/**
 * `podnet capture` on the daemon's side: `GET /v1/capture?target=T&filter=F&count=N&snaplen=S`
 * attaches a `CaptureRing` to one capture point of the data plane (see dataplane/tap.ts) and streams
 * what it takes to the client (wire.ts), chunked, until the count is reached, the target goes away,
 * the client hangs up or the daemon stops; then the point's field is `undefined` again.
 *
 * The stream is drained on a timer, never from the data path. When the client reads slowly, the
 * socket's buffer fills, the drain waits for 'drain', the ring fills, and the data plane's frames are
 * counted as lost: the data plane never waits. One capture per target at a time.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { HostPort, TapPort, TunPort } from '../dataplane/ports.js';
import type { Router, UplinkSender } from '../dataplane/router.js';
import { TapDir, type FrameTap } from '../dataplane/tap.js';
import type { VxlanOverlay } from '../dataplane/vxlan.js';
import { invalid, notFound, PodnetError, ErrorCode } from '../util/errors.js';
import { compileFilter, FilterError } from './filter.js';
import { CaptureRing, LinkType } from './ring.js';
import { encodeJson, encodePacket, Msg, PACKET_OVERHEAD, type CaptureStart, type CaptureStats } from './wire.js';

/** What the service needs of the node. */
export interface CaptureSources {
  node: string;
  router: Router;
  podPort(name: string): TapPort | TunPort | undefined;
  host(): HostPort | undefined;
  overlay(): VxlanOverlay | undefined;
  vxlanPort: number;
  /** Our underlay address, host order (0: none). */
  underlayIp(): number;
  uplinkIngress(): { rxTap: FrameTap | undefined } | undefined;
}

const DRAIN_MS = 20;
const STATS_MS = 1000;
const CHUNK_BYTES = 256 * 1024;

/** One attachment: how to take the ring off again, and whether the target is still the one attached. */
interface Attached {
  ifName: string;
  linkType: LinkType;
  detach(): void;
  alive(): boolean;
}

export class CaptureService {
  /** Targets with a capture running (key: the target's canonical name). */
  private readonly running = new Map<string, () => void>();

  constructor(
    private readonly src: CaptureSources,
    private readonly log?: Logger,
  ) {}

  /** Ends every capture (the daemon is stopping). */
  stopAll(): void {
    for (const end of [...this.running.values()]) end();
  }

  /** Names of the targets with a capture running. */
  list(): string[] {
    return [...this.running.keys()];
  }

  private attach(target: string, ring: () => CaptureRing, linkFor: (t: LinkType) => void): { key: string; a: Attached } {
    const s = this.src;
    const t = target.trim();
    if (t === '') throw invalid('capture: target is empty (a pod name, pod/NAME, gateway, host, vxlan or uplink)');
    if (t === 'gateway') {
      if (s.router.tap !== undefined) throw busy(t);
      linkFor(LinkType.Ethernet);
      const r = ring();
      s.router.tap = r;
      return { key: t, a: { ifName: 'gateway', linkType: LinkType.Ethernet, detach: () => void (s.router.tap === r && (s.router.tap = undefined)), alive: () => true } };
    }
    if (t === 'host') {
      const h = s.host();
      if (h === undefined) throw notFound('capture: the host port is not up');
      if (h.rxTap !== undefined || h.tx.tap !== undefined) throw busy(t);
      linkFor(LinkType.Raw);
      const r = ring();
      h.rxTap = r;
      h.tx.tap = r;
      return { key: t, a: { ifName: h.name, linkType: LinkType.Raw, detach: () => ((h.rxTap = undefined), (h.tx.tap = undefined)), alive: () => s.host() === h } };
    }
    if (t === 'vxlan') {
      const ov = s.overlay();
      if (ov === undefined) throw notFound('capture: this node has no VXLAN overlay (no underlay address)');
      if (ov.tap !== undefined) throw busy(t);
      linkFor(LinkType.Raw);
      const r = ring();
      ov.tap = r;
      return { key: t, a: { ifName: `vxlan:${s.vxlanPort}`, linkType: LinkType.Raw, detach: () => void (ov.tap === r && (ov.tap = undefined)), alive: () => s.overlay() === ov } };
    }
    if (t === 'uplink') {
      const ing = s.uplinkIngress();
      const sender = s.router.uplink;
      if (ing === undefined || sender === undefined) throw notFound('capture: this node has no uplink (uplink disabled or no underlay interface)');
      if (ing.rxTap !== undefined) throw busy(t);
      linkFor(LinkType.Raw);
      const r = ring();
      ing.rxTap = r;
      // Sends out of the uplink: the router's sender, wrapped while the capture runs (nothing on the path otherwise).
      const wrapped: UplinkSender = {
        send: (buf, ipOff, ipLen) => {
          r.frame(buf, ipOff, ipLen, TapDir.Out);
          return sender.send(buf, ipOff, ipLen);
        },
      };
      s.router.uplink = wrapped;
      return {
        key: t,
        a: {
          ifName: 'uplink',
          linkType: LinkType.Raw,
          detach: () => {
            ing.rxTap = undefined;
            if (s.router.uplink === wrapped) s.router.uplink = sender;
          },
          alive: () => true,
        },
      };
    }
    const name = t.startsWith('pod/') ? t.slice(4) : t;
    const port = s.podPort(name);
    if (port === undefined) {
      throw notFound(`capture: no pod ${name} on node ${s.node} (targets: a pod name, pod/NAME, gateway, host, vxlan, uplink)`);
    }
    const lt = port.kind === 'tap' ? LinkType.Ethernet : LinkType.Raw;
    const key = `pod/${name}`;
    if (port.rxTap !== undefined || port.tx.tap !== undefined) throw busy(key);
    linkFor(lt);
    const r = ring();
    port.rxTap = r;
    port.tx.tap = r;
    return {
      key,
      a: {
        ifName: name,
        linkType: lt,
        detach: () => {
          if (port.rxTap === r) port.rxTap = undefined;
          if (port.tx.tap === r) port.tx.tap = undefined;
        },
        alive: () => s.podPort(name) === port,
      },
    };
  }

  /** The streaming route. */
  handle(params: Record<string, string>, req: IncomingMessage, res: ServerResponse): void {
    const target = params.target ?? '';
    let filter;
    try {
      filter = compileFilter(params.filter ?? '');
    } catch (e) {
      if (e instanceof FilterError) throw invalid(e.message);
      throw e;
    }
    const count = params.count === undefined || params.count === '' ? Infinity : Number(params.count);
    if (!(count === Infinity || (Number.isInteger(count) && count > 0))) throw invalid(`capture: count must be a positive integer, got '${params.count}'`);
    const snaplen = params.snaplen === undefined || params.snaplen === '' ? 65535 : Number(params.snaplen);
    if (!Number.isInteger(snaplen) || snaplen < 64 || snaplen > 262144) throw invalid(`capture: snaplen must be an integer 64-262144, got '${params.snaplen}'`);
    let link: LinkType = LinkType.Ethernet;
    let ring: CaptureRing | undefined;
    const make = () =>
      (ring = new CaptureRing({
        snaplen,
        limit: count,
        filter: filter.expr === '' ? undefined : filter.match,
        linkType: link,
        localIp: this.src.underlayIp(),
      }));
    const { key, a } = this.attach(target, make, (t) => (link = t));
    const r = ring!;
    let ended = false;
    let waiting = false;
    const stats = (): CaptureStats => ({ matched: r.matched, lost: r.lost, filtered: r.filtered });
    const end = (reason: string) => {
      if (ended) return;
      ended = true;
      a.detach();
      clearInterval(timer);
      this.running.delete(key);
      if (!res.destroyed) {
        flushRing();
        res.write(encodeJson(Msg.Stats, stats()));
        res.end(encodeJson(Msg.End, { reason, ...stats() }));
      }
      this.log?.info({ target: key, reason, ...stats() }, 'capture ended');
    };
    const flushRing = (): boolean => {
      while (r.pending > 0) {
        const out = Buffer.allocUnsafe(CHUNK_BYTES + r.snaplen + PACKET_OVERHEAD);
        let at = 0;
        while (r.pending > 0 && at < CHUNK_BYTES) {
          r.drain(1, (data, off, cap, orig, dir, ms) => (at = encodePacket(out, at, data, off, cap, orig, dir, ms)));
        }
        if (!res.write(out.subarray(0, at))) return false;
      }
      return true;
    };
    let lastStats = Date.now();
    const tick = () => {
      if (ended || waiting) return;
      if (!a.alive()) return end('target went away');
      if (!flushRing()) {
        waiting = true;
        res.once('drain', () => {
          waiting = false;
          tick();
        });
        return;
      }
      if (r.full && r.pending === 0) return end('count reached');
      const now = Date.now();
      if (now - lastStats >= STATS_MS) {
        lastStats = now;
        res.write(encodeJson(Msg.Stats, stats()));
      }
    };
    const timer = setInterval(tick, DRAIN_MS);
    this.running.set(key, () => end('daemon stopping'));
    res.on('close', () => {
      if (!ended) {
        ended = true;
        a.detach();
        clearInterval(timer);
        this.running.delete(key);
        this.log?.info({ target: key, ...stats() }, 'capture ended: client went away');
      }
    });
    req.on('error', () => undefined);
    res.writeHead(200, { 'content-type': 'application/vnd.podnet.capture', 'cache-control': 'no-store' });
    const start: CaptureStart = { target: key, ifName: a.ifName, linkType: a.linkType, snaplen: r.snaplen, filter: filter.expr, node: this.src.node };
    res.write(encodeJson(Msg.Start, { ...start, vxlanPort: this.src.vxlanPort }));
    this.log?.info({ target: key, filter: filter.expr, count: Number.isFinite(count) ? count : undefined }, 'capture started');
  }
}

function busy(target: string): PodnetError {
  return new PodnetError(ErrorCode.AlreadyExists, `capture: a capture of ${target} is already running (one per target)`);
}
