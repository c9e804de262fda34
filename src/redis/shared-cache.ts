/**
 * A token cache shared by replicas through Redis (the opt-in `cache.shared` of a
 * TokenExchangePolicy): N replicas make one STS call per cache key instead of N. In front
 * of the STS call, after a local miss: look in Redis; on a miss take a short lock (SET NX PX)
 * and call the STS, then publish the token with the same validity the local cache computed;
 * a replica that finds the lock taken waits for the value (polling, bounded by the lock and
 * the Check's deadline) and calls the STS itself only if none appears.
 *
 * Values are sealed with the configured keys (tokens are never at rest in clear) under
 * `<prefix>x:<cache key>`, the cache key being already a hash. Redis is an optimisation
 * here, not a dependency: when it is unreachable the replica calls the STS as before.
 */
import { randomBytes } from 'node:crypto';
import type { CompileContext, KindDocument } from '../config/kinds.js';
import type { Path } from '../config/issues.js';
import { duration, list, obj, str, type Schema } from '../config/schema.js';
import type { Runtime } from '../core/runtime.js';
import { compileKeyFiles, type SessionKeys } from '../session/keys.js';
import { compileRedisConnection, redisConnectionFields, sharedRedis, type RawRedisConnection, type RedisHandle } from './connection.js';

export interface RawSharedCache extends RawRedisConnection {
  keyFiles?: string[];
  lockTimeout?: number;
}

export const sharedCacheSchema: Schema<RawSharedCache> = obj<RawSharedCache>(
  { ...redisConnectionFields, keyFiles: list(str({ nonEmpty: true }), { minItems: 1 }), lockTimeout: duration({ minMs: 10, maxMs: 30_000 }) },
  { required: ['address', 'keyFiles'] },
);

export function compileSharedCache(k: KindDocument, cc: CompileContext, path: Path, raw: RawSharedCache): SharedTokenCache | undefined {
  const { keyFiles, lockTimeout, ...conn } = raw;
  const keys = compileKeyFiles(cc, k.v, [...path, 'keyFiles'], keyFiles!, (f) => cc.resolvePath(k.doc, f), (texts) =>
    cc.runtime.secrets?.register(`sharedCache:${k.ref}:${path.join('.')}.keyFiles`, texts),
  );
  if (!keys) return undefined;
  const settings = compileRedisConnection(k, cc, path, conn, 'obo:exchange:');
  if (!settings) return undefined;
  const lockMs = lockTimeout ?? 5_000;
  return cc.runtime.shared.get(`exchange:shared:${settings.id}:${settings.keyPrefix}:${keys.id}:${lockMs}`, () => new SharedTokenCache(cc.runtime, sharedRedis(cc.runtime, settings), keys, settings.keyPrefix, lockMs));
}

export interface SharedFlight<R> {
  /** Deadline (ms since epoch) of the Check waiting for this. */
  readonly deadline: number;
  /** A value found in Redis, turned into the caller's result (and stored locally by it). */
  fromShared(token: string, validUntilMs: number): R;
  /** The token and validity of a fresh result to publish, if it is to be shared. */
  toShare(r: R): { token: string; validUntilMs: number } | undefined;
}

const UNLOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
const POLL_MS = 20;

export class SharedTokenCache {
  private readonly counter;
  private lastWarn = 0;

  constructor(
    private readonly runtime: Runtime,
    private readonly redis: RedisHandle,
    private readonly keys: SessionKeys,
    private readonly prefix: string,
    private readonly lockMs: number,
  ) {
    this.counter = runtime.metrics.counter('shared_exchange_cache_total', 'Shared (Redis) exchange cache lookups by result (hit|miss|waited|unavailable).', ['result'] as const);
  }

  private warn(e: unknown): void {
    const now = Date.now();
    this.counter.inc({ result: 'unavailable' });
    if (now - this.lastWarn < 10_000) return;
    this.lastWarn = now;
    this.runtime.logger.warn({ detail: e instanceof Error ? e.message.slice(0, 120) : 'error' }, 'shared exchange cache unavailable: calling the STS directly');
  }

  private async read(key: string, now: number): Promise<{ token: string; until: number } | null> {
    const v = await this.redis.client.get(`${this.prefix}x:${key}`);
    if (v === null) return null;
    const text = this.keys.open(v);
    if (text === null) return null;
    try {
      const o = JSON.parse(text) as { t?: unknown; u?: unknown; k?: unknown };
      if (typeof o.t !== 'string' || typeof o.u !== 'number' || o.k !== key || o.u <= now) return null;
      return { token: o.t, until: o.u };
    } catch {
      return null;
    }
  }

  async through<R>(key: string, run: () => Promise<R>, f: SharedFlight<R>): Promise<R> {
    if (!this.redis.ready()) {
      this.warn(new Error('not connected'));
      return run();
    }
    let lock: string | null = null;
    try {
      const hit = await this.read(key, this.runtime.now());
      if (hit) {
        this.counter.inc({ result: 'hit' });
        return f.fromShared(hit.token, hit.until);
      }
      this.counter.inc({ result: 'miss' });
      const id = randomBytes(12).toString('base64url');
      const got = await this.redis.client.set(`${this.prefix}xl:${key}`, id, 'PX', this.lockMs, 'NX');
      if (got === 'OK') lock = id;
      else {
        // Another replica is calling the STS: wait for its answer (bounded), else call it too.
        const until = Math.min(this.runtime.now() + this.lockMs, f.deadline - 50);
        while (this.runtime.now() < until) {
          await new Promise((r) => setTimeout(r, POLL_MS));
          const w = await this.read(key, this.runtime.now());
          if (w) {
            this.counter.inc({ result: 'waited' });
            return f.fromShared(w.token, w.until);
          }
          if ((await this.redis.client.exists(`${this.prefix}xl:${key}`)) === 0) break;
        }
      }
    } catch (e) {
      this.warn(e);
    }
    const r = await run();
    try {
      const share = f.toShare(r);
      const now = this.runtime.now();
      if (share && share.validUntilMs > now) {
        await this.redis.client.set(`${this.prefix}x:${key}`, this.keys.seal(JSON.stringify({ t: share.token, u: share.validUntilMs, k: key })), 'PX', Math.ceil(share.validUntilMs - now));
      }
      if (lock) await this.redis.client.eval(UNLOCK, 1, `${this.prefix}xl:${key}`, lock);
    } catch (e) {
      this.warn(e);
    }
    return r;
  }

  dispose(): void {
    // The connection is a shared resource of its own (redis:<id>), disposed with it.
  }
}
