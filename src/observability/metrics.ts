/**
 * Prometheus metrics (prom-client), one Registry per server instance so tests can run
 * several servers in one process. Every label value comes from a closed set (reason
 * codes, decisions, stage outcomes) or from config (policy/issuer names), never from
 * request data.
 */
import client from 'prom-client';

const PREFIX = 'obo_authz_';

export class Metrics {
  readonly registry: client.Registry;
  readonly checks: client.Counter<'decision' | 'reason'>;
  readonly checkDuration: client.Histogram<'decision'>;
  readonly configReloads: client.Counter<'result'>;
  readonly configInfo: client.Gauge<'hash'>;
  readonly inflight: client.Gauge;
  private readonly extra = new Map<string, client.Metric>();

  constructor(opts: { collectDefault?: boolean } = {}) {
    this.registry = new client.Registry();
    if (opts.collectDefault) client.collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
    this.checks = new client.Counter({
      name: `${PREFIX}checks_total`,
      help: 'Check decisions by decision (allow|deny) and reason code.',
      labelNames: ['decision', 'reason'],
      registers: [this.registry],
    });
    this.checkDuration = new client.Histogram({
      name: `${PREFIX}check_duration_seconds`,
      help: 'Time to answer one Check, by decision.',
      labelNames: ['decision'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [this.registry],
    });
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
    this.inflight = new client.Gauge({
      name: `${PREFIX}checks_in_flight`,
      help: 'Checks being evaluated.',
      registers: [this.registry],
    });
  }

  counter<L extends string>(name: string, help: string, labelNames: readonly L[]): client.Counter<L> {
    return this.getOrCreate(name, () => new client.Counter({ name: PREFIX + name, help, labelNames, registers: [this.registry] }));
  }

  gauge<L extends string>(name: string, help: string, labelNames: readonly L[]): client.Gauge<L> {
    return this.getOrCreate(name, () => new client.Gauge({ name: PREFIX + name, help, labelNames, registers: [this.registry] }));
  }

  histogram<L extends string>(name: string, help: string, labelNames: readonly L[], buckets?: number[]): client.Histogram<L> {
    return this.getOrCreate(
      name,
      () =>
        new client.Histogram({
          name: PREFIX + name,
          help,
          labelNames,
          buckets: buckets ?? [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
          registers: [this.registry],
        }),
    );
  }

  private getOrCreate<M extends client.Metric>(name: string, create: () => M): M {
    const hit = this.extra.get(name);
    if (hit) return hit as M;
    const m = create();
    this.extra.set(name, m);
    return m;
  }
}
