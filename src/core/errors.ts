// Errors with stable codes. Callers branch on `code`, never on message text. One table maps
// each code to an HTTP status (api/server) and one to a CNI error number (cni/skel).

export type ErrorCode =
  | 'INVALID_ARGUMENT' // a value from a user or peer that does not parse
  | 'INVALID_CONFIG' // a configuration that parses but cannot be used
  | 'UNSUPPORTED_FIELD' // a configuration field we refuse (CNI code 2)
  | 'INCOMPATIBLE_VERSION' // CNI version we do not speak
  | 'MISSING_ENV' // CNI environment variable missing or invalid
  | 'DECODE_FAILED' // bytes or JSON that do not decode
  | 'IO_FAILED' // reading stdin, a file, a socket
  | 'NOT_FOUND' // the thing asked about does not exist
  | 'CONTAINER_UNKNOWN' // the container or its netns does not exist
  | 'ALREADY_EXISTS' // a name or address already in use
  | 'CONFLICT' // an address owned by someone else
  | 'EXHAUSTED' // no free address left
  | 'UNAVAILABLE' // a dependency (the router) is not reachable yet: try again later
  | 'CANCELLED' // the caller went away or a signal aborted
  | 'TIMEOUT'
  | 'KERNEL_FAILED' // a kernel or command-line tool refused a change
  | 'STORE_FAILED' // the persistent store could not write (disk full, corruption)
  | 'ALREADY_RUNNING'
  | 'NOT_RUNNING'
  | 'INTERNAL';

export class WeaveError extends Error {
  readonly code: ErrorCode;
  readonly details: string | undefined;

  constructor(code: ErrorCode, message: string, opts: { cause?: unknown; details?: string } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'WeaveError';
    this.code = code;
    this.details = opts.details;
  }
}

export function isWeaveError(e: unknown, code?: ErrorCode): e is WeaveError {
  return e instanceof WeaveError && (code === undefined || e.code === code);
}

/** Wraps anything thrown into a WeaveError, keeping an existing code. */
export function toWeaveError(e: unknown, fallback: ErrorCode = 'INTERNAL'): WeaveError {
  if (e instanceof WeaveError) return e;
  if (e instanceof Error) return new WeaveError(fallback, e.message, { cause: e });
  return new WeaveError(fallback, String(e));
}

/** Message of any thrown value, for logs and user-facing text. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

const httpStatusByCode: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  INVALID_CONFIG: 400,
  UNSUPPORTED_FIELD: 400,
  INCOMPATIBLE_VERSION: 400,
  MISSING_ENV: 400,
  DECODE_FAILED: 400,
  IO_FAILED: 500,
  NOT_FOUND: 404,
  CONTAINER_UNKNOWN: 404,
  ALREADY_EXISTS: 409,
  // The original answers 400 for claim conflicts and exhausted ranges; clients rely on it.
  CONFLICT: 400,
  EXHAUSTED: 400,
  UNAVAILABLE: 503,
  CANCELLED: 200,
  TIMEOUT: 504,
  KERNEL_FAILED: 500,
  STORE_FAILED: 500,
  ALREADY_RUNNING: 409,
  NOT_RUNNING: 503,
  INTERNAL: 500,
};

export function httpStatusFor(code: ErrorCode): number {
  return httpStatusByCode[code];
}

// CNI spec error numbers: 1 incompatible version, 2 unsupported field, 3 container unknown,
// 4 invalid env, 5 I/O, 6 decode, 7 invalid config, 11 try again later; 100+ plugin-specific.
const cniCodeByCode: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 7,
  INVALID_CONFIG: 7,
  UNSUPPORTED_FIELD: 2,
  INCOMPATIBLE_VERSION: 1,
  MISSING_ENV: 4,
  DECODE_FAILED: 6,
  IO_FAILED: 5,
  NOT_FOUND: 100,
  CONTAINER_UNKNOWN: 3,
  ALREADY_EXISTS: 100,
  CONFLICT: 100,
  EXHAUSTED: 100,
  UNAVAILABLE: 11,
  CANCELLED: 100,
  TIMEOUT: 11,
  KERNEL_FAILED: 100,
  STORE_FAILED: 100,
  ALREADY_RUNNING: 100,
  NOT_RUNNING: 11,
  INTERNAL: 999,
};

export function cniCodeFor(code: ErrorCode): number {
  return cniCodeByCode[code];
}
