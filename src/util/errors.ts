/**
 * Errors raised at the edges (CLI, API, config, control plane). The data path never throws: it counts
 * and drops. Every error has a stable machine-readable code so the API can map it to a status and the
 * CLI can print one line naming the problem.
 */
export const ErrorCode = {
  InvalidArgument: 'EINVALID',
  NotFound: 'ENOTFOUND',
  AlreadyExists: 'EEXIST',
  Exhausted: 'EEXHAUSTED',
  Precondition: 'EPRECONDITION',
  Command: 'ECOMMAND',
  Internal: 'EINTERNAL',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class PodnetError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'PodnetError';
  }
}

export const invalid = (msg: string) => new PodnetError(ErrorCode.InvalidArgument, msg);
export const notFound = (msg: string) => new PodnetError(ErrorCode.NotFound, msg);
export const exists = (msg: string) => new PodnetError(ErrorCode.AlreadyExists, msg);

/** HTTP status used by the API for each code. */
export function httpStatus(code: string): number {
  switch (code) {
    case ErrorCode.InvalidArgument:
      return 400;
    case ErrorCode.NotFound:
      return 404;
    case ErrorCode.AlreadyExists:
      return 409;
    case ErrorCode.Exhausted:
      return 507;
    case ErrorCode.Precondition:
      return 412;
    default:
      return 500;
  }
}
