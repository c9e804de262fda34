/**
 * Redaction in one place. Tokens, keys and secrets never reach logs, deny bodies or
 * error messages; anything that may carry one goes through here first.
 */
import { createHash } from 'node:crypto';

/** Header names whose values are credentials. */
const SECRET_HEADERS = new Set([
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'x-actor-token',
  'x-api-key',
  'x-auth-token',
]);

export function isSecretHeader(name: string): boolean {
  const n = name.toLowerCase();
  return SECRET_HEADERS.has(n) || n.includes('token') || n.includes('secret') || n.includes('key') || n.includes('password');
}

/** A short, non-reversible fingerprint for correlating a credential across log lines. */
export function fingerprint(secret: string): string {
  return createHash('sha256').update(secret).digest('base64url').slice(0, 12);
}

const JWT_LIKE = /\b[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b/g;
const BEARER = /\b(Bearer|Basic)\s+[^\s",]+/gi;
const FORM_SECRETS = /\b(subject_token|actor_token|access_token|client_secret|client_assertion|token|refresh_token|password)=([^&\s"]+)/gi;

/** Scrub anything that looks like a credential out of free text (e.g. remote error bodies). */
export function redactText(s: string): string {
  return s.replace(JWT_LIKE, '[REDACTED-JWT]').replace(BEARER, '$1 [REDACTED]').replace(FORM_SECRETS, '$1=[REDACTED]');
}

/** Sanitize a remote party's error text before it reaches our logs: redacted, single line, bounded. */
export function sanitizeRemoteText(s: unknown, max = 200): string {
  const text = typeof s === 'string' ? s : s === undefined || s === null ? '' : JSON.stringify(s);
  return redactText(text)
    .replace(/[\u0000-\u001f\u007f]+/g, ' ')
    .slice(0, max);
}

/** Headers with credential values replaced, for debug logging. */
export function redactHeaders(h: ReadonlyMap<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of h) out[k] = isSecretHeader(k) ? `[REDACTED sha256:${fingerprint(v)}]` : v;
  return out;
}
