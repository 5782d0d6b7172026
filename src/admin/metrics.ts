/**
 * Prometheus metrics (prom-client) for the sidecar's `/metrics`: provisioning outcomes and latency,
 * record counts, the nonce set and CoAP engine counters. Gauges are read at scrape time.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { OutcomeKind } from '../service/provisioning.ts';

/** What the metrics read of the store: the record counts (the Store, or AdminQueries, has them). */
export interface RecordCounts {
  counts(): Promise<Record<string, number>>;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly outcomes: Counter<'op' | 'outcome' | 'code'>;
  private readonly latency: Histogram<'op'>;

  constructor(opts: { store: RecordCounts; usedNonces: () => number; coapStats?: () => Record<string, number>; monitor?: () => Record<string, number> }) {
    collectDefaultMetrics({ register: this.registry, prefix: 'idprov_process_' });
    this.outcomes = new Counter({
      name: 'idprov_requests_total',
      help: 'Provisioning and refresh requests answered, by outcome and CoAP code',
      labelNames: ['op', 'outcome', 'code'],
      registers: [this.registry],
    });
    this.latency = new Histogram({
      name: 'idprov_request_duration_seconds',
      help: 'Time from decoded request to answer',
      labelNames: ['op'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
      registers: [this.registry],
    });
    const records = new Gauge({
      name: 'idprov_records',
      help: 'Rows per table',
      labelNames: ['table'],
      registers: [this.registry],
      async collect() {
        const c = await opts.store.counts();
        for (const [k, v] of Object.entries(c)) this.set({ table: k }, v);
      },
    });
    void records;
    new Gauge({
      name: 'idprov_used_nonces',
      help: 'Nonces remembered in the used-once set',
      registers: [this.registry],
      collect() {
        this.set(opts.usedNonces());
      },
    });
    if (opts.monitor) {
      const monitor = opts.monitor;
      new Gauge({
        name: 'idprov_monitor',
        help: 'Security monitor sizes: rate-limit buckets per address and per device ID, addresses tracked, open flags',
        labelNames: ['size'],
        registers: [this.registry],
        collect() {
          for (const [k, v] of Object.entries(monitor())) this.set({ size: k }, v);
        },
      });
    }
    if (opts.coapStats) {
      const stats = opts.coapStats;
      new Gauge({
        name: 'idprov_coap_datagrams',
        help: 'CoAP engine counters since start',
        labelNames: ['counter'],
        registers: [this.registry],
        collect() {
          for (const [k, v] of Object.entries(stats())) if (typeof v === 'number') this.set({ counter: k }, v);
        },
      });
    }
  }

  /** Hook for ProvisioningService `observe`. */
  observe = (op: 'request' | 'refresh', outcome: OutcomeKind, code: string, ms: number): void => {
    this.outcomes.inc({ op, outcome, code });
    this.latency.observe({ op }, ms / 1000);
  };

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
