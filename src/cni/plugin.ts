import { apiCall } from '../api/client.js';
import { ErrorCode, PodnetError } from '../util/errors.js';
import { labelsFor, parseEnv, parseNetConf, peekVersion, resolveSocket, type CniEnv, type NetConf } from './config.js';
import { buildAddResult, checkPrevResult, type AttachmentView } from './result.js';
import { atLeast110, Command, CniError, CniErrorCode, isSupportedVersion, LATEST_VERSION, SUPPORTED_VERSIONS } from './spec.js';

/** How the plugin reaches the daemon: the API client, replaceable in unit tests of the protocol. */
export type Api = <T>(socket: string, method: string, path: string, body?: unknown) => Promise<T>;

export interface PluginOutput {
  /** What goes to stdout: a result, VERSION's answer, error JSON, or nothing. */
  stdout: string;
  exitCode: number;
}

const defaultApi: Api = (socket, method, path, body) => apiCall(socket, method, path, body, 60_000);

/** One CNI invocation: the environment and stdin in, stdout and exit code out. */
export async function runPlugin(env: NodeJS.ProcessEnv, stdin: string, api: Api = defaultApi): Promise<PluginOutput> {
  try {
    const e = parseEnv(env);
    if (e.command === Command.Version) return { stdout: JSON.stringify(versionInfo(stdin)) + '\n', exitCode: 0 };
    const conf = parseNetConf(stdin);
    const out = await dispatch(e, conf, api);
    return { stdout: out === undefined ? '' : JSON.stringify(out) + '\n', exitCode: 0 };
  } catch (err) {
    const e = err instanceof CniError ? err : new CniError(CniErrorCode.DaemonRefused, (err as Error).message);
    return { stdout: JSON.stringify(e.toJSON(peekVersion(stdin))) + '\n', exitCode: 1 };
  }
}

function versionInfo(stdin: string): { cniVersion: string; supportedVersions: string[] } {
  let v: unknown;
  try {
    v = stdin.trim() ? (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion : undefined;
  } catch {
    v = undefined;
  }
  return { cniVersion: isSupportedVersion(v) ? v : LATEST_VERSION, supportedVersions: [...SUPPORTED_VERSIONS] };
}

/** Maps a daemon (or transport) error onto the spec's codes; `unavailable` for an absent daemon. */
function fromDaemon(err: unknown, unavailable: CniErrorCode = CniErrorCode.TryAgainLater): CniError {
  if (err instanceof CniError) return err;
  if (!(err instanceof PodnetError)) return new CniError(CniErrorCode.DaemonRefused, String((err as Error)?.message ?? err));
  switch (err.code) {
    case ErrorCode.Precondition:
      return new CniError(unavailable, `podnet daemon not available: ${err.message}`);
    case ErrorCode.InvalidArgument:
      return new CniError(CniErrorCode.InvalidConfig, err.message);
    case ErrorCode.NotFound:
      return new CniError(CniErrorCode.UnknownContainer, err.message);
    default:
      return new CniError(CniErrorCode.DaemonRefused, `podnet daemon: ${err.message}`);
  }
}

async function dispatch(e: CniEnv, conf: NetConf, api: Api): Promise<unknown> {
  const needs110 = (what: string) => {
    if (!atLeast110(conf.cniVersion)) throw new CniError(CniErrorCode.IncompatibleVersion, `${what} is a CNI 1.1.0 command; the network config says cniVersion ${conf.cniVersion}`);
  };
  switch (e.command) {
    case Command.Add: {
      const socket = resolveSocket(conf);
      let a: AttachmentView;
      try {
        a = await api<AttachmentView>(socket, 'POST', '/v1/cni/attachments', {
          containerId: e.containerId,
          ifname: e.ifname,
          netns: e.netns,
          network: conf.name,
          labels: labelsFor(conf, e),
          // The pod's Kubernetes namespace, for NetworkPolicy (default: `default`).
          ...(e.args.K8S_POD_NAMESPACE ? { namespace: e.args.K8S_POD_NAMESPACE } : {}),
          device: conf.device,
        });
      } catch (err) {
        throw fromDaemon(err);
      }
      return buildAddResult(conf.cniVersion, a, { prevResult: conf.prevResult, dns: conf.dns });
    }
    case Command.Check: {
      if (!conf.prevResult) throw new CniError(CniErrorCode.InvalidConfig, 'invalid network config: CHECK needs the prevResult of ADD');
      const socket = resolveSocket(conf);
      let a: AttachmentView;
      try {
        a = await api<AttachmentView>(socket, 'POST', '/v1/cni/check', { containerId: e.containerId, ifname: e.ifname, netns: e.netns });
      } catch (err) {
        const c = fromDaemon(err);
        throw c.code === CniErrorCode.InvalidConfig ? new CniError(CniErrorCode.CheckFailed, c.message) : c;
      }
      const wrong = checkPrevResult(conf.prevResult, a);
      if (wrong) throw new CniError(CniErrorCode.CheckFailed, wrong);
      return undefined;
    }
    case Command.Del: {
      // Idempotent: an attachment the daemon does not know is already gone. An absent daemon is not
      // "gone" (it holds the address): the runtime is told to try again.
      const socket = resolveSocket(conf);
      try {
        await api(socket, 'DELETE', '/v1/cni/attachments', { containerId: e.containerId, ifname: e.ifname });
      } catch (err) {
        throw fromDaemon(err);
      }
      return undefined;
    }
    case Command.Status: {
      needs110('STATUS');
      let socket: string;
      try {
        socket = resolveSocket(conf);
      } catch (err) {
        throw (err as CniError).code === CniErrorCode.TryAgainLater ? new CniError(CniErrorCode.NotAvailable, (err as Error).message) : err;
      }
      try {
        await api(socket, 'GET', '/v1/cni/status');
      } catch (err) {
        throw fromDaemon(err, CniErrorCode.NotAvailable);
      }
      return undefined;
    }
    case Command.Gc: {
      needs110('GC');
      // Without the list every attachment would look stale: refuse rather than remove them all.
      if (!conf.validAttachments) throw new CniError(CniErrorCode.InvalidConfig, 'invalid network config: GC needs cni.dev/valid-attachments');
      const socket = resolveSocket(conf);
      try {
        await api(socket, 'POST', '/v1/cni/gc', { network: conf.name, valid: conf.validAttachments });
      } catch (err) {
        throw fromDaemon(err);
      }
      return undefined;
    }
    default:
      throw new CniError(CniErrorCode.InvalidEnvironment, `CNI_COMMAND ${String(e.command)} is not supported`);
  }
}
