// All of weaver's settings and their defaults in one place: flags (Weave Net's names), then
// environment variables, then defaults. Parsing is total: a bad value is a clear error before
// anything touches the kernel.
import { isIP } from 'node:net';
import { Command, Option, InvalidArgumentError } from 'commander';
import { WeaveError } from '../core/errors.js';
import { parseCidr, type Cidr } from '../core/ip.js';
import { parseLogLevel, type LogLevel } from '../core/logger.js';
import { tryParsePeerName, type PeerName } from '../core/peer-name.js';
import { DEFAULT_DOMAIN, fqdn } from '../dns/nameserver.js';
import { DEFAULT_DNS_TTL, DEFAULT_FALLBACK_TIMEOUT_MS, parseListenAddress } from '../dns/server.js';
import { checkAllocationRange } from '../ipam/distributed-allocator.js';

export const DEFAULTS = {
  port: 6783,
  httpAddr: '127.0.0.1:6784',
  dataDir: '/var/lib/weave',
  runDir: '/run/weave',
  bridge: 'weave',
  // Weave Net's fast-datapath MTU: a 1460-byte cloud underlay minus VXLAN and ESP overheads.
  mtu: 1376,
  ipallocRange: '10.32.0.0/12',
  connLimit: 200,
  bridgeCheckIntervalMs: 2000,
  // weaveDNS (nameserver defaults). Without --dns-listen-address the server listens on the
  // bridge's first exposed address, this port.
  dnsDomain: DEFAULT_DOMAIN,
  dnsPort: 53,
  dnsTtl: DEFAULT_DNS_TTL,
  dnsFallbackTimeoutMs: DEFAULT_FALLBACK_TIMEOUT_MS,
  resolvConf: '/etc/resolv.conf',
} as const;

export interface DaemonConfig {
  /** Flags of the original weaver that mean nothing here, given and ignored (logged at start). */
  ignored?: string[];
  name?: string;
  nickname?: string;
  port: number;
  host: string;
  httpAddr: string;
  statusAddr?: string;
  metricsAddr?: string;
  dataDir: string;
  runDir: string;
  logLevel: LogLevel;
  bridge: string;
  mtu: number;
  /** undefined = IPAM disabled (`--ipalloc-range ""`). */
  ipallocRange?: Cidr;
  ipallocDefaultSubnet?: Cidr;
  /** `--ipalloc-init` (IPALLOC_INIT); default consensus with the quorum from the targets. */
  ipallocInit: IpamInit;
  peers: string[];
  bridgeCheckIntervalMs: number;
  /** Mesh: encryption password (--password or WEAVE_PASSWORD); undefined = unencrypted. */
  password?: string;
  trustedSubnets: Cidr[];
  discovery: boolean;
  connLimit: number;
  resume: boolean;
  minProtocolVersion: number;
  /** Offer the kernel VXLAN fast path (`--no-fastdp` / WEAVE_NO_FASTDP turn it off). */
  fastdp: boolean;
  /** weaveDNS settings; undefined = `--no-dns`. */
  dns?: DnsConfig;
}

export interface DnsConfig {
  /** `--dns-listen-address` host:port; undefined = the bridge's first exposed address, port 53. */
  listenAddress?: string;
  /** Fully qualified, with the trailing dot. */
  domain: string;
  ttl: number;
  fallbackTimeoutMs: number;
  resolvConf: string;
}

function intArg(min: number, max: number) {
  return (v: string): number => {
    if (!/^[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) throw new InvalidArgumentError(`must be an integer from ${min} to ${max}`);
    return Number(v);
  };
}

/**
 * A Go duration (`time.ParseDuration`: "5s", "1m30s", "250ms"; "0" alone) in milliseconds, as
 * the original's duration flags take it.
 */
export function parseGoDurationMs(v: string): number {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  if (v === '0') return 0;
  const re = /([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let at = 0;
  for (let m = re.exec(v); m; m = re.exec(v)) {
    total += Number(m[1]) * units[m[2]!]!;
    at = re.lastIndex;
  }
  if (v === '' || at !== v.length) throw new InvalidArgumentError(`invalid duration "${v}" (e.g. 5s, 500ms, 1m)`);
  return total;
}

/** `--dns-domain`: a domain name, with or without the trailing dot; returned with it. */
export function parseDnsDomain(v: string): string {
  const d = fqdn(v.trim());
  const labels = d.slice(0, -1).split('.');
  if (d === '.' || labels.some((l) => !/^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/.test(l)) || d.length > 254) {
    throw new InvalidArgumentError(`invalid DNS domain "${v}"`);
  }
  return d;
}

function dnsListenArg(v: string): string {
  try {
    parseListenAddress(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
  return v;
}

/** `--ipalloc-init`: how the peers agree on the first ring (Weave Net's three modes). */
export type IpamInit =
  | { mode: 'consensus'; count?: number }
  | { mode: 'seed'; peers: PeerName[] }
  | { mode: 'observer' };

/** Parses `consensus[=N]`, `seed=<peer>,<peer>...` or `observer`. */
export function parseIpamInit(text: string): IpamInit {
  const t = text.trim();
  if (t === 'consensus') return { mode: 'consensus' };
  if (t.startsWith('consensus=')) {
    const v = t.slice('consensus='.length);
    if (!/^[1-9][0-9]{0,5}$/.test(v)) throw new WeaveError('INVALID_ARGUMENT', `--ipalloc-init: invalid peer count "${v}" in "${t}" (want consensus=N with N >= 1)`);
    return { mode: 'consensus', count: Number(v) };
  }
  if (t.startsWith('seed=')) {
    const names = t.slice('seed='.length).split(',').map((x) => x.trim()).filter((x) => x !== '');
    if (names.length === 0) throw new WeaveError('INVALID_ARGUMENT', `--ipalloc-init: seed= needs at least one peer name`);
    const peers = names.map((n) => {
      const p = tryParsePeerName(n);
      if (p === undefined) throw new WeaveError('INVALID_ARGUMENT', `--ipalloc-init: "${n}" is not a peer name (want the MAC form, for example 7a:01:02:03:04:05, as 'weave status' shows it)`);
      return p;
    });
    return { mode: 'seed', peers: [...new Set(peers)] };
  }
  if (t === 'observer') return { mode: 'observer' };
  throw new WeaveError('INVALID_ARGUMENT', `--ipalloc-init: unknown mode "${t}" (want consensus[=N], seed=<peer>,... or observer)`);
}

export function buildDaemonCommand(): Command {
  const env = process.env;
  const c = new Command('weaver')
    .description('weave router daemon: owns the weave bridge, IP allocation and the HTTP API')
    .argument('[peers...]', 'peers to connect to (host[:port])')
    .option('--name <mac>', 'peer name (MAC format; derived and persisted when absent)')
    .option('--nickname <name>', 'human-readable peer name (default: hostname)')
    // .env(): commander passes the variable's value through the same parser as the flag's.
    .addOption(new Option('--port <port>', 'TCP/UDP port of the mesh (WEAVE_PORT)').env('WEAVE_PORT').argParser(intArg(1, 65535)).default(DEFAULTS.port))
    .option('--host <ip>', 'address to listen on for the mesh', '')
    .option('--http-addr <addr>', 'HTTP API address, host:port or /unix/socket', env.WEAVE_HTTP_ADDR ?? DEFAULTS.httpAddr)
    .option('--status-addr <addr>', 'read-only status and metrics address')
    .option('--metrics-addr <addr>', 'metrics-only address')
    .option('--data-dir <dir>', 'persistent state (WEAVE_DATA_DIR)', env.WEAVE_DATA_DIR ?? DEFAULTS.dataDir)
    .option('--run-dir <dir>', 'runtime files (WEAVE_RUN_DIR)', env.WEAVE_RUN_DIR ?? DEFAULTS.runDir)
    .option('--log-level <level>', 'debug, info, warning or error', 'info')
    .option('--weave-bridge <name>', 'name of the bridge', DEFAULTS.bridge)
    .addOption(new Option('--mtu <bytes>', 'MTU of the bridge and container interfaces (WEAVE_MTU)').env('WEAVE_MTU').argParser(intArg(576, 65535)).default(DEFAULTS.mtu))
    .option('--ipalloc-range <cidr>', 'IP address range for containers; "" disables IPAM', DEFAULTS.ipallocRange)
    .option('--ipalloc-default-subnet <cidr>', 'subnet used when none is given (default: the range)')
    .option('--ipalloc-init <mode>', 'how peers create the first ring: consensus[=N], seed=<peer>,<peer>... or observer (IPALLOC_INIT)', env.IPALLOC_INIT || 'consensus')
    .option('--no-fastdp', 'do not use the kernel fast path (WEAVE_NO_FASTDP)')
    .option('--no-discovery', 'do not connect to peers of peers')
    .option('--conn-limit <n>', 'maximum number of connections', intArg(0, 1_000_000), DEFAULTS.connLimit)
    .option('--resume', 'reuse the persisted peer list')
    .option('--password <password>', 'encrypt connections with this password (WEAVE_PASSWORD)')
    .option('--trusted-subnets <cidrs>', 'comma-separated subnets whose peers are trusted (no encryption)')
    .option('--min-protocol-version <n>', 'lowest mesh protocol version to accept', intArg(1, 2), 1)
    .option('--no-dns', 'disable weaveDNS')
    .option('--dns-listen-address <host:port>', 'weaveDNS address, UDP and TCP (default: the first address `weave expose` puts on the bridge, port 53)', dnsListenArg)
    .option('--dns-domain <domain>', 'weaveDNS domain, with or without the trailing dot', parseDnsDomain, DEFAULTS.dnsDomain)
    .option('--dns-ttl <seconds>', 'TTL of weaveDNS answers', intArg(0, 0x7fffffff), DEFAULTS.dnsTtl)
    .addOption(new Option('--dns-fallback-timeout <duration>', 'how long each upstream server is given (Go duration)').argParser(parseGoDurationMs).default(DEFAULTS.dnsFallbackTimeoutMs, `${DEFAULTS.dnsFallbackTimeoutMs / 1000}s`))
    .option('--resolv-conf <path>', 'upstream name servers for names outside the domain', DEFAULTS.resolvConf)
    .addOption(new Option('--bridge-check-interval-ms <ms>').argParser(intArg(50, 600_000)).default(DEFAULTS.bridgeCheckIntervalMs).hideHelp());
  // The original weaver's flags for what is not here (Docker, its ODP datapath, a container's
  // view of the host), as Kubernetes' and the script's command lines pass them: accepted and
  // ignored, said so at start, rather than the router refusing to start.
  for (const [flag, value] of IGNORED_FLAGS) c.addOption(new Option(value ? `${flag} <${value}>` : flag).hideHelp());
  c.exitOverride();
  c.configureOutput({ writeOut: () => {}, writeErr: () => {} });
  return c;
}

/** commander's attribute name of a long flag (`--no-bridged-fastdp` is `bridgedFastdp`, false). */
function camel(flag: string): string {
  return flag.replace(/^--(no-)?/, '').replace(/-([a-z])/g, (_m, ch: string) => ch.toUpperCase());
}

/** The original's flags ignored here (buildDaemonCommand), with the name of their value, if any. */
const IGNORED_FLAGS: readonly [string, string | undefined][] = [
  ['--docker-api', 'url'],
  ['--docker-bridge', 'name'],
  ['--datapath', 'name'],
  ['--no-bridged-fastdp', undefined],
  ['--host-root', 'dir'],
  ['--db-prefix', 'prefix'],
  ['--pkt-debug', undefined],
];

/**
 * Go's flag package takes `-name` as well as `--name`: a single dash before a long option of
 * ours becomes two (commander would read it as short options).
 */
function goStyleFlags(c: Command, argv: string[]): string[] {
  const longs = new Set(c.options.map((o) => o.long).filter((l): l is string => l !== undefined));
  return argv.map((a) => {
    if (!/^-[a-z]/.test(a)) return a;
    const flag = `-${a.split('=')[0]}`;
    return longs.has(flag) ? `-${a}` : a;
  });
}

/** Parses weaver's argv (without node and script) into a DaemonConfig. */
export function parseDaemonArgs(argv: string[]): DaemonConfig {
  const c = buildDaemonCommand();
  try {
    c.parse(goStyleFlags(c, argv), { from: 'user' });
  } catch (e) {
    throw new WeaveError('INVALID_ARGUMENT', (e as Error).message.replace(/^error: /, ''));
  }
  const o = c.opts<Record<string, unknown>>();
  const peers = c.args;
  if (o.resume && peers.length > 0) throw new WeaveError('INVALID_ARGUMENT', '--resume and a list of peers cannot be used together');
  const password = (o.password as string | undefined) ?? process.env.WEAVE_PASSWORD;
  const trustedSubnets = String(o.trustedSubnets ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '')
    .map((x) => parseCidrFlag('--trusted-subnets', x));
  const rangeText = String(o.ipallocRange ?? '');
  let ipallocRange: Cidr | undefined;
  let ipallocDefaultSubnet: Cidr | undefined;
  if (rangeText !== '') {
    ipallocRange = parseCidrFlag('--ipalloc-range', rangeText);
    ipallocDefaultSubnet = o.ipallocDefaultSubnet ? parseCidrFlag('--ipalloc-default-subnet', String(o.ipallocDefaultSubnet)) : ipallocRange;
  } else if (o.ipallocDefaultSubnet) {
    throw new WeaveError('INVALID_ARGUMENT', '--ipalloc-default-subnet needs --ipalloc-range');
  }
  if (ipallocRange) checkAllocationRange(ipallocRange, ipallocDefaultSubnet);
  const ipallocInit = parseIpamInit(String(o.ipallocInit));
  let logLevel: LogLevel;
  try {
    logLevel = parseLogLevel(String(o.logLevel));
  } catch (e) {
    throw new WeaveError('INVALID_ARGUMENT', `--log-level: ${(e as Error).message}`);
  }
  if (o.name !== undefined && tryParsePeerName(String(o.name)) === undefined) throw new WeaveError('INVALID_ARGUMENT', `--name: "${String(o.name)}" is not a peer name (a MAC address, such as 7a:31:4e:00:00:01)`);
  const host = String(o.host ?? '');
  if (host !== '' && !isIP(host)) throw new WeaveError('INVALID_ARGUMENT', `--host: "${host}" is not an IP address`);
  const bridge = String(o.weaveBridge);
  if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(bridge)) throw new WeaveError('INVALID_ARGUMENT', `--weave-bridge: invalid interface name "${bridge}"`);
  const ignored = IGNORED_FLAGS.map(([flag]) => flag).filter((flag) => (flag.startsWith('--no-') ? o[camel(flag)] === false : o[camel(flag)] !== undefined));
  return {
    ...(ignored.length ? { ignored } : {}),
    ...(o.name ? { name: String(o.name) } : {}),
    ...(o.nickname ? { nickname: String(o.nickname) } : {}),
    port: Number(o.port),
    host,
    httpAddr: String(o.httpAddr),
    ...(o.statusAddr ? { statusAddr: String(o.statusAddr) } : {}),
    ...(o.metricsAddr ? { metricsAddr: String(o.metricsAddr) } : {}),
    dataDir: String(o.dataDir),
    runDir: String(o.runDir),
    logLevel,
    bridge,
    mtu: Number(o.mtu),
    ...(ipallocRange ? { ipallocRange } : {}),
    ...(ipallocDefaultSubnet ? { ipallocDefaultSubnet } : {}),
    ipallocInit,
    peers,
    bridgeCheckIntervalMs: Number(o.bridgeCheckIntervalMs),
    ...(password ? { password } : {}),
    trustedSubnets,
    discovery: o.discovery !== false,
    connLimit: Number(o.connLimit),
    resume: !!o.resume,
    minProtocolVersion: Number(o.minProtocolVersion),
    fastdp: o.fastdp !== false && !process.env.WEAVE_NO_FASTDP,
    ...(o.dns === false
      ? {}
      : {
          dns: {
            ...(o.dnsListenAddress ? { listenAddress: String(o.dnsListenAddress) } : {}),
            domain: String(o.dnsDomain),
            ttl: Number(o.dnsTtl),
            fallbackTimeoutMs: Number(o.dnsFallbackTimeout),
            resolvConf: String(o.resolvConf),
          },
        }),
  };
}

function parseCidrFlag(flag: string, text: string): Cidr {
  try {
    return parseCidr(text);
  } catch (e) {
    throw new WeaveError('INVALID_ARGUMENT', `${flag}: ${(e as Error).message}`);
  }
}
