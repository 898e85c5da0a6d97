// Test helper process: started inside a host's network namespace (nsenter --net), it forwards
// a unix socket (reachable from any namespace) to a TCP address inside that namespace, so the
// test process can call the router's API at 127.0.0.1:6784 of a namespaced host.
import { createServer, connect } from 'node:net';
import { unlinkSync } from 'node:fs';

const [socketPath, target] = process.argv.slice(2);
if (!socketPath || !target) throw new Error('usage: netns-proxy SOCKET HOST:PORT');
const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
try {
  unlinkSync(socketPath);
} catch {
  // none
}
const server = createServer((client) => {
  const upstream = connect(port, host);
  client.pipe(upstream).pipe(client);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close);
  upstream.on('error', close);
});
server.listen(socketPath, () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
