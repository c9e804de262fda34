/**
 * Compile the exchange stage's kinds once: DelegationPolicy (delegation.ts), then
 * SecurityTokenService (sts.ts, which may reference a DelegationPolicy), then
 * TokenExchangePolicy (policy.ts, which references both), ordered for selection (select.ts).
 * Shape (unknown fields are errors), semantics, cross-document references and key material
 * are checked here; remote resources (STS clients, keys, caches, TokenReview clients, token
 * files) come from runtime.shared so a reload with the same settings reuses them.
 */
import type { CompileContext, KindDocument } from '../config/kinds.js';
import { compileDelegationPolicies } from './delegation.js';
import { makeExchangeMetrics, type ExchangeMetrics } from './metrics.js';
import { compilePolicy, type CompiledPolicy } from './policy.js';
import { orderPolicies } from './select.js';
import { compileSecurityTokenServices, type CompiledBuiltinSts, type CompiledSts } from './sts.js';

export interface ExchangeInput {
  readonly tokenExchangePolicies: readonly KindDocument[];
  readonly securityTokenServices: readonly KindDocument[];
  readonly delegationPolicies: readonly KindDocument[];
}

export interface ExchangeConfig {
  /** Number of TokenExchangePolicy documents in force. */
  readonly count: number;
  /** Most specific first, ties by namespace/name. */
  readonly policies: readonly CompiledPolicy[];
  /** Every SecurityTokenService by `namespace/name`. */
  readonly stss: ReadonlyMap<string, CompiledSts>;
  /** The builtin STS served on the HTTP port (the one with `default: true`, or the only one). */
  readonly builtinSts: CompiledBuiltinSts | null;
}

export function compileExchange(input: ExchangeInput, cc: CompileContext): ExchangeConfig {
  const delegations = compileDelegationPolicies(input.delegationPolicies);
  const { stss, httpSts } = compileSecurityTokenServices(input.securityTokenServices, delegations, cc);
  // Made only when there are policies: a config without exchange shows no exchange metrics.
  let metrics: ExchangeMetrics | undefined;
  const policies: CompiledPolicy[] = [];
  for (const k of input.tokenExchangePolicies) {
    const p = compilePolicy(k, cc, stss, delegations, (metrics ??= makeExchangeMetrics(cc.runtime.metrics)));
    if (p) policies.push(p);
  }
  const ordered = orderPolicies(policies, input.tokenExchangePolicies);
  return Object.freeze({ count: ordered.length, policies: ordered, stss, builtinSts: httpSts });
}
