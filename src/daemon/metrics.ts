// Prometheus metrics with Weave Net's names (inventory section 10), on a registry owned by
// this router (no global registry), refreshed from the services at scrape time.
import { Registry, Gauge, Counter, collectDefaultMetrics } from 'prom-client';
import type { IpamMetrics } from '../ipam/ipam-status.js';

export interface MetricsSources {
  /** IPAM's numbers at scrape time; absent with IPAM off (no IPAM metrics then, as the original). */
  ipam?: () => IpamMetrics;
  connections(): { state: string; type: string; encryption: string }[];
  /** Live DNS entries this router originates; absent when weaveDNS is off (no metric then, as the original). */
  dnsEntries?: () => number;
  /** Connections terminated since start (the mesh counts them). */
  terminations(): number;
}

export class RouterMetrics {
  readonly registry = new Registry();

  constructor(src: MetricsSources) {
    // The event-loop delay histogram samples on a timer; prom-client's 10 ms default woke an
    // idle router 100 times a second (half a per cent of a core, taken from what the host
    // forwards); at 100 ms the nodejs_eventloop_lag_* figures keep 100 ms resolution.
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 });
    const reg = [this.registry];
    new Gauge({
      name: 'weave_connections',
      help: 'Number of peer-to-peer connections.',
      // Labels in name order, as Go's client writes them (text greps written for the original,
      // such as its tests' `weave_connections{encryption="",state="established"`, match).
      labelNames: ['encryption', 'state', 'type'],
      registers: reg,
      collect() {
        this.reset();
        // As the original: for every state and type seen, both encryption values, 0 included.
        const counts = new Map<string, { state: string; type: string; yes: number; no: number }>();
        for (const c of src.connections()) {
          const key = `${c.state}\0${c.type}`;
          let n = counts.get(key);
          if (!n) counts.set(key, (n = { state: c.state, type: c.type, yes: 0, no: 0 }));
          if (c.encryption === 'yes') n.yes++;
          else n.no++;
        }
        for (const { state, type, yes, no } of counts.values()) {
          this.set({ encryption: 'yes', state, type }, yes);
          this.set({ encryption: '', state, type }, no);
        }
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
    const ipam = src.ipam;
    if (ipam) {
      const gauge = (name: string, help: string, value: (m: IpamMetrics) => number) =>
        new Gauge({ name, help, registers: reg, collect() { this.set(value(ipam())); } });
      new Gauge({ name: 'weave_ips', help: 'Number of IP addresses.', labelNames: ['state'], registers: reg, collect() { this.set({ state: 'local-used' }, ipam().ips); } });
      gauge('weave_max_ips', 'Size of IP address space used by allocator.', (m) => m.maxIps);
      gauge('weave_ipam_unreachable_count', 'Number of unreachable peers.', (m) => m.unreachableCount);
      gauge('weave_ipam_unreachable_percentage', 'Percentage of IP addresses owned  by unreachable peers.', (m) => m.unreachablePercentage);
      gauge('weave_ipam_pending_allocates', 'Number of pending allocates.', (m) => m.pendingAllocates);
      gauge('weave_ipam_pending_claims', 'Number of pending claims.', (m) => m.pendingClaims);
    }
    const dnsEntries = src.dnsEntries;
    if (dnsEntries) new Gauge({ name: 'weave_dns_entries', help: 'Number of DNS entries.', registers: reg, collect() { this.set(dnsEntries()); } });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
