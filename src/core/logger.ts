// Structured logging through an injected, scoped logger. The daemon builds one pino logger in
// its composition root; modules receive `logger.child({ component })` and log fields, not prose.
import { pino, type DestinationStream } from 'pino';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(fields: Record<string, unknown>, msg: string): void;
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

/** Maps Weave Net's level names (`warning`) onto ours. */
export function parseLogLevel(s: string): LogLevel {
  const v = s.toLowerCase();
  if (v === 'warning' || v === 'warn') return 'warn';
  if (v === 'debug' || v === 'info' || v === 'error') return v;
  throw new Error(`invalid log level "${s}" (debug, info, warning, error)`);
}

export function createLogger(opts: { level: LogLevel; destination?: DestinationStream; name?: string }): Logger {
  const base = pino(
    {
      level: opts.level,
      base: opts.name ? { name: opts.name } : null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? pino.destination({ dest: 2, sync: true }),
  );
  return wrap(base);
}

function wrap(p: pino.Logger): Logger {
  return {
    debug: (f, m) => p.debug(f, m),
    info: (f, m) => p.info(f, m),
    warn: (f, m) => p.warn(f, m),
    error: (f, m) => p.error(f, m),
    child: (b) => wrap(p.child(b)),
  };
}

/** A logger that keeps records in memory, for tests. */
export class MemoryLogger implements Logger {
  readonly records: { level: LogLevel; msg: string; fields: Record<string, unknown> }[];
  private readonly bindings: Record<string, unknown>;

  constructor(records: MemoryLogger['records'] = [], bindings: Record<string, unknown> = {}) {
    this.records = records;
    this.bindings = bindings;
  }
  private log(level: LogLevel, fields: Record<string, unknown>, msg: string) {
    this.records.push({ level, msg, fields: { ...this.bindings, ...fields } });
  }
  debug(f: Record<string, unknown>, m: string) { this.log('debug', f, m); }
  info(f: Record<string, unknown>, m: string) { this.log('info', f, m); }
  warn(f: Record<string, unknown>, m: string) { this.log('warn', f, m); }
  error(f: Record<string, unknown>, m: string) { this.log('error', f, m); }
  child(b: Record<string, unknown>): Logger {
    return new MemoryLogger(this.records, { ...this.bindings, ...b });
  }
}

export const silentLogger: Logger = {
  debug() {}, info() {}, warn() {}, error() {},
  child() { return silentLogger; },
};
