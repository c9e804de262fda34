/**
 * One issuer's token verification, in Envoy jwt_authn's order (authenticator.cc):
 * parse -> issuer (unless the rule has none) -> time (nbf, exp, 60 s skew) -> audiences ->
 * keys -> signature.
 * Successful results are kept in a bounded, shared LRU keyed by everything that affects
 * the result (issuer, audiences, key source and key-set content, the token itself), with
 * entry lifetime never past the token's `exp`; time constraints are re-checked on every
 * hit, so a repeated token costs a map lookup instead of a signature check.
 *
 * `probe()` is that lookup alone, for a raw token that has not been parsed, and it changes
 * nothing: no metric, no cache order, no key-source upkeep. A caller (the jwtRules member)
 * tries it first; when it answers from the hit it calls accept(), which does what verify()
 * does on a hit; otherwise it calls verify(), which starts over. What a caller derives from
 * a verified token (an Identity, header values) is the caller's to keep, keyed by the
 * entry; the entry holds only what verification established.
 */
import type { CounterInstrument } from '../core/runtime.js';
import type { Runtime } from '../core/runtime.js';
import {
  audiencesAllowed,
  CLOCK_SKEW_S,
  checkTime,
  normalizeAudience,
  parseJwt,
  resultLabel,
  type JwtStatus,
  type ParsedJwt,
  type VerifyResultLabel,
} from './jwt-format.js';
import { verifySignature, type KeySet } from './keys.js';
import type { KeySource } from './jwks-source.js';

export type VerifyOutcome =
  /** `entry`: the verified-token cache entry that answered (set when `cached`). */
  | { ok: true; jwt: ParsedJwt; keyId: string; cached: boolean; entry?: VerifiedEntry }
  | { ok: false; status: JwtStatus; jwt?: ParsedJwt; detail?: string };

/** A verified-token cache entry: what verification established about one token. */
export interface VerifiedEntry {
  readonly jwt: ParsedJwt;
  readonly keyId: string;
  /** The token's time constraints (seconds since epoch, 0 = absent), re-checked on every hit. */
  readonly nbf: number;
  readonly exp: number;
}

/**
 * Entries are keyed by the token's last TAIL characters (its signature: hashing a key costs
 * one pass over it, and a whole token is ~10 times longer) and hold the whole token, which a
 * hit must equal, and `base`: everything else the result depends on (issuer, audiences, key
 * source, key-set hash). Entries sharing a key (the few verifiers that may see one token:
 * another rule, an actor-token validator; or two tokens with the same tail) are chained.
 */
interface CacheEntry extends VerifiedEntry {
  /** The map key it is stored under: the very string, so a lookup with it reuses its hash. */
  readonly key: string;
  readonly token: string;
  readonly base: string;
  readonly next: CacheEntry | undefined;
  /** Set by VerifiedCache.set: when the entry stops answering (ms), and its recency. */
  expiresAt: number;
  seq: number;
}

const TAIL = 64;
/** Entries kept under one key (oldest dropped first). */
const MAX_CHAIN = 4;

let lastToken = '';
let lastKey = '';
function keyOf(token: string): string {
  // The same token comes again and again (and, from token extraction, as the same string):
  // its key then too, whose hash V8 has already computed for the cache's Map.
  if (token === lastToken) return lastKey;
  lastKey = token.length > TAIL ? token.slice(token.length - TAIL) : token;
  lastToken = token;
  return lastKey;
}

/** The entry for (`token`, `base`) under a key, if it has not expired (each keeps its own expiry). */
function entryFor(head: CacheEntry | undefined, token: string, base: string, now: number): CacheEntry | undefined {
  let e = head;
  while (e !== undefined && (e.base !== base || e.token !== token)) e = e.next;
  return e !== undefined && e.expiresAt > now ? e : undefined;
}

/** `head` without the entry for (`token`, `base`) and without expired ones, at most `left` long. */
function others(head: CacheEntry | undefined, token: string, base: string, now: number, left = MAX_CHAIN - 1): CacheEntry | undefined {
  if (head === undefined || left === 0) return undefined;
  if ((head.base === base && head.token === token) || head.expiresAt <= now) return others(head.next, token, base, now, left);
  return { ...head, next: others(head.next, token, base, now, left - 1) };
}

export interface VerifiedCacheOptions {
  /** Bound on entries (memory stays flat however many distinct tokens arrive). */
  readonly maxEntries: number;
  /** Upper bound on an entry's lifetime, whatever the token's exp. */
  readonly maxTtlMs: number;
}

export const DEFAULT_VERIFIED_CACHE: VerifiedCacheOptions = Object.freeze({ maxEntries: 10_000, maxTtlMs: 10 * 60_000 });

/**
 * The verified-token cache: a Map in recency order with a bound and per-entry expiry. Cheaper
 * than a general LRU on the Check path: a hit is one lookup, and an entry is moved to the
 * recent end only when it has drifted into the older half (so a hot token is not re-inserted
 * on every Check); eviction drops the oldest entries first.
 */
export class VerifiedCache {
  private readonly map = new Map<string, CacheEntry>();
  /** Insertion counter: an entry's `seq` says how far from the recent end it is. */
  private seq = 0;

  constructor(
    readonly max: number,
    /** Upper bound on an entry's lifetime (ms). */
    readonly ttl: number,
    private readonly now: () => number,
  ) {}

  get size(): number {
    return this.map.size;
  }

  /** The entries under `key` (dropped when the newest has expired), kept among the recent ones. */
  get(key: string): CacheEntry | undefined {
    const e = this.map.get(key);
    if (e === undefined) return undefined;
    if (e.expiresAt <= this.now()) {
      this.map.delete(key);
      return undefined;
    }
    this.keepRecent(key, e);
    return e;
  }

  /** The entries under `key` unless the newest has expired at `now`: a read that changes nothing. */
  find(key: string, now: number): CacheEntry | undefined {
    const e = this.map.get(key);
    return e !== undefined && e.expiresAt > now ? e : undefined;
  }

  /** What get() does to a hit's recency, for an entry found with find(). */
  touch(hit: CacheEntry): void {
    const e = this.map.get(hit.key);
    if (e !== undefined) this.keepRecent(hit.key, e);
  }

  /** Move an entry that has drifted into the older half to the recent end (not on every hit). */
  private keepRecent(key: string, e: CacheEntry): void {
    if (this.seq - e.seq > this.max >> 1) {
      this.map.delete(key);
      e.seq = ++this.seq;
      this.map.set(key, e);
    }
  }

  /** The entry without touching recency or expiry (for chaining on set). */
  peek(key: string): CacheEntry | undefined {
    return this.map.get(key);
  }

  /**
   * `e` becomes the head under its key (its `next` chain, built by the caller, keeps each older
   * entry's own expiry). The bound counts keys; a key holds one entry per verifier that admitted
   * the token, at most MAX_CHAIN.
   */
  set(e: CacheEntry, ttlMs: number): void {
    const key = e.key;
    e.expiresAt = this.now() + Math.min(ttlMs, this.ttl);
    e.seq = ++this.seq;
    this.map.delete(key);
    this.map.set(key, e);
    if (this.map.size > this.max) {
      // the oldest first (Map iteration order is insertion order)
      for (const k of this.map.keys()) {
        this.map.delete(k);
        if (this.map.size <= this.max) break;
      }
    }
  }

  clear(): void {
    this.map.clear();
  }
}

/** The process-wide verified-token cache (survives reloads; entries are keyed by config). */
export function sharedVerifiedCache(runtime: Runtime, opts: VerifiedCacheOptions = DEFAULT_VERIFIED_CACHE): VerifiedCache {
  const holder = runtime.shared.get(`authn:verified-cache:${opts.maxEntries}:${opts.maxTtlMs}`, () => {
    // TTLs follow the injected clock, like every other time decision.
    const c = new VerifiedCache(Math.max(1, opts.maxEntries), opts.maxTtlMs, () => runtime.now());
    return { cache: c, dispose: () => c.clear() };
  });
  return holder.cache;
}

export interface JwtVerifierOptions {
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly source: KeySource;
  /** How long a request may wait for a JWKS fetch. */
  readonly timeoutMs: number;
  readonly cache?: VerifiedCache;
}

export class JwtVerifier {
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly source: KeySource;
  private readonly allowed: ReadonlySet<string> | null;
  private readonly timeoutMs: number;
  private readonly cache: VerifiedCache | undefined;
  private readonly cachePrefix: string;
  private readonly verifications: CounterInstrument<'issuer' | 'result'>;
  private readonly cachedCount: { inc: (value?: number) => void };
  /** The key set this verifier saw last, and `cachePrefix + its hash + '\n'` (entries' `base`). */
  private lastKeys: KeySet | null = null;
  private lastKeyBase = '';

  constructor(private readonly runtime: Runtime, opts: JwtVerifierOptions) {
    this.issuer = opts.issuer;
    this.audiences = opts.audiences;
    this.source = opts.source;
    this.allowed = opts.audiences.length > 0 ? new Set(opts.audiences.map(normalizeAudience)) : null;
    this.timeoutMs = opts.timeoutMs;
    this.cache = opts.cache;
    this.cachePrefix = `${JSON.stringify([opts.issuer, [...(this.allowed ?? [])].sort(), opts.source.id])}\n`;
    this.verifications = runtime.metrics.counter('jwt_verifications_total', 'JWT verifications by issuer and result.', ['issuer', 'result'] as const);
    // Bound labels (no series is created until the first inc).
    this.cachedCount = this.verifications.labels({ issuer: this.issuer, result: 'cached' });
  }

  private remember(keys: KeySet): void {
    if (keys === this.lastKeys) return;
    if (!this.lastKeys || this.lastKeys.hash !== keys.hash) this.lastKeyBase = `${this.cachePrefix}${keys.hash}\n`;
    this.lastKeys = keys;
  }

  /**
   * The verified-token cache alone, before any parsing, changing nothing (nothing counted, no
   * cache order, no key-source upkeep: the same answer however often it is asked): the entry
   * when `token` was verified by a verifier like this one (same issuer, audiences, key source)
   * with the key set in force and is still valid in time; its JwtStatus when it is cached but
   * expired or not yet valid; undefined on a miss. A caller that answers from a hit calls
   * accept(); for anything else verify() gives the outcome (and counts it).
   *
   * An entry exists only for a token that passed this verifier's issuer check, so a hit
   * needs no `iss` from the caller.
   */
  probe(token: string): VerifiedEntry | JwtStatus | undefined {
    const cache = this.cache;
    const last = this.lastKeys;
    if (!cache || !last) return undefined;
    const now = this.runtime.now();
    const head = cache.find(keyOf(token), now);
    if (head === undefined) return undefined;
    const current = this.source.current();
    let base = this.lastKeyBase;
    if (current !== last) {
      // Keys dropped (too stale): verify() decides. Keys changed: only entries made under the new set answer.
      if (!current) return undefined;
      if (current.hash !== last.hash) base = `${this.cachePrefix}${current.hash}\n`;
    }
    const hit = entryFor(head, token, base, now);
    if (!hit) return undefined;
    return checkTime(hit.nbf, hit.exp, now) ?? hit;
  }

  /**
   * The caller admits a token on probe()'s `hit`: what verify() does when the cache answers
   * (counted `cached`, the entry kept among the recent ones, the key source asked for its
   * keys, which may start a due refresh).
   */
  accept(hit: VerifiedEntry): void {
    const keys = this.source.peek();
    if (keys) this.remember(keys);
    // Entries come only from this cache (probe() returns its CacheEntry objects).
    this.cache?.touch(hit as CacheEntry);
    this.cachedCount.inc();
  }

  private count(result: VerifyResultLabel): void {
    this.verifications.inc({ issuer: this.issuer, result });
  }

  private fail(status: JwtStatus, jwt?: ParsedJwt, detail?: string): VerifyOutcome {
    this.count(resultLabel(status));
    return { ok: false, status, jwt, detail };
  }

  /**
   * Verify a raw token (or one parsed already, when several rules look at it), the
   * verified-token cache first. Never throws.
   */
  async verify(token: string, signal?: AbortSignal | (() => AbortSignal), parsed?: ParsedJwt | { status: JwtStatus }): Promise<VerifyOutcome> {
    const nowMs = this.runtime.now();
    const current = this.source.peek();
    if (current && this.cache) {
      this.remember(current);
      const hit = entryFor(this.cache.get(keyOf(token)), token, this.lastKeyBase, nowMs);
      if (hit) {
        const t = checkTime(hit.nbf, hit.exp, nowMs);
        if (t) return this.fail(t, hit.jwt);
        this.cachedCount.inc();
        return { ok: true, jwt: hit.jwt, keyId: hit.keyId, cached: true, entry: hit };
      }
    }
    const p = parsed ?? parseJwt(token);
    if ('status' in p) return this.fail(p.status);
    const jwt = p;
    // Envoy JwtProvider.issuer: "If specified, it has to match the iss field in JWT,
    // otherwise the JWT iss field is not checked". Istio allows a jwtRule without issuer
    // when it has a jwksUri (validateJwtRule); the keys at that URI then decide alone.
    if (this.issuer !== '' && jwt.iss !== this.issuer) return this.fail('JwtUnknownIssuer', jwt);
    const t = checkTime(jwt.nbf, jwt.exp, nowMs);
    if (t) return this.fail(t, jwt);
    if (!audiencesAllowed(this.allowed, jwt.audiences)) return this.fail('JwtAudienceNotAllowed', jwt);

    // The signal only matters for a fetch; a caller may pass a getter so that nothing is
    // made for it on the usual path (keys in hand).
    const signalNow = () => (typeof signal === 'function' ? signal() : signal);
    let keys: KeySet | null = current ?? (await this.source.get(signalNow(), this.timeoutMs));
    if (!keys) return this.fail('JwksFetchFail', jwt, `no keys from ${this.source.description}`);
    // Synchronous (keys imported when the set was parsed): with keys in hand and a known kid,
    // nothing below awaits, so the returned promise is already settled.
    let sig = verifySignature(jwt, keys);
    if (sig.status === 'JwksKidAlgMismatch' && jwt.kid !== undefined && !keys.kids.has(jwt.kid)) {
      // Unknown kid: the IdP may have rotated. Refetch now (single-flight, rate-limited).
      const fresh = await this.source.refreshForUnknownKid(signalNow(), this.timeoutMs);
      if (fresh && fresh !== keys) {
        keys = fresh;
        sig = verifySignature(jwt, keys);
      }
    }
    if (sig.status) return this.fail(sig.status, jwt, sig.status === 'JwksKidAlgMismatch' ? `kid ${JSON.stringify(jwt.kid ?? null)} alg ${jwt.alg}` : undefined);
    this.count('ok');
    if (this.cache) {
      // Entry lifetime ends at exp + skew (after that the token is expired anyway).
      const ttl = jwt.exp ? Math.min(this.cache.ttl, (jwt.exp + CLOCK_SKEW_S) * 1000 - nowMs) : this.cache.ttl;
      if (ttl > 0) {
        const base = keys === this.lastKeys ? this.lastKeyBase : `${this.cachePrefix}${keys.hash}\n`;
        const key = keyOf(token);
        const entry: CacheEntry = { key, token, base, jwt, keyId: sig.keyId!, nbf: jwt.nbf, exp: jwt.exp, next: others(this.cache.peek(key), token, base, nowMs), expiresAt: 0, seq: 0 };
        this.cache.set(entry, ttl);
      }
    }
    this.remember(keys);
    return { ok: true, jwt, keyId: sig.keyId!, cached: false };
  }
}
