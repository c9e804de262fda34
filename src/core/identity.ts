/**
 * The identity chain. Whatever admitted the caller (a JWT rule, an API key, a shared
 * token, a Kubernetes service-account token, a trusted edge header), later stages see
 * the same shape, so AuthorizationPolicy `request.auth.*` and token exchange work for
 * every credential kind.
 */
export type CredentialKind = 'jwt' | 'api-key' | 'shared-token' | 'kubernetes' | 'edge' | 'sts' | 'session';

export interface Identity {
  readonly kind: CredentialKind;
  /** Istio `request.auth.principal`: `iss/sub` for JWTs; documented per validator otherwise. */
  readonly principal: string;
  readonly issuer: string;
  readonly subject: string;
  /** Istio `request.auth.audiences`. */
  readonly audiences: readonly string[];
  /** Istio `request.auth.presenter` (`azp`), '' when none. */
  readonly presenter: string;
  /** Istio `request.auth.claims`; space-delimited claims already split into lists. */
  readonly claims: Readonly<Record<string, unknown>>;
  /** The raw credential (needed as an RFC 8693 subject/actor token). Never logged. */
  readonly token?: string;
  /** Where the credential was found, e.g. `header:authorization` (for removal upstream). */
  readonly location?: string;
  /** Expiry in seconds since epoch, when known. */
  readonly expiresAt?: number;
  /** What admitted it: `ns/name` of the RequestAuthentication/validator and rule index. */
  readonly admittedBy: string;
}

/**
 * Scopes held by a token's claims (`scope`, `scp`): the one scope parser (core/scopes.ts) that
 * the token endpoint and `request.auth.claims[scope]` use too.
 */
export { scopesOf } from './scopes.js';
