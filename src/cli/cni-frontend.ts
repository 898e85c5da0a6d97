// The installed `weave-net` / `weave-ipam`: a bash front end that hands the call (CNI_*
// environment as headers, the config as the body) to the local router over its HTTP port, so
// an ADD costs a bash start and the router's work instead of a Node start and module loading
// (see docs/performance.md). It sends nothing before it has connected, so when the router is
// not there (or cannot take the call: no token, an older router) it runs the standalone plugin
// bundle with the same stdin, which waits for the router and answers "try again later".
import { parseEndpoint } from '../api/client.js';

export interface FrontendOptions {
  kind: 'net' | 'ipam';
  httpAddr: string;
  tokenFile: string;
  nodePath: string;
  bundlePath: string;
  version: string;
}

/** How long the front end waits for the router's answer to anything but ADD, in seconds. */
export const FRONTEND_ANSWER_WAIT_S = 20;

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The standalone wrapper, for a router reached through a unix socket (bash cannot). */
export function nodeWrapper(o: FrontendOptions): string {
  return [
    '#!/bin/sh',
    `# weave ${o.version} CNI plugin, installed by 'weave setup'`,
    '# NODE_EXTRA_CA_CERTS makes node load a CA bundle at start (~35 ms); the plugin needs no TLS.',
    'unset NODE_EXTRA_CA_CERTS',
    `exec ${q(o.nodePath)} ${q(o.bundlePath)} ${o.kind}`,
    '',
  ].join('\n');
}

export function cniFrontend(o: FrontendOptions): string {
  const ep = parseEndpoint(o.httpAddr);
  if (ep.socketPath || !ep.host || !/^[0-9.]+$/.test(ep.host)) return nodeWrapper(o);
  return `#!/bin/bash
# weave ${o.version} CNI plugin (${o.kind}), installed by 'weave setup'. The router runs the call
# (POST /cni/${o.kind}); without a router that takes it, the standalone plugin does.
export LC_ALL=C
standalone() { unset NODE_EXTRA_CA_CERTS; exec ${q(o.nodePath)} ${q(o.bundlePath)} ${o.kind}; }
token=
{ IFS= read -r token < ${q(o.tokenFile)}; } 2>/dev/null
[ -n "$token" ] || standalone
{ exec 3<>/dev/tcp/${ep.host}/${ep.port}; } 2>/dev/null || standalone
IFS= read -r -d '' input
headers=
for v in CNI_COMMAND CNI_CONTAINERID CNI_NETNS CNI_IFNAME CNI_ARGS CNI_PATH WEAVE_HTTP_ADDR; do
  [ -n "\${!v+x}" ] && headers+="X-Cni-Env-$v: \${!v//[$'\\r\\n']/}"$'\\r\\n'
done
printf 'POST /cni/${o.kind} HTTP/1.1\\r\\nHost: weave\\r\\nConnection: close\\r\\nContent-Type: application/json\\r\\nX-Weave-Cni-Token: %s\\r\\n%sContent-Length: %d\\r\\n\\r\\n%s' "$token" "$headers" "\${#input}" "$input" >&3
# An ADD may wait for the address ring; anything else is answered within routerWaitMs by a
# working router, so one that took the connection and says nothing (stopped, hung) is left
# to the standalone plugin, which answers "try again later" within its own bound.
wait=()
[ "$CNI_COMMAND" = ADD ] || wait=(-t ${FRONTEND_ANSWER_WAIT_S})
IFS= read -r "\${wait[@]}" status <&3
case "$status" in "HTTP/1.1 200 "*) ;; *) exec 3<&-; standalone <<<"$input" ;; esac
code=1; len=0; log=
while IFS= read -r line <&3; do
  line=\${line%$'\\r'}
  [ -z "$line" ] && break
  case "\${line,,}" in
    x-cni-exit:*) code=\${line#*: } ;;
    content-length:*) len=\${line#*: } ;;
    x-cni-log:*) log=\${line#*: } ;;
  esac
done
body=
[ "$len" -gt 0 ] && IFS= read -r -d '' -N "$len" body <&3
exec 3<&-
[ -n "$log" ] && printf '%b\\n' "\${log//%/\\\\x}" >&2
printf '%s' "$body"
exit "$code"
`;
}
