/**
 * The decision log: one JSON line per decision with the request id, decision, reason code,
 * deciding policy/rule, subject, actor, audience and latency. Never a token: only
 * principals (iss/sub), which are identifiers, not credentials.
 */
import type { Logger } from 'pino';
import type { Settings } from '../config/settings.js';
import type { Decision } from '../pipeline/decision.js';

export interface DecisionLogEntry {
  requestId: string;
  decision: 'allow' | 'deny';
  reason: string;
  status?: number;
  policy?: string;
  rule?: number;
  subject?: string;
  actor?: string;
  audience?: string;
  exchangePolicy?: string;
  exchangeCache?: string;
  audit?: string[];
  shadow?: unknown[];
  latencyMs: number;
  detail?: string;
}

export function decisionLogEntry(d: Decision, latencyMs: number): DecisionLogEntry {
  const e: DecisionLogEntry = {
    requestId: d.requestId,
    decision: d.allow ? 'allow' : 'deny',
    reason: d.reason,
    latencyMs: Math.round(latencyMs * 1000) / 1000,
  };
  if (!d.allow) {
    e.status = d.httpStatus;
    e.detail = d.message;
  }
  const a = d.attribution;
  if (a.policy) e.policy = a.policy;
  if (a.rule !== undefined) e.rule = a.rule;
  if (d.identity) e.subject = d.identity.principal;
  if (d.actor) e.actor = d.actor.principal;
  if (a.audience) e.audience = a.audience;
  if (a.exchangePolicy) e.exchangePolicy = a.exchangePolicy;
  if (a.exchangeCache) e.exchangeCache = a.exchangeCache;
  if (a.audit?.length) e.audit = a.audit;
  if (a.shadow?.length) e.shadow = a.shadow;
  return e;
}

export class DecisionLog {
  private readonly logger: Logger;
  constructor(logger: Logger, private readonly random: () => number = Math.random) {
    this.logger = logger.child({ component: 'decision' });
  }

  record(settings: Settings, d: Decision, latencyMs: number): void {
    const cfg = settings.decisionLog;
    if (!cfg.enabled) return;
    // Denies are always logged; allows are sampled (audit/shadow outcomes always logged).
    const mustLog = !d.allow || (d.attribution.audit?.length ?? 0) > 0 || (d.attribution.shadow?.length ?? 0) > 0;
    if (!mustLog && cfg.allowSampleRate < 1 && this.random() >= cfg.allowSampleRate) return;
    this.logger.info(decisionLogEntry(d, latencyMs), 'decision');
  }
}
