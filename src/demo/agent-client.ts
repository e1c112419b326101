/**
 * The host's side of the demo VMs' exec agent (agent.ts): `node agent-client.js HOST PORT -- CMD...`
 * with the token in PODNET_AGENT_TOKEN. Run inside the demo's underlay namespace (nsenter --net), the
 * only place the VMs' underlay addresses are reachable from. Forwards stdin, writes the command's
 * stdout and stderr to its own and exits with the command's code (128 + n for a signal, 255 when the
 * agent cannot be reached or the command cannot start).
 */
import { connect } from 'node:net';
import { FRAME, frameReader } from './agent.js';

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13 };

function main(args: string[]): void {
  const sep = args.indexOf('--');
  const [host, port] = args;
  const argv = sep >= 0 ? args.slice(sep + 1) : [];
  if (!host || !port || argv.length === 0) {
    process.stderr.write('usage: agent-client HOST PORT -- CMD [ARGS...]\n');
    process.exit(2);
  }
  let exitCode = 255;
  const sock = connect({ host, port: Number(port), allowHalfOpen: true });
  sock.on('connect', () => {
    sock.write(JSON.stringify({ token: process.env.PODNET_AGENT_TOKEN ?? '', argv }) + '\n');
    process.stdin.pipe(sock);
    process.stdin.on('error', () => sock.end());
  });
  sock.on(
    'data',
    frameReader((type, payload) => {
      if (type === FRAME.stdout) process.stdout.write(payload);
      else if (type === FRAME.stderr) process.stderr.write(payload);
      else if (type === FRAME.exit) {
        const r = JSON.parse(payload.toString()) as { code: number | null; signal: string | null };
        exitCode = r.code ?? 128 + (SIGNALS[r.signal ?? ''] ?? 1);
      } else if (type === FRAME.error) {
        process.stderr.write(payload.toString() + '\n');
        exitCode = 255;
      }
    }),
  );
  sock.on('error', (e) => {
    process.stderr.write(`podnet demo exec: cannot reach the VM's agent at ${host}:${port}: ${e.message}\n`);
  });
  sock.on('close', () => {
    process.stdin.destroy();
    // Exit once our own output has drained (a pipe may be slower than the VM).
    const finish = () => process.exit(exitCode);
    if (process.stdout.writableNeedDrain) process.stdout.once('drain', finish);
    else finish();
  });
}

main(process.argv.slice(2));
