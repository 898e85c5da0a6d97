// `weave setup`: installs the CNI plugins `weave-net` and `weave-ipam` into the plugin
// directory and writes `10-weave.conflist` (weave-net chained with portmap) into the config
// directory, when those directories exist (`--create-dirs` creates them). The plugins are one
// bundled file plus two small wrappers that start it with this machine's node, so they work
// under runtimes with a minimal PATH and without the package's node_modules.
import { existsSync, mkdirSync, copyFileSync, writeFileSync, renameSync, rmSync, chmodSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { weaveVersion } from '../core/version.js';
import type { CliContext } from './context.js';
import { CNI_TOKEN_FILE } from '../api/types.js';
import { cniFrontend, nodeWrapper } from './cni-frontend.js';

export const CONFLIST_NAME = '10-weave.conflist';

/** The conflist weave setup writes: weave-net, then portmap for hostPort (runtimes pass portMappings). */
export function defaultConflist(hairpin: boolean): string {
  return (
    JSON.stringify(
      {
        cniVersion: '1.0.0',
        name: 'weave',
        plugins: [
          { name: 'weave', type: 'weave-net', hairpinMode: hairpin },
          { type: 'portmap', capabilities: { portMappings: true }, snat: true },
        ],
      },
      null,
      4,
    ) + '\n'
  );
}

function writeAtomic(path: string, content: string, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, content, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

function onPath(env: NodeJS.ProcessEnv, cmd: string): boolean {
  const dirs = (env.PATH ?? '').split(':').concat(['/usr/bin', '/usr/sbin', '/bin', '/sbin']);
  return dirs.some((d) => d && existsSync(join(d, cmd)));
}

export async function installCni(ctx: CliContext, opts: { createDirs: boolean; quiet: boolean }): Promise<number> {
  const { cniPluginDir, cniConfDir } = ctx.paths;
  const say = (s: string) => {
    if (!opts.quiet) ctx.err(s);
  };
  if (opts.createDirs) {
    mkdirSync(cniPluginDir, { recursive: true });
    mkdirSync(cniConfDir, { recursive: true });
  }
  let installed = false;
  if (existsSync(cniPluginDir)) {
    const bundle = join(ctx.packageRoot, 'dist', 'cni', 'weave-cni.cjs');
    if (!existsSync(bundle)) {
      ctx.err(`the CNI plugin bundle ${bundle} is missing: run 'npm run build'\n`);
      return 1;
    }
    const target = join(cniPluginDir, `weave-plugin-${weaveVersion()}.cjs`);
    copyFileSync(bundle, `${target}.tmp`);
    renameSync(`${target}.tmp`, target);
    for (const [name, kind] of [['weave-net', 'net'], ['weave-ipam', 'ipam']] as const) {
      const o = {
        kind,
        httpAddr: ctx.paths.httpAddr,
        tokenFile: join(ctx.paths.runDir, CNI_TOKEN_FILE),
        nodePath: process.execPath,
        bundlePath: target,
        version: weaveVersion(),
      };
      writeAtomic(join(cniPluginDir, name), existsSync('/bin/bash') ? cniFrontend(o) : nodeWrapper(o), 0o755);
    }
    // Older plugin bundles of ours are replaced by this one.
    for (const f of readdirSync(cniPluginDir)) {
      if (/^weave-plugin-.*\.cjs$/.test(f) && join(cniPluginDir, f) !== target) rmSync(join(cniPluginDir, f), { force: true });
    }
    installed = true;
    say(`installed weave-net and weave-ipam in ${cniPluginDir}\n`);
  } else {
    say(`CNI plugin directory ${cniPluginDir} does not exist: not installing the CNI plugin (create it, or run 'weave setup --create-dirs')\n`);
  }
  if (existsSync(cniConfDir)) {
    rmSync(join(cniConfDir, '10-weave.conf'), { force: true }); // the pre-conflist file of old versions
    const conf = join(cniConfDir, CONFLIST_NAME);
    if (!existsSync(conf)) {
      writeAtomic(conf, defaultConflist(ctx.env.HAIRPIN_MODE !== 'false'), 0o644);
      say(`wrote ${conf}\n`);
    } else {
      say(`kept the existing ${conf}\n`);
    }
  } else {
    say(`CNI config directory ${cniConfDir} does not exist: not writing ${CONFLIST_NAME}\n`);
  }
  if (installed && !existsSync(join(cniPluginDir, 'portmap')) && !existsSync('/usr/lib/cni/portmap')) {
    ctx.err(
      `weave: the portmap CNI plugin is not in ${cniPluginDir} or /usr/lib/cni; hostPort mappings need it.\n` +
        "  install it with: apt-get install containernetworking-plugins\n",
    );
  }
  if (!onPath(ctx.env, 'nsenter')) {
    ctx.err('weave: nsenter is missing; the CNI plugin needs it (install util-linux)\n');
  }
  return 0;
}
