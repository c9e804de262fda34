/**
 * Redaction in one place. Tokens, keys and secrets never reach logs, deny bodies or
 * error messages; anything that may carry one goes through here first.
 */
import { createHash } from 'node:crypto';
import type { SecretRegistry } from '../core/runtime.js';

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
/** Names whose value is a credential, in the forms remote parties echo them. */
const SECRET_NAMES = 'subject_token|actor_token|access_token|refresh_token|id_token|client_secret|client_assertion|token|password|passwd|secret|api[_-]?key|x-api-key|authorization';
/**
 * `name=value` (form), `name: value` (YAML, prose), `"name": "value"` (JSON, also with the
 * quotes JSON-escaped when the text is itself inside a JSON string), `name='value'`: the
 * value ends at its closing quote, or at white space, `&`, `,`, `;` or a brace.
 */
const NAMED_SECRET = new RegExp(
  String.raw`\b(${SECRET_NAMES})(\\?["']?\s*[:=]\s*)("(?:[^"\\]|\\.)*"|\\"(?:[^\\]|\\(?!"))*\\"|'[^']*'|[^\s&",;{}]+)`,
  'gi',
);

/** Scrub anything that looks like a credential out of free text (e.g. remote error bodies). */
export function redactText(s: string): string {
  return s
    .replace(JWT_LIKE, '[REDACTED-JWT]')
    .replace(BEARER, '$1 [REDACTED]')
    .replace(NAMED_SECRET, (_m, name: string, sep: string) => `${name}${sep}[REDACTED]`);
}

/** Sanitize a remote party's error text before it reaches our logs: redacted, single line, bounded. */
export function sanitizeRemoteText(s: unknown, max = 200): string {
  const text = typeof s === 'string' ? s : s === undefined || s === null ? '' : JSON.stringify(s);
  return redactText(text)
    .replace(/[\u0000-\u001f\u007f]+/g, ' ')
    .slice(0, max);
}

/** Longest string field of a log line or of dynamic metadata (request data can be any size). */
export const LOG_STRING_MAX = 1024;

/**
 * `s` cut to at most `max` characters (plus a marker saying how much was cut). Attacker-sized
 * values (a 500,000-character `kid`, request id or header) never make a huge log line.
 */
export function capText(s: string, max: number): string {
  if (s.length <= max) return s;
  let cut = max;
  // never split a surrogate pair
  const c = s.charCodeAt(cut - 1);
  if (c >= 0xd800 && c <= 0xdbff) cut--;
  return `${s.slice(0, cut)}...[${s.length - cut} more chars]`;
}

/** Configured secrets shorter than this are not searched for (they would mangle every line). */
export const MIN_REDACTED_SECRET = 6;

/**
 * Every configured secret (client secrets, shared tokens, API keys, the TokenReview
 * credential), replaced wherever it appears in text that came from outside — in every
 * encoding a remote party may echo it in: as is, percent-encoded (form or URI), base64 or
 * base64url, JSON-escaped. Stages register the secrets they load under a key (a reload
 * replaces that key's values); the logger and the decision log scrub with it.
 *
 * Matching is one pass over the text with a map from the first four characters of every
 * form to the forms that start with them, so the cost does not grow with the number of
 * secrets (an API-key file may hold thousands).
 */
export class SecretRedactor implements SecretRegistry {
  private readonly byKey = new Map<string, readonly string[]>();
  private index: Map<string, string[]> | null = null;

  /** Replace the secrets registered under `key` (empty list: forget them). */
  register(key: string, secrets: readonly string[]): void {
    const forms = new Set<string>();
    for (const s of secrets) if (typeof s === 'string' && s.length >= MIN_REDACTED_SECRET) for (const f of encodings(s)) forms.add(f);
    if (forms.size === 0) this.byKey.delete(key);
    else this.byKey.set(key, [...forms]);
    this.index = null;
  }

  get size(): number {
    let n = 0;
    for (const v of this.byKey.values()) n += v.length;
    return n;
  }

  scrub(text: string): string {
    if (this.byKey.size === 0 || text.length < MIN_REDACTED_SECRET) return text;
    const idx = (this.index ??= this.build());
    let out = '';
    let last = 0;
    for (let i = 0; i + 4 <= text.length; ) {
      const cands = idx.get(text.slice(i, i + 4));
      let hit = 0;
      if (cands) for (const f of cands) if (text.startsWith(f, i)) { hit = f.length; break; }
      if (hit > 0) {
        out += text.slice(last, i) + '[REDACTED]';
        i += hit;
        last = i;
      } else i++;
    }
    return last === 0 ? text : out + text.slice(last);
  }

  private build(): Map<string, string[]> {
    const m = new Map<string, string[]>();
    for (const forms of this.byKey.values()) {
      for (const f of forms) {
        const k = f.slice(0, 4);
        const l = m.get(k);
        if (l) l.push(f);
        else m.set(k, [f]);
      }
    }
    // longest first, so a form that contains another is replaced whole
    for (const l of m.values()) l.sort((a, b) => b.length - a.length);
    return m;
  }
}

/** The forms a secret can take in echoed text. */
function encodings(s: string): string[] {
  const out = new Set<string>([s]);
  const uri = encodeURIComponent(s);
  out.add(uri);
  out.add(uri.replace(/%20/g, '+'));
  out.add(uri.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()));
  const b64 = Buffer.from(s, 'utf8').toString('base64');
  out.add(b64.replace(/=+$/, ''));
  out.add(Buffer.from(s, 'utf8').toString('base64url'));
  for (const f of [...out]) {
    const j = JSON.stringify(f).slice(1, -1);
    out.add(j);
    out.add(JSON.stringify(j).slice(1, -1));
  }
  return [...out].filter((f) => f.length >= MIN_REDACTED_SECRET);
}

/** Headers with credential values replaced, for debug logging. */
export function redactHeaders(h: ReadonlyMap<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of h) out[k] = isSecretHeader(k) ? `[REDACTED sha256:${fingerprint(v)}]` : v;
  return out;
}

/**
 * `read` (a secret that may rotate: a mounted file), registering what it returns with the
 * runtime's secret registry under `key` — the current value and the one before it, so a
 * remote party that echoes a just-rotated secret is still redacted. Read once at once, so the
 * secret is known before anything can echo it.
 */
export function registeredSecret(secrets: SecretRegistry | undefined, key: string, read: () => string | undefined): () => string | undefined {
  let last: string | undefined;
  let prev: string | undefined;
  const get = () => {
    const v = read();
    if (v !== last) {
      prev = last;
      last = v;
      secrets?.register(key, [v, prev].filter((x): x is string => !!x));
    }
    return v;
  };
  get();
  return get;
}
