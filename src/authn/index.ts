/**
 * Authentication stage (phase 2): an ordered credential chain (chain.ts) whose first
 * member is the workload's RequestAuthentication jwtRules (request-authentication.ts).
 * compileAuthn validates RequestAuthentication / CredentialValidator documents through
 * `k.v` and returns an immutable AuthnConfig; authenticate() sets state.identity /
 * state.identities and the upstream header mutations, or returns a Deny. It never throws
 * for bad input.
 */
import type { CompileContext } from '../config/compile.js';
import type { KindDocument } from '../config/kinds.js';
import type { Settings } from '../config/settings.js';
import type { CheckState, Deny } from '../pipeline/state.js';
import { runChain, type CredentialValidatorMember } from './chain.js';
import { DEFAULT_JWKS_TUNING, type JwksTuning } from './jwks-source.js';
import {
  compileRequestAuthentication,
  JwtRulesMember,
  RequestAuthenticationIndex,
  type CompiledRequestAuthentication,
} from './request-authentication.js';

export type { CredentialValidatorMember, ValidatorResult } from './chain.js';
export type { JwksTuning } from './jwks-source.js';
export { createJwtValidator, type JwtResult, type JwtValidator, type JwtValidatorOptions } from './jwt-validator.js';

export interface AuthnInput {
  readonly requestAuthentications: readonly KindDocument[];
  readonly credentialValidators: readonly KindDocument[];
}

export interface AuthnConfig {
  /** Number of RequestAuthentication documents. */
  readonly count: number;
  readonly requestAuthentications: RequestAuthenticationIndex;
  /** Status for ERR_JWKS_UNAVAILABLE (Settings.jwksUnavailableStatus). */
  readonly jwksUnavailableStatus: 401 | 503;
  readonly jwksTuning: JwksTuning;
}

/**
 * JWKS tuning from Settings when the Settings kind carries a `jwks` block (optional until
 * Settings grows one); otherwise the defaults (refresh 20 min, stale max 7 days, ...).
 */
function tuningFrom(settings: Settings): JwksTuning {
  const extra = (settings as Settings & { jwks?: Partial<JwksTuning> }).jwks;
  return Object.freeze({ ...DEFAULT_JWKS_TUNING, ...(extra ?? {}) });
}

export function compileAuthn(input: AuthnInput, cc: CompileContext): AuthnConfig {
  for (const k of input.credentialValidators) k.v.error(['kind'], 'CredentialValidator is not supported yet');
  const tuning = tuningFrom(cc.settings);
  const compiled: CompiledRequestAuthentication[] = [];
  for (const k of input.requestAuthentications) {
    const c = compileRequestAuthentication(k, cc, tuning);
    if (c) compiled.push(c);
  }
  return Object.freeze({
    count: input.requestAuthentications.length,
    requestAuthentications: new RequestAuthenticationIndex(compiled, cc.settings.rootNamespace),
    jwksUnavailableStatus: cc.settings.jwksUnavailableStatus,
    jwksTuning: tuning,
  });
}

/** The chain for this request's workload (jwtRules first; issue 6 appends validators). */
function membersFor(state: CheckState, cfg: AuthnConfig): CredentialValidatorMember[] {
  const rules = cfg.requestAuthentications.rulesFor(state.ctx.workload);
  if (rules.length === 0) return [];
  return [new JwtRulesMember(rules, { jwksUnavailableStatus: cfg.jwksUnavailableStatus })];
}

export function authenticate(state: CheckState, cfg: AuthnConfig): Deny | null | Promise<Deny | null> {
  const members = membersFor(state, cfg);
  if (members.length === 0) {
    state.trace?.add('authn', 'no RequestAuthentication applies to this workload');
    return null;
  }
  return runChain(state, members);
}
