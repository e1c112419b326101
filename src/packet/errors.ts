/**
 * Parse result codes and the error class thrown at the edges.
 *
 * On the data path every view's `reset()` returns one of the `ParseError` numbers (0 = ok) and never
 * throws. `PacketError` is thrown only by the static `XxxView.parse()` helpers and by the string
 * parsers / `Repr` emitters used at the edges (config, CLI, tests).
 */

export const ParseError = {
  Ok: 0,
  Truncated: 1,
  BadVersion: 2,
  BadHeaderLength: 3,
  BadTotalLength: 4,
  BadLength: 5,
  BadFlags: 6,
  Unsupported: 7,
} as const;
export type ParseError = (typeof ParseError)[keyof typeof ParseError];
export type ParseErrorName = keyof typeof ParseError;

const PARSE_ERROR_NAMES: readonly string[] = (() => {
  const names: string[] = [];
  for (const [name, code] of Object.entries(ParseError)) names[code] = name;
  return names;
})();

/** `parseErrorName(3) === 'BadHeaderLength'`; unknown codes give `'Unknown(<n>)'`. */
export function parseErrorName(e: number): string {
  const name = Number.isInteger(e) && e >= 0 ? PARSE_ERROR_NAMES[e] : undefined;
  return name ?? `Unknown(${e})`;
}

/**
 * Codes carried by `PacketError.code`: a `ParseError` name when a view failed to parse, or one of
 * these for the string parsers and emitters.
 */
export const PacketErrorCode = {
  BadAddress: 'BadAddress',
  BadCidr: 'BadCidr',
  BadMac: 'BadMac',
  BadRepr: 'BadRepr',
} as const;
export type PacketErrorCode = ParseErrorName | (typeof PacketErrorCode)[keyof typeof PacketErrorCode];

export class PacketError extends Error {
  override readonly name = 'PacketError';
  readonly code: string;

  constructor(code: PacketErrorCode, message: string) {
    super(message);
    this.code = code;
  }

  /** The error a `XxxView.parse()` helper throws for a non-zero `reset()` result. */
  static fromParse(protocol: string, e: ParseError, off: number, len: number): PacketError {
    const name = parseErrorName(e);
    return new PacketError(
      name as ParseErrorName,
      `${protocol}: ${name} (offset ${off}, length ${len})`,
    );
  }
}
