// Test helper process: a tiny upstream DNS server (UDP and TCP on HOST:53) started inside a
// host's network namespace, so that forwarding is tested without any real resolver. It knows
// `ext.example.test.` (A 192.0.2.99, MX 10 mail.example.test.) and the PTR of 192.0.2.99; any
// other name gets NXDOMAIN. Prints "ready" once listening; every query is counted on stderr.
// Usage: node dns-upstream.js 127.0.0.53
import dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket } from 'dns-packet';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';

const host = process.argv[2] ?? '127.0.0.53';
const port = Number(process.argv[3] ?? 53);

function reply(msg: Buffer): Buffer {
  const q = dnsPacket.decode(msg) as DecodedPacket;
  const question = q.questions?.[0];
  const name = (question?.name ?? '').toLowerCase();
  const answers: Answer[] = [];
  let rcode = 'NXDOMAIN';
  if (name === 'ext.example.test') {
    rcode = 'NOERROR';
    if (question?.type === 'A') answers.push({ name: question.name, type: 'A', ttl: 60, data: '192.0.2.99' });
    if (question?.type === 'MX') answers.push({ name: question.name, type: 'MX', ttl: 60, data: { preference: 10, exchange: 'mail.example.test' } });
  } else if (name === '99.2.0.192.in-addr.arpa' && question?.type === 'PTR') {
    rcode = 'NOERROR';
    answers.push({ name: question.name, type: 'PTR', ttl: 60, data: 'ext.example.test' });
  }
  process.stderr.write(`query ${question?.type} ${name} -> ${rcode}\n`);
  return dnsPacket.encode({
    type: 'response',
    id: q.id ?? 0,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (rcode === 'NXDOMAIN' ? 3 : 0),
    questions: q.questions ?? [],
    answers,
  });
}

const udp = createSocket('udp4');
udp.on('message', (m, r) => udp.send(reply(m), r.port, r.address));
const tcp = createServer((c) => {
  let buf = Buffer.alloc(0);
  c.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
      buf = buf.subarray(2 + msg.length);
      const r = reply(Buffer.from(msg));
      const len = Buffer.alloc(2);
      len.writeUInt16BE(r.length);
      c.write(Buffer.concat([len, r]));
    }
  });
  c.on('error', () => c.destroy());
});
udp.bind(port, host, () => tcp.listen(port, host, () => process.stdout.write('ready\n')));
process.on('SIGTERM', () => process.exit(0));
