/**
 * Prometheus metrics (prom-client), one Registry per server instance so tests can run
 * several servers in one process. Every label value comes from a closed set (reason
 * codes, decisions, stage outcomes) or from config (policy/issuer names), never from
 * request data.
 */
import client from 'prom-client';
import type { MetricsRegistry, Runtime } from '../core/runtime.js';
import { HotCounter, HotHistogram } from './hot-metrics.js';

const PREFIX = 'obo_authz_';

export class Metrics implements MetricsRegistry {
  readonly registry: client.Registry;
  readonly checks: HotCounter<'decision' | 'reason' | 'transport'>;
  readonly checkDuration: HotHistogram<'decision' | 'transport'>;
  readonly configReloads: client.Counter<'result'>;
  readonly configInfo: client.Gauge<'hash'>;
  readonly inflight: client.Gauge;
  private readonly extra = new Map<string, unknown>();
  private inflightSource: (() => number) | null = null;

  constructor(opts: { collectDefault?: boolean } = {}) {
    this.registry = new client.Registry();
    if (opts.collectDefault) client.collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
    // Updated on every Check: counter() and histogram() make the cheap kind (hot-metrics.ts).
    this.checks = this.counter('checks_total', 'Check decisions by decision (allow|deny), reason code and transport (grpc|http).', ['decision', 'reason', 'transport'] as const);
    this.checkDuration = this.histogram('check_duration_seconds', 'Time to answer one Check, by decision and transport.', ['decision', 'transport'] as const, [
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
    ]);
    this.configReloads = new client.Counter({
      name: `${PREFIX}config_reloads_total`,
      help: 'Config loads by result (success|failure).',
      labelNames: ['result'],
      registers: [this.registry],
    });
    this.configInfo = new client.Gauge({
      name: `${PREFIX}config_info`,
      help: 'The config in force (value 1), labelled by its content hash.',
      labelNames: ['hash'],
      registers: [this.registry],
    });
    // Read at scrape time (trackInflight), not updated twice per Check.
    const self = this;
    this.inflight = new client.Gauge({
      name: `${PREFIX}checks_in_flight`,
      help: 'Checks being evaluated.',
      registers: [this.registry],
      collect() {
        if (self.inflightSource) this.set(self.inflightSource());
      },
    });
  }

  /** checks_in_flight reports `count()` when scraped. */
  trackInflight(count: () => number): void {
    this.inflightSource = count;
  }

  counter<L extends string>(name: string, help: string, labelNames: readonly L[]): HotCounter<L> {
    return this.getOrCreate(name, () => new HotCounter<L>(PREFIX + name, help, labelNames, [this.registry]));
  }

  gauge<L extends string>(name: string, help: string, labelNames: readonly L[]): client.Gauge<L> {
    return this.getOrCreate(name, () => new client.Gauge({ name: PREFIX + name, help, labelNames, registers: [this.registry] }));
  }

  histogram<L extends string>(name: string, help: string, labelNames: readonly L[], buckets?: number[]): HotHistogram<L> {
    return this.getOrCreate(name, () => new HotHistogram<L>(PREFIX + name, help, labelNames, buckets ?? [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], [this.registry]));
  }

  private getOrCreate<M>(name: string, create: () => M): M {
    const hit = this.extra.get(name);
    if (hit) return hit as M;
    const m = create();
    this.extra.set(name, m);
    return m;
  }
}

/** The Runtime the composition floor makes: its metrics are the Prometheus registry above. */
export type ServerRuntime = Runtime<Metrics>;
