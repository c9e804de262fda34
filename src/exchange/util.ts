/** Small helpers shared by the exchange modules. */
import { createHash, hash } from 'node:crypto';

export const GRANT_TYPE_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const TOKEN_TYPE_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
export const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt';
export const TOKEN_TYPE_ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';

export function sha256(...parts: readonly string[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('base64url');
}

/**
 * The constant part of an exchange cache key (the key covers everything that
 * affects the result), computed once per TokenExchangePolicy at compile time. JSON keeps
 * the fields unambiguous and never contains a raw NUL, so the NUL that ends it delimits it.
 */
export function exchangeKeyPrefix(
  stsId: string,
  mode: string,
  audiences: readonly string[],
  resources: readonly string[],
  scopes: readonly string[],
  requestedTokenType: string | undefined,
  subjectTokenType: string,
): string {
  return `${JSON.stringify(['obo-authz/exchange-key/v2', stsId, mode, audiences, resources, scopes, requestedTokenType ?? null, subjectTokenType])}\0`;
}

/**
 * Exchange cache key: SHA-256 (base64url) over the policy's constant prefix and the
 * per-request parts (subject token, subject principal when the subject is not a JWT, actor
 * principal). The variable parts are length-prefixed, so the encoding is injective, and
 * hashed in one shot over one string (crypto.hash: no Hash object, no intermediate array,
 * no call per field).
 */
export function exchangeCacheKey(prefix: string, subjectToken: string, subjectPrincipal: string, actorPrincipal: string): string {
  return hash('sha256', `${prefix}${subjectToken.length}:${subjectPrincipal.length}:${actorPrincipal.length}\0${subjectToken}${subjectPrincipal}${actorPrincipal}`, 'base64url');
}

/**
 * Glob with `*` = any run of characters (including none), everything else literal.
 * `*` alone matches any non-empty value (Istio's convention for "present").
 */
export function compileGlob(pattern: string): (s: string) => boolean {
  if (pattern === '*') return (s) => s.length > 0;
  if (!pattern.includes('*')) return (s) => s === pattern;
  const re = new RegExp('^' + pattern.split('*').map(escapeRe).join('.*') + '$', 's');
  return (s) => re.test(s);
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Istio string match: exact, `abc*` prefix, `*abc` suffix, `*` non-empty. */
export function istioMatch(pattern: string, value: string): boolean {
  if (pattern === '*') return value.length > 0;
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  return value === pattern;
}

/** Scopes held by a token's claims: `scope` (space-delimited string or list) and `scp` (list or string). */
export function scopesOf(claims: Readonly<Record<string, unknown>>): Set<string> {
  const out = new Set<string>();
  for (const name of ['scope', 'scp']) {
    const v = claims[name];
    if (typeof v === 'string') {
      for (const s of v.split(' ')) if (s) out.add(s);
    } else if (Array.isArray(v)) {
      for (const s of v) if (typeof s === 'string') for (const p of s.split(' ')) if (p) out.add(p);
    }
  }
  return out;
}

/** Strip an optional `Bearer ` prefix (scheme is case-insensitive, RFC 9110 §11.1). */
export function stripBearer(v: string): string {
  const t = v.trim();
  return /^bearer\s+/i.test(t) ? t.replace(/^bearer\s+/i, '').trim() : t;
}


