/**
 * Short-connection tool for the connection-rate scenario (no netperf TCP_CRR on the machine), run in
 * pod namespaces by the benchmark:
 *
 *   node dist/bench/e2e/crr.js server PORT
 *       accepts connections; answers each 64-byte request with 64 bytes, closes when the client does;
 *       on SIGTERM prints {"accepted": N} and exits.
 *   node dist/bench/e2e/crr.js client HOST PORT SECONDS CONCURRENCY
 *       CONCURRENCY loops of connect, send 64 bytes, read 64 bytes, close (the client closes first, as
 *       HTTP/1.0-style clients do) for SECONDS; prints {"perSecond","connections","errors","seconds"}.
 *
 * Each connection has a 3 s deadline; failures are counted and the first error is reported.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';

const MSG = 64;
const [cmd, ...args] = process.argv.slice(2);

function server(port: number): void {
  const answer = Buffer.alloc(MSG, 0x62);
  let accepted = 0;
  const srv = net.createServer((s) => {
    accepted++;
    s.setNoDelay(true);
    let got = 0;
    s.on('data', (d) => {
      const before = got;
      got += d.length;
      if (before < MSG && got >= MSG) s.write(answer);
    });
    s.on('error', () => undefined);
  });
  srv.listen({ port, host: '0.0.0.0', backlog: 4096 }, () => process.stderr.write('listening\n'));
  // On SIGTERM: print how many connections this endpoint accepted (the benchmark checks the balancing).
  const stop = () => {
    process.stdout.write(JSON.stringify({ accepted }) + '\n', () => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

function client(host: string, port: number, seconds: number, concurrency: number): void {
  const request = Buffer.alloc(MSG, 0x61);
  const start = performance.now();
  const deadline = start + seconds * 1000;
  let connections = 0;
  let errors = 0;
  let firstError: string | undefined;
  let running = concurrency;

  const finish = () => {
    const elapsed = (performance.now() - start) / 1000;
    process.stdout.write(JSON.stringify({ perSecond: connections / elapsed, connections, errors, seconds: elapsed, firstError }) + '\n');
  };

  const loop = (): void => {
    if (performance.now() >= deadline) {
      if (--running === 0) finish();
      return;
    }
    let settled = false;
    let got = 0;
    const s = net.connect({ host, port, noDelay: true });
    const settle = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        errors++;
        firstError ??= err.message;
      } else {
        connections++;
      }
      s.destroy();
      setImmediate(loop);
    };
    const timer = setTimeout(() => settle(new Error('no answer within 3 s')), 3000);
    s.on('connect', () => s.write(request));
    s.on('data', (d) => {
      got += d.length;
      if (got >= MSG) settle();
    });
    s.on('error', (e) => settle(e));
    s.on('close', () => settle(new Error('closed before the answer')));
  };
  for (let i = 0; i < concurrency; i++) loop();
}

if (cmd === 'server') {
  server(Number(args[0]));
} else if (cmd === 'client') {
  client(args[0]!, Number(args[1]), Number(args[2]), Number(args[3]));
} else {
  process.stderr.write('usage: crr.js server PORT | client HOST PORT SECONDS CONCURRENCY\n');
  process.exit(2);
}
