// JSON as Go's encoding/json writes it, for the `/report` document and the `json` template
// function: bigint (Go uint64 such as peer UIDs) as bare digits, `<`, `>`, `&`, U+2028 and
// U+2029 escaped, MarshalIndent layout. Plus a JSON reader that keeps big integers exact.
import { WeaveError } from './errors.js';

function quote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || ch === '<' || ch === '>' || ch === '&' || c === 0x2028 || c === 0x2029) {
      out += '\\u' + c.toString(16).padStart(4, '0');
    } else out += ch;
  }
  return out + '"';
}

function number(n: number): string {
  if (!Number.isFinite(n)) throw new WeaveError('INVALID_ARGUMENT', `json: unsupported value: ${n}`);
  if (Number.isInteger(n) && Math.abs(n) < 1e21) return String(n);
  const a = Math.abs(n);
  if (a !== 0 && (a < 1e-6 || a >= 1e21)) {
    // Go: exponent form with at least two exponent digits (1e-07).
    return n.toExponential().replace(/e([+-])(\d)$/, 'e$10$2').replace('e+', 'e+');
  }
  return String(n);
}

const NIL_SLICE: unique symbol = Symbol('go.nilSlice');

/**
 * A Go nil slice: an empty list that JSON writes as `null` (as Go's encoding/json does a slice
 * nothing was appended to) while templates see an empty slice (`[]` with %v, `len` 0), which a
 * plain null cannot be.
 */
export function goNilSlice<T>(): T[] {
  return Object.freeze(Object.assign([], { [NIL_SLICE]: true })) as unknown as T[];
}

function isNilSlice(v: unknown[]): boolean {
  return (v as { [NIL_SLICE]?: boolean })[NIL_SLICE] === true;
}

/** Go's json.Marshal (indent undefined) or json.MarshalIndent(v, "", indent). */
export function goJsonMarshal(value: unknown, indent?: string): string {
  const nl = (depth: number) => (indent === undefined ? '' : '\n' + indent.repeat(depth));
  const sep = indent === undefined ? ':' : ': ';
  const enc = (v: unknown, depth: number): string => {
    if (v === null || v === undefined) return 'null';
    if (typeof v === 'string') return quote(v);
    if (typeof v === 'number') return number(v);
    if (typeof v === 'bigint') return v.toString();
    if (typeof v === 'boolean') return v ? 'true' : 'false';
    if (Array.isArray(v)) {
      if (v.length === 0) return isNilSlice(v) ? 'null' : '[]';
      return '[' + v.map((x) => nl(depth + 1) + enc(x, depth + 1)).join(',') + nl(depth) + ']';
    }
    if (typeof v === 'object') {
      const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
      if (entries.length === 0) return '{}';
      return '{' + entries.map(([k, x]) => nl(depth + 1) + quote(k) + sep + enc(x, depth + 1)).join(',') + nl(depth) + '}';
    }
    throw new WeaveError('INVALID_ARGUMENT', `json: unsupported type ${typeof v}`);
  };
  return enc(value, 0);
}

/** JSON.parse, except that integers beyond 2^53 become bigint (Go's uint64 fields). */
export function parseJsonBigInt(text: string): unknown {
  let i = 0;
  const fail = (what: string): never => {
    throw new WeaveError('DECODE_FAILED', `invalid JSON at offset ${i}: ${what}`);
  };
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const str = (): string => {
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    if (i >= text.length) fail('unterminated string');
    i++;
    try {
      return JSON.parse(text.slice(start, i)) as string;
    } catch {
      // A bad escape or a raw control character: JSON.parse's SyntaxError, as ours.
      i = start;
      return fail('invalid string');
    }
  };
  const val = (depth: number): unknown => {
    if (depth > 512) fail('nested too deeply');
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const o: Record<string, unknown> = {};
      ws();
      if (text[i] === '}') {
        i++;
        return o;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a key');
        const k = str();
        ws();
        if (text[i++] !== ':') fail('expected ":"');
        // A plain assignment to "__proto__" would set the prototype and drop the key.
        Object.defineProperty(o, k, { value: val(depth + 1), enumerable: true, writable: true, configurable: true });
        ws();
        const d = text[i++];
        if (d === '}') return o;
        if (d !== ',') fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      i++;
      const a: unknown[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return a;
      }
      for (;;) {
        a.push(val(depth + 1));
        ws();
        const d = text[i++];
        if (d === ']') return a;
        if (d !== ',') fail('expected "," or "]"');
      }
    }
    if (c === '"') return str();
    const m = /^(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null)/.exec(text.slice(i, i + 400));
    if (!m) return fail('unexpected character');
    i += m[0].length;
    if (m[0] === 'true') return true;
    if (m[0] === 'false') return false;
    if (m[0] === 'null') return null;
    if (/^-?[0-9]+$/.test(m[0]) && !Number.isSafeInteger(Number(m[0]))) return BigInt(m[0]);
    return Number(m[0]);
  };
  const v = val(0);
  ws();
  if (i !== text.length) fail('trailing data');
  return v;
}

/**
 * A time as Go's encoding/json writes a time.Time in UTC (RFC 3339 with the fraction's trailing
 * zeros dropped): 2026-11-27T17:58:54.89Z. JavaScript times have milliseconds only.
 */
export function goJsonTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.?0+Z$/, 'Z');
}
