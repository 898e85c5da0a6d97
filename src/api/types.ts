// Shapes and constants shared by the router's HTTP server and its clients (CLI, CNI plugins).
// Route shapes and status formats are Weave Net 2.8.1's; see docs/http-api.md.

export const DEFAULT_HTTP_ADDR = '127.0.0.1:6784';
/** Ident under which the bridge's own address is allocated (original: `weave:expose`). */
export const EXPOSE_IDENT = 'weave:expose';
/** Ident for DNS names of addresses that belong to no container (`weave dns-add <ip> -h <fqdn>`). */
export const EXTERN_IDENT = 'weave:extern';
/** Header carrying our stable error code next to the original's status and text body. */
export const ERROR_CODE_HEADER = 'x-weave-error-code';

export interface VersionCheckStatus {
  Enabled: boolean;
  Success: boolean;
  NewVersion: string;
  NextCheckAt: string;
}

export interface PeerConnectionStatus {
  Name: string;
  NickName: string;
  Address: string;
  Outbound: boolean;
  Established: boolean;
}

export interface PeerStatus {
  Name: string;
  NickName: string;
  UID: bigint;
  ShortID: number;
  Version: number;
  Connections: PeerConnectionStatus[] | null;
}

export interface LocalConnectionStatus {
  Address: string;
  Outbound: boolean;
  State: string;
  Info: string;
  Attrs: Record<string, unknown> | null;
}

export interface RouterStatus {
  Protocol: string;
  ProtocolMinVersion: number;
  ProtocolMaxVersion: number;
  Encryption: boolean;
  PeerDiscovery: boolean;
  Name: string;
  NickName: string;
  Port: number;
  Peers: PeerStatus[];
  UnicastRoutes: { Dest: string; Via: string }[];
  BroadcastRoutes: { Source: string; Via: string[] | null }[];
  Connections: LocalConnectionStatus[] | null;
  TerminationCount: number;
  Targets: string[] | null;
  OverlayDiagnostics: Record<string, unknown>;
  TrustedSubnets: string[];
  Interface: string;
  CaptureStats: Record<string, number> | null;
  MACs: { Mac: string; Name: string; NickName: string; LastSeen: string }[] | null;
}

export interface IpamEntryStatus {
  Token: string;
  Size: number;
  Peer: string;
  Nickname: string;
  IsKnownPeer: boolean;
  Version: number;
}

export interface IpamStatus {
  Paxos: { Elector: boolean; Quorum: number; KnownNodes: number } | null;
  Range: string;
  RangeNumIPs: number;
  ActiveIPs: number;
  DefaultSubnet: string;
  Entries: IpamEntryStatus[] | null;
  /** CIDR: Go's address.CIDR, printed by templates as 10.32.0.5/12. */
  PendingClaims: { Ident: string; CIDR: { Addr: string; PrefixLen: number } }[] | null;
  PendingAllocates: string[] | null;
}

export interface DnsEntryStatus {
  Hostname: string;
  Origin: string;
  ContainerID: string;
  Address: string;
  Version: number;
  Tombstone: number;
}

export interface DnsStatus {
  Domain: string;
  Upstream: string[] | null;
  Address: string;
  TTL: number;
  Entries: DnsEntryStatus[] | null;
}

/** One entry of `GET /name` (Accept: application/json), as the original marshals them. */
export interface DnsNameJson {
  ContainerID: string;
  Origin: string;
  Addr: string;
  Hostname: string;
  Version: number;
  Tombstone: number;
}

/** The `/report` document (original: WeaveStatus). Absent services are omitted. */
export interface WeaveReport {
  Ready: boolean;
  Version: string;
  VersionCheck: VersionCheckStatus;
  Router: RouterStatus;
  IPAM?: IpamStatus;
  DNS?: DnsStatus;
}

/** `GET /ip` (original shape). */
export interface OwnedAddresses {
  owned: { containerid: string; addrs: string[] }[];
}

/** The pid file weaver writes in its run directory; the CLI reads it to find and stop it. */
export const WEAVER_PID_FILE = 'weaver.pid';
/** The embedded store's file in the data directory. */
export const STORE_FILE = 'weave.db';
/** The token file in the run directory that authorises the installed CNI plugin's calls. */
export const CNI_TOKEN_FILE = 'cni.token';
