/**
 * The exec agent of `podnet demo up --vms N`: a small TCP service every demo VM starts on its underlay
 * address, through which `podnet demo exec vmN -- CMD...` runs commands in the VM (as `kind` users exec
 * into nodes). Node built-ins only, so it starts fast under software emulation.
 *
 * Why a TCP service on the underlay and not a virtio-serial channel or qemu-guest-agent: a QEMU
 * character device serves one client at a time, so parallel execs (a ping matrix, a server left running
 * while a client connects) would have to be multiplexed by a broker process on the host; a TCP listener
 * takes any number of connections, and the host reaches it from the demo's underlay namespace. It
 * accepts connections only from one source address (the underlay namespace's, which no pod or other VM
 * uses: pods reaching a node appear as pod or node addresses) and only with the demo's token.
 *
 * Protocol, one command per connection:
 *   client -> agent: one JSON line {"token", "argv": [...], "env"?: {...}}, then the command's stdin
 *                    until the client half-closes.
 *   agent -> client: frames [type u8][length u32 BE][payload]: 1 stdout, 2 stderr, 3 exit
 *                    (JSON {"code", "signal"}), 4 error (text: the command could not start).
 * If the client goes away first, the command is killed.
 */
import { createServer, type Socket } from 'node:net';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeSync } from 'node:fs';
import { timingSafeEqual } from 'node:crypto';

export const FRAME = { stdout: 1, stderr: 2, exit: 3, error: 4 } as const;

export function frame(type: number, payload: Buffer | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const head = Buffer.alloc(5);
  head.writeUInt8(type, 0);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

/** Splits a byte stream into frames; calls `onFrame` for each whole one. */
export function frameReader(onFrame: (type: number, payload: Buffer) => void): (chunk: Buffer) => void {
  let pending: Buffer = Buffer.alloc(0);
  return (chunk) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= 5) {
      const len = pending.readUInt32BE(1);
      if (pending.length < 5 + len) break;
      onFrame(pending.readUInt8(0), pending.subarray(5, 5 + len));
      pending = pending.subarray(5 + len);
    }
  };
}

function serve(sock: Socket, token: Buffer, allow: string): void {
  const peer = (sock.remoteAddress ?? '').replace(/^::ffff:/, '');
  if (peer !== allow) {
    sock.destroy();
    return;
  }
  let head = Buffer.alloc(0);
  const onData = (d: Buffer) => {
    head = Buffer.concat([head, d]);
    const nl = head.indexOf(10);
    if (nl < 0) {
      if (head.length > 1 << 20) sock.destroy();
      return;
    }
    sock.off('data', onData);
    const rest = head.subarray(nl + 1);
    let req: { token?: string; argv?: string[]; env?: Record<string, string> };
    try {
      req = JSON.parse(head.subarray(0, nl).toString()) as typeof req;
    } catch {
      sock.end(frame(FRAME.error, 'agent: the request is not JSON'));
      return;
    }
    const given = Buffer.from(String(req.token ?? ''));
    if (given.length !== token.length || !timingSafeEqual(given, token)) {
      sock.end(frame(FRAME.error, 'agent: wrong token'));
      return;
    }
    if (!Array.isArray(req.argv) || req.argv.length === 0 || !req.argv.every((a) => typeof a === 'string')) {
      sock.end(frame(FRAME.error, 'agent: argv must be a non-empty list of strings'));
      return;
    }
    run(sock, req.argv, req.env ?? {}, rest);
  };
  sock.on('data', onData);
  sock.on('error', () => undefined);
}

/** Where commands run: the agent's home (/root in a demo VM), or / when it has none. */
function commandDir(): string {
  const home = process.env.HOME;
  return home !== undefined && home !== '' && existsSync(home) ? home : '/';
}

function run(sock: Socket, argv: string[], env: Record<string, string>, stdinStart: Buffer): void {
  const child = spawn(argv[0]!, argv.slice(1), { cwd: commandDir(), env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let done = false;
  child.stdout.on('data', (d: Buffer) => sock.write(frame(FRAME.stdout, d)));
  child.stderr.on('data', (d: Buffer) => sock.write(frame(FRAME.stderr, d)));
  child.stdin.on('error', () => undefined);
  if (stdinStart.length) child.stdin.write(stdinStart);
  sock.pipe(child.stdin);
  child.on('error', (e) => {
    done = true;
    sock.end(frame(FRAME.error, `${argv[0]}: ${e.message}`));
  });
  // 'close': the command has exited and its stdout and stderr are drained.
  child.on('close', (code, signal) => {
    if (done) return;
    done = true;
    sock.end(frame(FRAME.exit, JSON.stringify({ code, signal })));
  });
  sock.on('close', () => {
    if (!done) child.kill('SIGKILL');
  });
}

function main(args: string[]): void {
  const opt = (name: string): string => {
    const i = args.indexOf(name);
    if (i < 0 || !args[i + 1]) throw new Error(`agent: ${name} is required`);
    return args[i + 1]!;
  };
  const [host, port] = opt('--listen').split(':');
  const allow = opt('--allow');
  const token = Buffer.from(readFileSync(opt('--token-file'), 'utf8').trim());
  // An empty token would match a request without one: refuse to serve at all.
  if (token.length < 16) throw new Error(`agent: the token in ${opt('--token-file')} is missing or shorter than 16 characters`);
  const server = createServer({ allowHalfOpen: true }, (s) => serve(s, token, allow));
  server.listen(Number(port), host, () => {
    const msg = `podnet-vm: agent listening on ${host}:${port}\n`;
    process.stdout.write(msg);
    try {
      const fd = openSync('/dev/console', 'w');
      writeSync(fd, msg);
      closeSync(fd);
    } catch {
      /* no console */
    }
  });
}

if (process.argv[1] && /agent\.js$/.test(process.argv[1])) main(process.argv.slice(2));
