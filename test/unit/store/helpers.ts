/** Small helpers shared by the store tests. */
import { pino, type Logger } from 'pino';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Waits until `cond` holds, checking every 20 ms, and fails naming `what` after `deadlineMs`. It only
 * looks at what the test has collected (events, outputs); the deadline is generous on purpose.
 */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, deadlineMs: number): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > until) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** A pino logger that keeps its records in memory. */
export function memoryLogger(level: 'debug' | 'info' | 'warn' = 'warn'): { log: Logger; records: Array<Record<string, unknown>> } {
  const records: Array<Record<string, unknown>> = [];
  const log = pino(
    { level },
    {
      write(line: string) {
        records.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  );
  return { log, records };
}

export const silentLogger = (): Logger => pino({ level: 'silent' });
