/**
 * A coarse monotonic clock for the data path, read without allocating.
 *
 * `performance.now()` and `Date.now()` return a double that V8 boxes into a new 16-byte HeapNumber
 * on every call (and a double taken from an object field is boxed again whenever it is passed to a
 * function that is not inlined). The data path reads time once per batch and hands it down to
 * conntrack, the MAC table and the service table, so it wants a small integer instead.
 *
 * Like the kernel's jiffies, this clock is a pair of integers refreshed by a timer every
 * `CLOCK_RESOLUTION_MS` (an unref'd interval: it never keeps the process alive); reading it is two
 * field loads. It advances between turns of the event loop, not during one synchronous run, which
 * is what the data path needs: a device batch runs to completion within one turn, and the readers
 * return to the event loop after at most a few batches. `refresh()` brings it up to date at once
 * (the timer's callback; also for callers that need the time right now, e.g. before listing).
 *
 * Values start at 0 when the clock starts (the first `start()`), so they stay small integers:
 * `seconds` for 68 years, `ms` wraps (int32) after 24.8 days, so compare `ms` values by their
 * difference `(a - b) | 0`.
 */

/** How often the timer refreshes the clock. */
export const CLOCK_RESOLUTION_MS = 10;

export class CoarseClock {
  /** Whole milliseconds since the clock started, as an int32 (wraps after 2^31 ms). */
  ms = 0;
  /** Whole seconds since the clock started. */
  seconds = 0;
  private origin = -1;
  private timer: ReturnType<typeof setInterval> | undefined;

  /** Starts the refresh timer (idempotent). The origin is the first start: time never goes back. */
  start(): void {
    if (this.timer !== undefined) return;
    if (this.origin < 0) this.origin = performance.now();
    this.timer = setInterval(() => this.refresh(), CLOCK_RESOLUTION_MS);
    this.timer.unref();
    this.refresh();
  }

  /** Reads the real clock now (allocates a double: for the timer and the control plane, not per packet). */
  refresh(): void {
    if (this.origin < 0) return;
    const t = performance.now() - this.origin;
    this.ms = t | 0;
    this.seconds = Math.floor(t / 1000);
  }

  /** Stops the timer; the values stay where they are until the next `start()` or `refresh()`. */
  stop(): void {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** The process's clock, shared by every data plane. */
export const coarseClock = new CoarseClock();
