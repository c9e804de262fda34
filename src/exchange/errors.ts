/**
 * Exchange-stage failures as values. Every failure carries a closed reason code
 * and a secret-free internal message; deny bodies are fixed strings
 * per code and never carry STS error text.
 */
import type { ReasonCode } from '../core/reasons.js';

export type ExchangeReason =
  | 'ERR_SUBJECT_MISSING'
  | 'ERR_ACTOR_TOKEN_MISSING'
  | 'ERR_ACTOR_TOKEN_INVALID'
  | 'ERR_DELEGATION_DENIED'
  | 'ERR_EXCHANGE_REFUSED'
  | 'ERR_EXCHANGE_UNAVAILABLE'
  | 'ERR_EXCHANGE_MISCONFIGURED'
  | 'ERR_JWKS_UNAVAILABLE'
  | 'ERR_DEADLINE';

export interface ExchangeFailure {
  readonly ok: false;
  readonly reason: ExchangeReason;
  /** Internal, secret-free (already sanitized) explanation for logs and --explain. */
  readonly message: string;
  /** OAuth error code (closed set) when the failure came from an STS answer. */
  readonly oauthError?: string;
}

export function fail(reason: ExchangeReason, message: string, oauthError?: string): ExchangeFailure {
  return oauthError === undefined ? { ok: false, reason, message } : { ok: false, reason, message, oauthError };
}

/** Closed set of OAuth error codes we recognise (RFC 6749 §5.2, RFC 8693 §2.2.2); others become 'other'. */
export const OAUTH_ERRORS = new Set([
  'invalid_request',
  'invalid_client',
  'invalid_grant',
  'unauthorized_client',
  'unsupported_grant_type',
  'invalid_scope',
  'invalid_target',
]);

/** Metric outcome label for a reason (closed set). */
export function outcomeOf(reason: ExchangeReason | 'OK'): string {
  switch (reason) {
    case 'OK':
      return 'success';
    case 'ERR_EXCHANGE_REFUSED':
      return 'refused';
    case 'ERR_EXCHANGE_UNAVAILABLE':
      return 'unavailable';
    case 'ERR_EXCHANGE_MISCONFIGURED':
      return 'misconfigured';
    case 'ERR_DELEGATION_DENIED':
      return 'delegation_denied';
    case 'ERR_DEADLINE':
      return 'deadline';
    default:
      return 'error';
  }
}
