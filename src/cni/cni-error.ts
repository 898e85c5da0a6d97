// The CNI error document and how any thrown value becomes one. A WeaveError's stable code maps
// to a CNI number through core/errors (cniCodeFor); CniError carries a number of its own when
// no WeaveError code fits: a delegated plugin's error passed through unchanged, or one of the
// plugin-specific numbers (100+) below. Anything else is 999, as libcni's skel reports it.
import { WeaveError, cniCodeFor, type ErrorCode } from '../core/errors.js';

/** CNI error numbers (spec: 0-99 reserved, 100+ plugin-specific). */
export const CNI_ERR = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  CONTAINER_UNKNOWN: 3,
  INVALID_ENV: 4,
  IO: 5,
  DECODE: 6,
  INVALID_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  /** STATUS: the plugin cannot service ADD. */
  NOT_AVAILABLE: 50,
  /** CHECK found the container's network different from prevResult. */
  CHECK_FAILED: 100,
  INTERNAL: 999,
} as const;

export class CniError extends WeaveError {
  readonly cniCode: number;

  constructor(cniCode: number, message: string, opts: { code?: ErrorCode; details?: string; cause?: unknown } = {}) {
    super(opts.code ?? 'INTERNAL', message, { ...(opts.details !== undefined ? { details: opts.details } : {}), cause: opts.cause });
    this.name = 'CniError';
    this.cniCode = cniCode;
  }
}

export interface CniErrorDocument {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

/** The CNI number for anything thrown. */
export function cniCodeOf(e: unknown): number {
  if (e instanceof CniError) return e.cniCode;
  if (e instanceof WeaveError) return cniCodeFor(e.code);
  return CNI_ERR.INTERNAL;
}

export function errorDocument(e: unknown, cniVersion: string): CniErrorDocument {
  const msg = e instanceof Error ? e.message : String(e);
  const details = e instanceof WeaveError ? e.details : undefined;
  return { cniVersion, code: cniCodeOf(e), msg, ...(details ? { details } : {}) };
}
