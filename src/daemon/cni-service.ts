// The fast path of the installed CNI plugin: its small shell front end (written by
// `weave setup`) hands each call to the running router, which runs the very same plugin code
// (src/cni) warm, instead of paying for a Node start and module loading per ADD/DEL. The call
// is authorised by a token in a file only root can read, because a CNI call may execute an
// IPAM plugin from CNI_PATH. Anything the router cannot take falls back to the standalone plugin.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { writeFileSync, rmSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { runPlugin } from '../cni/entry.js';
import type { RouterApi } from '../cni/router.js';
import { WeaveClient, type RequestOptions } from '../api/client.js';
import type { CniService } from '../api/server/http-server.js';
import { CNI_TOKEN_FILE } from '../api/types.js';
import { silentLogger, type Logger } from '../core/logger.js';

export class RouterCniService implements CniService {
  private readonly token: Buffer;
  private readonly tokenPath: string;
  private readonly httpAddr: string;
  private readonly basePath: string;
  /** The last call queued for each container and interface (run). */
  private readonly queues = new Map<string, Promise<void>>();

  private readonly log: Logger;

  constructor(opts: { runDir: string; httpAddr: string; logger?: Logger }) {
    this.log = opts.logger ?? silentLogger;
    this.token = Buffer.from(randomBytes(24).toString('hex'));
    this.tokenPath = join(opts.runDir, CNI_TOKEN_FILE);
    this.httpAddr = opts.httpAddr;
    this.basePath = process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin';
  }

  /** Writes the token file (mode 0600) for the plugin front end. */
  publish(): void {
    writeFileSync(this.tokenPath, this.token.toString() + '\n', { mode: 0o600 });
    chmodSync(this.tokenPath, 0o600);
  }

  unpublish(): void {
    rmSync(this.tokenPath, { force: true });
  }

  authorized(token: string | undefined): boolean {
    if (token === undefined) return false;
    const got = Buffer.from(token.trim());
    return got.length === this.token.length && timingSafeEqual(got, this.token);
  }

  /**
   * Runs the plugin as the front end would have. When `signal` aborts (the caller went away),
   * its calls to the router are cancelled (a waiting allocation with them, as when the original
   * plugin process was killed), and the ADD is undone by a DEL, so that nothing stays attached
   * or allocated for a container the runtime gave up on. Calls for one container
   * run one after another: that DEL must not overtake the runtime's next call for it.
   */
  async run(kind: 'net' | 'ipam', env: Record<string, string>, stdin: string, signal?: AbortSignal): Promise<{ code: number; stdout: string; stderr: string }> {
    const key = `${env.CNI_CONTAINERID ?? ''}\0${env.CNI_IFNAME ?? ''}`;
    const before = this.queues.get(key) ?? Promise.resolve();
    let done!: () => void;
    const mine = new Promise<void>((r) => (done = r));
    const tail = before.then(() => mine);
    this.queues.set(key, tail);
    await before;
    try {
      const r = await this.runOnce(kind, env, stdin, signal);
      // Whatever the ADD answered: cancelled midway it may hold an address its own undo could not
      // release (that call was cancelled too). A DEL is what a runtime sends after a failed ADD.
      if (signal?.aborted && env.CNI_COMMAND === 'ADD') {
        const undo = await this.runOnce(kind, { ...env, CNI_COMMAND: 'DEL' }, stdin);
        if (undo.code !== 0) this.log.warn({ container: env.CNI_CONTAINERID, stdout: undo.stdout, stderr: undo.stderr }, 'undoing the ADD of a call whose caller left failed');
      }
      return r;
    } finally {
      done();
      if (this.queues.get(key) === tail) this.queues.delete(key);
    }
  }

  private async runOnce(kind: 'net' | 'ipam', env: Record<string, string>, stdin: string, signal?: AbortSignal): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = '';
    let stderr = '';
    const code = await runPlugin(
      kind,
      {
        // The router's own address unless the call names one; PATH for delegated IPAM plugins.
        env: { PATH: this.basePath, WEAVE_HTTP_ADDR: this.httpAddr, ...env },
        stdin: async () => stdin,
        stdout: (s) => (stdout += s),
        stderr: (s) => (stderr += s),
      },
      signal ? { router: (addr) => cancelledBy(new WeaveClient(addr), signal) } : {},
    );
    return { code, stdout, stderr };
  }
}

/** The plugin's router calls, each cancelled when `signal` aborts. */
function cancelledBy(api: RouterApi, signal: AbortSignal): RouterApi {
  const s = <O extends RequestOptions>(opts: O | undefined): O => ({ ...(opts ?? ({} as O)), signal });
  return {
    endpoint: api.endpoint,
    request: (method, path, opts) => api.request(method, path, s(opts)),
    call: (method, path, what, opts) => api.call(method, path, what, s(opts)),
    lookup: (ident, subnet, opts) => api.lookup(ident, subnet, s(opts)),
    release: (ident, opts) => api.release(ident, s(opts)),
    expose: (cidr, opts) => api.expose(cidr, s(opts)),
  };
}
