/**
 * A coarse monotonic clock for the data path, read without allocating.
 *
 * `performance.now()` and `Date.now()` return a double that V8 boxes into a new 16-byte HeapNumber
 * on every call (and a double taken from an object field is boxed again whenever it is passed to a
 * function that is not inlined). The data path reads time once per batch and hands it down to
 * conntrack, the MAC table and the service table, so it wants a small integer instead.
 *
 * Like the kernel's jiffies, this clock is a pair of integers, `ms` and `seconds` since it started,
 * kept in an Int32Array by one of two drivers:
 * - `poller`: once the native addon is loaded (src/io/addon.ts hands it to the process's clock,
 *   `coarseClock`), the addon writes the time into the array right before every batch a TAP/TUN
 *   device or the VXLAN socket hands to JavaScript, and on `refresh()`. No timer: an idle daemon is
 *   not woken at all (a 10 ms interval used to wake each one 100 times a second, ~65 us of CPU each
 *   on a small VM), and a batch reads the time it arrived at. Work that does not start in a native
 *   batch (the libpcap capture, Node's dgram, the control plane) calls `refresh()` first;
 *   `Dataplane.receiveOne` does.
 * - `timer`: a 10 ms unref'd interval, until then (and for clocks made in tests).
 * Either way it advances between turns of the event loop, not during one synchronous run, which is
 * what the data path needs: a batch runs to completion within one turn.
 *
 * Values start at 0 when the clock starts (the first `start()`), so they stay small integers:
 * `seconds` for 68 years, `ms` wraps (int32) after 24.8 days, so compare `ms` values by their
 * difference `(a - b) | 0`.
 */

/** How often the timer driver refreshes the clock. */
export const CLOCK_RESOLUTION_MS = 10;

export type ClockDriver = 'poller' | 'timer';

/** What the addon offers the clock (native-bindings/tuntap.cc bindClock, refreshClock). */
export interface NativeClock {
  bindClock(words: Int32Array, elapsedMs: number): void;
  refreshClock(): void;
}

export class CoarseClock {
  /** [0]: whole milliseconds since the start, as an int32; [1]: whole seconds. Its own ArrayBuffer (V8 never moves it). */
  private readonly words = new Int32Array(new ArrayBuffer(8));
  private origin = -1;
  private timer: ReturnType<typeof setInterval> | undefined;
  private native: NativeClock | undefined;

  /** Whole milliseconds since the clock started, as an int32 (wraps after 2^31 ms). */
  get ms(): number {
    return this.words[0]!;
  }

  /** Whole seconds since the clock started. */
  get seconds(): number {
    return this.words[1]!;
  }

  /** Who keeps the time: the addon's readers, or a timer. */
  get driver(): ClockDriver {
    return this.native !== undefined ? 'poller' : 'timer';
  }

  /** Starts keeping the time (idempotent). The origin is the first start: time never goes back. */
  start(): void {
    if (this.origin < 0) this.origin = performance.now();
    if (this.native !== undefined) {
      this.native.bindClock(this.words, performance.now() - this.origin);
      return;
    }
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.refresh(), CLOCK_RESOLUTION_MS);
    this.timer.unref();
    this.refresh();
  }

  /**
   * Hands the clock to the addon's readers (io/addon.ts, once, for the process's clock): from then on
   * no timer runs, and the time continues from where it was.
   */
  useNative(native: NativeClock): void {
    if (this.native !== undefined) return;
    this.native = native;
    if (this.origin < 0) return; // bound at start()
    this.stop();
    native.bindClock(this.words, performance.now() - this.origin);
  }

  /** Brings the clock up to date now: the addon's clock_gettime (no allocation), or performance.now() for a timer clock. */
  refresh(): void {
    if (this.native !== undefined) {
      if (this.origin >= 0) this.native.refreshClock();
      return;
    }
    if (this.origin < 0) return;
    const t = performance.now() - this.origin;
    this.words[0] = t | 0;
    this.words[1] = Math.floor(t / 1000);
  }

  /** Stops the timer driver; the values stay where they are until the next `start()` or `refresh()`. The poller driver has nothing to stop. */
  stop(): void {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** The process's clock, shared by every data plane, kept by the native readers. */
export const coarseClock = new CoarseClock();
