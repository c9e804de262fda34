/**
 * What every transport does with a finished Check: count it in `checks_total` and
 * `check_duration_seconds` (labelled with the transport) and write its decision line. One
 * implementation for the gRPC and the HTTP authorization listeners, so both report alike.
 */
import type { Decision } from '../core/decision.js';
import { DecisionLog, sharedLineWriter, type DecisionSink } from '../observability/decision-log.js';
import type { ServerRuntime } from '../observability/metrics.js';
import type { CompiledConfig } from './compile.js';

export type Transport = 'grpc' | 'http';

interface Inc {
  inc(): void;
}
interface Observe {
  observe(v: number): void;
}

export class CheckRecorder {
  private readonly log: DecisionLog;
  // Label children resolved once per (decision, reason): both come from closed sets, and
  // resolving labels on every Check (hashing the label object) is measurable per-Check cost.
  private readonly allowByReason = new Map<string, Inc>();
  private readonly denyByReason = new Map<string, Inc>();
  private readonly durationAllow: Observe;
  private readonly durationDeny: Observe;

  constructor(
    private readonly runtime: ServerRuntime,
    readonly transport: Transport,
    sink?: DecisionSink,
  ) {
    this.log = new DecisionLog(sink ?? runtime.decisionSink ?? sharedLineWriter(1, { flushOnExit: true }), Math.random, transport, runtime.secrets);
    this.durationAllow = runtime.metrics.checkDuration.labels('allow', transport);
    this.durationDeny = runtime.metrics.checkDuration.labels('deny', transport);
  }

  /** checks_total{decision, reason, transport} + 1. */
  count(allow: boolean, reason: string): void {
    const byReason = allow ? this.allowByReason : this.denyByReason;
    let c = byReason.get(reason);
    if (!c) {
      c = this.runtime.metrics.checks.labels(allow ? 'allow' : 'deny', reason, this.transport);
      byReason.set(reason, c);
    }
    c.inc();
  }

  /** Count, time and log one answered Check (`ms` since it arrived). */
  record(cfg: CompiledConfig | null, d: Decision, ms: number): void {
    this.count(d.allow, d.reason);
    (d.allow ? this.durationAllow : this.durationDeny).observe(ms / 1000);
    if (cfg) this.log.record(cfg.settings, d, ms);
  }
}
