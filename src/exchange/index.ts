/**
 * Token exchange stage (phase 4). PLACEHOLDER: to be replaced by the on-behalf-of
 * implementation (issue 5). Contract: compileExchange validates TokenExchangePolicy,
 * SecurityTokenService and DelegationPolicy specs via `k.v`; exchange() sets the upstream
 * token header (or returns a Deny); `builtinSts` exposes the HTTP STS endpoints.
 */
import type { AuthnConfig } from '../authn/index.js';
import type { CompileContext } from '../config/compile.js';
import type { KindDocument } from '../config/kinds.js';
import type { CheckState, Deny } from '../pipeline/state.js';

export interface ExchangeInput {
  readonly tokenExchangePolicies: readonly KindDocument[];
  readonly securityTokenServices: readonly KindDocument[];
  readonly delegationPolicies: readonly KindDocument[];
  readonly authn: AuthnConfig;
}

export interface ExchangeConfig {
  readonly count: number;
}

export function compileExchange(input: ExchangeInput, _cc: CompileContext): ExchangeConfig {
  for (const k of [...input.tokenExchangePolicies, ...input.securityTokenServices, ...input.delegationPolicies]) {
    k.v.error(['kind'], `${k.kind} is not supported yet`);
  }
  return { count: 0 };
}

export async function exchange(_state: CheckState, _cfg: ExchangeConfig): Promise<Deny | null> {
  return null;
}
