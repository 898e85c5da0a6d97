import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileGoTemplate, fmtString, goFixed, goJsonMarshal, goNilSlice, parseJsonBigInt, goSprintf } from '../../../src/core/go-template.js';
import { isWeaveError } from '../../../src/core/errors.js';
import { goJsonTime } from '../../../src/core/go-json.js';

const run = (t: string, data: unknown) => compileGoTemplate(t).execute(data);
const data = {
  Version: '1.2.3',
  Router: { Name: 'a', Peers: [{ NickName: 'h1', UID: 17594046188109229802n }, { NickName: 'h2', UID: 1n }], Targets: null },
  IPAM: { Range: '10.32.0.0/12' },
  DNS: null,
  M: { b: 2, a: 1 },
};

test('fields, pipelines, len, variables', () => {
  assert.equal(run('{{.Router.Name}}', data), 'a');
  assert.equal(run('{{len .Router.Peers}} {{.Router.Peers | len}}', data), '2 2');
  assert.equal(run('{{$r := .Router}}{{$r.Name}}-{{$.Version}}', data), 'a-1.2.3');
  assert.equal(run('{{(index .Router.Peers 1).NickName}}', data), 'h2');
  assert.equal(run('{{.Missing}}', data), '<no value>');
  assert.equal(run('{{.Router.Targets}}', data), '<nil>');
});

test('if / else if / else, with, range over arrays and maps', () => {
  assert.equal(run('{{if .DNS}}dns{{else if .IPAM}}ipam{{else}}none{{end}}', data), 'ipam');
  assert.equal(run('{{with .IPAM}}{{.Range}}{{else}}off{{end}}', data), '10.32.0.0/12');
  assert.equal(run('{{with .DNS}}x{{else}}off{{end}}', data), 'off');
  assert.equal(run('{{range .Router.Peers}}{{.NickName}},{{end}}', data), 'h1,h2,');
  assert.equal(run('{{range $i, $p := .Router.Peers}}{{$i}}:{{$p.UID}} {{end}}', data), '0:17594046188109229802 1:1 ');
  assert.equal(run('{{range $k, $v := .M}}{{$k}}={{$v}};{{end}}', data), 'a=1;b=2;');
  assert.equal(run('{{range .Router.Targets}}x{{else}}empty{{end}}', data), 'empty');
});

test('trim markers, comments, literals, comparisons', () => {
  assert.equal(run('a  {{- /* note */ -}}  b', data), 'ab');
  assert.equal(run('{{"x\\ty"}} {{`raw`}} {{1}} {{true}}', data), 'x\ty raw 1 true');
  assert.equal(run('{{eq .Version "0" "1.2.3"}} {{ne 1 2}} {{lt 1 2}} {{ge 2 3}}', data), 'true true true false');
  assert.equal(run('{{and 1 0}} {{or 0 "x"}} {{not .DNS}}', data), '0 x true');
});

test('printf follows Go widths and precisions', () => {
  assert.equal(goSprintf('%-21v|', ['192.0.2.2:58463']), '192.0.2.2:58463      |');
  assert.equal(goSprintf('%12.12v', ['0123456789abcdef']), '0123456789ab');
  assert.equal(goSprintf('%12.12v', ['ctr1']), '        ctr1');
  assert.equal(goSprintf('%04.1f%%', [5]), '05.0%');
  assert.equal(goSprintf('%04.1f', [50]), '50.0');
  assert.equal(goSprintf('%8d IPs', [524288]), '  524288 IPs');
  assert.equal(goSprintf('%d %s', [1]), '1 %!s(MISSING)');
  assert.equal(run('{{printf "%-5v|" .Version}}', data), '1.2.3|');
});

test('json is Go encoding/json: bigint digits, HTML escaping', () => {
  assert.equal(run('{{json .Router.Peers}}', data), '[{"NickName":"h1","UID":17594046188109229802},{"NickName":"h2","UID":1}]');
  assert.equal(goJsonMarshal({ s: '<a&b>' }), '{"s":"\\u003ca\\u0026b\\u003e"}');
  assert.equal(goJsonMarshal({ a: [], b: {}, c: null }, '    '), '{\n    "a": [],\n    "b": {},\n    "c": null\n}');
});

test('times as Go writes a time.Time: RFC 3339, trailing zeros of the fraction dropped', () => {
  assert.equal(goJsonTime(Date.UTC(2026, 10, 27, 17, 58, 54, 890)), '2026-11-27T17:58:54.89Z');
  assert.equal(goJsonTime(Date.UTC(2026, 10, 27, 17, 58, 54, 895)), '2026-11-27T17:58:54.895Z');
  assert.equal(goJsonTime(Date.UTC(2026, 10, 27, 17, 58, 50, 0)), '2026-11-27T17:58:50Z');
});

test('goJsonMarshal reproduces the original /report JSON byte for byte', () => {
  const dir = join(process.env.WEAVE_REPO_ROOT ?? process.cwd(), 'test/fixtures/wire-vectors/plain');
  for (const f of ['h1-report.json', 'h2-report.json']) {
    const text = readFileSync(join(dir, f), 'utf8');
    const parsed = parseJsonBigInt(text) as { Router: { Peers: { UID: unknown }[] } };
    assert.equal(typeof parsed.Router.Peers[0]!.UID, 'bigint');
    assert.equal(goJsonMarshal(parsed, '    '), text);
  }
});

test('parseJsonBigInt: bad JSON is DECODE_FAILED, a "__proto__" key is kept as a key, big integers stay exact', () => {
  for (const bad of ['"\\q"', '"\\u00zz"', '"a\u0001b"', '{"a":1,}', '[1 2]', '{"a"}', '"open', '01', '{"a":1}x']) {
    assert.throws(() => parseJsonBigInt(bad), (e) => isWeaveError(e, 'DECODE_FAILED'), bad);
  }
  const o = parseJsonBigInt('{"__proto__":{"x":1},"n":18446744073709551615,"s":"a\\u00e9\\n"}') as Record<string, unknown>;
  assert.deepEqual(Object.keys(o), ['__proto__', 'n', 's']);
  assert.equal(Object.getPrototypeOf(o), Object.prototype);
  assert.deepEqual(Object.getOwnPropertyDescriptor(o, '__proto__')?.value, { x: 1 });
  assert.equal(o.n, 18446744073709551615n);
  assert.equal(o.s, 'a\u00e9\n');
});

test('bad templates are INVALID_ARGUMENT errors', () => {
  for (const t of ['{{', '{{.A', '{{if .A}}x', '{{end}}', '{{else}}', '{{nosuchfn 1}}', '{{template "x"}}', '{{"unterminated}}', '{{(1}}', '{{|}}']) {
    assert.throws(() => run(t, data), (e) => isWeaveError(e, 'INVALID_ARGUMENT'), t);
  }
  assert.throws(() => run('{{.Version.X}}', data), (e) => isWeaveError(e, 'INVALID_ARGUMENT'));
});

test('fuzz: random templates give a string or a WeaveError, never anything else', () => {
  const parts = ['{{', '}}', '{{-', '-}}', '.', '.Router', '.Name', '|', '$', '$x', ':=', '"', '`', '(', ')', ' ', 'range', 'if', 'else', 'end', 'with', 'len', 'printf', '"%d"', '1', 'a', ',', '/*', '*/', 'json', 'index', 'eq'];
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let n = 0; n < 3000; n++) {
    let t = '';
    const len = 1 + Math.floor(rnd() * 14);
    for (let i = 0; i < len; i++) t += parts[Math.floor(rnd() * parts.length)];
    try {
      const out = run(t, data);
      assert.equal(typeof out, 'string');
    } catch (e) {
      assert.ok(isWeaveError(e), `${t}: ${String(e)}`);
    }
  }
});

const tooLarge = (e: unknown) => isWeaveError(e, 'INVALID_ARGUMENT') && /too large/.test((e as Error).message);

test('printf: a width or precision too large for Go\'s fmt ends the format as %!(NOVERB), it is not padded', () => {
  const out = run('{{printf "%0536000000d" 1}}', data);
  assert.ok(out.length < 100, `${out.length} bytes`);
  assert.equal(out, '%!(NOVERB)%!(EXTRA 1)');
  assert.equal(goSprintf('%.20000000v|%d', ['x', 2]), '%!(NOVERB)%!(EXTRA x, 2)');
  // Go's parsenum stops only once the digits so far pass 1e6.
  assert.equal(goSprintf('%1000000d', [1]).length, 1000000);
  assert.equal(goSprintf('%.2v', ['\u{1F600}ab']), '\u{1F600}a');
});

test('range over an integer is an error, as in Go 1.15', () => {
  assert.throws(() => run('{{range 3}}x{{end}}', data), (e) => isWeaveError(e, 'INVALID_ARGUMENT') && /range can't iterate over 3/.test((e as Error).message));
  assert.throws(() => run('{{range 5000000}}{{range 5000000}}{{end}}{{end}}', data), (e) => isWeaveError(e, 'INVALID_ARGUMENT'));
});

test('limits: every range iteration is a step, output is checked as written, strings kept in variables count', () => {
  // 9M iterations of empty bodies: only 3001 nodes.
  const A = Array.from({ length: 3000 }, (_x, i) => i);
  assert.throws(() => run('{{range .A}}{{range $.A}}{{end}}{{end}}', { A }), tooLarge);
  // One node taking the output past the limit.
  const big = '{{$a := printf "%09000000d" 0}}';
  assert.throws(() => run(`${big}{{$a}}{{$a}}`, data), tooLarge);
  // Large strings that never reach the output.
  assert.throws(() => run(`${big}{{$b := printf "%s%s" $a $a}}`, data), tooLarge);
  // A loop body's variables go at the end of each iteration, as in Go.
  assert.equal(run('{{range $i, $p := .Router.Peers}}{{$x := $i}}{{$x = $p.NickName}}{{$x}}{{end}}', data), 'h1h2');
});

test('%f and goFixed round an exact tie to even, as Go (toFixed rounds it up)', () => {
  assert.equal(goFixed(6.25, 1), '6.2');
  assert.equal(goFixed(31.25, 1), '31.2');
  assert.equal(goFixed(6.75, 1), '6.8');
  assert.equal(goFixed(-6.25, 1), '-6.2');
  assert.equal(goFixed(0.125, 2), '0.12');
  assert.equal(goFixed(2.5, 0), '2');
  // Not ties in binary: the nearest double decides, as in Go.
  assert.equal(goFixed(6.35, 1), '6.3');
  assert.equal(goFixed(0.15, 1), '0.1');
  assert.equal(goFixed(1 / 3, 6), '0.333333');
  assert.equal(goSprintf('%04.1f%%', [6.25]), '06.2%');
});

test('a value with a String() method (fmtString) prints as that text; its fields and json stay the struct', () => {
  // As Go's address.CIDR in /report's IPAM.PendingClaims: JSON {"Addr":…,"PrefixLen":…}, printed 10.32.0.5/12.
  class Cidr {
    constructor(readonly Addr: string, readonly PrefixLen: number) {}
    [fmtString](): string {
      return `${this.Addr}/${this.PrefixLen}`;
    }
  }
  const d = { Claims: [{ Ident: 'c1', CIDR: new Cidr('10.32.0.5', 12) }] };
  assert.equal(run('{{range .Claims}}{{.Ident}} {{.CIDR}}{{end}}', d), 'c1 10.32.0.5/12');
  assert.equal(run('{{range .Claims}}{{.CIDR.Addr}} {{.CIDR.PrefixLen}}{{end}}', d), '10.32.0.5 12');
  assert.equal(run('{{range .Claims}}{{printf "%s|%v|%q" .CIDR .CIDR .CIDR}} {{print .CIDR}}{{end}}', d), '10.32.0.5/12|10.32.0.5/12|"10.32.0.5/12" 10.32.0.5/12');
  assert.equal(run('{{json .Claims}}', d), '[{"Ident":"c1","CIDR":{"Addr":"10.32.0.5","PrefixLen":12}}]');
  assert.equal(goJsonMarshal(d.Claims[0]!.CIDR), '{"Addr":"10.32.0.5","PrefixLen":12}');
});

test('a nil slice (goNilSlice) is null in JSON and an empty slice in templates, as Go', () => {
  const d = { Connections: goNilSlice(), Empty: [] };
  assert.equal(goJsonMarshal(d), '{"Connections":null,"Empty":[]}');
  const run = (t: string) => compileGoTemplate(t).execute(d);
  assert.equal(run('{{.Connections}} {{printf "%v" .Connections}} {{len .Connections}}'), '[] [] 0');
  assert.equal(run('{{range .Connections}}x{{else}}none{{end}} {{if .Connections}}y{{else}}n{{end}} {{json .Connections}}'), 'none n null');
});
