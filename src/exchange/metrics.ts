/**
 * The exchange stage's metrics (docs/operations-metrics.md), made once per compiled config from
 * the runtime's registry (which returns the same instruments for the same name, so a reload
 * counts on). Label values: STS and policy refs (config), outcomes and reason codes (closed sets).
 */
import type { CounterInstrument, HistogramInstrument, MetricsRegistry } from '../core/runtime.js';

export interface ExchangeMetrics {
  readonly exchanges: CounterInstrument<'sts' | 'outcome'>;
  readonly latency: HistogramInstrument<'sts'>;
  readonly cache: CounterInstrument<'policy' | 'result'>;
  readonly denials: CounterInstrument<'policy' | 'reason'>;
}

export function makeExchangeMetrics(m: MetricsRegistry): ExchangeMetrics {
  return {
    exchanges: m.counter('token_exchanges_total', 'STS exchanges by STS (namespace/name) and outcome.', ['sts', 'outcome'] as const),
    latency: m.histogram('token_exchange_duration_seconds', 'Time of one STS exchange (built-in mint or remote call), by STS.', ['sts'] as const),
    cache: m.counter('token_exchange_cache_total', 'Exchange cache lookups by policy and result (hit|miss|negative).', ['policy', 'result'] as const),
    denials: m.counter('token_exchange_denials_total', 'Exchange-stage denials by policy and reason code.', ['policy', 'reason'] as const),
  };
}
