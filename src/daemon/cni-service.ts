// The fast path of the installed CNI plugin: its small shell front end (written by
// `weave setup`) hands each call to the running router, which runs the very same plugin code
// (src/cni) warm, instead of paying for a Node start and module loading per ADD/DEL. The call
// is authorised by a token in a file only root can read, because a CNI call may execute an
// IPAM plugin from CNI_PATH. Anything the router cannot take falls back to the standalone plugin.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { writeFileSync, rmSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { runPlugin } from '../cni/entry.js';
import type { CniService } from '../api/server/http-server.js';
import { CNI_TOKEN_FILE } from '../api/types.js';

export class RouterCniService implements CniService {
  private readonly token: Buffer;
  private readonly tokenPath: string;
  private readonly httpAddr: string;
  private readonly basePath: string;

  constructor(opts: { runDir: string; httpAddr: string }) {
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

  async run(kind: 'net' | 'ipam', env: Record<string, string>, stdin: string): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = '';
    let stderr = '';
    const code = await runPlugin(kind, {
      // The router's own address unless the call names one; PATH for delegated IPAM plugins.
      env: { PATH: this.basePath, WEAVE_HTTP_ADDR: this.httpAddr, ...env },
      stdin: async () => stdin,
      stdout: (s) => (stdout += s),
      stderr: (s) => (stderr += s),
    });
    return { code, stdout, stderr };
  }
}
