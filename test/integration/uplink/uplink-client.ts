// An external client for uplink.test.ts, run in the external host's namespace:
//   udp HOST PORT MSG       send one datagram, print the first answer: RESULT {"reply", "from"}
//   udp-send HOST PORT MSG  send one datagram and exit
//   tcp HOST PORT           connect; RESULT {"connected": true} or {"error": "<code>"}
// The deadline exists only so a broken build cannot hang the suite; no assertion depends on it.
import dgram from 'node:dgram';
import net from 'node:net';

const DEADLINE_MS = 20_000;
const [cmd, host, portArg, msg] = process.argv.slice(2);
const port = Number(portArg);

function result(v: unknown, code = 0): never {
  process.stdout.write(`RESULT ${JSON.stringify(v)}\n`);
  process.exit(code);
}

setTimeout(() => result({ error: 'deadline' }, 2), DEADLINE_MS).unref();

if (cmd === 'udp' || cmd === 'udp-send') {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, rinfo) => result({ reply: m.toString(), from: `${rinfo.address}:${rinfo.port}` }));
  s.on('error', (e: NodeJS.ErrnoException) => result({ error: e.code ?? e.message }, 1));
  s.send(msg ?? '', port, host!, (err) => {
    if (err) result({ error: (err as NodeJS.ErrnoException).code ?? err.message }, 1);
    if (cmd === 'udp-send') result({ sent: true });
  });
} else if (cmd === 'tcp') {
  const c = net.connect({ host: host!, port });
  c.on('connect', () => {
    // RST rather than FIN: nobody will answer a FIN, and its retransmissions would keep x busy with
    // the address (and its neighbour entry alive) long after the test is done with it.
    c.resetAndDestroy();
    result({ connected: true });
  });
  c.on('error', (e: NodeJS.ErrnoException) => result({ error: e.code ?? e.message }, 0));
} else {
  result({ error: `unknown command ${cmd}` }, 1);
}
