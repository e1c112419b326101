import type { Logger } from 'pino';

/**
 * Whether the cluster store answers, and since when it does not (issue 11: a store outage must not
 * touch the data path, and `podnet status` says what is going on). A probe (one cheap read) runs every
 * `intervalMs` while the store answers, and with exponential backoff (from `minBackoffMs` to
 * `maxBackoffMs`) while it does not; each probe has a deadline, because a client call to an etcd that
 * is down may wait far longer than that. `onReachable` runs when the store answers again, e.g. to
 * register again after the lease was lost.
 *
 * The data path never waits on this: forwarding, services and NAT run on the last state the watches
 * delivered, and the watches resume by themselves.
 */
export class StoreHealth {
  reachable = true;
  /** When the current outage began (the first failed probe or call), or undefined. */
  unreachableSince: Date | undefined;
  lastError: string | undefined;
  /** Outages seen since the daemon started. */
  outages = 0;
  private timer: NodeJS.Timeout | undefined;
  private backoff: number;
  private stopped = false;

  constructor(
    private readonly probe: () => Promise<unknown>,
    private readonly log: Logger,
    private readonly opts: { intervalMs?: number; timeoutMs?: number; minBackoffMs?: number; maxBackoffMs?: number; onReachable?: () => Promise<void> } = {},
  ) {
    this.backoff = opts.minBackoffMs ?? 250;
  }

  start(): void {
    this.schedule(this.opts.intervalMs ?? 2000);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Something else (a lease keepalive, a call) found the store unreachable. */
  failed(err: Error): void {
    if (this.reachable) {
      this.reachable = false;
      this.unreachableSince = new Date();
      this.outages++;
      this.log.warn({ err: err.message }, 'cluster store unreachable: forwarding goes on with the last known state');
    }
    this.lastError = err.message;
  }

  status() {
    return {
      reachable: this.reachable,
      ...(this.unreachableSince
        ? { unreachableSince: this.unreachableSince.toISOString(), unreachableSeconds: Math.round((Date.now() - this.unreachableSince.getTime()) / 1000) }
        : {}),
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
      outages: this.outages,
    };
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.run(), ms);
    this.timer.unref();
  }

  private async run(): Promise<void> {
    const timeoutMs = this.opts.timeoutMs ?? 2000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.probe(),
        new Promise((_r, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs))),
      ]);
    } catch (err) {
      clearTimeout(timer);
      this.failed(err as Error);
      const next = this.backoff;
      this.backoff = Math.min(this.opts.maxBackoffMs ?? 2000, this.backoff * 2);
      return this.schedule(next);
    }
    clearTimeout(timer);
    this.backoff = this.opts.minBackoffMs ?? 250;
    if (!this.reachable) {
      const down = this.unreachableSince ? Math.round((Date.now() - this.unreachableSince.getTime()) / 1000) : 0;
      this.log.info({ seconds: down }, 'cluster store reachable again');
    }
    if (this.opts.onReachable) {
      try {
        await this.opts.onReachable();
      } catch (err) {
        // Reachable for a read but the follow-up failed: still an outage as far as we can tell.
        this.failed(err as Error);
        return this.schedule(this.backoff);
      }
    }
    if (!this.reachable) {
      this.reachable = true;
      this.unreachableSince = undefined;
      this.lastError = undefined;
    }
    this.schedule(this.opts.intervalMs ?? 2000);
  }
}
