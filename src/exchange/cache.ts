/**
 * Exchange cache: bounded LRU (lru-cache v11) of exchanged tokens, keyed by a hash of
 * everything that affects the result (subject token, actor identity, targets, scopes,
 * token type, STS). An entry lives until min(exchanged exp, subject exp, actor exp)
 * minus a skew margin, capped when no expiry is known. Expiry is checked
 * against the injected clock on every read, so a cached token is never served past the
 * subject's exp. Definitive refusals are cached briefly (negative cache). Identical
 * concurrent misses share one STS call (single-flight).
 */
import { LRUCache } from 'lru-cache';
import type { Runtime } from '../core/runtime.js';
import type { ExchangeFailure } from './errors.js';

export interface CachedToken {
  readonly accessToken: string;
  /** Absolute ms since epoch after which the entry must not be used. */
  readonly validUntilMs: number;
  readonly scopes: readonly string[];
}

interface Entry {
  readonly token?: CachedToken;
  readonly refusal?: ExchangeFailure;
  readonly untilMs: number;
}

export interface ExchangeCacheOptions {
  readonly maxEntries: number;
  /** Entries end this long before the earliest expiry. */
  readonly skewMs: number;
  /** Cap for entries whose expiry is unknown, and for all entries. */
  readonly maxTtlMs: number;
  /** How long a definitive refusal is remembered (0 = not at all). */
  readonly negativeTtlMs: number;
}

export type CacheLookup = { kind: 'hit'; token: CachedToken } | { kind: 'negative'; refusal: ExchangeFailure } | { kind: 'miss' };

export class ExchangeCache {
  private readonly lru: LRUCache<string, Entry>;
  private readonly inflight = new Map<string, Promise<unknown>>();
  constructor(
    readonly opts: ExchangeCacheOptions,
    private readonly runtime: Runtime,
  ) {
    this.lru = new LRUCache<string, Entry>({ max: Math.max(1, opts.maxEntries) });
  }

  get size(): number {
    return this.lru.size;
  }

  lookup(key: string): CacheLookup {
    const e = this.lru.get(key);
    if (!e) return { kind: 'miss' };
    if (this.runtime.now() >= e.untilMs) {
      this.lru.delete(key);
      return { kind: 'miss' };
    }
    if (e.token) return { kind: 'hit', token: e.token };
    return { kind: 'negative', refusal: e.refusal! };
  }

  /**
   * Store a token valid until the earliest of the given expiries (seconds since epoch;
   * undefined = unknown) minus the skew. Returns the computed validity, 0 when not cached.
   */
  storeToken(key: string, accessToken: string, scopes: readonly string[], expiries: readonly (number | undefined)[]): number {
    const now = this.runtime.now();
    let until = now + this.opts.maxTtlMs;
    for (const e of expiries) if (e !== undefined) until = Math.min(until, e * 1000 - this.opts.skewMs);
    if (until <= now) return 0;
    this.lru.set(key, { token: { accessToken, validUntilMs: until, scopes }, untilMs: until });
    return until;
  }

  storeRefusal(key: string, refusal: ExchangeFailure): void {
    if (this.opts.negativeTtlMs <= 0) return;
    this.lru.set(key, { refusal, untilMs: this.runtime.now() + this.opts.negativeTtlMs });
  }

  /** Run `fn` once per key at a time; concurrent callers share its promise. */
  singleFlight<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const hit = this.inflight.get(key);
    if (hit) return hit as Promise<T>;
    const p = fn().finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  clear(): void {
    this.lru.clear();
  }

  dispose(): void {
    this.lru.clear();
    this.inflight.clear();
  }
}
