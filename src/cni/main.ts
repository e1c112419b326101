#!/usr/bin/env node
import { runPlugin } from './plugin.js';

/** podnet-cni: the CNI plugin executable. Network config on stdin, CNI_* in the environment. */
async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const out = await runPlugin(process.env, await readStdin());
process.stdout.write(out.stdout, () => process.exit(out.exitCode));
