import { listNetns } from '../../src/netns/run.js';
import { DEMO_PREFIX } from '../../src/demo/demo.js';
import { readVmState, VM_UNDERLAY_NS } from '../../src/demo/vm.js';

/**
 * A demo someone runs on this machine (`podnet demo up`, with or without `--vms`), or undefined.
 * The demo is one per machine under fixed names, and `podnet demo down` removes whichever is up, so a
 * test of the demo commands would take a user's running demo down with it: such a test skips instead,
 * saying so (a fresh machine, as in CI, has none, so there it always runs).
 */
export async function runningDemo(): Promise<string | undefined> {
  const netns = await listNetns();
  if (netns.some((n) => n.startsWith(DEMO_PREFIX))) return `a namespace demo is up (${DEMO_PREFIX}* namespaces)`;
  if (readVmState() !== undefined || netns.includes(VM_UNDERLAY_NS)) return `a VM demo is up (namespace ${VM_UNDERLAY_NS})`;
  return undefined;
}

/** Skips the suite of `ctx` when a demo is up, with a line saying why; returns whether it skipped. */
export async function skipIfDemoRunning(ctx: Mocha.Context): Promise<void> {
  const running = await runningDemo();
  if (running === undefined) return;
  process.stdout.write(`      skipped: ${running}; this test would take it down (podnet demo down, then run it again)\n`);
  ctx.skip();
}
