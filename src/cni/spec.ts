/**
 * The parts of the CNI specification podnet's plugin speaks: versions, commands, the well-known error
 * codes and the result shape. Written from the spec (SPEC.md of containernetworking/cni, versions 1.0.0
 * and 1.1.0); see docs/ARCHITECTURE.md, "CNI plugin".
 */

/** Spec versions the plugin implements. 1.1.0 adds STATUS, GC and the interface `mtu` in results. */
export const SUPPORTED_VERSIONS = ['1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: CniVersion = '1.1.0';

export function isSupportedVersion(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** True when `v` is at least 1.1.0 (STATUS, GC, interface mtu). */
export function atLeast110(v: CniVersion): boolean {
  return v === '1.1.0';
}

export const Command = {
  Add: 'ADD',
  Del: 'DEL',
  Check: 'CHECK',
  Version: 'VERSION',
  Status: 'STATUS',
  Gc: 'GC',
} as const;
export type Command = (typeof Command)[keyof typeof Command];

export function isCommand(c: unknown): c is Command {
  return typeof c === 'string' && (Object.values(Command) as string[]).includes(c);
}

/** The spec's well-known error codes (0-99), and podnet's own (100+). */
export const CniErrorCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IoFailure: 5,
  DecodeFailure: 6,
  InvalidConfig: 7,
  TryAgainLater: 11,
  /** STATUS: the plugin cannot serve ADD now. */
  NotAvailable: 50,
  /** STATUS: not available, existing containers may have limited connectivity. */
  NotAvailableLimited: 51,
  /** podnet: the daemon refused the request for a reason it names. */
  DaemonRefused: 100,
  /** podnet: CHECK found the attachment different from what ADD made. */
  CheckFailed: 101,
} as const;
export type CniErrorCode = (typeof CniErrorCode)[keyof typeof CniErrorCode];

/** An error the plugin reports as the spec's error JSON on stdout, with a non-zero exit. */
export class CniError extends Error {
  constructor(
    readonly code: CniErrorCode,
    message: string,
    readonly details?: string,
  ) {
    super(message);
    this.name = 'CniError';
  }

  toJSON(cniVersion: string): Record<string, unknown> {
    return { cniVersion, code: this.code, msg: this.message, ...(this.details ? { details: this.details } : {}) };
  }
}

export interface CniInterface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
}

export interface CniIpConfig {
  address: string;
  gateway?: string;
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
}

export interface CniDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIpConfig[];
  routes?: CniRoute[];
  dns?: CniDns;
}
