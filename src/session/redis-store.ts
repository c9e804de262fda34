/**
 * Sessions in Redis, for several replicas. The cookie carries only a random session id
 * (192 bits); Redis holds the record sealed with the session key (tokens are never at rest
 * in clear) under `<prefix>s:<sha256(id)>`, so reading Redis does not reveal the cookie
 * values. Each write sets the key's TTL to the shorter of the idle timeout and the time left
 * to the absolute end, so Redis forgets idle and ended sessions by itself.
 *
 * An unreachable Redis throws SessionStoreUnavailable (the Check answers 503, never
 * anonymous). A small in-process cache (documented bound: `localCacheTtl`, default 1 s, and
 * `localCacheEntries`) spares a Redis round trip on every Check of a busy session; a logout
 * or refresh made through another replica is seen here at most `localCacheTtl` later.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { RedisHandle } from '../redis/connection.js';
import { clearChunked, setCookie, type CookieOptions } from './cookie.js';
import type { SessionKeys } from './keys.js';
import { maxAgeFor, parseRecord, SessionStoreUnavailable, type CookieGetter, type SessionRecord, type SessionStore } from './store.js';

export interface RedisStoreOptions {
  readonly keyPrefix: string;
  readonly localCacheTtlMs: number;
  readonly localCacheEntries: number;
  /** Idle timeout (0 = none): the key's TTL is never longer. */
  readonly idleTimeoutMs?: number;
}

const SID = /^[A-Za-z0-9_-]{32}$/;

function unavailable(e: unknown): SessionStoreUnavailable {
  const msg = e instanceof Error ? e.message.replace(/\s+/g, ' ').slice(0, 120) : 'error';
  return new SessionStoreUnavailable(`redis: ${msg}`);
}

export class RedisSessionStore implements SessionStore {
  readonly kind = 'redis' as const;
  private readonly local: LRUCache<string, { rec: SessionRecord | null; at: number }>;

  constructor(
    private readonly redis: RedisHandle,
    private readonly keys: SessionKeys,
    readonly cookie: CookieOptions,
    private readonly opts: RedisStoreOptions,
  ) {
    this.local = new LRUCache({ max: Math.max(1, opts.localCacheEntries) });
  }

  private key(sid: string): string {
    return `${this.opts.keyPrefix}s:${createHash('sha256').update(sid).digest('base64url')}`;
  }

  load(get: CookieGetter, now: number): SessionRecord | null | Promise<SessionRecord | null> {
    const sid = get(this.cookie.name);
    if (sid === undefined || !SID.test(sid)) return null;
    const hit = this.local.get(sid);
    if (hit && now - hit.at < this.opts.localCacheTtlMs) return hit.rec;
    return this.reload(sid, now);
  }

  reload(sid: string, now: number): Promise<SessionRecord | null> {
    if (!this.redis.ready()) return Promise.reject(new SessionStoreUnavailable('redis: not connected'));
    return this.redis.client.get(this.key(sid)).then(
      (value) => {
        const rec = value === null ? null : parseRecord(this.keys.open(value));
        // The record must be the one this id names (a copied value under another key is no session).
        const ok = rec && rec.sid === sid ? rec : null;
        if (this.opts.localCacheTtlMs > 0) this.local.set(sid, { rec: ok, at: now });
        return ok;
      },
      (e: unknown) => {
        throw unavailable(e);
      },
    );
  }

  async save(rec: SessionRecord, get: CookieGetter, now: number): Promise<string[]> {
    let ttl = rec.expires - now;
    if (this.opts.idleTimeoutMs) ttl = Math.min(ttl, this.opts.idleTimeoutMs);
    if (ttl <= 0) return [];
    try {
      await this.redis.client.set(this.key(rec.sid), this.keys.seal(JSON.stringify(rec)), 'PX', Math.ceil(ttl));
    } catch (e) {
      throw unavailable(e);
    }
    if (this.opts.localCacheTtlMs > 0) this.local.set(rec.sid, { rec, at: now });
    // The cookie carries the id only: written once, when the browser does not have it yet.
    if (get(this.cookie.name) === rec.sid) return [];
    return [setCookie(this.cookie.name, rec.sid, this.cookie, maxAgeFor(rec, this.cookie, now))];
  }

  async remove(rec: SessionRecord | null, get: CookieGetter): Promise<string[]> {
    const sid = rec?.sid ?? get(this.cookie.name);
    if (sid !== undefined && SID.test(sid)) {
      this.local.delete(sid);
      try {
        await this.redis.client.del(this.key(sid));
      } catch (e) {
        throw unavailable(e);
      }
    }
    return clearChunked(this.cookie, get);
  }

  async claimOnce(key: string, ttlMs: number): Promise<boolean> {
    try {
      return (await this.redis.client.set(`${this.opts.keyPrefix}${key}`, '1', 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX')) === 'OK';
    } catch (e) {
      throw unavailable(e);
    }
  }

  dispose(): void {
    this.local.clear();
  }
}
