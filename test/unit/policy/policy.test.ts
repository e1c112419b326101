import { expect } from 'chai';
import { parsePolicyText, validatePolicy, type PolicyRecord } from '../../../src/policy/spec.js';
import { CompiledPolicies, Decision, Dir, explain, type PolicyPod } from '../../../src/policy/compile.js';
import { PolicyHook } from '../../../src/policy/hook.js';
import { HookPoint, HookVerdict, Ingress, PacketContext } from '../../../src/dataplane/hooks.js';
import { DropReason } from '../../../src/util/counters.js';
import { TapPort } from '../../../src/dataplane/ports.js';
import { Conntrack } from '../../../src/nat/conntrack.js';
import { Nat } from '../../../src/nat/nat.js';
import { IpProtocol, parseIpv4, parseMac } from '../../../src/packet/index.js';
import { RecordingSink, udpFrame } from '../../helpers/frames.js';
import { validateNamedPorts, validateNamespace } from '../../../src/daemon/pods.js';
import { routedDataplane } from '../../helpers/node.js';

/** The Kubernetes documentation's example (networking.k8s.io/v1 NetworkPolicy page), verbatim. */
const DOCS_EXAMPLE = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
  - Ingress
  - Egress
  ingress:
  - from:
    - ipBlock:
        cidr: 172.17.0.0/16
        except:
        - 172.17.1.0/24
    - namespaceSelector:
        matchLabels:
          project: myproject
    - podSelector:
        matchLabels:
          role: frontend
    ports:
    - protocol: TCP
      port: 6379
  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/24
    ports:
    - protocol: TCP
      port: 5978
`;

const DENY_INGRESS = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
spec:
  podSelector: {}
  policyTypes:
  - Ingress
`;

const PORT_RANGE = `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"multi-port-egress","namespace":"default"},
 "spec":{"podSelector":{"matchLabels":{"role":"db"}},"policyTypes":["Egress"],
 "egress":[{"to":[{"ipBlock":{"cidr":"10.0.0.0/24"}}],"ports":[{"protocol":"TCP","port":32000,"endPort":32768}]}]}}`;

const ip = parseIpv4;
function pod(name: string, namespace: string, labels: Record<string, string>, addr: string, extra: Partial<PolicyPod> = {}): PolicyPod {
  return { name, node: 'n1', namespace, labels, ip: ip(addr), ...extra };
}

function errorOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('did not throw');
}

describe('policy: parsing NetworkPolicy YAML and JSON', () => {
  it('reads the documentation example into a record', () => {
    const [p] = parsePolicyText(DOCS_EXAMPLE);
    expect(p!.namespace).to.equal('default');
    expect(p!.name).to.equal('test-network-policy');
    expect(p!.ingressIsolated && p!.egressIsolated).to.equal(true);
    expect(p!.ingress[0]!.peers).to.have.length(3);
    expect(p!.ingress[0]!.ports).to.deep.equal([{ protocol: 'TCP', port: 6379 }]);
    expect(p!.egress[0]!.peers![0]!.ipBlock!.cidr).to.equal('10.0.0.0/24');
  });

  it('reads JSON, several YAML documents and a List; the namespace defaults to default, the protocol to TCP', () => {
    const [r] = parsePolicyText(PORT_RANGE);
    expect(r!.egress[0]!.ports).to.deep.equal([{ protocol: 'TCP', port: 32000, endPort: 32768 }]);
    expect(parsePolicyText(DOCS_EXAMPLE + '\n---\n' + DENY_INGRESS).map((p) => p.name)).to.deep.equal(['test-network-policy', 'default-deny-ingress']);
    const list = JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [JSON.parse(PORT_RANGE)] });
    expect(parsePolicyText(list)[0]!.name).to.equal('multi-port-egress');
    const p = validatePolicy({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'x' }, spec: { podSelector: {}, ingress: [{ ports: [{ port: 80 }] }] } });
    expect(p.namespace).to.equal('default');
    expect(p.ingress[0]!.ports[0]!.protocol).to.equal('TCP');
  });

  it('defaults policyTypes as Kubernetes does: Ingress, plus Egress when there are egress rules', () => {
    const base = { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'x' } };
    const a = validatePolicy({ ...base, spec: { podSelector: {} } });
    expect([a.ingressIsolated, a.egressIsolated]).to.deep.equal([true, false]);
    const b = validatePolicy({ ...base, spec: { podSelector: {}, egress: [{}] } });
    expect([b.ingressIsolated, b.egressIsolated]).to.deep.equal([true, true]);
    const c = validatePolicy({ ...base, spec: { podSelector: {}, policyTypes: ['Egress'] } });
    expect([c.ingressIsolated, c.egressIsolated]).to.deep.equal([false, true]);
  });

  it('names the field of every refusal', () => {
    const bad = (spec: unknown, meta: unknown = { name: 'x' }) => errorOf(() => validatePolicy({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: meta, spec }));
    expect(bad({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/33' } }] }] })).to.match(/spec\.ingress\.0\.from\.0\.ipBlock\.cidr: must be an IPv4 CIDR/);
    expect(bad({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['11.0.0.0/16'] } }] }] })).to.match(/spec\.ingress\.0\.from\.0\.ipBlock\.except\.0: must be a strict subset of cidr 10\.0\.0\.0\/8/);
    expect(bad({ podSelector: {}, egress: [{ ports: [{ port: 90, endPort: 80 }] }] })).to.match(/spec\.egress\.0\.ports\.0\.endPort: must be >= port 90/);
    expect(bad({ podSelector: {}, egress: [{ ports: [{ port: 'http', endPort: 80 }] }] })).to.match(/spec\.egress\.0\.ports\.0\.endPort: needs a numeric port/);
    expect(bad({ podSelector: {}, ingress: [{ ports: [{ protocol: 'ICMP', port: 1 }] }] })).to.match(/spec\.ingress\.0\.ports\.0\.protocol/);
    expect(bad({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8' }, podSelector: {} }] }] })).to.match(/spec\.ingress\.0\.from\.0: ipBlock cannot be combined/);
    expect(bad({ podSelector: { matchExpressions: [{ key: 'a', operator: 'In', values: [] }] } })).to.match(/spec\.podSelector\.matchExpressions\.0\.values: must not be empty/);
    expect(bad({ podSelector: {}, ingres: [] })).to.match(/spec: .*ingres/);
    expect(bad({})).to.match(/spec\.podSelector/);
    expect(bad({ podSelector: {} }, { name: 'Bad_Name' })).to.match(/metadata\.name: must be a DNS subdomain/);
    expect(errorOf(() => parsePolicyText('a: [1, 2', 'f.yaml'))).to.match(/invalid f\.yaml: document 1:/);
    expect(errorOf(() => parsePolicyText(DENY_INGRESS.replace('NetworkPolicy', 'Service')))).to.match(/kind: must be NetworkPolicy/);
  });
});

describe('policy: pod namespaces and named ports', () => {
  it('default to `default` and none; refusals name the field', () => {
    expect(validateNamespace(undefined)).to.equal('default');
    expect(validateNamespace('prod')).to.equal('prod');
    expect(errorOf(() => validateNamespace('Prod_1'))).to.match(/invalid namespace "Prod_1": must be a DNS label/);
    expect(validateNamedPorts(['http=8080/tcp', 'dns=53/UDP', { name: 'metrics', port: 9100, protocol: 'TCP' }])).to.deep.equal([
      { name: 'http', port: 8080, protocol: 'TCP' },
      { name: 'dns', port: 53, protocol: 'UDP' },
      { name: 'metrics', port: 9100, protocol: 'TCP' },
    ]);
    expect(errorOf(() => validateNamedPorts(['http=99999']))).to.match(/namedPorts\[0\]\.port: must be 1-65535/);
    expect(errorOf(() => validateNamedPorts(['8080=80']))).to.match(/namedPorts\[0\]\.name/);
    expect(errorOf(() => validateNamedPorts(['a=1', 'a=2']))).to.match(/namedPorts\[1\]\.name: a is given twice/);
  });
});

/** Pods of the tests below: two namespaces, one labelled project=myproject. */
const PODS: PolicyPod[] = [
  pod('db', 'default', { role: 'db' }, '10.244.1.10', { namedPorts: [{ name: 'redis', port: 6379, protocol: 'TCP' }] }),
  pod('frontend', 'default', { role: 'frontend' }, '10.244.1.11'),
  pod('other', 'default', { role: 'other' }, '10.244.2.12', { node: 'n2' }),
  pod('proj', 'myproject', { role: 'x' }, '10.244.2.13', { node: 'n2' }),
  pod('stranger', 'elsewhere', { role: 'frontend' }, '10.244.2.14', { node: 'n2' }),
];
const NS = new Map([['myproject', { project: 'myproject' }]]);

function compile(policies: PolicyRecord[], pods = PODS, localNode: string | undefined = undefined) {
  return new CompiledPolicies({ policies, pods, namespaces: NS, localNode });
}

describe('policy: compiled tables', () => {
  const docs = parsePolicyText(DOCS_EXAMPLE);

  it('decides the documentation example: each peer kind, the except, the port', () => {
    const c = compile(docs);
    const db = ip('10.244.1.10');
    const ing = (peer: string, port: number, proto: number = IpProtocol.TCP) => c.decide(Dir.Ingress, db, ip(peer), proto, port);
    expect(ing('10.244.1.11', 6379)).to.equal(0); // podSelector role=frontend, same namespace
    expect(ing('10.244.2.13', 6379)).to.equal(0); // namespace project=myproject
    expect(ing('172.17.5.5', 6379)).to.equal(0); // ipBlock
    expect(ing('172.17.1.5', 6379)).to.equal(Decision.Denied); // its except
    expect(ing('10.244.2.14', 6379)).to.equal(Decision.Denied); // role=frontend in another namespace
    expect(ing('10.244.2.12', 6379)).to.equal(Decision.Denied); // not a peer
    expect(ing('10.244.1.11', 6380)).to.equal(Decision.Denied); // wrong port
    expect(ing('10.244.1.11', 6379, IpProtocol.UDP)).to.equal(Decision.Denied); // wrong protocol
    expect(ing('10.244.1.11', 0, IpProtocol.ICMP)).to.equal(Decision.Denied); // no ports: rules with ports never allow ICMP
    const eg = (peer: string, port: number) => c.decide(Dir.Egress, db, ip(peer), IpProtocol.TCP, port);
    expect(eg('10.0.0.7', 5978)).to.equal(0);
    expect(eg('10.0.1.7', 5978)).to.equal(Decision.Denied);
    expect(eg('10.0.0.7', 5979)).to.equal(Decision.Denied);
    // Pods no policy selects are not isolated.
    expect(c.decide(Dir.Ingress, ip('10.244.1.11'), ip('10.244.2.14'), IpProtocol.TCP, 1)).to.equal(Decision.NotSelected);
  });

  it('only pods of the local node are targets', () => {
    const c = compile(parsePolicyText(DENY_INGRESS), PODS, 'n1');
    expect(c.selected(Dir.Ingress, ip('10.244.1.11'))).to.equal(true);
    expect(c.selected(Dir.Ingress, ip('10.244.2.12'))).to.equal(false);
    expect(c.decide(Dir.Ingress, ip('10.244.1.11'), ip('10.244.1.10'), IpProtocol.TCP, 80)).to.equal(Decision.Denied);
  });

  it('a namespaceSelector and a podSelector in one peer are ANDed; in two peers ORed', () => {
    const mk = (from: unknown[]) =>
      validatePolicy({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'p' }, spec: { podSelector: { matchLabels: { role: 'db' } }, ingress: [{ from }] } });
    const and = compile([mk([{ namespaceSelector: { matchLabels: { project: 'myproject' } }, podSelector: { matchLabels: { role: 'frontend' } } }])]);
    const or = compile([mk([{ namespaceSelector: { matchLabels: { project: 'myproject' } } }, { podSelector: { matchLabels: { role: 'frontend' } } }])]);
    const db = ip('10.244.1.10');
    expect(and.decide(Dir.Ingress, db, ip('10.244.2.13'), IpProtocol.TCP, 1)).to.equal(Decision.Denied); // myproject, but role=x
    expect(and.decide(Dir.Ingress, db, ip('10.244.1.11'), IpProtocol.TCP, 1)).to.equal(Decision.Denied); // frontend, wrong namespace
    expect(or.decide(Dir.Ingress, db, ip('10.244.2.13'), IpProtocol.TCP, 1)).to.equal(0);
    expect(or.decide(Dir.Ingress, db, ip('10.244.1.11'), IpProtocol.TCP, 1)).to.equal(0);
    // The implicit kubernetes.io/metadata.name label selects a namespace by name.
    const byName = compile([mk([{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'elsewhere' } } }])]);
    expect(byName.decide(Dir.Ingress, db, ip('10.244.2.14'), IpProtocol.TCP, 1)).to.equal(0);
    expect(byName.decide(Dir.Ingress, db, ip('10.244.2.13'), IpProtocol.TCP, 1)).to.equal(Decision.Denied);
  });

  it('port ranges (endPort), named ports and matchExpressions', () => {
    const range = compile(parsePolicyText(PORT_RANGE));
    const db = ip('10.244.1.10');
    for (const [port, ok] of [[31999, false], [32000, true], [32400, true], [32768, true], [32769, false]] as const) {
      expect(range.decide(Dir.Egress, db, ip('10.0.0.1'), IpProtocol.TCP, port), String(port)).to.equal(ok ? 0 : Decision.Denied);
    }
    const named = validatePolicy({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'named' },
      spec: { podSelector: { matchExpressions: [{ key: 'role', operator: 'In', values: ['db', 'nothing'] }] }, ingress: [{ ports: [{ port: 'redis' }] }] },
    });
    const c = compile([named]);
    expect(c.decide(Dir.Ingress, db, ip('10.244.2.12'), IpProtocol.TCP, 6379)).to.equal(0);
    expect(c.decide(Dir.Ingress, db, ip('10.244.2.12'), IpProtocol.TCP, 6378)).to.equal(Decision.Denied);
    // An egress rule to a named port resolves it on the destination pod.
    const eg = validatePolicy({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'eg' },
      spec: { podSelector: { matchLabels: { role: 'frontend' } }, policyTypes: ['Egress'], egress: [{ ports: [{ port: 'redis' }] }] },
    });
    const e = compile([eg]);
    const fe = ip('10.244.1.11');
    expect(e.decide(Dir.Egress, fe, db, IpProtocol.TCP, 6379)).to.equal(0);
    expect(e.decide(Dir.Egress, fe, ip('10.244.2.12'), IpProtocol.TCP, 6379)).to.equal(Decision.Denied); // lacks the name
    expect(e.decide(Dir.Egress, fe, ip('1.1.1.1'), IpProtocol.TCP, 6379)).to.equal(Decision.Denied);
  });

  it('agrees with the reference evaluator on every combination of a mixed policy set', () => {
    const policies = [
      ...docs,
      ...parsePolicyText(PORT_RANGE),
      validatePolicy({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'allow-web', namespace: 'myproject' }, spec: { podSelector: {}, ingress: [{ from: [{ namespaceSelector: {} }], ports: [{ port: 80 }, { protocol: 'UDP', port: 53 }] }] } }),
      validatePolicy({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'out', namespace: 'elsewhere' }, spec: { podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8', '192.168.0.0/16'] } }] }, { to: [{ podSelector: {} }] }] } }),
    ];
    const c = compile(policies);
    const peers = [...PODS.map((p) => p.ip), ip('172.17.1.1'), ip('172.17.2.1'), ip('10.0.0.5'), ip('10.9.9.9'), ip('8.8.8.8'), ip('192.168.3.3')];
    const ports: Array<[number, number]> = [[IpProtocol.TCP, 80], [IpProtocol.TCP, 6379], [IpProtocol.TCP, 5978], [IpProtocol.TCP, 32001], [IpProtocol.UDP, 53], [IpProtocol.UDP, 80], [IpProtocol.ICMP, 0]];
    let checked = 0;
    for (const self of PODS)
      for (const peer of peers)
        for (const [proto, port] of ports) {
          const peerPod = PODS.find((p) => p.ip === peer) ?? peer;
          // Egress of self towards peer, and ingress of self from peer.
          const e = explain(policies, NS, self, peerPod, proto, port).egress!;
          const fastE = c.decide(Dir.Egress, self.ip, peer, proto, port);
          expect(fastE === Decision.NotSelected ? true : fastE >= 0, `egress ${self.name} -> ${peer} ${proto}/${port}`).to.equal(e.allowed);
          if (fastE >= 0) expect(`${c.policies[fastE]!.namespace}/${c.policies[fastE]!.name}`).to.equal(e.allowedBy);
          const i = explain(policies, NS, peerPod, self, proto, port).ingress!;
          const fastI = c.decide(Dir.Ingress, self.ip, peer, proto, port);
          expect(fastI === Decision.NotSelected ? true : fastI >= 0, `ingress ${peer} -> ${self.name} ${proto}/${port}`).to.equal(i.allowed);
          checked++;
        }
    expect(checked).to.equal(PODS.length * peers.length * ports.length);
  });

  it('keeps the table size independent of how the pods are spread: 1,000 policies over 10,000 pods compile', () => {
    const pods: PolicyPod[] = [];
    for (let i = 0; i < 10_000; i++) pods.push({ name: `p${i}`, node: i < 250 ? 'local' : `n${i % 40}`, namespace: `ns${i % 100}`, ip: (ip('10.244.0.0') + 256 + i) >>> 0, labels: { app: `a${i % 1000}` } });
    const policies: PolicyRecord[] = [];
    for (let i = 0; i < 1000; i++) {
      policies.push(
        validatePolicy({
          apiVersion: 'networking.k8s.io/v1',
          kind: 'NetworkPolicy',
          metadata: { name: `p${i}`, namespace: `ns${i % 100}` },
          spec: { podSelector: { matchLabels: { app: `a${i}` } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: `a${(i + 1) % 1000}` } } }], ports: [{ port: 8000 + (i % 50) }] }] },
        }),
      );
    }
    const c = new CompiledPolicies({ policies, pods, namespaces: new Map(), localNode: 'local' });
    const s = c.status();
    expect(s.policies).to.equal(1000);
    expect(s.ingressTargets).to.be.greaterThan(0);
    // pod i (local, app a_i, ns_{i%100}) is reached by app a_{i+1} of the same namespace on port 8000 + i%50.
    const i = 7;
    const self = pods[i]!.ip;
    const friend = pods.find((p) => p.labels.app === `a${i + 1}` && p.namespace === `ns${i % 100}`);
    const enemy = pods.find((p) => p.labels.app === `a${i + 2}`)!;
    if (friend) expect(c.decide(Dir.Ingress, self, friend.ip, IpProtocol.TCP, 8000 + (i % 50))).to.equal(c.policies.findIndex((p) => p.name === `p${i}`));
    expect(c.decide(Dir.Ingress, self, enemy.ip, IpProtocol.TCP, 8000 + (i % 50))).to.equal(Decision.Denied);
  });
});

describe('policy: the FORWARD hook', () => {
  const A = { name: 'a', mac: '0a:58:0a:f4:01:02', ip: '10.244.1.2' };
  const B = { name: 'b', mac: '0a:58:0a:f4:01:03', ip: '10.244.1.3' };

  function setup(policyYaml: string) {
    const { dp, router } = routedDataplane();
    const ct = new Conntrack({ max: 1024 });
    router.nat = new Nat(ct, { drops: router.drops });
    const pods: Record<string, { port: TapPort; sink: RecordingSink }> = {};
    for (const p of [A, B]) {
      const m = parseMac(p.mac);
      const sink = new RecordingSink();
      const port = new TapPort(p.name, dp, sink, { macHi: m.hi, macLo: m.lo, ip: ip(p.ip) });
      dp.neighbors.set(ip(p.ip), m.hi, m.lo);
      dp.switch.attach(port);
      pods[p.name] = { port, sink };
    }
    dp.switch.bridgeHook = (buf, ipOff, ipLen) => router.bridgeIp(buf, ipOff, ipLen);
    const hook = new PolicyHook();
    hook.addPod(ip(A.ip));
    hook.addPod(ip(B.ip));
    hook.setNodeAddresses([ip('10.244.1.0'), ip('10.244.1.1')]);
    hook.compiled = new CompiledPolicies({
      policies: parsePolicyText(policyYaml),
      pods: [pod('a', 'default', { app: 'client' }, A.ip), pod('b', 'default', { app: 'db' }, B.ip)],
      namespaces: new Map(),
      localNode: undefined,
    });
    router.hooks.register(HookPoint.Forward, hook);
    const send = (from: typeof A, to: typeof A, sport: number, dport: number) => {
      const f = udpFrame({ srcMac: from.mac, dstMac: to.mac, src: from.ip, dst: to.ip, sport, dport });
      dp.tick();
      dp.receive(pods[from.name]!.port, f.buf, f.off, f.len);
      dp.flush();
      return pods[to.name]!.sink.take().length;
    };
    return { router, ct, hook, send };
  }

  const ALLOW_CLIENT_53 = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{protocol: UDP, port: 53}]
`;

  it('allows and tracks what a policy allows (the reply passes through conntrack), drops and counts the rest by pod and reason', () => {
    const n = setup(ALLOW_CLIENT_53);
    expect(n.send(A, B, 40000, 53)).to.equal(1);
    expect(n.ct.size).to.equal(1); // tracked: the reply is known
    expect(n.send(B, A, 53, 40000)).to.equal(1); // the reply: not a new connection into a (which is not isolated anyway)
    expect(n.hook.evaluated).to.equal(1);
    expect(n.send(A, B, 40001, 54)).to.equal(0); // wrong port
    expect(n.send(A, B, 40001, 54)).to.equal(0); // still denied: nothing was tracked
    expect(n.router.drops.toJSON()).to.have.property('policy_denied_ingress', 2);
    expect(n.hook.podDenials(ip(B.ip))).to.deep.equal({ ingress: 2, egress: 0 });
    expect(n.hook.podDenials(ip(A.ip))).to.deep.equal({ ingress: 0, egress: 0 });
    // b -> a on a new connection: a is selected by nothing, b has no egress policy: allowed, but tracked (b is selected).
    expect(n.send(B, A, 7000, 7001)).to.equal(1);
    expect(n.ct.size).to.equal(2);
  });

  it('default deny egress: counted on the source pod, with the egress reason; the node itself is always reachable', () => {
    const n = setup(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-egress}
spec:
  podSelector: {}
  policyTypes: [Egress]
`);
    expect(n.send(A, B, 40000, 53)).to.equal(0);
    expect(n.hook.podDenials(ip(A.ip))).to.deep.equal({ ingress: 0, egress: 1 });
    expect(n.router.drops.toJSON()).to.have.property('policy_denied_egress', 1);
    const ctx = new PacketContext();
    ctx.resetDecisions();
    ctx.proto = IpProtocol.UDP;
    ctx.src = ip(A.ip) | 0;
    ctx.dst = ip('10.244.1.0') | 0; // the node's host port
    ctx.dport = 53;
    ctx.ingress = Ingress.Switch;
    expect(n.hook.newConnection(ctx)).to.equal(HookVerdict.Continue);
    expect(ctx.track).to.equal(true);
  });

  it('decides on the real endpoint after DNAT (finalDst / finalDport)', () => {
    const n = setup(ALLOW_CLIENT_53);
    const ctx = new PacketContext();
    ctx.resetDecisions();
    ctx.proto = IpProtocol.UDP;
    ctx.src = ip(A.ip) | 0;
    ctx.dst = ip('10.96.0.10') | 0;
    ctx.dport = 5353;
    ctx.dnatIp = ip(B.ip) | 0;
    ctx.dnatPort = 53;
    expect(n.hook.newConnection(ctx)).to.equal(HookVerdict.Continue);
    ctx.resetDecisions();
    ctx.dnatIp = ip(B.ip) | 0;
    ctx.dnatPort = 54;
    expect(n.hook.newConnection(ctx)).to.equal(HookVerdict.Drop);
    expect(ctx.dropReason).to.equal(DropReason.PolicyDeniedIngress);
    // b through its own service (hairpin): a pod is never refused access to itself.
    ctx.resetDecisions();
    ctx.src = ip(B.ip) | 0;
    ctx.dnatIp = ip(B.ip) | 0;
    ctx.dnatPort = 54;
    expect(n.hook.newConnection(ctx)).to.equal(HookVerdict.Continue);
  });

  it('a TCP segment without SYN of a connection opened before any policy passes when its reverse is allowed', () => {
    // Every pod isolated for ingress; b also open to a on TCP 53.
    const n = setup(DENY_INGRESS + '\n---\n' + ALLOW_CLIENT_53.replace('UDP', 'TCP'));
    const ctx = new PacketContext();
    const seg = (src: string, dst: string, sport: number, dport: number, flags: number) => {
      ctx.resetDecisions();
      ctx.proto = IpProtocol.TCP;
      ctx.src = ip(src) | 0;
      ctx.dst = ip(dst) | 0;
      ctx.sport = sport;
      ctx.dport = dport;
      ctx.tcpFlags = flags;
      return n.hook.newConnection(ctx);
    };
    // a -> b:53 opened before the policies: a's segments are allowed as they are; b's answers
    // (into a, which is isolated now) are picked up because the reverse is allowed.
    expect(seg(A.ip, B.ip, 40000, 53, 0x10)).to.equal(HookVerdict.Continue);
    expect(seg(B.ip, A.ip, 53, 40000, 0x10)).to.equal(HookVerdict.Continue);
    expect(n.hook.pickedUp).to.equal(1);
    // A SYN to a port the policy does not allow is a new connection: denied.
    expect(seg(A.ip, B.ip, 40001, 22, 0x02)).to.equal(HookVerdict.Drop);
    // And a non-SYN segment to it whose reverse is not allowed either: denied.
    expect(seg(A.ip, B.ip, 40001, 22, 0x10)).to.equal(HookVerdict.Drop);
    expect(n.hook.pickedUp).to.equal(1);
  });
});
