// A subset of Go's text/template, enough for Weave Net's `weave report -f '<template>'`
// (served as `GET /report?format=`): text, {{- -}} trimming, comments, field chains on the dot
// and on variables, variables, if / else if / else, with, range (arrays, and objects in key
// order as Go ranges over maps), pipelines, parentheses, literals, and the functions users
// reach for: len index print printf println eq ne lt le gt ge and or not json html js urlquery.
// Parsing and execution are total: any input gives a string or a WeaveError.
import { WeaveError } from './errors.js';
import { goJsonMarshal } from './go-json.js';

export { goJsonMarshal, goNilSlice, parseJsonBigInt } from './go-json.js';

type Fn = (...args: unknown[]) => unknown;

// ---------- lexing ----------

type Tok =
  | { k: 'field'; names: string[] } // .A.B  (empty names = the dot)
  | { k: 'var'; name: string; names: string[] } // $x.A
  | { k: 'ident'; v: string }
  | { k: 'str'; v: string }
  | { k: 'num'; v: number }
  | { k: 'bool'; v: boolean }
  | { k: 'nil' }
  | { k: 'lp' } | { k: 'rp' } | { k: 'pipe' } | { k: 'decl' } | { k: 'assign' } | { k: 'comma' };

function err(msg: string): WeaveError {
  return new WeaveError('INVALID_ARGUMENT', `template: ${msg}`);
}

// Bounds on one execution: the output, the strings functions make (held in variables they never
// reach the output), and the work (nodes, range iterations, KiB of strings handed to functions).
const MAX_OUTPUT = 16 << 20;
const MAX_STEPS = 5_000_000;

function tooLarge(): WeaveError {
  return err('template execution too large');
}

function lexAction(src: string): Tok[] {
  const toks: Tok[] = [];
  let i = 0;
  const names = (): string[] => {
    const out: string[] = [];
    while (src[i] === '.' && /[A-Za-z_]/.test(src[i + 1] ?? '')) {
      i++;
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i))!;
      out.push(m[0]);
      i += m[0].length;
    }
    return out;
  };
  while (i < src.length) {
    const c = src[i]!;
    if (' \t\r\n'.includes(c)) { i++; continue; }
    if (c === '(') { toks.push({ k: 'lp' }); i++; continue; }
    if (c === ')') {
      toks.push({ k: 'rp' });
      i++;
      // (pipeline).Field
      if (src[i] === '.' && /[A-Za-z_]/.test(src[i + 1] ?? '')) toks.push({ k: 'field', names: names() });
      continue;
    }
    if (c === '|') { toks.push({ k: 'pipe' }); i++; continue; }
    if (c === ',') { toks.push({ k: 'comma' }); i++; continue; }
    if (c === ':' && src[i + 1] === '=') { toks.push({ k: 'decl' }); i += 2; continue; }
    if (c === '=') { toks.push({ k: 'assign' }); i++; continue; }
    if (c === '.') {
      if (/[A-Za-z_]/.test(src[i + 1] ?? '')) toks.push({ k: 'field', names: names() });
      else { toks.push({ k: 'field', names: [] }); i++; }
      continue;
    }
    if (c === '$') {
      i++;
      const m = /^[A-Za-z0-9_]*/.exec(src.slice(i))!;
      i += m[0].length;
      toks.push({ k: 'var', name: '$' + m[0], names: names() });
      continue;
    }
    if (c === '"') {
      let j = i + 1;
      while (j < src.length && src[j] !== '"') j += src[j] === '\\' ? 2 : 1;
      if (j >= src.length) throw err('unterminated quoted string');
      try {
        toks.push({ k: 'str', v: JSON.parse(src.slice(i, j + 1)) as string });
      } catch {
        throw err(`bad string literal ${src.slice(i, j + 1)}`);
      }
      i = j + 1;
      continue;
    }
    if (c === '`') {
      const j = src.indexOf('`', i + 1);
      if (j < 0) throw err('unterminated raw quoted string');
      toks.push({ k: 'str', v: src.slice(i + 1, j) });
      i = j + 1;
      continue;
    }
    const num = /^[-+]?(?:0x[0-9a-fA-F]+|[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)/.exec(src.slice(i));
    if (num && (/[0-9]/.test(c) || ((c === '-' || c === '+') && /[0-9]/.test(src[i + 1] ?? '')))) {
      toks.push({ k: 'num', v: Number(num[0]) });
      i += num[0].length;
      continue;
    }
    const id = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i));
    if (id) {
      i += id[0].length;
      if (id[0] === 'true' || id[0] === 'false') toks.push({ k: 'bool', v: id[0] === 'true' });
      else if (id[0] === 'nil') toks.push({ k: 'nil' });
      else toks.push({ k: 'ident', v: id[0] });
      continue;
    }
    throw err(`unexpected "${c}" in action`);
  }
  return toks;
}

// ---------- parsing ----------

type Operand =
  | { k: 'field'; names: string[] }
  | { k: 'var'; name: string; names: string[] }
  | { k: 'lit'; v: unknown }
  | { k: 'fn'; name: string }
  | { k: 'sub'; pipe: Pipeline; names: string[] };

interface Command { args: Operand[] }
interface Pipeline { decl: string[]; assign: boolean; cmds: Command[] }

type Node =
  | { k: 'text'; v: string }
  | { k: 'action'; pipe: Pipeline }
  | { k: 'if' | 'with'; pipe: Pipeline; list: Node[]; elseList: Node[] }
  | { k: 'range'; pipe: Pipeline; list: Node[]; elseList: Node[] };

function parsePipeline(toks: Tok[], allowDecl: boolean): Pipeline {
  let pos = 0;
  const decl: string[] = [];
  let assign = false;
  // $x := ... | $i, $e := ...
  if (allowDecl && toks[0]?.k === 'var' && toks[0].names.length === 0) {
    const second = toks[1];
    if (second?.k === 'decl' || second?.k === 'assign') {
      decl.push(toks[0].name);
      assign = second.k === 'assign';
      pos = 2;
    } else if (second?.k === 'comma' && toks[2]?.k === 'var' && toks[3]?.k === 'decl') {
      decl.push(toks[0].name, (toks[2] as { name: string }).name);
      pos = 4;
    }
  }
  const parseCmds = (end: number): Command[] => {
    const cmds: Command[] = [{ args: [] }];
    while (pos < end) {
      const t = toks[pos]!;
      if (t.k === 'pipe') {
        if (cmds[cmds.length - 1]!.args.length === 0) throw err('missing command before |');
        cmds.push({ args: [] });
        pos++;
        continue;
      }
      cmds[cmds.length - 1]!.args.push(parseOperand(end));
    }
    if (cmds.some((c) => c.args.length === 0)) throw err('missing command');
    return cmds;
  };
  const parseOperand = (end: number): Operand => {
    const t = toks[pos++]!;
    switch (t.k) {
      case 'field': return { k: 'field', names: t.names };
      case 'var': return { k: 'var', name: t.name, names: t.names };
      case 'str': return { k: 'lit', v: t.v };
      case 'num': return { k: 'lit', v: t.v };
      case 'bool': return { k: 'lit', v: t.v };
      case 'nil': return { k: 'lit', v: null };
      case 'ident': return { k: 'fn', name: t.v };
      case 'lp': {
        let depth = 1;
        let j = pos;
        while (j < end && depth > 0) {
          const k = toks[j]!.k;
          if (k === 'lp') depth++;
          else if (k === 'rp') depth--;
          j++;
        }
        if (depth !== 0) throw err('unclosed left paren');
        const inner = toks.slice(pos, j - 1);
        pos = j;
        const sub = parsePipeline(inner, false);
        let names: string[] = [];
        const next = toks[pos];
        if (next?.k === 'field' && next.names.length) {
          names = next.names;
          pos++;
        }
        return { k: 'sub', pipe: sub, names };
      }
      default:
        throw err(`unexpected ${t.k} in operand`);
    }
  };
  const cmds = parseCmds(toks.length);
  return { decl, assign, cmds };
}

interface Frame { list: Node[]; kind: 'root' | 'if' | 'with' | 'range'; node?: Node & { elseList: Node[]; list: Node[] }; inElse: boolean; chained: number }

function parse(text: string): Node[] {
  const root: Frame = { list: [], kind: 'root', inElse: false, chained: 0 };
  const stack: Frame[] = [root];
  let i = 0;
  let trimNext = false;
  const top = () => stack[stack.length - 1]!;
  const emit = (n: Node) => {
    const f = top();
    (f.inElse ? f.node!.elseList : f.list).push(n);
  };
  const open = (k: 'if' | 'with' | 'range', pipe: Pipeline, chained = 0) => {
    const node = { k, pipe, list: [] as Node[], elseList: [] as Node[] } as Node & { elseList: Node[]; list: Node[] };
    emit(node);
    stack.push({ list: node.list, kind: k, node, inElse: false, chained });
  };
  while (i < text.length) {
    const start = text.indexOf('{{', i);
    let chunk = start < 0 ? text.slice(i) : text.slice(i, start);
    if (trimNext) chunk = chunk.replace(/^[ \t\r\n]+/, '');
    trimNext = false;
    if (start < 0) {
      if (chunk) emit({ k: 'text', v: chunk });
      break;
    }
    let body = start + 2;
    if (text.startsWith('- ', body) || text.startsWith('-\t', body) || text.startsWith('-\n', body)) {
      chunk = chunk.replace(/[ \t\r\n]+$/, '');
      body += 1;
    }
    if (chunk) emit({ k: 'text', v: chunk });
    // Comments may contain "}}" only inside /* */.
    let end: number;
    const trimmed = text.slice(body).replace(/^[ \t\r\n]*/, '');
    if (trimmed.startsWith('/*')) {
      const close = text.indexOf('*/', body);
      if (close < 0) throw err('unclosed comment');
      end = text.indexOf('}}', close + 2);
    } else {
      end = text.indexOf('}}', body);
    }
    if (end < 0) throw err('unclosed action');
    let inner = text.slice(body, end);
    if (/[ \t\r\n]-$/.test(inner)) {
      inner = inner.slice(0, -1);
      trimNext = true;
    }
    i = end + 2;
    const src = inner.trim();
    if (src.startsWith('/*')) continue;
    if (src === '') throw err('missing value for command');
    const kw = /^(if|with|range|else|end|template|define|block|break|continue)\b/.exec(src)?.[1];
    const rest = kw ? src.slice(kw.length) : src;
    switch (kw) {
      case 'if':
      case 'with':
      case 'range':
        open(kw, parsePipeline(lexAction(rest), true));
        break;
      case 'else': {
        const f = top();
        if (f.kind === 'root' || f.inElse) throw err('unexpected {{else}}');
        const r = rest.trim();
        f.inElse = true;
        const chain = /^(if|with)\b/.exec(r)?.[1] as 'if' | 'with' | undefined;
        if (chain) {
          if (chain !== f.kind) throw err(`{{else ${chain}}} inside {{${f.kind}}}`);
          // {{else if x}} = {{else}}{{if x}} closed by the same {{end}}.
          open(chain, parsePipeline(lexAction(r.slice(chain.length)), true), f.chained + 1);
        } else if (r !== '') {
          throw err(`unexpected "${r}" after else`);
        }
        break;
      }
      case 'end': {
        if (rest.trim() !== '') throw err('unexpected text after end');
        const f = top();
        if (f.kind === 'root') throw err('unexpected {{end}}');
        const n = f.chained;
        stack.pop();
        for (let c = 0; c < n; c++) stack.pop();
        break;
      }
      case undefined:
        emit({ k: 'action', pipe: parsePipeline(lexAction(src), true) });
        break;
      default:
        throw err(`{{${kw}}} is not supported`);
    }
  }
  if (stack.length !== 1) throw err(`unexpected EOF: {{${top().kind}}} not closed`);
  return root.list;
}

// ---------- values ----------

function truth(v: unknown): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === '' || v === 0n) return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v as object).length > 0;
  return true;
}

/**
 * The Go String() method of a value: fmt (so {{.X}}, print, printf %v %s %q) prints that text,
 * while field access and json see the fields, as Go does with a Stringer struct such as the
 * original's address.CIDR. A symbol key: JSON and range over the fields never see it.
 */
export const fmtString: unique symbol = Symbol('weave.fmtString');

export interface FmtStringer {
  [fmtString](): string;
}

function isFmtStringer(v: object): v is FmtStringer {
  return typeof (v as Partial<FmtStringer>)[fmtString] === 'function';
}

/** Go's %v. */
export function goFormatValue(v: unknown): string {
  if (v === null) return '<nil>';
  if (v === undefined) return '<no value>';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (typeof v === 'object' && isFmtStringer(v)) return v[fmtString]();
  if (Array.isArray(v)) return '[' + v.map(goFormatValue).join(' ') + ']';
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return 'map[' + Object.keys(o).sort().map((k) => `${k}:${goFormatValue(o[k])}`).join(' ') + ']';
  }
  return String(v);
}

function num(v: unknown, what: string): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  throw err(`${what}: expected a number, got ${goFormatValue(v)}`);
}

/** Go's fmt parsenum: it gives up once the number so far exceeds 1e6 (fmt's tooLarge). */
function parsenum(digits: string): number | undefined {
  let n = 0;
  for (const d of digits) {
    if (n > 1e6) return undefined;
    n = n * 10 + Number(d);
  }
  return n;
}

/** The first n code points of s, without splitting all of s into an array. */
function firstRunes(s: string, n: number): string {
  let i = 0;
  for (let c = 0; c < n && i < s.length; c++) i += s.codePointAt(i)! > 0xffff ? 2 : 1;
  return s.slice(0, i);
}

/**
 * Go's strconv.FormatFloat(x, 'f', prec): toFixed, except at an exact tie (x × 10^prec is an
 * integer and a half, as 6.25 is), which Go rounds to even and toFixed rounds away from zero:
 * `weave status ipam` shows a sixteenth of a range as 06.2%, not 06.3%.
 */
export function goFixed(x: number, prec: number): string {
  const s = x.toFixed(prec);
  if (!Number.isFinite(x) || x === 0 || Math.abs(x) >= 1e21) return s;
  // |x| = m × 2^e exactly.
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Math.abs(x));
  const bits = view.getBigUint64(0);
  const biased = Number((bits >> 52n) & 0x7ffn);
  const m = biased === 0 ? bits & 0xfffffffffffffn : (bits & 0xfffffffffffffn) | (1n << 52n);
  const e = biased === 0 ? -1074 : biased - 1075;
  if (e >= 0) return s;
  const twice = m * 10n ** BigInt(prec) * 2n;
  const den = 1n << BigInt(-e);
  if (twice % den !== 0n || (twice / den) % 2n === 0n) return s; // not a tie
  const below = twice / den / 2n;
  if (below % 2n !== 0n) return s; // the even one is above: toFixed's answer
  const digits = below.toString().padStart(prec + 1, '0');
  const r = prec > 0 ? `${digits.slice(0, -prec)}.${digits.slice(-prec)}` : digits;
  return x < 0 ? `-${r}` : r;
}

/** Go's fmt.Sprintf for %v %s %d %f %q %x %t %% with flags -, 0, +, space, width, precision. */
export function goSprintf(format: string, args: unknown[]): string {
  let out = '';
  // Checked as it grows: widths up to Go's limit and many verbs could otherwise build gigabytes.
  const add = (s: string) => {
    if (out.length + s.length > MAX_OUTPUT) throw tooLarge();
    out += s;
  };
  let ai = 0;
  for (let i = 0; i < format.length; i++) {
    const c = format[i]!;
    if (c !== '%') { add(c); continue; }
    const m = /^([-0+ #]*)([0-9]*)(?:\.([0-9]*))?([a-zA-Z%])/.exec(format.slice(i + 1));
    if (!m) { add('%!(NOVERB)'); break; }
    const [, flags = '', widthS = '', precS, verb] = m;
    const width = parsenum(widthS);
    const prec = precS === undefined ? undefined : parsenum(precS);
    // Go stops reading the format at a too-large width or precision, as at a missing verb.
    if (width === undefined || (precS !== undefined && prec === undefined)) { add('%!(NOVERB)'); break; }
    i += m[0].length;
    if (verb === '%') { add('%'); continue; }
    if (ai >= args.length) { add(`%!${verb}(MISSING)`); continue; }
    const a = args[ai++];
    let s: string;
    switch (verb) {
      case 'v': case 's': s = goFormatValue(a); if (prec !== undefined) s = firstRunes(s, prec); break;
      case 'q': s = JSON.stringify(goFormatValue(a)); break;
      case 't': s = String(truth(a)); break;
      case 'd': s = typeof a === 'bigint' ? a.toString() : String(Math.trunc(num(a, 'printf %d'))); break;
      case 'x': s = (typeof a === 'bigint' ? a : BigInt(Math.trunc(num(a, 'printf %x')))).toString(16); break;
      case 'f': case 'F': s = goFixed(num(a, 'printf %f'), prec ?? 6); break;
      case 'e': s = num(a, 'printf %e').toExponential(prec ?? 6).replace(/e([+-])(\d)$/, 'e$10$2'); break;
      case 'g': s = String(num(a, 'printf %g')); break;
      default: s = `%!${verb}(${goFormatValue(a)})`;
    }
    if (flags.includes('+') && /^[0-9]/.test(s) && 'dfFeg'.includes(verb!)) s = '+' + s;
    if (out.length + Math.max(s.length, width) > MAX_OUTPUT) throw tooLarge();
    if (s.length < width) {
      if (flags.includes('-')) s = s.padEnd(width);
      else if (flags.includes('0') && 'dfFegx'.includes(verb!)) {
        const neg = s.startsWith('-') || s.startsWith('+');
        s = neg ? s[0] + s.slice(1).padStart(width - 1, '0') : s.padStart(width, '0');
      } else s = s.padStart(width);
    }
    add(s);
  }
  if (ai < args.length) add('%!(EXTRA ' + joinFormatted(args.slice(ai), ', ') + ')');
  return out;
}

/** The %v forms of vs joined, refused before a string over MAX_OUTPUT is built. */
function joinFormatted(vs: unknown[], sep: string | ((i: number) => string)): string {
  let n = 0;
  const parts = vs.map((v, i) => {
    const s = (i === 0 ? '' : typeof sep === 'string' ? sep : sep(i)) + goFormatValue(v);
    if ((n += s.length) > MAX_OUTPUT) throw tooLarge();
    return s;
  });
  return parts.join('');
}

function cmp(a: unknown, b: unknown): number {
  if ((typeof a === 'number' || typeof a === 'bigint') && (typeof b === 'number' || typeof b === 'bigint')) {
    return a < b ? -1 : a > b ? 1 : 0;
  }
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  throw err(`incompatible types for comparison: ${goFormatValue(a)} and ${goFormatValue(b)}`);
}

function eq(a: unknown, b: unknown): boolean {
  if ((typeof a === 'number' || typeof a === 'bigint') && (typeof b === 'number' || typeof b === 'bigint')) return a == b; // eslint-disable-line eqeqeq
  if (a === null || a === undefined) return b === null || b === undefined;
  if (typeof a === 'object' || typeof b === 'object') throw err('eq: non-comparable types');
  return a === b;
}

const builtins: Record<string, Fn> = {
  len: (v) => {
    if (typeof v === 'string' || Array.isArray(v)) return v.length;
    if (v && typeof v === 'object') return Object.keys(v).length;
    if (v === null || v === undefined) return 0;
    throw err(`len of ${typeof v}`);
  },
  index: (v, ...keys) => {
    let cur = v;
    for (const k of keys) {
      if (Array.isArray(cur) || typeof cur === 'string') {
        const n = num(k, 'index');
        if (n < 0 || n >= cur.length) throw err(`index out of range: ${n}`);
        cur = cur[n];
      } else if (cur && typeof cur === 'object') {
        cur = (cur as Record<string, unknown>)[String(k)];
      } else if (cur === null || cur === undefined) {
        throw err('index of untyped nil');
      } else throw err(`can't index item of type ${typeof cur}`);
    }
    return cur;
  },
  print: (...a) => joinFormatted(a, (i) => (typeof a[i] !== 'string' && typeof a[i - 1] !== 'string' ? ' ' : '')),
  println: (...a) => joinFormatted(a, ' ') + '\n',
  printf: (f, ...a) => goSprintf(String(f), a),
  eq: (a, ...bs) => {
    if (bs.length === 0) throw err('missing argument for comparison');
    return bs.some((b) => eq(a, b));
  },
  ne: (a, b) => !eq(a, b),
  lt: (a, b) => cmp(a, b) < 0,
  le: (a, b) => cmp(a, b) <= 0,
  gt: (a, b) => cmp(a, b) > 0,
  ge: (a, b) => cmp(a, b) >= 0,
  not: (a) => !truth(a),
  json: (v) => goJsonMarshal(v),
  html: (...a) => joinFormatted(a, '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&#34;', "'": '&#39;' })[c]!),
  js: (...a) => joinFormatted(a, '').replace(/[\\'"<>&=]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')),
  urlquery: (...a) => encodeURIComponent(joinFormatted(a, '')),
};

// ---------- execution ----------

class Exec {
  out = '';
  made = 0; // length of the strings functions have returned
  steps = 0;
  vars: { name: string; v: unknown }[][] = [];
  constructor(readonly root: unknown, readonly funcs: Record<string, Fn>) {}

  lookupVar(name: string): unknown {
    for (let i = this.vars.length - 1; i >= 0; i--) {
      const scope = this.vars[i]!;
      for (let j = scope.length - 1; j >= 0; j--) if (scope[j]!.name === name) return scope[j]!.v;
    }
    if (name === '$') return this.root;
    throw err(`undefined variable: ${name}`);
  }

  setVar(name: string, v: unknown, declare: boolean): void {
    if (declare) {
      this.vars[this.vars.length - 1]!.push({ name, v });
      return;
    }
    for (let i = this.vars.length - 1; i >= 0; i--) {
      const e = this.vars[i]!.find((x) => x.name === name);
      if (e) { e.v = v; return; }
    }
    throw err(`undefined variable: ${name}`);
  }

  field(v: unknown, names: string[]): unknown {
    let cur = v;
    for (const n of names) {
      if (cur === null || cur === undefined) throw err(`nil pointer evaluating .${n}`);
      if (typeof cur !== 'object' || Array.isArray(cur)) throw err(`can't evaluate field ${n} in type ${Array.isArray(cur) ? 'slice' : typeof cur}`);
      cur = (cur as Record<string, unknown>)[n];
    }
    return cur;
  }

  operand(o: Operand, dot: unknown, final: unknown[] | undefined): unknown {
    switch (o.k) {
      case 'field': return this.field(dot, o.names);
      case 'var': return this.field(this.lookupVar(o.name), o.names);
      case 'lit': return o.v;
      case 'sub': return this.field(this.pipeline(o.pipe, dot), o.names);
      case 'fn': return this.call(o.name, [], dot, final);
    }
  }

  call(name: string, args: Operand[], dot: unknown, final: unknown[] | undefined): unknown {
    if (name === 'and' || name === 'or') {
      const vals = [...args.map((a) => () => this.operand(a, dot, undefined)), ...(final ?? []).map((x) => () => x)];
      if (vals.length === 0) throw err(`${name}: missing arguments`);
      let last: unknown;
      for (const get of vals) {
        last = get();
        if (name === 'and' ? !truth(last) : truth(last)) return last;
      }
      return last;
    }
    const f = this.funcs[name] ?? builtins[name];
    if (!f) throw err(`function "${name}" not defined`);
    const vals = [...args.map((a) => this.operand(a, dot, undefined)), ...(final ?? [])];
    // Functions take time linear in the strings they are given (eq compares, html copies them).
    this.tick(vals.reduce<number>((n, v) => n + (typeof v === 'string' ? v.length >> 10 : 0), 0));
    let r: unknown;
    try {
      r = f(...vals);
    } catch (e) {
      if (e instanceof WeaveError) throw e;
      throw err(`error calling ${name}: ${(e as Error).message}`);
    }
    if (typeof r === 'string' && (this.made += r.length) > MAX_OUTPUT) throw tooLarge();
    return r;
  }

  command(c: Command, dot: unknown, piped: unknown[] | undefined): unknown {
    const [first, ...rest] = c.args;
    if (first!.k === 'fn') return this.call(first!.name, rest, dot, piped);
    if (rest.length || piped) {
      if (first!.k === 'field' || first!.k === 'var') throw err(`can't give arguments to a field or variable`);
      throw err(`can't give argument to non-function ${goFormatValue(this.operand(first!, dot, undefined))}`);
    }
    return this.operand(first!, dot, undefined);
  }

  pipeline(p: Pipeline, dot: unknown): unknown {
    let v: unknown;
    p.cmds.forEach((c, i) => {
      v = this.command(c, dot, i === 0 ? undefined : [v]);
    });
    return v;
  }

  tick(n = 1): void {
    if ((this.steps += n) > MAX_STEPS) throw tooLarge();
  }

  write(s: string): void {
    if (this.out.length + s.length > MAX_OUTPUT) throw tooLarge();
    this.out += s;
  }

  list(nodes: Node[], dot: unknown): void {
    for (const n of nodes) this.node(n, dot);
  }

  node(n: Node, dot: unknown): void {
    this.tick();
    switch (n.k) {
      case 'text':
        this.write(n.v);
        return;
      case 'action': {
        const v = this.pipeline(n.pipe, dot);
        if (n.pipe.decl.length) this.setVar(n.pipe.decl[0]!, v, !n.pipe.assign);
        else this.write(goFormatValue(v));
        return;
      }
      case 'if':
      case 'with': {
        this.vars.push([]);
        try {
          const v = this.pipeline(n.pipe, dot);
          if (n.pipe.decl.length) this.setVar(n.pipe.decl[0]!, v, true);
          if (truth(v)) this.list(n.list, n.k === 'with' ? v : dot);
          else this.list(n.elseList, dot);
        } finally {
          this.vars.pop();
        }
        return;
      }
      case 'range': {
        this.vars.push([]);
        try {
          const v = this.pipeline(n.pipe, dot);
          // Go 1.15 ranges over slices, maps and channels only: an integer is an error.
          const keys = Array.isArray(v) ? null : v && typeof v === 'object' ? Object.keys(v).sort() : undefined;
          if (keys === undefined && v !== null && v !== undefined) throw err(`range can't iterate over ${goFormatValue(v)}`);
          const count = Array.isArray(v) ? v.length : keys ? keys.length : 0;
          if (count === 0) {
            this.list(n.elseList, dot);
            return;
          }
          const scope = this.vars[this.vars.length - 1]!;
          const mark = scope.length;
          for (let i = 0; i < count; i++) {
            // Every iteration is a step, even with an empty body.
            this.tick();
            // As Go, the body's variables go after each iteration.
            scope.length = mark;
            const k = keys ? keys[i]! : i;
            const x = keys ? (v as Record<string, unknown>)[k] : (v as unknown[])[i];
            const d = n.pipe.decl;
            if (d.length === 1) this.setVar(d[0]!, x, true);
            if (d.length === 2) {
              this.setVar(d[0]!, k, true);
              this.setVar(d[1]!, x, true);
            }
            this.list(n.list, x);
          }
        } finally {
          this.vars.pop();
        }
      }
    }
  }
}

export interface GoTemplate {
  execute(data: unknown, funcs?: Record<string, Fn>): string;
}

export function compileGoTemplate(text: string): GoTemplate {
  const nodes = parse(text);
  return {
    execute(data, funcs = {}) {
      const ex = new Exec(data, funcs);
      ex.vars.push([{ name: '$', v: data }]);
      ex.list(nodes, data);
      return ex.out;
    },
  };
}
