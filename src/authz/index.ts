/**
 * Authorization stage (phase 3). PLACEHOLDER: to be replaced by the AuthorizationPolicy
 * engine (issue 4). Contract: compileAuthz validates specs via `k.v` and returns an
 * immutable AuthzConfig; authorize() returns a Deny (ERR_RBAC_DENIED with policy/rule) or
 * null, and records attribution in state.attribution.
 */
import type { CompileContext } from '../config/compile.js';
import type { KindDocument } from '../config/kinds.js';
import type { CheckState, Deny } from '../pipeline/state.js';

export interface AuthzConfig {
  readonly count: number;
}

export function compileAuthz(policies: readonly KindDocument[], _cc: CompileContext): AuthzConfig {
  return { count: policies.length };
}

export function authorize(_state: CheckState, _cfg: AuthzConfig): Deny | null {
  return null;
}
