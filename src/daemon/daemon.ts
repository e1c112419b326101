import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { ErrorCode, PodnetError } from '../util/errors.js';
import { tuneJitForDataPlane } from '../util/jit.js';
import { ApiServer } from './api.js';
import { apiCall } from '../api/client.js';
import type { Config } from './config.js';
import { NodeRuntime } from './node.js';
import { ClusterMembership } from './cluster.js';
import { detectUnderlay } from './underlay.js';
import { cniRoutes } from './cni-api.js';
import { buildRegistry, MetricsServer } from '../metrics/exporter.js';
import { CaptureService } from '../observe/capture.js';
import { FlowLog } from '../observe/flows.js';
import { followFlows, listFlows } from '../observe/flows-api.js';
import { parseIpv4 } from '../packet/addr.js';

export function socketPath(cfg: Pick<Config, 'runDir' | 'node'>): string {
  return join(cfg.runDir, `${cfg.node}.sock`);
}

/** Refuses to run where the data plane cannot work, with a message that says what is missing. */
export function checkPrerequisites(): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new PodnetError(ErrorCode.Precondition, 'podnet daemon must run as root (it creates namespaces and TUN/TAP devices)');
  }
  try {
    accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
  } catch {
    throw new PodnetError(ErrorCode.Precondition, '/dev/net/tun is missing or not accessible: load the tun module (modprobe tun)');
  }
}

/**
 * Runs the daemon until SIGTERM/SIGINT: joins the cluster (gets this node's subnet), starts the data
 * plane and the API, and on a signal removes everything it created.
 */
export interface DaemonOptions {
  /** Remove every pod, device, route and rule on stop (as `podnet node reset` does), instead of leaving the datapath for the next daemon. */
  cleanup?: boolean;
}

export async function runDaemon(cfg: Config, log: Logger = pino({ level: cfg.logLevel }), opts: DaemonOptions = {}): Promise<void> {
  tuneJitForDataPlane();
  checkPrerequisites();
  const sock = socketPath(cfg);
  try {
    await apiCall(sock, 'GET', '/v1/status', undefined, 2000);
    throw new PodnetError(ErrorCode.Precondition, `a podnet daemon for node ${cfg.node} is already running on ${sock}`);
  } catch (err) {
    if (err instanceof PodnetError && err.code === ErrorCode.Precondition && err.message.startsWith('a podnet daemon')) throw err;
  }

  const underlay = await detectUnderlay(cfg);
  const cluster = await ClusterMembership.join(cfg, underlay, log);
  let node: NodeRuntime | undefined;
  const api = new ApiServer();
  let metrics: MetricsServer | undefined;
  let capture: CaptureService | undefined;
  let flowLog: FlowLog | undefined;
  let stopping: Promise<void> | undefined;

  let finished: () => void = () => undefined;
  const stop = (why: string, cleanup = !!opts.cleanup): Promise<void> =>
    (stopping ??= (async () => {
      log.info({ why, cleanup }, cleanup ? 'stopping: removing pods, devices, routes and rules' : 'stopping: pods, devices, routes and conntrack stay for the next daemon');
      capture?.stopAll();
      await api.close(sock);
      await metrics?.close();
      await cluster.stopDataplane({ keepRules: !cleanup });
      await node?.stop({ cleanup });
      await cluster.leave({ deregister: cleanup });
      log.info('stopped');
    })());

  try {
    node = new NodeRuntime(cfg, cluster.subnet, log);
    await cluster.attach(node);
    await node.start();
    const n = node;
    await cluster.republish(n.listPods());
    api
      .route('GET', '/v1/status', (_b, p) => ({
        ...n.status(),
        underlay,
        cluster: cluster.status(),
        policy: cluster.policy?.status(),
        process: processStatus(p.gc === '1'),
        observe: { captures: capture?.list() ?? [], flowRecords: flowLog?.next ?? 0, flowCapacity: flowLog?.capacity ?? 0 },
      }))
      .route('GET', '/v1/pods', () => n.listPods().map((p) => ({ ...p, policyDenials: n.policy.podDenials(parseIpv4(p.ip)) })))
      .route('POST', '/v1/pods', (body) => n.addPod((body ?? {}) as { name: unknown }))
      .route('GET', '/v1/pods/:name', (_b, p) => n.getPod(p.name!))
      .route('DELETE', '/v1/pods/:name', (_b, p) => n.delPod(p.name!))
      .route('GET', '/v1/cluster/pods', () => cluster.listAllPods())
      .route('GET', '/v1/nodes', () => cluster.listNodes())
      .route('GET', '/v1/policies', (_b, p) => cluster.policy!.list(p.namespace))
      .route('POST', '/v1/policies', (body) => cluster.policy!.apply(body))
      .route('DELETE', '/v1/policies/:namespace/:name', (_b, p) => cluster.policy!.delete(p.namespace!, p.name!))
      .route('POST', '/v1/policy/check', (body) => cluster.policy!.check((body ?? {}) as { from?: unknown; to?: unknown }))
      .route('GET', '/v1/policy/status', () => cluster.policy!.status())
      .route('GET', '/v1/namespaces', () => cluster.policy!.listNamespaces())
      .route('POST', '/v1/namespaces', (body) => cluster.policy!.setNamespace(body))
      .route('DELETE', '/v1/namespaces/:name', (_b, p) => cluster.policy!.deleteNamespace(p.name!))
      .route('GET', '/v1/services', () => cluster.services!.list())
      .route('POST', '/v1/services', (body) => cluster.services!.create(body))
      .route('DELETE', '/v1/services/:name', (_b, p) => cluster.services!.delete(p.name!))
      .route('GET', '/v1/ingresses', () => cluster.ingress!.list())
      .route('POST', '/v1/ingresses', (body) => cluster.ingress!.create(body))
      .route('DELETE', '/v1/ingresses/:name', (_b, p) => cluster.ingress!.delete(p.name!))
      .route('GET', '/v1/ingress/status', () => cluster.ingress!.status())
      .route('GET', '/v1/conntrack', (_b, p) => n.conntrack.list(n.dp.now, p.limit ? Number(p.limit) : 10000))
      .route('POST', '/v1/conntrack/flush', () => {
        let removed = 0;
        n.conntrack.forEach((id, ct) => void (ct.delete(id) && removed++));
        return { removed };
      })
      // `podnet node reset`: stop and remove everything (as a --cleanup daemon does on SIGTERM). The
      // answer goes out first; the daemon then tears down and exits.
      .route('POST', '/v1/node/reset', () => {
        setImmediate(() => void stop('node reset', true).then(finished, finished));
        return { node: cfg.node, pid: process.pid, pods: n.listPods().length };
      });
    const cap = new CaptureService(
      {
        node: cfg.node,
        router: n.router,
        podPort: (name) => n.podPort(name),
        host: () => n.host,
        overlay: () => cluster.overlay,
        vxlanPort: cfg.vxlan.port,
        underlayIp: () => (cluster.self.underlayIp === '0.0.0.0' ? 0 : parseIpv4(cluster.self.underlayIp)),
        uplinkIngress: () => cluster.uplinkIngress,
      },
      log,
    );
    capture = cap;
    api.streamRoute('/v1/capture', (p, req, res) => cap.handle(p, req, res));
    // The flow log: told of new and refused connections by the router, of established and closed
    // ones by conntrack, of forged-source drops by the switch (see src/observe/flows.ts).
    // Off (flows.capacity 0): nothing is attached, and the routes say so.
    if (cfg.flows.capacity > 0) {
      const flows = new FlowLog(n.conntrack, cfg.flows.capacity);
      flowLog = flows;
      n.router.hooks.observer = flows;
      n.conntrack.events = flows;
      n.dp.switch.dropObserver = (port, reason, buf, off, len) => flows.switchDrop(port, reason, buf, off, len);
      const flowSources = { pods: () => cluster.listAllPods(), services: async () => (cluster.services ? cluster.services.list() : []) };
      api.route('GET', '/v1/flows', (_b, p) => listFlows(flows, flowSources, p));
      api.streamRoute('/v1/flows/follow', (p, req, res) => followFlows(flows, flowSources, p, req, res));
    } else {
      const off = () => {
        throw new PodnetError(ErrorCode.Precondition, `the flow log is off on node ${cfg.node} (config flows.capacity is 0)`);
      };
      api.route('GET', '/v1/flows', off).route('GET', '/v1/flows/follow', off);
    }
    cniRoutes(api, n);
    await api.listen(sock);
    if (cfg.metrics.address !== undefined) {
      metrics = await MetricsServer.start(cfg.metrics.address, buildRegistry({ status: () => ({ ...n.status(), cluster: cluster.status() }) }));
      log.info({ address: metrics.address }, 'metrics: serving GET /metrics');
    }
  } catch (err) {
    await stop('start-up failed');
    throw err;
  }

  log.info({ node: cfg.node, subnet: node.subnet.cidr, socket: sock, underlay }, 'podnet daemon ready');
  await new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals) => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      void stop(sig).then(resolve, (err) => {
        log.error({ err: (err as Error).message }, 'teardown failed');
        resolve();
      });
    };
    finished = () => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      resolve();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

/**
 * The daemon process's own figures: uptime and memory. `collect` first runs a full garbage collection when
 * the process was started with --expose-gc (as the tests do), so `heapUsed + external` is then the memory
 * actually held (live objects and buffers), not the garbage waiting for V8's next collection.
 */
function processStatus(collect: boolean): { pid: number; uptimeSeconds: number; collected: boolean; memory: NodeJS.MemoryUsage } {
  const gc = (globalThis as { gc?: () => void }).gc;
  // Twice: V8 frees the buffers of dead ArrayBuffers on a background sweeper after a collection, and the
  // next collection waits for that sweep to finish, so only after the second do the figures settle.
  if (collect && gc) {
    gc();
    gc();
  }
  return { pid: process.pid, uptimeSeconds: Math.round(process.uptime()), collected: collect && !!gc, memory: process.memoryUsage() };
}
