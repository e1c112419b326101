/**
 * Errors raised by the cluster store and registry. Codes that mean the same thing as the project-wide
 * codes (invalid argument, exhausted, not found) use the same strings, so an API layer can map either.
 */
export const StoreErrorCode = {
  InvalidArgument: 'EINVALID',
  /** The pod CIDR has no free subnet left. */
  Exhausted: 'EEXHAUSTED',
  /** A put named a lease that is revoked or expired. */
  LeaseNotFound: 'ENOTFOUND',
  /** A held lease could not be kept alive. */
  LeaseLost: 'ELEASELOST',
  /** A watch asked for history the store no longer keeps. */
  Compacted: 'ECOMPACTED',
  /** The store was closed. */
  Closed: 'ECLOSED',
  /** The backend failed (database error, etcd unreachable). */
  Backend: 'EBACKEND',
} as const;
export type StoreErrorCode = (typeof StoreErrorCode)[keyof typeof StoreErrorCode];

export class StoreError extends Error {
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StoreError';
  }
}

export function isStoreError(err: unknown, code?: StoreErrorCode): err is StoreError {
  return err instanceof StoreError && (code === undefined || err.code === code);
}
