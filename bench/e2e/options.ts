/** Command-line options of `npm run bench` (dist/bench/e2e.js). */
import { parseArgs } from 'node:util';

export interface Options {
  /** CI smoke run: short durations, one round; checks that every scenario runs, the numbers mean little. */
  quick: boolean;
  /** Rounds per scenario; each round runs podnet and kernel once (the order flips every round). */
  rounds: number;
  /** Seconds per iperf3 run (TCP, UDP) and per connection-rate run. */
  duration: number;
  /** Echo requests per ping run (sent every 10 ms). */
  pings: number;
  /** Seconds of untimed TCP traffic on every path before the first measurement (JIT, ARP, MAC learning). */
  warmup: number;
  /** Concurrent connection loops of the short-connection client. */
  crrConcurrency: number;
  /** Only these scenario ids (repeatable --scenario); empty means all. */
  scenarios: string[];
  /** Keep the topology's working directory (daemon logs) after teardown. */
  keep: boolean;
  /** Where the JSON goes (default bench/results/e2e.json). */
  out: string | undefined;
  /** Merged into every podnet daemon's config (top-level keys), for an A/B run of one setting. */
  podnetConfig: Record<string, unknown>;
  /** Arguments for node itself when it starts each podnet daemon (the bench's --node-args). */
  nodeArgs: string[];
  /** The podnet pods' eth0: TAP (the default, as `podnet pod add`) or TUN (`--device tun`). */
  podDevice: 'tap' | 'tun';
  list: boolean;
}

export const USAGE = [
  'usage: node dist/bench/e2e.js [options]          (npm run bench -- [options]; needs root)',
  '',
  'Builds a podnet cluster (h1, h2) and a kernel/flannel cluster (k1, k2) side by side on one underlay and',
  'measures both with iperf3 and ping, alternating podnet and kernel round by round.',
  '',
  '  --quick              CI smoke run: 2 s runs, 1 round, 50 pings, 1 s warm-up',
  '  --rounds N           rounds per scenario (default 3; medians are reported)',
  '  --duration S         seconds per TCP/UDP/connection-rate run (default 10)',
  '  --pings N            echo requests per ping run, 10 ms apart (default 500)',
  '  --warmup S           seconds of untimed TCP per path before measuring (default 2)',
  '  --concurrency N      concurrent loops of the short-connection client (default 16)',
  '  --scenario ID        run only this scenario (repeatable; --list shows the ids)',
  '  --out FILE           JSON output (default bench/results/e2e.json)',
  '  --keep               keep the working directory (daemon logs) after teardown',
  '  --podnet-config JSON merged into both podnet daemons\' configs (top-level keys), for an A/B run of one',
  '                       setting, e.g. \'{"vxlan":{"remoteChecksumOffload":false}}\'; the kernel side is unchanged',
  '  --node-args ARGS     space-separated arguments for node when it starts each podnet daemon, for an A/B',
  '                       run of a V8 setting, e.g. --node-args=\'--interrupt-budget=67584\' (with =); the kernel side is unchanged',
  '  --pod-device KIND    tap (default) or tun: the device every podnet pod gets (podnet pod add --device);',
  '                       the kernel side\'s pods stay veth',
  '  --list               list the scenarios and exit',
  '',
].join('\n');

export function positive(name: string, text: string | undefined, fallback: number, integer: boolean): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) throw new Error(`${name} must be a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(text)}`);
  return n;
}

export function parseOptions(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      duration: { type: 'string' },
      pings: { type: 'string' },
      warmup: { type: 'string' },
      concurrency: { type: 'string' },
      scenario: { type: 'string', multiple: true, default: [] },
      out: { type: 'string' },
      keep: { type: 'boolean', default: false },
      'podnet-config': { type: 'string' },
      'node-args': { type: 'string' },
      'pod-device': { type: 'string' },
      list: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return 'help';
  const quick = !!values.quick;
  return {
    quick,
    rounds: positive('--rounds', values.rounds, quick ? 1 : 3, true),
    duration: positive('--duration', values.duration, quick ? 2 : 10, true),
    pings: positive('--pings', values.pings, quick ? 50 : 500, true),
    warmup: positive('--warmup', values.warmup, quick ? 1 : 2, true),
    crrConcurrency: positive('--concurrency', values.concurrency, 16, true),
    scenarios: values.scenario ?? [],
    keep: !!values.keep,
    out: values.out,
    podnetConfig: podnetConfig(values['podnet-config']),
    nodeArgs: nodeArgs(values['node-args']),
    podDevice: podDevice(values['pod-device']),
    list: !!values.list,
  };
}

function podDevice(text: string | undefined): 'tap' | 'tun' {
  if (text === undefined || text === 'tap' || text === 'tun') return text ?? 'tap';
  throw new Error(`--pod-device must be tap or tun, got ${JSON.stringify(text)}`);
}

export function nodeArgs(text: string | undefined): string[] {
  if (text === undefined) return [];
  const args = text.split(/\s+/).filter((a) => a !== '');
  const bad = args.find((a) => !a.startsWith('--'));
  if (bad !== undefined) throw new Error(`--node-args: ${JSON.stringify(bad)} is not a node option (each must start with --), in ${JSON.stringify(text)}`);
  return args;
}

export function podnetConfig(text: string | undefined): Record<string, unknown> {
  if (text === undefined) return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new Error(`--podnet-config must be JSON: ${(err as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('--podnet-config must be a JSON object, such as {"vxlan":{"remoteChecksumOffload":false}}');
  return v as Record<string, unknown>;
}
