import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Topology } from '../../src/topology/topology.js';
import { NETTOOL, startIn, statusJson, within } from '../helpers/net.js';

/**
 * Issue 15: Kubernetes NetworkPolicy enforced by podnet's data plane, across two hosts: the examples of
 * the Kubernetes documentation's NetworkPolicy page, each with connections that must pass and ones
 * that must fail, via pod IPs and via ClusterIPs (policy sees the real endpoint after DNAT), on one
 * node (bridged) and across nodes (ingress decided at the destination, egress at the source), a
 * NodePort from outside and egress to outside addresses.
 *
 * Layout: h1 runs `web` (namespace prod, app=web: HTTP on 8080, 8081, 9090) and `neighbour` (prod,
 * app=client); h2 runs `client` (prod, app=client), `friend` (dev, app=client) and `other` (dev,
 * app=other); namespace dev has the label project=myproject. Two outside hosts on the underlay serve HTTP.
 */
describe('NetworkPolicy: pod to pod, through ClusterIPs, NodePort and egress to outside, across two hosts', function () {
  this.timeout(600_000);
  const t = new Topology();
  const servers: Array<ReturnType<typeof startIn>> = [];
  const ip: Record<string, string> = {};
  const EXT = '198.18.0.99';
  const EXT2 = '198.18.0.98';
  let vip = '';
  let nodePort = 0;
  let files = 0;
  const where: Record<string, string> = { web: 'h1', neighbour: 'h1', client: 'h2', friend: 'h2', other: 'h2' };
  const ns = (pod: string) => t.podNs(where[pod]!, pod);

  async function pod(host: string, name: string, namespace: string, labels: string[], namedPorts: string[] = []): Promise<void> {
    const r = await t.podnet(host, ['pod', 'add', name, '--namespace', namespace, ...labels.flatMap((l) => ['--label', l]), ...namedPorts.flatMap((p) => ['--named-port', p])]);
    expect(r.code, r.stderr).to.equal(0);
    ip[name] = r.stdout.trim();
  }
  function serve(netns: string, args: string[]) {
    const s = startIn(netns, process.execPath, [NETTOOL, ...args]);
    servers.push(s);
    return s;
  }

  /** Applies policies (YAML) through the CLI and waits until both nodes compiled `expect` policies. */
  async function apply(yaml: string, expectTotal: number): Promise<void> {
    const file = join(t.dir, `policy-${files++}.yaml`);
    writeFileSync(file, yaml);
    const r = await t.podnet('h1', ['policy', 'add', '-f', file]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/networkpolicy \S+ (created|configured)/);
    await settled(expectTotal);
  }
  async function remove(refs: string[], expectTotal: number): Promise<void> {
    for (const ref of refs) {
      const r = await t.podnet('h2', ['policy', 'del', ref]);
      expect(r.code, r.stderr).to.equal(0);
    }
    await settled(expectTotal);
  }
  /** Both nodes run tables compiled from `n` policies (watch + compile are asynchronous). */
  async function settled(n: number): Promise<void> {
    for (const h of ['h1', 'h2']) {
      let last = -1;
      for (let i = 0; i < 200; i++) {
        const r = await t.podnet(h, ['policy', 'status', '--json']);
        last = JSON.parse(r.stdout).tables?.policies ?? -1;
        if (last === n) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      expect(last, `${h} compiled policies`).to.equal(n);
    }
  }

  /** An HTTP GET; 'ok' with the answer's first word, or 'blocked' when nothing came (curl timeout). */
  async function get(fromNs: string, url: string): Promise<string> {
    const r = await t.exec(fromNs, 'curl', ['-s', '-m', '3', url]);
    if (r.code === 0) return `ok ${r.stdout.trim().split(' ')[0]}`;
    return r.code === 28 ? 'blocked' : `error ${r.code} ${r.stderr}`;
  }
  const podDrops = async (host: string, name: string) => (await statusJson(t, host)).pods.find((p: any) => p.name === name).counters.drops as Record<string, number>;

  before(async () => {
    await t.createUnderlay();
    await t.addHost({ name: 'h1' });
    await t.addHost({ name: 'h2' });
    await t.addExternal('ext', EXT);
    await t.addExternal('ext2', EXT2);
    await t.startDaemon('h1');
    await t.startDaemon('h2');
    await pod('h1', 'web', 'prod', ['app=web'], ['http-alt=8081/tcp']);
    await pod('h1', 'neighbour', 'prod', ['app=client']);
    await pod('h2', 'client', 'prod', ['app=client']);
    await pod('h2', 'friend', 'dev', ['app=client']);
    await pod('h2', 'other', 'dev', ['app=other']);
    expect((await t.podnet('h1', ['namespace', 'label', 'dev', 'project=myproject'])).code).to.equal(0);
    serve(ns('web'), ['http', '8080', 'web8080']);
    serve(ns('web'), ['http', '8081', 'web8081']);
    serve(ns('web'), ['http', '9090', 'web9090']);
    serve(ns('friend'), ['http', '8080', 'friend']);
    serve(t.host('ext').netns, ['http', '8080', 'ext']);
    serve(t.host('ext2').netns, ['http', '8080', 'ext2']);
    await Promise.all(servers.map((s) => s.started));
    const s = await t.podnet('h1', ['service', 'add', 'web', '--port', '80:8080', '--port', '81:8081', '--port', '90:9090', '--selector', 'app=web']);
    expect(s.code, s.stderr).to.equal(0);
    vip = s.stdout.trim();
    const np = await t.podnet('h1', ['service', 'add', 'webnp', '--type', 'NodePort', '--port', '80:8080', '--selector', 'app=web', '--json']);
    expect(np.code, np.stderr).to.equal(0);
    nodePort = JSON.parse(np.stdout).ports[0].nodePort;
  });

  after(async () => {
    for (const s of servers) s.stop();
    await t.destroy();
  });

  it('without policies, everything passes (the baseline of every test below)', async () => {
    expect(await get(ns('client'), `http://${ip.web}:8080/`)).to.equal('ok web8080');
    expect(await get(ns('client'), `http://${vip}:90/`)).to.equal('ok web9090');
    expect(await get(ns('neighbour'), `http://${ip.web}:8080/`)).to.equal('ok web8080');
    expect(await get(ns('client'), `http://${EXT}:8080/`)).to.equal('ok ext');
    expect(await get(t.host('ext').netns, `http://${t.host('h1').underlayIp}:${nodePort}/`)).to.equal('ok web8080');
  });

  it('default deny ingress: nothing reaches prod pods, on one node or across, by pod IP or ClusterIP; counted by pod and reason; check explains', async () => {
    await apply(DENY_INGRESS, 1);
    try {
      expect(await get(ns('client'), `http://${ip.web}:8080/`)).to.equal('blocked'); // across nodes: decided on h1
      expect(await get(ns('client'), `http://${vip}:80/`)).to.equal('blocked'); // ClusterIP: DNAT on h2, denied on h1
      expect(await get(ns('neighbour'), `http://${ip.web}:8080/`)).to.equal('blocked'); // same node: the bridged path
      expect(await get(ns('friend'), `http://${ip.web}:8080/`)).to.equal('blocked');
      expect(await get(t.host('ext').netns, `http://${t.host('h1').underlayIp}:${nodePort}/`)).to.equal('blocked'); // NodePort
      // Not isolated: dev's pods; and prod's egress is untouched (replies of its connections pass).
      expect(await get(ns('client'), `http://${ip.friend}:8080/`)).to.equal('ok friend');
      // The node itself always reaches its pods (kubelet probes).
      const fromNode = await t.exec(t.host('h1').netns, 'curl', ['-s', '-m', '3', `http://${ip.web}:8080/`]);
      expect(fromNode.code, fromNode.stderr).to.equal(0);

      const drops = await podDrops('h1', 'web');
      expect(drops.policy_denied_ingress).to.be.at.least(5);
      expect((await statusJson(t, 'h1')).router.drops.policy_denied_ingress).to.be.at.least(5);
      const list = JSON.parse((await t.podnet('h1', ['pod', 'list', '--json'])).stdout);
      expect(list.find((p: any) => p.name === 'web').policyDenials.ingress).to.be.at.least(5);
      expect(list.find((p: any) => p.name === 'web').namespace).to.equal('prod');
      const table = (await t.podnet('h1', ['pod', 'list'])).stdout;
      expect(table).to.match(/^prod +web .*\d+\/0\s*$/m);

      const check = await t.podnet('h2', ['policy', 'check', '--from', 'client', '--to', 'web:8080/tcp']);
      expect(check.code).to.equal(3);
      expect(check.stdout).to.match(/^denied: prod\/client -> prod\/web:8080\/TCP/);
      expect(check.stdout).to.match(/ingress: denied \(selected by prod\/default-deny-ingress\)/);
      const listed = JSON.parse((await t.podnet('h2', ['policy', 'list', '--json'])).stdout);
      expect(listed.map((p: any) => `${p.namespace}/${p.name}`)).to.deep.equal(['prod/default-deny-ingress']);
    } finally {
      await remove(['prod/default-deny-ingress'], 0);
    }
    expect(await get(ns('client'), `http://${ip.web}:8080/`)).to.equal('ok web8080');
  });

  it('default deny egress: prod pods reach nothing (pods, ClusterIPs, outside), counted on the source; other namespaces reach them', async () => {
    await apply(DENY_EGRESS, 1);
    try {
      expect(await get(ns('client'), `http://${ip.web}:8080/`)).to.equal('blocked'); // decided at the source, h2
      expect(await get(ns('client'), `http://${vip}:80/`)).to.equal('blocked');
      expect(await get(ns('client'), `http://${ip.friend}:8080/`)).to.equal('blocked'); // same node, bridged
      expect(await get(ns('client'), `http://${EXT}:8080/`)).to.equal('blocked'); // outside
      expect(await get(ns('friend'), `http://${ip.web}:8080/`)).to.equal('ok web8080'); // ingress into prod is open
      expect(await get(ns('friend'), `http://${vip}:81/`)).to.equal('ok web8081');
      const drops = await podDrops('h2', 'client');
      expect(drops.policy_denied_egress).to.be.at.least(4);
      expect(drops.policy_denied_ingress ?? 0).to.equal(0);
      const check = await t.podnet('h1', ['policy', 'check', '--from', 'prod/client', '--to', `${EXT}:8080/tcp`]);
      expect(check.code).to.equal(3);
      expect(check.stdout).to.match(/egress: denied \(selected by prod\/default-deny-egress\)/);
    } finally {
      await remove(['default-deny-egress', ].map((n) => `prod/${n}`), 0);
    }
  });

  it('allow from a namespace and a pod label (one peer: both must match), via pod IP and ClusterIP', async () => {
    await apply(DENY_INGRESS + '---\n' + ALLOW_NS_AND_LABEL, 2);
    try {
      expect(await get(ns('friend'), `http://${ip.web}:8080/`)).to.equal('ok web8080'); // dev (project=myproject) and app=client
      expect(await get(ns('friend'), `http://${vip}:80/`)).to.equal('ok web8080');
      expect(await get(ns('other'), `http://${ip.web}:8080/`)).to.equal('blocked'); // right namespace, wrong label
      expect(await get(ns('other'), `http://${vip}:80/`)).to.equal('blocked');
      expect(await get(ns('client'), `http://${ip.web}:8080/`)).to.equal('blocked'); // right label, wrong namespace
      expect(await get(ns('neighbour'), `http://${ip.web}:8080/`)).to.equal('blocked');
      expect(await get(ns('friend'), `http://${ip.web}:9090/`)).to.equal('blocked'); // right peer, port not allowed
      const check = await t.podnet('h1', ['policy', 'check', '--from', 'dev/friend', '--to', 'web:8080/tcp', '--json']);
      expect(check.code).to.equal(0);
      expect(JSON.parse(check.stdout).ingress).to.deep.include({ allowed: true, allowedBy: 'prod/allow-from-myproject-clients' });
    } finally {
      await remove(['prod/default-deny-ingress', 'prod/allow-from-myproject-clients'], 0);
    }
  });

  it('ipBlock with except: egress to an outside range but one address; pods (not in the block) are refused', async () => {
    await apply(EGRESS_IPBLOCK, 1);
    try {
      expect(await get(ns('client'), `http://${EXT2}:8080/`)).to.equal('ok ext2');
      expect(await get(ns('client'), `http://${EXT}:8080/`)).to.equal('blocked'); // the except
      expect(await get(ns('client'), `http://${ip.web}:8080/`)).to.equal('blocked');
      expect(await get(ns('client'), `http://${vip}:80/`)).to.equal('blocked'); // the endpoint is no more in the block than the VIP
      expect(await get(ns('friend'), `http://${EXT}:8080/`)).to.equal('ok ext'); // not selected
    } finally {
      await remove(['prod/egress-outside-but-one'], 0);
    }
  });

  it('ipBlock from outside: a NodePort reaches an isolated pod only from the allowed range', async () => {
    await apply(DENY_INGRESS + '---\n' + NODEPORT_FROM_EXT2, 2);
    try {
      const h1 = t.host('h1').underlayIp;
      expect(await get(t.host('ext2').netns, `http://${h1}:${nodePort}/`)).to.equal('ok web8080');
      expect(await get(t.host('ext').netns, `http://${h1}:${nodePort}/`)).to.equal('blocked');
    } finally {
      await remove(['prod/default-deny-ingress', 'prod/allow-ext2'], 0);
    }
  });

  it('port ranges (endPort): 8080-8081 pass, 9090 fails, by pod IP and through the ClusterIP\'s port mapping', async () => {
    await apply(PORT_RANGE, 1);
    try {
      expect(await get(ns('client'), `http://${ip.web}:8080/`)).to.equal('ok web8080');
      expect(await get(ns('client'), `http://${ip.web}:8081/`)).to.equal('ok web8081');
      expect(await get(ns('client'), `http://${ip.web}:9090/`)).to.equal('blocked');
      // Service ports 80/81/90 map to 8080/8081/9090: the policy sees the endpoint's port.
      expect(await get(ns('client'), `http://${vip}:80/`)).to.equal('ok web8080');
      expect(await get(ns('client'), `http://${vip}:81/`)).to.equal('ok web8081');
      expect(await get(ns('client'), `http://${vip}:90/`)).to.equal('blocked');
      expect(await get(ns('neighbour'), `http://${ip.web}:9090/`)).to.equal('blocked');
    } finally {
      await remove(['prod/ports-8080-8081'], 0);
    }
  });

  it('a named port: the rule names the pod\'s port, which the pod declares at pod add', async () => {
    await apply(NAMED_PORT, 1);
    try {
      expect(await get(ns('client'), `http://${ip.web}:8081/`)).to.equal('ok web8081');
      expect(await get(ns('client'), `http://${vip}:81/`)).to.equal('ok web8081');
      expect(await get(ns('client'), `http://${ip.web}:8080/`)).to.equal('blocked');
    } finally {
      await remove(['prod/named-port'], 0);
    }
  });

  it('a policy deleted under load: new connections pass at once, the connections it allowed carry on intact', async () => {
    await apply(DENY_INGRESS + '---\n' + ALLOW_CLIENT_5001, 2);
    const MB = 1024 * 1024;
    const sink = serve(ns('web'), ['sink', '5001']);
    await sink.started;
    const echo = serve(ns('web'), ['echo', '9000']);
    await echo.started;
    const sender = startIn(ns('client'), process.execPath, [NETTOOL, 'send', ip.web!, '5001', String(64 * MB), String(8 * MB)], 'paused');
    servers.push(sender);
    try {
      await sender.started; // 8 MB through: the connection is established and tracked on both nodes
      expect(await get(ns('other'), `http://${ip.web}:8080/`)).to.equal('blocked');
      // Load while the policies go: 100 concurrent connections from client (allowed before and after).
      const load = t.exec(ns('client'), process.execPath, [NETTOOL, 'conns', ip.web!, '9000', '100'], 300_000);
      await remove(['prod/default-deny-ingress', 'prod/allow-client-5001'], 0);
      expect(await get(ns('other'), `http://${ip.web}:8080/`)).to.equal('ok web8080');
      expect((await load).stdout.trim()).to.equal('ok 100 bad 0');
      sender.child.kill('SIGUSR1');
      expect(await within(sender.exited, 300_000, -1), sender.errors()).to.equal(0);
      expect(await within(sink.exited, 60_000, -1), sink.errors()).to.equal(0);
      expect(sink.output().trim().split(' ').slice(0, 2)).to.deep.equal(sender.output().trim().split(' '));
      expect(Number(sender.output().trim().split(' ')[0])).to.equal(64 * MB);
    } finally {
      sender.stop();
      await remove([], 0).catch(() => undefined);
    }
  });

  it('an open connection a policy allowed survives the policy that allowed it going (tracked); new ones are then refused', async () => {
    await apply(DENY_INGRESS + '---\n' + ALLOW_CLIENT_5001, 2);
    const MB = 1024 * 1024;
    const sink = serve(ns('web'), ['sink', '5001']);
    await sink.started;
    const sender = startIn(ns('client'), process.execPath, [NETTOOL, 'send', ip.web!, '5001', String(32 * MB), String(4 * MB)], 'paused');
    servers.push(sender);
    try {
      await sender.started;
      await remove(['prod/allow-client-5001'], 1); // only default-deny-ingress is left
      const late = await t.exec(ns('client'), process.execPath, [NETTOOL, 'talk', ip.web!, '5001', 'x'], 30_000);
      expect(late.code, 'a new connection after the change').to.not.equal(0);
      sender.child.kill('SIGUSR1');
      expect(await within(sender.exited, 300_000, -1), sender.errors()).to.equal(0);
      expect(await within(sink.exited, 60_000, -1), sink.errors()).to.equal(0);
      expect(sink.output().trim().split(' ').slice(0, 2)).to.deep.equal(sender.output().trim().split(' '));
    } finally {
      sender.stop();
      await remove(['prod/default-deny-ingress'], 0).catch(() => undefined);
    }
  });

  it('refuses a malformed policy naming the field, and leaves nothing stored', async () => {
    const file = join(t.dir, 'bad.yaml');
    writeFileSync(file, PORT_RANGE.replace('endPort: 8081', 'endPort: 80'));
    const r = await t.podnet('h1', ['policy', 'add', '-f', file]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/spec\.ingress\.0\.ports\.0\.endPort: must be >= port 8080/);
    expect(JSON.parse((await t.podnet('h1', ['policy', 'list', '--json'])).stdout)).to.deep.equal([]);
  });
});

const DENY_INGRESS = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
  namespace: prod
spec:
  podSelector: {}
  policyTypes:
  - Ingress
`;

const DENY_EGRESS = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-egress
  namespace: prod
spec:
  podSelector: {}
  policyTypes:
  - Egress
`;

const ALLOW_NS_AND_LABEL = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-from-myproject-clients
  namespace: prod
spec:
  podSelector:
    matchLabels:
      app: web
  ingress:
  - from:
    - namespaceSelector:
        matchLabels:
          project: myproject
      podSelector:
        matchLabels:
          app: client
    ports:
    - protocol: TCP
      port: 8080
`;

const EGRESS_IPBLOCK = `{
  "apiVersion": "networking.k8s.io/v1",
  "kind": "NetworkPolicy",
  "metadata": { "name": "egress-outside-but-one", "namespace": "prod" },
  "spec": {
    "podSelector": { "matchLabels": { "app": "client" } },
    "policyTypes": ["Egress"],
    "egress": [{ "to": [{ "ipBlock": { "cidr": "198.18.0.0/24", "except": ["198.18.0.99/32"] } }] }]
  }
}
`;

const NODEPORT_FROM_EXT2 = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-ext2
  namespace: prod
spec:
  podSelector:
    matchLabels:
      app: web
  ingress:
  - from:
    - ipBlock:
        cidr: 198.18.0.0/24
        except:
        - 198.18.0.99/32
`;

const PORT_RANGE = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: ports-8080-8081
  namespace: prod
spec:
  podSelector:
    matchLabels:
      app: web
  policyTypes:
  - Ingress
  ingress:
  - ports:
    - protocol: TCP
      port: 8080
      endPort: 8081
`;

const ALLOW_CLIENT_5001 = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-client-5001
  namespace: prod
spec:
  podSelector:
    matchLabels:
      app: web
  ingress:
  - from:
    - podSelector:
        matchLabels:
          app: client
    ports:
    - port: 5001
    - port: 9000
`;

const NAMED_PORT = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: named-port
  namespace: prod
spec:
  podSelector:
    matchLabels:
      app: web
  ingress:
  - ports:
    - port: http-alt
`;
