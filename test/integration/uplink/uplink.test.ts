// Integration tests for src/uplink: the node's uplink for NodePort / LoadBalancer / external IPs and
// masqueraded egress replies.
//
// Needs root. A Topology with a node `n1` (198.18.0.11) and an external host `x` (198.18.0.99) on the
// underlay bridge. The Uplink runs in a child process inside n1's namespace (uplink-child.ts, entered
// with nsenter) that answers a NodePort / LoadBalancer "Service" with hand-built packets sent through
// `Uplink.send()`; the client runs in x (uplink-client.ts), and tcpdump in x shows what the node's
// kernel sent. Absence of a kernel answer is never judged by waiting: after the probes were seen by
// the child, a marker the kernel must answer (UDP to a closed port outside the ranges) is sent, and
// once its ICMP error shows up in x's capture every earlier answer would have too.
// Everything is removed in after(), whatever happened.

import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { sleep, Topology, type Host } from '../../../src/topology/topology.js';
import { captureFilter } from '../../../src/uplink/filter.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const CHILD = join(HERE, 'uplink-child.js');
const CLIENT = join(HERE, 'uplink-client.js');
const LB_IP = '198.18.0.200';
const SAFETY_MS = 60_000;

/** Polls `cond` until it holds; the deadline only keeps a broken build from hanging the suite. */
async function until<T>(cond: () => T | undefined | false | Promise<T | undefined | false>, what: string | (() => string)): Promise<T> {
  const deadline = Date.now() + SAFETY_MS;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${typeof what === 'string' ? what : what()}`);
    await sleep(50);
  }
}

/** The uplink child in a node namespace: JSON commands in, REPLY/EVENT lines out. */
class UplinkChild {
  readonly events: any[] = [];
  private readonly pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private stderr = '';
  private buf = '';

  private constructor(readonly proc: ChildProcess) {
    proc.stdout!.on('data', (d: Buffer) => {
      this.buf += d.toString();
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        if (line.startsWith('EVENT ')) this.events.push(JSON.parse(line.slice(6)));
        else if (line.startsWith('REPLY ')) {
          const r = JSON.parse(line.slice(6));
          const p = this.pending.get(r.id);
          this.pending.delete(r.id);
          if (r.ok) p?.resolve(r.value);
          else p?.reject(Object.assign(new Error(r.error), { code: r.code }));
        }
      }
    });
    proc.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    proc.on('exit', () => {
      for (const p of this.pending.values()) p.reject(new Error(`uplink child exited: ${this.stderr.slice(-2000)}`));
      this.pending.clear();
    });
  }

  static async start(netns: string): Promise<UplinkChild> {
    const proc = spawn('nsenter', [`--net=/run/netns/${netns}`, '--', process.execPath, CHILD], { stdio: ['pipe', 'pipe', 'pipe'] });
    const c = new UplinkChild(proc);
    await until(() => c.events.some((e) => e.kind === 'ready') || (proc.exitCode !== null && Promise.reject(new Error(c.stderr))), 'uplink child start');
    return c;
  }

  call(cmd: string, extra: Record<string, unknown> = {}): Promise<any> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.proc.stdin!.write(JSON.stringify({ id, cmd, ...extra }) + '\n');
    });
  }

  /** Waits for a captured-packet event matching `pred` at index >= `from`. */
  waitEvent(pred: (e: any) => boolean, what: string, from = 0): Promise<any> {
    return until(() => this.events.slice(from).find(pred), () => `${what} (events: ${JSON.stringify(this.events.slice(-5))})`);
  }

  kill(sig: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return Promise.resolve();
    const done = new Promise<void>((r) => this.proc.once('exit', () => r()));
    this.proc.kill(sig);
    return done;
  }
}

/** tcpdump on eth0 of a namespace, line-buffered; `started` resolves once it is capturing. */
function tcpdump(netns: string, filter: string) {
  const proc = spawn('ip', ['netns', 'exec', netns, 'tcpdump', '-i', 'eth0', '-n', '-e', '-l', '--immediate-mode', filter], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let err = '';
  let partial = '';
  proc.stdout.on('data', (d: Buffer) => {
    partial += d.toString();
    const parts = partial.split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
  });
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const started = until(() => err.includes('listening on') || (proc.exitCode !== null && Promise.reject(new Error(`tcpdump: ${err}`))), 'tcpdump to start');
  return {
    lines,
    started,
    waitLine: (pred: (l: string) => boolean, what: string) => until(() => lines.find(pred), () => `${what} (tcpdump saw: ${lines.slice(-10).join(' | ')})`),
    kill: () => proc.kill('SIGKILL'),
  };
}

describe('uplink: NodePort / LoadBalancer capture, raw sends, ARP, iptables', function () {
  this.timeout(120_000);
  const t = new Topology();
  let n1: Host;
  let x: Host;
  let nodeMac = '';
  let rulesBefore = '';
  let child: UplinkChild | undefined;
  const others: Array<{ kill: () => unknown }> = [];

  const rawRules = async () => {
    const r = await t.exec(n1.netns, 'iptables-save', ['-t', 'raw']);
    expect(r.code, r.stderr).to.equal(0);
    return r.stdout
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith('#'))
      .map((l) => l.replace(/\[\d+:\d+\]/, '[0:0]'))
      .join('\n');
  };
  const ruleLines = async () => (await t.exec(n1.netns, 'iptables', ['-w', '-t', 'raw', '-S'])).stdout.split('\n');
  const client = async (...args: string[]) => {
    const r = await t.exec(x.netns, process.execPath, [CLIENT, ...args]);
    const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
    if (!line) throw new Error(`client ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(line.slice(7));
  };
  /** Counters of the rule in `chain` that mentions `needle` (`iptables -L -v -x`). */
  const ruleHits = async (chain: string, needle: string) => {
    const r = await t.exec(n1.netns, 'iptables', ['-w', '-t', 'raw', '-L', chain, '-v', '-n', '-x']);
    const line = r.stdout.split('\n').find((l) => l.includes(needle));
    expect(line, `${chain} rule for ${needle} in:\n${r.stdout}`).to.be.a('string');
    return Number(line!.trim().split(/\s+/)[0]);
  };
  const openOpts = (extra: Record<string, unknown> = {}) => ({ opts: { interface: 'eth0', nodeIp: n1.underlayIp, ...extra } });

  before(async () => {
    await t.createUnderlay();
    n1 = await t.addHost({ name: 'n1' });
    x = await t.addExternal('x', '198.18.0.99');
    const link = JSON.parse((await t.exec(n1.netns, 'ip', ['-j', 'link', 'show', 'dev', 'eth0'])).stdout);
    nodeMac = link[0].address;
    // An operator's rule already in raw PREROUTING: ours must go in front of it and leave it alone.
    const r = await t.exec(n1.netns, 'iptables', ['-w', '-t', 'raw', '-A', 'PREROUTING', '-p', 'udp', '--dport', '7', '-j', 'ACCEPT']);
    expect(r.code, r.stderr).to.equal(0);
    rulesBefore = await rawRules();
  });

  after(async () => {
    try {
      for (const o of others) o.kill();
      await child?.kill();
    } finally {
      await t.destroy();
    }
  });

  it('captures exactly the NodePort, masquerade, ICMP and announced-IP traffic (filter text)', () => {
    const f = captureFilter({
      mac: '02:00:00:00:00:01',
      nodeIp: '198.18.0.11',
      nodePortRange: [30000, 32767],
      masqueradePortRange: [61001, 65535],
      announced: [],
    });
    expect(f).to.equal(
      'not ether src 02:00:00:00:00:01 and ((ip and ether dst 02:00:00:00:00:01 and dst host 198.18.0.11 and ' +
        '(((tcp or udp) and (dst portrange 30000-32767 or dst portrange 61001-65535)) or icmp)))',
    );
    const g = captureFilter({ mac: '02:00:00:00:00:01', nodeIp: '198.18.0.11', nodePortRange: [1, 2], masqueradePortRange: [3, 4], announced: ['10.0.0.1', '10.0.0.2'] });
    expect(g).to.include('(ip and ether dst 02:00:00:00:00:01 and (dst host 10.0.0.1 or dst host 10.0.0.2))');
    expect(g).to.include('(arp and arp[6:2] = 1 and (arp dst host 10.0.0.1 or arp dst host 10.0.0.2))');
  });

  it('a failed open (no such interface) names the interface and installs nothing', async () => {
    const c = await UplinkChild.start(n1.netns);
    others.push(c);
    try {
      const err = await c.call('open', openOpts({ interface: 'nosuch0' })).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err, 'open should fail').to.be.instanceOf(Error);
      expect(err!.message).to.include('nosuch0');
      expect(await rawRules()).to.equal(rulesBefore);
    } finally {
      await c.kill();
    }
  });

  it('an iptables failure half-way removes what was already added, and the error names the rule', async () => {
    const log = join(t.dir, 'iptables-calls.log');
    const wrapper = join(t.dir, 'iptables-failing');
    writeFileSync(
      wrapper,
      `#!/bin/sh\necho "$*" >> ${log}\ncase "$*" in *--notrack*) echo "injected failure" >&2; exit 1;; esac\nexec iptables "$@"\n`,
    );
    chmodSync(wrapper, 0o755);
    const c = await UplinkChild.start(n1.netns);
    others.push(c);
    try {
      const err = await c.call('open', openOpts({ iptablesCommand: wrapper })).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err, 'open should fail').to.be.instanceOf(Error);
      expect(err!.message).to.include('eth0').and.to.include('--notrack').and.to.include('injected failure');
      const calls = readFileSync(log, 'utf8');
      // It did get half-way: the inbound chain, its rules and its jump were in place before the failure.
      expect(calls).to.include('-N PODNET-UPLINK\n');
      expect(calls).to.include('-I PREROUTING 1 -i eth0 -j PODNET-UPLINK\n');
      expect(calls).to.include('-D PREROUTING -i eth0 -j PODNET-UPLINK\n');
      expect(await rawRules()).to.equal(rulesBefore);
    } finally {
      await c.kill();
    }
  });

  it('opens on eth0 with its chains jumped to first from raw PREROUTING and OUTPUT', async () => {
    child = await UplinkChild.start(n1.netns);
    const r = await child.call('open', openOpts());
    expect(r.mac).to.equal(nodeMac);
    const lines = await ruleLines();
    const ip = n1.underlayIp;
    expect(lines.filter((l) => l.startsWith('-A PREROUTING'))[0]).to.equal('-A PREROUTING -i eth0 -j PODNET-UPLINK');
    expect(lines.filter((l) => l.startsWith('-A OUTPUT'))[0]).to.equal('-A OUTPUT -o eth0 -j PODNET-UPLINK-OUT');
    expect(lines).to.include.members([
      `-A PODNET-UPLINK -d ${ip}/32 -p tcp -m tcp --dport 30000:32767 -j DROP`,
      `-A PODNET-UPLINK -d ${ip}/32 -p udp -m udp --dport 30000:32767 -j DROP`,
      `-A PODNET-UPLINK -d ${ip}/32 -p tcp -m tcp --dport 61001:65535 -j DROP`,
      `-A PODNET-UPLINK -d ${ip}/32 -p udp -m udp --dport 61001:65535 -j DROP`,
      `-A PODNET-UPLINK-OUT -s ${ip}/32 -p udp -m udp --sport 30000:32767 -j CT --notrack`,
      '-A PREROUTING -p udp -m udp --dport 7 -j ACCEPT',
    ]);
    expect(lines.some((l) => l.includes('icmp')), 'no rule touches ICMP').to.equal(false);
  });

  it('a UDP datagram to a NodePort reaches onPacket and the hand-built reply sent with send() reaches the client', async () => {
    const from = child!.events.length;
    const r = await client('udp', n1.underlayIp, '30080', 'hello');
    expect(r).to.deep.equal({ reply: 'pong:hello', from: `${n1.underlayIp}:30080` });
    const ev = await child!.waitEvent((e) => e.proto === 'udp' && e.dport === 30080, 'the datagram in onPacket', from);
    expect(ev).to.include({ src: '198.18.0.99', dst: n1.underlayIp, payload: 'hello' });
    expect(ev.ipLen).to.be.at.least(20 + 8 + 5);
    const st = await child!.call('stats');
    expect(st.sent).to.be.at.least(1);
    expect(st.sendErrors).to.equal(0);
    // podnet's own reply went out untracked (CT --notrack in raw OUTPUT).
    expect(await ruleHits('PODNET-UPLINK-OUT', 'udp spts:30000:32767')).to.be.greaterThan(0);
  });

  it('a TCP SYN to a NodePort reaches onPacket and the hand-built SYN-ACK completes the client\'s connect', async () => {
    const from = child!.events.length;
    expect(await client('tcp', n1.underlayIp, '30080')).to.deep.equal({ connected: true });
    const syn = await child!.waitEvent((e) => e.proto === 'tcp' && e.dport === 30080 && e.flags === 2, 'the SYN in onPacket', from);
    expect(syn.src).to.equal('198.18.0.99');
    // The client's ACK of our SYN-ACK came to podnet too, not to the host kernel.
    await child!.waitEvent((e) => e.proto === 'tcp' && e.dport === 30080 && (e.flags & 16) !== 0 && e.sport === syn.sport, 'the client\'s ACK', from);
  });

  it('the host kernel answers neither NodePort nor masquerade-range traffic (no RST, no port unreachable), but still answers ICMP', async () => {
    const dump = tcpdump(x.netns, `src host ${n1.underlayIp} and (icmp or tcp)`);
    others.push(dump);
    await dump.started;
    const from = child!.events.length;
    const nodeIp = n1.underlayIp;
    // Probes to ports nobody in podnet answers: a kernel that saw them would RST / send port unreachable.
    const syn = spawn('ip', ['netns', 'exec', x.netns, process.execPath, CLIENT, 'tcp', nodeIp, '30082'], { stdio: 'ignore' });
    others.push(syn);
    expect(await client('udp-send', nodeIp, '30081', 'probe')).to.deep.equal({ sent: true });
    expect(await client('udp-send', nodeIp, '61005', 'masq-reply')).to.deep.equal({ sent: true });
    await child!.waitEvent((e) => e.proto === 'tcp' && e.dport === 30082, 'the SYN probe in onPacket', from);
    await child!.waitEvent((e) => e.proto === 'udp' && e.dport === 30081, 'the NodePort probe in onPacket', from);
    await child!.waitEvent((e) => e.proto === 'udp' && e.dport === 61005, 'the masquerade-range probe in onPacket', from);
    // ICMP to the node is passed up to podnet and still answered by the kernel.
    const ping = await t.exec(x.netns, 'ping', ['-c', '1', '-W', '5', nodeIp]);
    expect(ping.code, ping.stdout + ping.stderr).to.equal(0);
    await child!.waitEvent((e) => e.proto === 'icmp' && e.type === 8, 'the echo request in onPacket', from);
    // Marker: a closed port outside both ranges, which the kernel must answer.
    expect(await client('udp-send', nodeIp, '9', 'marker')).to.deep.equal({ sent: true });
    await dump.waitLine((l) => l.includes('udp port 9 unreachable'), 'the kernel\'s answer to the marker');
    syn.kill('SIGKILL');
    const seen = dump.lines.join('\n');
    expect(seen).to.not.match(/Flags \[R/);
    expect(seen).to.not.include('port 30081 unreachable');
    expect(seen).to.not.include('port 61005 unreachable');
    expect(seen).to.include('ICMP echo reply');
    dump.kill();
    expect(await ruleHits('PODNET-UPLINK', 'tcp dpts:30000:32767')).to.be.greaterThan(0);
  });

  it('announces an IP: gratuitous ARP, ARP replies with the node\'s MAC, traffic to it captured and answered from it', async () => {
    const dump = tcpdump(x.netns, 'arp');
    others.push(dump);
    await dump.started;
    expect(await child!.call('announce', { ips: [LB_IP, LB_IP] })).to.deep.equal([LB_IP]);
    await dump.waitLine((l) => l.includes(nodeMac) && l.includes(`Request who-has ${LB_IP} tell ${LB_IP}`), 'the gratuitous ARP request');
    await dump.waitLine((l) => l.includes(nodeMac) && l.includes(`Reply ${LB_IP} is-at ${nodeMac}`), 'the gratuitous ARP reply');
    // x learns the address by asking: the answer comes from the uplink, with n1's MAC.
    await t.exec(x.netns, 'ip', ['neigh', 'flush', 'dev', 'eth0']);
    const from = child!.events.length;
    expect(await client('udp', LB_IP, '80', 'to-lb')).to.deep.equal({ reply: 'pong:to-lb', from: `${LB_IP}:80` });
    const neigh = (await t.exec(x.netns, 'ip', ['neigh', 'show', LB_IP])).stdout;
    expect(neigh).to.include(nodeMac);
    await child!.waitEvent((e) => e.proto === 'udp' && e.dst === LB_IP && e.dport === 80, 'the datagram to the LB IP', from);
    expect(await client('tcp', LB_IP, '80')).to.deep.equal({ connected: true });
    const st = await child!.call('stats');
    expect(st.arpReplies).to.be.at.least(1);
    expect(st.gratuitousArps).to.equal(2);
    // The kernel never saw it (dropped in raw PREROUTING, so neither answered nor forwarded), and
    // the answers from the LB IP went out untracked.
    expect(await ruleHits('PODNET-UPLINK', LB_IP)).to.be.greaterThan(0);
    expect(await ruleHits('PODNET-UPLINK-OUT', LB_IP)).to.be.greaterThan(0);
    dump.kill();
  });

  it('withdrawing the IP removes its rules and ARP for it goes unanswered', async () => {
    expect(await child!.call('announce', { ips: [] })).to.deep.equal([]);
    expect((await ruleLines()).filter((l) => l.includes(LB_IP))).to.deep.equal([]);
    const dump = tcpdump(x.netns, 'arp');
    others.push(dump);
    await dump.started;
    await t.exec(x.netns, 'ip', ['neigh', 'flush', 'dev', 'eth0']);
    expect(await client('udp-send', LB_IP, '80', 'nobody')).to.deep.equal({ sent: true });
    // x's kernel gives up resolving after its solicitations went unanswered.
    let neigh = '';
    await until(
      async () => (neigh = (await t.exec(x.netns, 'ip', ['neigh', 'show', LB_IP])).stdout).includes('FAILED'),
      () => `${LB_IP} to be FAILED in x's neighbour table (last: ${JSON.stringify(neigh)}, arp seen: ${JSON.stringify(dump.lines)})`,
    );
    expect(dump.lines.some((l) => l.includes(`Request who-has ${LB_IP}`))).to.equal(true);
    expect(dump.lines.filter((l) => l.includes(`Reply ${LB_IP}`))).to.deep.equal([]);
    dump.kill();
  });

  it('send() refuses a packet that is not a complete IPv4 packet and counts it', async () => {
    expect(await child!.call('send-malformed')).to.equal(false);
    expect((await child!.call('stats')).drops.uplink_send_malformed).to.equal(1);
  });

  it('close() removes every rule it installed, and the kernel answers NodePort traffic again', async () => {
    const st = await child!.call('close');
    expect(st.captured).to.be.greaterThan(0);
    expect(await rawRules()).to.equal(rulesBefore);
    expect(await client('tcp', n1.underlayIp, '30080')).to.deep.equal({ error: 'ECONNREFUSED' });
    const dump = tcpdump(x.netns, `src host ${n1.underlayIp} and icmp`);
    others.push(dump);
    await dump.started;
    expect(await client('udp-send', n1.underlayIp, '30081', 'after-close')).to.deep.equal({ sent: true });
    await dump.waitLine((l) => l.includes('udp port 30081 unreachable'), 'the kernel\'s port unreachable');
    dump.kill();
  });

  it('rules left by a killed process are taken over by the next open and removed by its close', async () => {
    const a = await UplinkChild.start(n1.netns);
    others.push(a);
    await a.call('open', openOpts());
    await a.call('announce', { ips: [LB_IP] });
    await a.kill('SIGKILL');
    expect(await rawRules()).to.not.equal(rulesBefore);
    const b = await UplinkChild.start(n1.netns);
    others.push(b);
    try {
      await b.call('open', openOpts());
      const lines = await ruleLines();
      expect(lines.filter((l) => l === '-A PREROUTING -i eth0 -j PODNET-UPLINK')).to.have.length(1);
      expect(lines.filter((l) => l.includes(LB_IP))).to.deep.equal([]);
      await b.call('close');
      expect(await rawRules()).to.equal(rulesBefore);
    } finally {
      await b.kill();
    }
  });

  it('refuses to take over a leftover chain that rules it did not make refer to, and changes nothing', async () => {
    const ipt = async (...args: string[]) => {
      const r = await t.exec(n1.netns, 'iptables', ['-w', '-t', 'raw', ...args]);
      expect(r.code, r.stderr).to.equal(0);
    };
    await ipt('-N', 'PODNET-UPLINK-OUT');
    await ipt('-N', 'OPERATOR');
    await ipt('-A', 'OPERATOR', '-j', 'PODNET-UPLINK-OUT');
    const before = await rawRules();
    const c = await UplinkChild.start(n1.netns);
    others.push(c);
    try {
      const err = await c.call('open', openOpts()).then(
        () => undefined,
        (e: Error & { code?: string }) => e,
      );
      expect(err, 'open should fail').to.be.instanceOf(Error);
      expect(err!.message).to.include('eth0').and.to.include('-A OPERATOR -j PODNET-UPLINK-OUT');
      expect((err as { code?: string }).code).to.equal('EPRECONDITION');
      expect(await rawRules()).to.equal(before);
    } finally {
      await c.kill();
      await ipt('-F', 'OPERATOR');
      await ipt('-X', 'OPERATOR');
      await ipt('-X', 'PODNET-UPLINK-OUT');
    }
    expect(await rawRules()).to.equal(rulesBefore);
  });
});
