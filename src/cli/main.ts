// The `weave` command line: one subcommand per verb (each in its own file), global options
// for every path the CLI uses (flags > WEAVE_* environment > defaults). Returns an exit code.
import { Command, CommanderError } from 'commander';
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';
import { WeaveClient } from '../api/client.js';
import { WeaveError, errorMessage } from '../core/errors.js';
import { weaveVersion } from '../core/version.js';
import { type CliContext, notRunning, resolvePaths } from './context.js';
import { launch } from './launch.js';
import { stopRouter } from './stop.js';
import { reset } from './reset.js';
import { report, status, version } from './status.js';
import { expose, hide } from './expose.js';
import { attach, detach } from './attach.js';
import { installCni } from './setup.js';
import { ps } from './ps.js';
import { connect, forget } from './connect.js';
import { dnsAdd, dnsArgs, dnsLookup, dnsRemove } from './dns.js';
import { prime, rmpeer } from './ipam.js';

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export async function runCli(argv: string[], io: { out: (s: string) => void; err: (s: string) => void; env: NodeJS.ProcessEnv }): Promise<number> {
  let ctx: CliContext | undefined;
  let code = 0;
  const context = (p: Command): CliContext => {
    if (!ctx) {
      const g = p.optsWithGlobals<Record<string, string | undefined>>();
      const paths = resolvePaths(io.env, {
        ...(g.httpAddr ? { httpAddr: g.httpAddr } : {}),
        ...(g.dataDir ? { dataDir: g.dataDir } : {}),
        ...(g.runDir ? { runDir: g.runDir } : {}),
        ...(g.logFile ? { logFile: g.logFile } : {}),
        ...(g.cniConfDir ? { cniConfDir: g.cniConfDir } : {}),
        ...(g.cniPluginDir ? { cniPluginDir: g.cniPluginDir } : {}),
      });
      ctx = {
        paths,
        client: new WeaveClient(paths.httpAddr),
        out: io.out,
        err: io.err,
        env: io.env,
        weaverBin: resolve(packageRoot, 'bin', 'weaver.js'),
        packageRoot,
      };
    }
    return ctx;
  };
  const bridgeOf = (p: Command) => p.optsWithGlobals<{ weaveBridge?: string }>().weaveBridge ?? io.env.WEAVE_BRIDGE ?? 'weave';
  const run = (fn: (c: CliContext, cmd: Command) => Promise<number>) => async (...a: unknown[]) => {
    const cmd = a[a.length - 1] as Command;
    code = await fn(context(cmd), cmd);
  };

  const program = new Command('weave')
    .description('weave: a container overlay network (the successor of Weave Net)')
    .version(weaveVersion(), '--version')
    .option('--http-addr <addr>', 'router HTTP API (WEAVE_HTTP_ADDR, default 127.0.0.1:6784)')
    .option('--data-dir <dir>', 'persistent state (WEAVE_DATA_DIR, default /var/lib/weave)')
    .option('--run-dir <dir>', 'pid file and runtime files (WEAVE_RUN_DIR, default /run/weave)')
    .option('--log-file <file>', 'router log (WEAVE_LOG_FILE, default /var/log/weave/weaver.log)')
    .option('--cni-conf-dir <dir>', 'CNI configuration directory (WEAVE_CNI_CONF_DIR, default /etc/cni/net.d)')
    .option('--cni-plugin-dir <dir>', 'CNI plugin directory (WEAVE_CNI_PLUGIN_DIR, default /opt/cni/bin)')
    .option('--weave-bridge <name>', 'bridge name (WEAVE_BRIDGE, default weave)')
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err });

  program.command('setup').alias('setup-cni').description('install the CNI plugins and write 10-weave.conflist')
    .option('--create-dirs', 'create the CNI plugin and config directories if missing')
    .action(run((c, cmd) => installCni(c, { createDirs: !!cmd.opts().createDirs, quiet: false })));

  program.command('launch').description('start the router in the background (flags as weaver; see `weaver --help`)')
    .argument('[args...]', 'weaver flags and peers').passThroughOptions().allowUnknownOption().helpOption(false)
    .action(run((c, cmd) => launch(c, cmd.args, bridgeOf(cmd))));

  program.command('stop').description('stop the router').action(run((c) => stopRouter(c)));

  program.command('reset').description('stop the router and remove the bridge, rules and persisted state')
    .option('--force', 'reset even if the address space cannot be handed over')
    .action(run((c, cmd) => reset(c, { force: !!cmd.opts().force, extraArgs: ['--weave-bridge', bridgeOf(cmd)] })));

  program.command('status').description('router status; or one of targets, connections, peers, dns, ipam')
    .argument('[view]').action(run((c, cmd) => status(c, cmd.args[0])));

  program.command('report').description('full status as JSON, or through a Go template with -f')
    .option('-f, --format <template>', 'Go text/template, e.g. {{.Router.Name}}')
    .action(run((c, cmd) => report(c, cmd.opts().format as string | undefined)));

  program.command('ps').description('attached containers: id, MAC and addresses').argument('[ids...]')
    .action(run((c, cmd) => ps(c, cmd.args, bridgeOf(cmd))));

  program.command('expose').description('give the host an address on the weave network')
    .argument('[addrs...]', 'net:default | net:<cidr> | [ip:]<cidr>')
    .option('--without-masquerade', 'no NAT for this address')
    .option('-h, --hostname <fqdn>', 'DNS name for the address').helpOption('--help')
    .action(run((c, cmd) => expose(c, cmd.args, { withoutMasquerade: !!cmd.opts().withoutMasquerade, hostname: cmd.opts().hostname as string | undefined })));

  program.command('hide').description('remove host addresses from the weave network').argument('[addrs...]')
    .action(run((c, cmd) => hide(c, cmd.args, bridgeOf(cmd))));

  program.command('attach').description('attach a network namespace (path) or a process (pid) to the weave network')
    .argument('<args...>', '[addrs...] <netns-path|pid>')
    .option('--id <ident>', 'IPAM ident (default: the namespace name or pid-<pid>)')
    .option('--no-multicast-route', 'no 224.0.0.0/4 route on the interface')
    .option('--name <fqdn>', 'register the attached addresses in weaveDNS under this name (e.g. web.weave.local)')
    .action(run((c, cmd) => {
      const args = cmd.args;
      return attach(c, args[args.length - 1]!, args.slice(0, -1), {
        ...(cmd.opts().id ? { id: cmd.opts().id as string } : {}),
        ...(cmd.opts().name ? { name: cmd.opts().name as string } : {}),
        multicastRoute: cmd.opts().multicastRoute !== false,
        bridge: bridgeOf(cmd),
      });
    }));

  program.command('detach').description('detach a network namespace or process from the weave network')
    .argument('<args...>', '[addrs...] <netns-path|pid>')
    .option('--id <ident>', 'IPAM ident used at attach')
    .action(run((c, cmd) => {
      const args = cmd.args;
      return detach(c, args[args.length - 1]!, args.slice(0, -1), cmd.opts().id ? { id: cmd.opts().id as string } : {});
    }));

  program.command('connect').description('connect to more peers (host[:port]); --replace sets the targets to exactly these')
    .argument('[peers...]').option('--replace', 'replace the current targets')
    .action(run((c, cmd) => connect(c, cmd.args, !!cmd.opts().replace)));

  program.command('forget').description('forget peers (remove them from the targets)').argument('<peers...>')
    .action(run((c, cmd) => forget(c, cmd.args)));

  program.command('prime').description('wait until the IP allocation ring exists (consensus reached)')
    .action(run((c) => prime(c)));

  program.command('rmpeer').description('take over the address space of peers that are gone for good (name or nickname)')
    .argument('<peers...>').action(run((c, cmd) => rmpeer(c, cmd.args)));

  program.command('dns-add').description('add weaveDNS names: [<ip> ...] <netns-path|pid|container-id> -h <fqdn>, or <ip> ... -h <fqdn>')
    .argument('[args...]', '[<ip> ...] [<container>]')
    .option('-h, --hostname <fqdn>', 'the name, in the weaveDNS domain (e.g. web.weave.local)').helpOption('--help')
    .action(run((c, cmd) => dnsAdd(c, cmd.args, cmd.opts().hostname as string | undefined)));

  program.command('dns-remove').description('remove weaveDNS names (same forms as dns-add; without -h, every name of the addresses)')
    .argument('[args...]', '[<ip> ...] [<container>]')
    .option('-h, --hostname <fqdn>', 'remove only this name').helpOption('--help')
    .action(run((c, cmd) => dnsRemove(c, cmd.args, cmd.opts().hostname as string | undefined)));

  program.command('dns-lookup').description("ask the router's DNS server for a name's addresses").argument('<name>')
    .action(run((c, cmd) => dnsLookup(c, cmd.args[0]!)));

  program.command('dns-args').description('print --dns and --dns-search flags for a container runtime (nothing with --no-dns)')
    .action(run((c) => dnsArgs(c)));

  program.command('version').description('print versions').action(run((c) => version(c)));

  // The original's answer to its removed commands (exit 1), and to the Docker proxy's.
  for (const name of ['run', 'start', 'restart', 'launch-plugin', 'stop-plugin', 'launch-proxy', 'stop-proxy', 'launch-router', 'stop-router']) {
    program.command(name, { hidden: true }).allowUnknownOption().allowExcessArguments().helpOption(false).action(() => {
      io.err(`The '${name}' command has been removed as of Weave Net version 2.0\nPlease see release notes for further information\n`);
      code = 1;
    });
  }
  for (const name of ['env', 'config']) {
    program.command(name, { hidden: true }).allowUnknownOption().allowExcessArguments().helpOption(false).action(() => {
      io.err(`weave ${name}: there is no Docker proxy here (containers join through the CNI plugin)\n`);
      code = 1;
    });
  }

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    if (e instanceof WeaveError && e.code === 'UNAVAILABLE' && ctx) {
      io.err(notRunning(ctx));
      return 1;
    }
    io.err(`weave: ${errorMessage(e)}\n`);
    return 1;
  }
  return code;
}
