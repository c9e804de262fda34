/**
 * Exchange cache: bounded LRU (lru-cache v11) of exchanged tokens, keyed by a hash of
 * everything that affects the result (subject token, actor identity, targets, scopes,
 * token type, STS). An entry lives until min(exchanged exp, subject exp, actor exp)
 * minus a skew margin, capped when no expiry is known. Expiry is checked
 * against the injected clock on every read, so a cached token is never served past the
 * subject's exp. Definitive refusals are cached briefly (negative cache). Identical
 * concurrent misses share one STS call (single-flight).
 */
import { SingleFlight } from '../net/single-flight.js';
import { hash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Identity } from '../core/identity.js';
import type { Runtime } from '../core/runtime.js';
import type { ExchangeFailure } from './errors.js';

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
 * The cache keys of one compiled policy. Impersonation keys depend only on the subject, and
 * an Identity is immutable, so they are memoized per subject Identity: a repeated token comes
 * back from the verified-token cache as the same Identity, and its cache hit then costs one
 * WeakMap lookup instead of a SHA-256 over the token. The memo belongs to the compiled policy
 * (a reload starts a new one); an Identity built anew for every Check still gets the right
 * key, only computed each time.
 */
export class PolicyKeys {
  private readonly bySubject = new WeakMap<Identity, string>();
  constructor(readonly prefix: string) {}

  key(subject: Identity, actor: Identity | null): string {
    if (actor === null) {
      const k = this.bySubject.get(subject);
      if (k !== undefined) return k;
    }
    const key = exchangeCacheKey(this.prefix, subject.token!, subject.kind === 'jwt' ? '' : subject.principal, actor ? actor.principal : '');
    if (actor === null) this.bySubject.set(subject, key);
    return key;
  }
}

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
  private readonly flights = new SingleFlight();
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
    return this.flights.run(key, fn);
  }

  get inflightCount(): number {
    return this.flights.size;
  }

  clear(): void {
    this.lru.clear();
  }

  dispose(): void {
    this.lru.clear();
    this.flights.clear();
  }
}
