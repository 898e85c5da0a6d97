// Prometheus metrics with Weave Net's names (inventory section 10), on a registry owned by
// this router (no global registry), refreshed from the services at scrape time.
import { Registry, Gauge, Counter, collectDefaultMetrics } from 'prom-client';

export interface MetricsSources {
  localUsedIps(): number;
  maxIps(): number;
  pendingAllocates(): number;
  pendingClaims(): number;
  connections(): { state: string; type: string; encryption: string }[];
  /** Live DNS entries this router originates; absent when weaveDNS is off (no metric then, as the original). */
  dnsEntries?: () => number;
  /** Connections terminated since start (the mesh counts them). */
  terminations(): number;
  ipamEnabled: boolean;
}

export class RouterMetrics {
  readonly registry = new Registry();

  constructor(src: MetricsSources) {
    collectDefaultMetrics({ register: this.registry });
    const reg = [this.registry];
    new Gauge({
      name: 'weave_connections',
      help: 'Number of peer-to-peer connections.',
      labelNames: ['state', 'type', 'encryption'],
      registers: reg,
      collect() {
        this.reset();
        for (const c of src.connections()) this.inc({ state: c.state, type: c.type, encryption: c.encryption });
      },
    });
    new Counter({
      name: 'weave_connection_terminations_total',
      help: 'Number of peer-to-peer connections terminated.',
      registers: reg,
      collect() {
        this.reset();
        this.inc(src.terminations());
      },
    });
    if (src.ipamEnabled) {
      new Gauge({ name: 'weave_ips', help: 'Number of IP addresses.', labelNames: ['state'], registers: reg, collect() { this.set({ state: 'local-used' }, src.localUsedIps()); } });
      new Gauge({ name: 'weave_max_ips', help: 'Size of IP address space used by allocator.', registers: reg, collect() { this.set(src.maxIps()); } });
      new Gauge({ name: 'weave_ipam_unreachable_count', help: 'Number of unreachable peers.', registers: reg, collect() { this.set(0); } });
      new Gauge({ name: 'weave_ipam_unreachable_percentage', help: 'Percentage of IP addresses owned by unreachable peers.', registers: reg, collect() { this.set(0); } });
      new Gauge({ name: 'weave_ipam_pending_allocates', help: 'Number of pending allocates.', registers: reg, collect() { this.set(src.pendingAllocates()); } });
      new Gauge({ name: 'weave_ipam_pending_claims', help: 'Number of pending claims.', registers: reg, collect() { this.set(src.pendingClaims()); } });
    }
    const dnsEntries = src.dnsEntries;
    if (dnsEntries) new Gauge({ name: 'weave_dns_entries', help: 'Number of DNS entries.', registers: reg, collect() { this.set(dnsEntries()); } });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
