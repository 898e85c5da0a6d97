// Test helper process: run inside a host's network namespace (nsenter --net), it sends DNS
// queries (src/cli/dns-query.ts: dns-packet over UDP or TCP) and prints one JSON line with the
// answers, so netns tests can ask a router's DNS server without dig.
// Usage: node dns-query.js '[{"host":"127.0.0.1","port":5353,"name":"x.weave.local","type":"A","transport":"udp","ednsSize":700}]'
// or `node dns-query.js --serve`: one JSON array of queries per stdin line, one JSON line of
// outcomes per query line on stdout (a test keeps one such process per namespace).
import { createInterface } from 'node:readline';
import { dnsQuery } from '../../src/cli/dns-query.js';
import type { RecordType } from 'dns-packet';

export interface DnsQuerySpec {
  host: string;
  port: number;
  name: string;
  type?: RecordType;
  transport?: 'udp' | 'tcp';
  ednsSize?: number;
  timeoutMs?: number;
}

export interface DnsQueryOutcome {
  rcode?: string;
  tc?: boolean;
  aa?: boolean;
  bytes?: number;
  answers?: { name: string; type: string; data: string }[];
  /** Number of OPT records in the additional section. */
  opt?: number;
  error?: string;
}

async function run(specs: DnsQuerySpec[]): Promise<DnsQueryOutcome[]> {
  const out: DnsQueryOutcome[] = [];
  for (const s of specs) {
    try {
      const r = await dnsQuery({ host: s.host, port: s.port }, s.name, {
        ...(s.type ? { type: s.type } : {}),
        ...(s.transport ? { transport: s.transport } : {}),
        ...(s.ednsSize !== undefined ? { ednsSize: s.ednsSize } : {}),
        timeoutMs: s.timeoutMs ?? 8000,
      });
      const p = r.packet;
      out.push({
        rcode: (p as { rcode?: string }).rcode ?? '',
        tc: !!p.flag_tc,
        aa: !!p.flag_aa,
        bytes: r.bytes,
        answers: (p.answers ?? []).map((a) => {
          const data = (a as { data?: unknown }).data;
          return { name: a.name, type: a.type, data: typeof data === 'string' ? data : JSON.stringify(data) };
        }),
        opt: (p.additionals ?? []).filter((a) => a.type === 'OPT').length,
      });
    } catch (e) {
      out.push({ error: (e as Error).message });
    }
  }
  return out;
}

async function main(): Promise<void> {
  if (process.argv[2] !== '--serve') {
    process.stdout.write(JSON.stringify(await run(JSON.parse(process.argv[2] ?? '[]') as DnsQuerySpec[])) + '\n');
    return;
  }
  process.stdout.write('ready\n');
  // Lines are answered in order: each waits for the one before.
  let chain = Promise.resolve();
  for await (const line of createInterface({ input: process.stdin })) {
    const specs = JSON.parse(line) as DnsQuerySpec[];
    chain = chain.then(async () => {
      process.stdout.write(JSON.stringify(await run(specs)) + '\n');
    });
  }
  await chain;
}

if (process.argv[1]?.endsWith('dns-query.js')) void main();
