import { join } from 'node:path';
import { listNetns } from '../../src/netns/run.js';
import { execCapture, REPO_ROOT } from '../../src/topology/topology.js';
import { DEMO_PREFIX } from '../../src/demo/demo.js';
import { readVmState, VM_UNDERLAY_NS } from '../../src/demo/vm.js';

const PODNET = join(REPO_ROOT, 'bin/podnet');

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

/**
 * The hooks of a suite that brings up its own demo: before anything else the suite skips (saying why)
 * when a demo is already up, and after it `podnet demo down` runs only if the suite did not skip, so a
 * user's demo is never taken down. Call at the top of the `describe`, before the suite's own hooks.
 */
export function ownDemoOnly(): void {
  let ours = false;
  before(async function () {
    const running = await runningDemo();
    if (running !== undefined) {
      process.stdout.write(`      skipped: ${running}; this test would take it down (podnet demo down, then run it again)\n`);
      this.skip();
    }
    ours = true;
  });
  after(async () => {
    if (ours) await execCapture(PODNET, ['demo', 'down']);
  });
}
