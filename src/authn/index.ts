/**
 * Authentication stage (phase 2). PLACEHOLDER: to be replaced by the RequestAuthentication
 * implementation (issue 3) and the credential chain (issue 6). Contract:
 *  - compileAuthn validates RequestAuthentication/CredentialValidator specs via `k.v` and
 *    returns an immutable AuthnConfig;
 *  - authenticate() sets state.identity / state.identities and upstream header mutations,
 *    or returns a Deny. It never throws for bad input.
 */
import type { CompileContext } from '../config/compile.js';
import type { KindDocument } from '../config/kinds.js';
import type { CheckState, Deny } from '../pipeline/state.js';

export interface AuthnInput {
  readonly requestAuthentications: readonly KindDocument[];
  readonly credentialValidators: readonly KindDocument[];
}

export interface AuthnConfig {
  readonly count: number;
}

export function compileAuthn(input: AuthnInput, _cc: CompileContext): AuthnConfig {
  for (const k of input.credentialValidators) k.v.error(['kind'], 'CredentialValidator is not supported yet');
  return { count: input.requestAuthentications.length };
}

export function authenticate(_state: CheckState, _cfg: AuthnConfig): Deny | null | Promise<Deny | null> {
  return null;
}
