/**
 * JWKS sources: where a rule's keys come from and how they are kept fresh.
 *
 * - Inline (`jwks`): parsed once at load, never changes.
 * - Remote (`jwksUri`, or OIDC discovery at `<issuer>/.well-known/openid-configuration`
 *   when neither is set): fetched in the background at start-up, cached, refreshed
 *   before expiry (Cache-Control max-age clamped to configured bounds, default 20 min).
 *
 * Robustness rules (better than Envoy, which caches a failure, and Istio, which inlines
 * a JWKS that rejects everything when istiod cannot fetch):
 * - every fetch is single-flight; a request waits at most its rule's timeout for it;
 * - a failed fetch or a document without one usable key never replaces good keys: the
 *   last good keys stay in use (up to `staleMaxMs`, default 7 days) while retries back off;
 * - an unknown `kid` triggers an immediate refetch, at most once per `kidMissCooldownMs`,
 *   so a flood of forged tokens cannot hammer the IdP;
 * - with no keys yet and a recent failure, requests fail fast (JwksFetchFail) instead of
 *   each waiting for a timeout; other issuers are never blocked.
 * Timers are unref'd and cleared by dispose(); the clock and network are the runtime's.
 */
import type { Runtime } from '../core/runtime.js';
import type { StatusReport, StatusReporter } from '../core/status.js';
import { timerDelay } from '../core/timers.js';
import { sanitizeRemoteText } from '../observability/redact.js';
import { boundedWait, discoveryUrl, FetchError, fetchJsonDocument, redactUrl, redactUrlsIn, type DocumentFetcher } from './jwks-fetch.js';
import { parseJwks, type KeySet } from './keys.js';

export interface JwksTuning {
  /** Refresh interval when the JWKS response has no usable Cache-Control max-age. */
  readonly refreshIntervalMs: number;
  /** Bounds applied to a Cache-Control max-age. */
  readonly minRefreshIntervalMs: number;
  readonly maxRefreshIntervalMs: number;
  /** Keep serving the last good keys this long after their fetch while the IdP fails. */
  readonly staleMaxMs: number;
  /** Minimum time between two refetches caused by an unknown kid. */
  readonly kidMissCooldownMs: number;
  /** Retry back-off after a failed fetch: initial delay, doubled per failure, capped. */
  readonly retryInitialMs: number;
  readonly retryMaxMs: number;
  /** Largest JWKS / discovery document accepted. */
  readonly maxDocumentBytes: number;
}

export const DEFAULT_JWKS_TUNING: JwksTuning = Object.freeze({
  refreshIntervalMs: 20 * 60_000,
  minRefreshIntervalMs: 60_000,
  maxRefreshIntervalMs: 24 * 3_600_000,
  staleMaxMs: 7 * 86_400_000,
  kidMissCooldownMs: 15_000,
  retryInitialMs: 1_000,
  retryMaxMs: 5 * 60_000,
  maxDocumentBytes: 1 << 20,
});

/** Default per-rule JWKS fetch timeout (Istio JWTRule.timeout default). */
export const DEFAULT_JWKS_TIMEOUT_MS = 5_000;

export interface KeySource {
  /** Human description for --explain and logs (no secrets). */
  readonly description: string;
  /** Stable identity (part of the verified-token cache key). */
  readonly id: string;
  /** Current usable keys without waiting; may start a background refresh (the source's upkeep). */
  peek(): KeySet | null;
  /** The keys peek() would return now, with no upkeep: nothing started, dropped or logged. */
  current(): KeySet | null;
  /** Keys, fetching when there are none yet (waits at most `waitMs` and until `signal`). */
  get(signal: AbortSignal | undefined, waitMs: number): Promise<KeySet | null>;
  /** An unknown kid was seen: refetch now unless within the cooldown; returns the keys then. */
  refreshForUnknownKid(signal: AbortSignal | undefined, waitMs: number): Promise<KeySet | null>;
  dispose(): void;
}

export class StaticKeySource implements KeySource {
  readonly description = 'inline jwks';
  readonly id: string;
  constructor(private readonly keys: KeySet) {
    this.id = `inline:${keys.hash}`;
  }
  peek(): KeySet {
    return this.keys;
  }
  current(): KeySet {
    return this.keys;
  }
  async get(): Promise<KeySet> {
    return this.keys;
  }
  async refreshForUnknownKid(): Promise<KeySet> {
    return this.keys;
  }
  dispose(): void {}
}

export type RemoteLocation = { kind: 'uri'; uri: string } | { kind: 'discovery'; issuer: string };

export class RemoteKeySource implements KeySource, StatusReporter {
  readonly description: string;
  readonly id: string;
  private keys: KeySet | null = null;
  private fetchedAt = 0;
  private nextRefreshAt = 0;
  private inflight: Promise<boolean> | null = null;
  private failures = 0;
  private nextRetryAt = 0;
  private lastKidMissAt = -Infinity;
  private discoveredUri: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private disposed = false;
  private lastGaugeAt = 0;
  /** For GET /status: when the last fetch ended, and why it failed (sanitized), if it did. */
  private lastAttemptAt: number | null = null;
  private lastError: string | null = null;
  private readonly fetches;
  private readonly fetchDuration;
  private readonly keyAge;
  private readonly keyCount;

  constructor(
    private readonly runtime: Runtime,
    private readonly location: RemoteLocation,
    /** Issuer, used as the metric label and in logs (comes from config). */
    private readonly issuer: string,
    private readonly timeoutMs: number,
    private readonly tuning: JwksTuning,
    /** How documents are fetched (default: runtime.fetch, the system's trusted CAs). */
    private readonly fetchDocument: DocumentFetcher = (url, t, max) => fetchJsonDocument(runtime, url, t, max),
  ) {
    // Shown in logs and --explain: never the URL's userinfo or query (credentials, API keys).
    this.description = location.kind === 'uri' ? `jwksUri ${redactUrl(location.uri)}` : `OIDC discovery ${redactUrl(discoveryUrl(location.issuer))}`;
    this.id = location.kind === 'uri' ? `uri:${location.uri}` : `oidc:${location.issuer}`;
    const m = runtime.metrics;
    this.fetches = m.counter('jwks_fetches_total', 'JWKS (and OIDC discovery) fetches by issuer and outcome.', ['issuer', 'outcome'] as const);
    this.fetchDuration = m.histogram('jwks_fetch_duration_seconds', 'Duration of JWKS fetches by issuer.', ['issuer'] as const);
    this.keyAge = m.gauge('jwks_key_age_seconds', 'Age of the JWKS in use (since its last successful fetch), by issuer.', ['issuer'] as const);
    this.keyCount = m.gauge('jwks_keys', 'Usable keys in the JWKS in use, by issuer.', ['issuer'] as const);
  }

  /** Begin the first fetch in the background (start-up must not wait for an IdP). */
  start(): void {
    if (!this.keys && !this.inflight) void this.fetchNow();
  }

  /** Introspection for tests and --explain. */
  status(): { hasKeys: boolean; fetchedAt: number; nextRefreshAt: number; failures: number; nextRetryAt: number; inflight: boolean } {
    return {
      hasKeys: this.keys !== null,
      fetchedAt: this.fetchedAt,
      nextRefreshAt: this.nextRefreshAt,
      failures: this.failures,
      nextRetryAt: this.nextRetryAt,
      inflight: this.inflight !== null,
    };
  }

  statusReport(): StatusReport {
    const d = { source: this.description, keys: this.keys?.keys.length ?? 0, kids: this.keys ? [...this.keys.kids] : [], lastFetchAt: this.keys ? this.fetchedAt : null };
    const f = { lastAttemptAt: this.lastAttemptAt, lastError: this.lastError, failures: this.failures, nextRetryAt: this.failures > 0 ? this.nextRetryAt : null };
    return { kind: 'jwks', name: this.issuer, ok: this.keys !== null && this.lastError === null, details: { ...d, ...f } };
  }

  current(): KeySet | null {
    return this.keys !== null && this.runtime.now() - this.fetchedAt <= this.tuning.staleMaxMs ? this.keys : null;
  }

  peek(): KeySet | null {
    const now = this.runtime.now();
    if (this.keys) {
      const age = now - this.fetchedAt;
      if (age > this.tuning.staleMaxMs) {
        // Too old to trust: a removed (possibly compromised) key must not live forever.
        this.runtime.logger.error({ issuer: this.issuer, source: this.description, ageSeconds: Math.round(age / 1000) }, 'JWKS keys exceeded the stale maximum and were dropped');
        this.keys = null;
        this.keyCount.set({ issuer: this.issuer }, 0);
      } else {
        if (now - this.lastGaugeAt >= 1000 || now < this.lastGaugeAt) {
          this.lastGaugeAt = now;
          this.keyAge.set({ issuer: this.issuer }, Math.max(0, age) / 1000);
        }
        if (now >= this.nextRefreshAt && now >= this.nextRetryAt && !this.inflight && !this.disposed) void this.fetchNow();
      }
    }
    return this.keys;
  }

  async get(signal: AbortSignal | undefined, waitMs: number): Promise<KeySet | null> {
    const k = this.peek();
    if (k) return k;
    if (!this.inflight) {
      // Fail fast while backing off: waiting a timeout per request would pile up Checks.
      if (this.failures > 0 && this.runtime.now() < this.nextRetryAt) return null;
      void this.fetchNow();
    }
    if (this.inflight) await boundedWait(this.inflight, signal, waitMs);
    return this.keys;
  }

  async refreshForUnknownKid(signal: AbortSignal | undefined, waitMs: number): Promise<KeySet | null> {
    if (!this.inflight) {
      const now = this.runtime.now();
      if (now - this.lastKidMissAt < this.tuning.kidMissCooldownMs && now >= this.lastKidMissAt) return this.keys;
      this.lastKidMissAt = now;
      void this.fetchNow();
    }
    if (this.inflight) await boundedWait(this.inflight, signal, waitMs);
    return this.keys;
  }

  dispose(): void {
    this.disposed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Single-flight fetch; resolves true when new keys were installed. Never rejects. */
  fetchNow(): Promise<boolean> {
    if (this.inflight) return this.inflight;
    const p = this.doFetch().finally(() => {
      if (this.inflight === p) this.inflight = null;
    });
    this.inflight = p;
    return p;
  }

  private schedule(delayMs: number): void {
    if (this.disposed) return;
    if (this.timer) clearTimeout(this.timer);
    const d = timerDelay(delayMs);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.disposed) void this.fetchNow();
    }, d);
    this.timer.unref?.();
  }

  private fetchJsonDocument(url: string): Promise<{ body: unknown; maxAgeMs: number | undefined }> {
    return this.fetchDocument(url, this.timeoutMs, this.tuning.maxDocumentBytes);
  }

  private async resolveJwksUri(): Promise<string> {
    if (this.location.kind === 'uri') return this.location.uri;
    if (this.discoveredUri) return this.discoveredUri;
    const url = discoveryUrl(this.location.issuer);
    let doc: unknown;
    try {
      doc = (await this.fetchJsonDocument(url)).body;
    } catch (e) {
      throw new FetchError(e instanceof FetchError && e.outcome === 'timeout' ? 'timeout' : 'discovery_error', `discovery: ${(e as Error).message}`);
    }
    const d = (doc && typeof doc === 'object' ? doc : {}) as Record<string, unknown>;
    // OpenID Connect Discovery 1.0 §4.3: the issuer in the document MUST equal the one used.
    if (d['issuer'] !== this.location.issuer) throw new FetchError('discovery_error', 'discovery: document issuer does not match the configured issuer');
    const jwksUri = d['jwks_uri'];
    if (typeof jwksUri !== 'string' || !/^https?:\/\//i.test(jwksUri)) throw new FetchError('discovery_error', 'discovery: no http(s) jwks_uri in the document');
    this.discoveredUri = jwksUri;
    return jwksUri;
  }

  private async doFetch(): Promise<boolean> {
    const started = performance.now();
    const label = { issuer: this.issuer };
    try {
      const uri = await this.resolveJwksUri();
      const { body, maxAgeMs } = await this.fetchJsonDocument(uri);
      // A JWKS must never hold secrets; oct keys from the network are ignored.
      const parsed = parseJwks(body, { allowSymmetric: false });
      if (!parsed.ok) throw new FetchError('invalid', parsed.error);
      const now = this.runtime.now();
      const changed = this.keys?.hash !== parsed.keySet.hash;
      this.keys = parsed.keySet;
      this.fetchedAt = now;
      this.failures = 0;
      this.nextRetryAt = 0;
      this.lastAttemptAt = now;
      this.lastError = null;
      const t = this.tuning;
      const interval = maxAgeMs === undefined ? t.refreshIntervalMs : Math.min(t.maxRefreshIntervalMs, Math.max(t.minRefreshIntervalMs, maxAgeMs));
      this.nextRefreshAt = now + interval;
      this.fetches.inc({ ...label, outcome: 'success' });
      this.keyAge.set(label, 0);
      this.keyCount.set(label, parsed.keySet.keys.length);
      this.lastGaugeAt = now;
      if (changed) {
        this.runtime.logger.info(
          { issuer: this.issuer, source: this.description, keys: parsed.keySet.keys.length, kids: [...parsed.keySet.kids], skipped: parsed.skipped.length ? parsed.skipped : undefined },
          'JWKS loaded',
        );
      }
      this.schedule(interval);
      return true;
    } catch (e) {
      const fe = e instanceof FetchError ? e : new FetchError('network_error', sanitizeRemoteText(redactUrlsIn(String(e)), 120));
      if (this.location.kind === 'discovery') this.discoveredUri = null; // the jwks_uri may have moved
      this.failures++;
      const backoff = Math.min(this.tuning.retryMaxMs, this.tuning.retryInitialMs * 2 ** Math.min(30, this.failures - 1));
      const now = this.runtime.now();
      this.nextRetryAt = now + backoff;
      this.lastAttemptAt = now;
      this.lastError = `${fe.outcome}: ${sanitizeRemoteText(redactUrlsIn(fe.message), 200)}`;
      this.fetches.inc({ ...label, outcome: fe.outcome });
      this.runtime.logger.warn(
        {
          issuer: this.issuer,
          source: this.description,
          outcome: fe.outcome,
          error: sanitizeRemoteText(redactUrlsIn(fe.message), 200),
          failures: this.failures,
          retryInMs: backoff,
          servingCachedKeys: this.keys !== null,
        },
        this.keys ? 'JWKS fetch failed; keeping the last good keys' : 'JWKS fetch failed; no keys for this issuer yet',
      );
      // Jitter (±20%) so many instances do not retry in lock-step.
      this.schedule(backoff * (0.8 + Math.random() * 0.4));
      return false;
    } finally {
      this.fetchDuration.observe(label, (performance.now() - started) / 1000);
    }
  }
}

/** Get (or create and start) the shared remote source; a config reload reuses it. */
export function sharedRemoteSource(
  runtime: Runtime,
  location: RemoteLocation,
  issuer: string,
  timeoutMs: number,
  tuning: JwksTuning,
  /** A fetcher of its own (a private CA) and the id that tells it apart in the shared resources. */
  fetcher?: { readonly id: string; readonly fetch: DocumentFetcher },
): RemoteKeySource {
  const where = location.kind === 'uri' ? `uri=${location.uri}` : `oidc=${location.issuer}`;
  const key = `authn:jwks:${where}|issuer=${issuer}|timeout=${timeoutMs}|${JSON.stringify(tuning)}${fetcher ? `|via=${fetcher.id}` : ''}`;
  return runtime.shared.get(key, () => {
    const s = new RemoteKeySource(runtime, location, issuer, timeoutMs, tuning, fetcher?.fetch);
    s.start();
    return s;
  });
}
