// The kernel operations the data plane needs, declared here (by the consumer) and implemented
// by src/platform; the daemon wires them. Tests can pass fakes.

export interface LinkState {
  ifname: string;
  mtu: number;
  address: string;
  flags: string[];
  kind?: string;
  addrs: { family: 'inet' | 'inet6'; local: string; prefixlen: number }[];
}

/** A link's basic state, read without spawning a process (the periodic bridge check's). */
export interface LinkProbe {
  get(name: string): Pick<LinkState, 'ifname' | 'mtu' | 'address' | 'flags' | 'kind'> | undefined;
}

export interface LinkOps {
  getLink(name: string): Promise<LinkState | undefined>;
  listLinks(): Promise<LinkState[]>;
  batch(lines: string[]): Promise<string>;
  addAddress(dev: string, cidr: string): Promise<void>;
  deleteAddress(dev: string, cidr: string): Promise<void>;
  deleteLink(name: string): Promise<boolean>;
}

export type FirewallTable = 'filter' | 'nat' | 'mangle';

export interface FirewallOps {
  ensureChain(table: FirewallTable, chain: string): Promise<void>;
  ensureRule(table: FirewallTable, chain: string, rule: string[], position?: number): Promise<void>;
  removeRule(table: FirewallTable, chain: string, rule: string[]): Promise<void>;
  removeChain(table: FirewallTable, chain: string): Promise<void>;
  /** A chain's rules as `iptables -S` prints them (`-A CHAIN …`). */
  listRules(table: FirewallTable, chain: string): Promise<string[]>;
}

export interface SysctlOps {
  /** Writes /proc/sys/<path>; false if the key does not exist. */
  write(path: string, value: string): boolean;
}
