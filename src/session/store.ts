/**
 * A browser session and where it is kept. The record holds the user's tokens, so it is
 * only ever at rest sealed (keys.ts): in the cookie itself (CookieSessionStore, stateless,
 * the default) or in Redis under a hash of a random session id that the cookie carries
 * (RedisSessionStore, for replicas). Both answer the same three questions: which session
 * does this request carry, keep this one, forget this one.
 */
import { LRUCache } from 'lru-cache';
import { clearChunked, readChunked, writeChunked, type CookieOptions } from './cookie.js';
import type { SessionKeys } from './keys.js';

export interface SessionRecord {
  /** Random session id (128+ bits): the Redis key's source, the single-flight key of a refresh. */
  readonly sid: string;
  /** `namespace/name` of the OIDCLogin that created it: a session never crosses logins. */
  readonly login: string;
  readonly iss: string;
  readonly sub: string;
  readonly idToken: string;
  readonly accessToken: string;
  /** Access token expiry (seconds since epoch), when the IdP said (`expires_in`). */
  readonly accessExp?: number;
  readonly refreshToken?: string;
  /** The nonce of the login (a refreshed id token, if it has one, must repeat it: OIDC Core 12.2). */
  readonly nonce?: string;
  /** ms since epoch: login time, absolute end, last activity. */
  readonly created: number;
  readonly expires: number;
  readonly seen: number;
  /** Incremented by every write (refresh, touch). */
  readonly ver: number;
}

/** How a store reads the request's cookies. */
export type CookieGetter = (name: string) => string | undefined;

/** The store cannot be reached: the request is answered 503, never treated as anonymous. */
export class SessionStoreUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SessionStoreUnavailable';
  }
}

/** The sealed session does not fit into MAX_CHUNKS cookies (use the Redis store). */
export class SessionTooLarge extends Error {
  constructor() {
    super('session too large for the cookie store');
    this.name = 'SessionTooLarge';
  }
}

export interface SessionStore {
  readonly kind: 'cookie' | 'redis';
  readonly cookie: CookieOptions;
  /** The session the request carries, or null (none, forged, expired, unknown). Throws SessionStoreUnavailable. */
  load(get: CookieGetter, now: number): SessionRecord | null | Promise<SessionRecord | null>;
  /** Keep `rec`; the Set-Cookie lines to send (none when the cookie does not change). */
  save(rec: SessionRecord, get: CookieGetter, now: number): string[] | Promise<string[]>;
  /** Forget `rec` (when known) and clear the browser's cookie(s). */
  remove(rec: SessionRecord | null, get: CookieGetter): string[] | Promise<string[]>;
  /** Shared stores only: mark `key` used for `ttlMs`; false when another replica already did. */
  claimOnce?(key: string, ttlMs: number): Promise<boolean>;
  /** Shared stores only: the record as stored now (no local cache), null when gone. */
  reload?(sid: string, now: number): Promise<SessionRecord | null>;
  dispose(): void;
}

export function parseRecord(text: string | null): SessionRecord | null {
  if (text === null) return null;
  try {
    const r = JSON.parse(text) as Partial<SessionRecord>;
    if (typeof r.sid !== 'string' || typeof r.login !== 'string' || typeof r.accessToken !== 'string' || typeof r.idToken !== 'string') return null;
    if (typeof r.iss !== 'string' || typeof r.sub !== 'string' || typeof r.expires !== 'number' || typeof r.created !== 'number') return null;
    return Object.freeze({ ...r, seen: typeof r.seen === 'number' ? r.seen : r.created, ver: typeof r.ver === 'number' ? r.ver : 0 }) as SessionRecord;
  } catch {
    return null;
  }
}

/** Remaining cookie lifetime (s) for a session ending at `expires`. */
export function maxAgeFor(rec: SessionRecord, o: CookieOptions, now: number): number | undefined {
  if (o.maxAgeS === undefined) return undefined;
  return Math.max(1, Math.min(o.maxAgeS, Math.floor((rec.expires - now) / 1000)));
}

export interface CookieStoreOptions {
  /** Opened cookies kept in memory (by value), so a Check does not decrypt the same cookie again. */
  readonly memoEntries: number;
}

/**
 * The whole record sealed into the cookie (chunked when large). Stateless: any replica with
 * the keys reads it; nothing to revoke server-side (a logout clears the browser's copy). A
 * bounded memo maps a cookie value to its opened record: the key is the JWE's tag (unique per
 * sealing), and the whole value is compared on a hit.
 */
export class CookieSessionStore implements SessionStore {
  readonly kind = 'cookie' as const;
  private readonly memo: LRUCache<string, { value: string; rec: SessionRecord }>;

  constructor(
    private readonly keys: SessionKeys,
    readonly cookie: CookieOptions,
    opts: CookieStoreOptions = { memoEntries: 10_000 },
  ) {
    this.memo = new LRUCache({ max: Math.max(1, opts.memoEntries) });
  }

  load(get: CookieGetter): SessionRecord | null {
    const value = readChunked(this.cookie.name, get);
    if (value === undefined) return null;
    const tail = value.slice(value.lastIndexOf('.') + 1);
    const hit = this.memo.get(tail);
    if (hit && hit.value === value) return hit.rec;
    const rec = parseRecord(this.keys.open(value));
    if (rec) this.memo.set(tail, { value, rec });
    return rec;
  }

  save(rec: SessionRecord, get: CookieGetter, now: number): string[] {
    const value = this.keys.seal(JSON.stringify(rec));
    const lines = writeChunked(value, this.cookie, get, maxAgeFor(rec, this.cookie, now));
    if (!lines) throw new SessionTooLarge();
    this.memo.set(value.slice(value.lastIndexOf('.') + 1), { value, rec });
    return lines;
  }

  remove(_rec: SessionRecord | null, get: CookieGetter): string[] {
    return clearChunked(this.cookie, get);
  }

  dispose(): void {
    this.memo.clear();
  }
}
