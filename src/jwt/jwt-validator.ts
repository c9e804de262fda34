/**
 * A reusable JWT validator (for example for actor tokens in token exchange) with the same
 * semantics and key handling as RequestAuthentication jwtRules: Envoy's checks and status
 * strings, 60 s clock skew, audience normalisation, JWKS from inline / jwksUri / OIDC
 * discovery with background refresh, unknown-kid refetch, stale-if-error and a verified-
 * token cache. Remote key sources are shared through runtime.shared, so a validator built
 * at each config compile reuses the same source (and its fetched keys).
 */
import type { ReasonCode } from '../core/reasons.js';
import type { Runtime } from '../core/runtime.js';
import { JWT_STATUS, reasonForStatus } from './jwt-format.js';
import { DEFAULT_JWKS_TIMEOUT_MS, DEFAULT_JWKS_TUNING, sharedRemoteSource, StaticKeySource, type JwksTuning, type KeySource } from './jwks-source.js';
import type { DocumentFetcher } from './jwks-fetch.js';
import { parseJwks } from './keys.js';
import { JwtVerifier, sharedVerifiedCache } from './verifier.js';

export interface JwtValidatorOptions {
  issuer: string;
  audiences?: readonly string[];
  jwksUri?: string;
  /** Inline JWKS JSON (may hold oct keys for HS256/384/512). */
  jwks?: string;
  /** JWKS fetch timeout; default 5 s. */
  timeoutMs?: number;
  /** Override JWKS refresh / stale / cooldown tuning. */
  tuning?: Partial<JwksTuning>;
  /** Use the shared verified-token cache (default true). */
  cache?: boolean;
  /** Fetch the JWKS (and discovery) through this instead of runtime.fetch (a private CA). */
  fetcher?: { readonly id: string; readonly fetch: DocumentFetcher };
}

export interface JwtValidator {
  verify(token: string, signal?: AbortSignal): Promise<JwtResult>;
}

export type JwtResult =
  | { ok: true; header: Record<string, unknown>; payload: Record<string, unknown>; kid?: string }
  | { ok: false; reason: ReasonCode; body: string; message: string };

/** Build the key source for a rule/validator; throws only for an invalid inline jwks (a config error). */
export function createKeySource(
  runtime: Runtime,
  opts: { issuer: string; jwksUri?: string; jwks?: string; timeoutMs: number; tuning: JwksTuning; fetcher?: { readonly id: string; readonly fetch: DocumentFetcher } },
): KeySource {
  if (opts.jwks !== undefined && opts.jwks !== '') {
    const r = parseJwks(opts.jwks, { allowSymmetric: true });
    if (!r.ok) throw new Error(`invalid jwks: ${r.error}`);
    return new StaticKeySource(r.keySet);
  }
  if (opts.jwksUri) return sharedRemoteSource(runtime, { kind: 'uri', uri: opts.jwksUri }, opts.issuer, opts.timeoutMs, opts.tuning, opts.fetcher);
  return sharedRemoteSource(runtime, { kind: 'discovery', issuer: opts.issuer }, opts.issuer, opts.timeoutMs, opts.tuning, opts.fetcher);
}

/**
 * Create a validator. An invalid inline `jwks` makes every verify() fail with
 * ERR_JWKS_UNAVAILABLE (validate options at config time to report it earlier).
 */
export function createJwtValidator(runtime: Runtime, opts: JwtValidatorOptions): JwtValidator {
  const tuning: JwksTuning = { ...DEFAULT_JWKS_TUNING, ...(opts.tuning ?? {}) };
  const timeoutMs = opts.timeoutMs ?? DEFAULT_JWKS_TIMEOUT_MS;
  let source: KeySource;
  try {
    source = createKeySource(runtime, { issuer: opts.issuer, jwksUri: opts.jwksUri, jwks: opts.jwks, timeoutMs, tuning, fetcher: opts.fetcher });
  } catch (e) {
    const message = (e as Error).message;
    return {
      async verify() {
        return { ok: false, reason: 'ERR_JWKS_UNAVAILABLE', body: JWT_STATUS.JwksFetchFail, message };
      },
    };
  }
  const verifier = new JwtVerifier(runtime, {
    issuer: opts.issuer,
    audiences: opts.audiences ?? [],
    source,
    timeoutMs,
    cache: opts.cache === false ? undefined : sharedVerifiedCache(runtime),
  });
  return {
    async verify(token: string, signal?: AbortSignal): Promise<JwtResult> {
      try {
        const r = await verifier.verify(token, signal);
        if (r.ok) return { ok: true, header: r.jwt.header, payload: r.jwt.payload, kid: r.jwt.kid };
        const body = JWT_STATUS[r.status];
        return { ok: false, reason: reasonForStatus(r.status), body, message: `${body}${r.detail ? ` (${r.detail})` : ''}` };
      } catch {
        // Never throw to the caller; an unexpected failure rejects the token.
        return { ok: false, reason: 'ERR_JWT_INVALID', body: JWT_STATUS.JwtVerificationFail, message: 'unexpected error while verifying the token' };
      }
    },
  };
}
