/**
 * Kubernetes TokenReview client: asks the API server whether a bearer token (typically
 * a projected service-account token) is valid for the given audiences.
 *   POST /apis/authentication.k8s.io/v1/tokenreviews {spec: {token, audiences}}
 * and checks status.authenticated and status.audiences. This works where local JWKS
 * validation of projected tokens does not (EKS: the cluster's OIDC issuer is not
 * reachable from every network, and bound tokens are also invalidated when their pod
 * goes away, which only the API server knows). Results are cached briefly (bounded,
 * single-flight per token). Reused by credential validation (issue 6).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { decodeJwt } from 'jose';
import { LRUCache } from 'lru-cache';
import { registeredSecret, sanitizeRemoteText } from '../observability/redact.js';
import type { Identity } from '../core/identity.js';
import type { Runtime } from '../core/runtime.js';
import { readTokenFile, tokenFile, type TokenFile } from './file-token.js';
import { HttpPostClient, type PostAnswer } from '../net/http-post.js';
import { BodyTooLargeError, MAX_RESPONSE_BYTES } from '../net/read-capped.js';
import { isAbort } from '../net/errors.js';

export const IN_CLUSTER_CA_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt';
export const IN_CLUSTER_TOKEN_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/token';
export const TOKENREVIEW_PATH = '/apis/authentication.k8s.io/v1/tokenreviews';

/** The one set of TokenReview defaults (compileTokenReviewSettings fills them in; the client falls back to them). */
export const TOKENREVIEW_DEFAULTS = Object.freeze({ timeoutMs: 1000, cacheTtlMs: 10_000, cacheMax: 10_000 });

export interface TokenReviewOptions {
  /** API server base URL, e.g. https://kubernetes.default.svc. */
  readonly apiServer: string;
  /** PEM CA bundle to trust for the API server (https only). */
  readonly caFile?: string;
  /** Bearer token file we call the API server with (needs `create tokenreviews`), re-read on change. */
  readonly tokenFile?: string;
  /** Audiences the reviewed token must be valid for; empty = the API server's default. */
  readonly audiences?: readonly string[];
  /** Default TOKENREVIEW_DEFAULTS.timeoutMs (1 s). */
  readonly timeoutMs?: number;
  /** How long a result is cached (never past the token's exp). Default TOKENREVIEW_DEFAULTS.cacheTtlMs (10 s); 0 disables. */
  readonly cacheTtlMs?: number;
  /** Default TOKENREVIEW_DEFAULTS.cacheMax (10,000 entries). */
  readonly cacheMax?: number;
}

export interface ServiceAccountRef {
  readonly namespace: string;
  readonly name: string;
}

export type TokenReviewResult =
  | {
      readonly ok: true;
      readonly username: string;
      readonly uid: string;
      readonly groups: readonly string[];
      readonly audiences: readonly string[];
      readonly serviceAccount: ServiceAccountRef | null;
      /** `iss` / `exp` read from the token after the API server authenticated it (JWT tokens only). */
      readonly issuer: string;
      readonly expiresAt?: number;
      readonly claims: Readonly<Record<string, unknown>>;
    }
  | { readonly ok: false; readonly kind: 'rejected' | 'unavailable'; readonly message: string };

const SA_USER = /^system:serviceaccount:([^:]+):([^:]+)$/;

/** `system:serviceaccount:<ns>:<name>` -> {namespace, name}; null for other users. */
export function parseServiceAccountUser(username: string): ServiceAccountRef | null {
  const m = SA_USER.exec(username);
  return m ? { namespace: m[1]!, name: m[2]! } : null;
}

/** Defaults when running in a pod: KUBERNETES_SERVICE_HOST/PORT and the mounted CA/token. */
export function inClusterDefaults(env: NodeJS.ProcessEnv = process.env): { apiServer?: string; caFile: string; tokenFile: string } {
  const host = env['KUBERNETES_SERVICE_HOST'];
  const port = env['KUBERNETES_SERVICE_PORT'] ?? '443';
  const apiServer = host ? `https://${host.includes(':') ? `[${host}]` : host}:${port}` : undefined;
  return { apiServer, caFile: IN_CLUSTER_CA_FILE, tokenFile: IN_CLUSTER_TOKEN_FILE };
}

/** The Identity shape for an admitted token (principal `<iss>/<username>` like a JWT's iss/sub). */
export function tokenReviewIdentity(r: Extract<TokenReviewResult, { ok: true }>, token: string, admittedBy: string, location?: string): Identity {
  const issuer = r.issuer || 'kubernetes';
  return {
    kind: 'kubernetes',
    principal: `${issuer}/${r.username}`,
    issuer,
    subject: r.username,
    audiences: r.audiences,
    presenter: '',
    claims: { ...r.claims, sub: r.username, iss: issuer, groups: [...r.groups] },
    token,
    ...(location ? { location } : {}),
    ...(r.expiresAt !== undefined ? { expiresAt: r.expiresAt } : {}),
    admittedBy,
  };
}

export class TokenReviewClient {
  private readonly cache: LRUCache<string, { result: TokenReviewResult; untilMs: number }>;
  private readonly inflight = new Map<string, Promise<TokenReviewResult>>();
  private readonly bearer: TokenFile | undefined;
  /** The credential we call the API server with, registered with the runtime's secret registry. */
  private readonly bearerValue: (() => string | undefined) | undefined;
  private readonly http: HttpPostClient;
  readonly url: string;
  constructor(
    readonly opts: TokenReviewOptions,
    private readonly runtime: Runtime,
  ) {
    this.url = opts.apiServer.replace(/\/+$/, '') + TOKENREVIEW_PATH;
    this.cache = new LRUCache({ max: Math.max(1, opts.cacheMax ?? TOKENREVIEW_DEFAULTS.cacheMax) });
    this.bearer = opts.tokenFile ? tokenFile(runtime, opts.tokenFile) : undefined;
    const bearer = this.bearer;
    this.bearerValue = bearer ? registeredSecret(runtime.secrets, `tokenreview:${opts.tokenFile}`, () => readTokenFile(bearer)) : undefined;
    const ca = opts.caFile ? readFileSync(opts.caFile, 'utf8') : undefined;
    this.http = new HttpPostClient(ca !== undefined ? { ca } : {});
  }

  /** Review a token. Never throws; `unavailable` results are never cached. */
  async review(token: string, signal?: AbortSignal): Promise<TokenReviewResult> {
    const key = createHash('sha256').update([token, ...(this.opts.audiences ?? [])].join('\0')).digest('base64url');
    const hit = this.cache.get(key);
    const now = this.runtime.now();
    if (hit && now < hit.untilMs) return hit.result;
    if (hit) this.cache.delete(key);
    let p = this.inflight.get(key);
    if (!p) {
      p = this.call(token).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    const r = signal ? await raceAbort(p, signal) : await p;
    if (r === ABORTED) return { ok: false, kind: 'unavailable', message: 'TokenReview aborted at the Check deadline' };
    const ttl = this.opts.cacheTtlMs ?? TOKENREVIEW_DEFAULTS.cacheTtlMs;
    if (ttl > 0 && (r.ok || r.kind !== 'unavailable')) {
      let until = now + (r.ok ? ttl : Math.min(ttl, 2_000));
      if (r.ok && r.expiresAt !== undefined) until = Math.min(until, r.expiresAt * 1000);
      if (until > now) this.cache.set(key, { result: r, untilMs: until });
    }
    return r;
  }

  private async call(token: string): Promise<TokenReviewResult> {
    const body = JSON.stringify({
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      spec: { token, ...(this.opts.audiences && this.opts.audiences.length > 0 ? { audiences: [...this.opts.audiences] } : {}) },
    });
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    const bearer = this.bearerValue?.();
    if (this.bearer && !bearer) return { ok: false, kind: 'unavailable', message: 'TokenReview credentials file is unreadable' };
    if (bearer) headers['authorization'] = `Bearer ${bearer}`;
    let ans: PostAnswer;
    const timeoutMs = this.opts.timeoutMs ?? TOKENREVIEW_DEFAULTS.timeoutMs;
    try {
      // Keep-alive connections, the private CA when one is configured, the whole request bounded.
      ans = await this.http.post(this.url, { headers, body, timeoutMs, maxBytes: MAX_RESPONSE_BYTES });
    } catch (e) {
      if (e instanceof BodyTooLargeError) return { ok: false, kind: 'unavailable', message: 'TokenReview API sent an unusable response (body too large)' };
      return { ok: false, kind: 'unavailable', message: isAbort(e) ? `TokenReview timed out after ${timeoutMs}ms` : 'TokenReview API unreachable' };
    }
    if (ans.status !== 201 && ans.status !== 200) {
      // 401/403: our own credentials lack `create tokenreviews` — not the reviewed token's fault.
      return { ok: false, kind: 'unavailable', message: `TokenReview API answered HTTP ${ans.status}` };
    }
    let json: { status?: { authenticated?: unknown; user?: { username?: unknown; uid?: unknown; groups?: unknown }; audiences?: unknown; error?: unknown } };
    try {
      json = JSON.parse(ans.text) as typeof json;
    } catch {
      return { ok: false, kind: 'unavailable', message: 'TokenReview API sent an unusable response' };
    }
    const st = json?.status ?? {};
    if (st.authenticated !== true) {
      return { ok: false, kind: 'rejected', message: `token not authenticated${st.error ? `: ${sanitizeRemoteText(st.error, 120)}` : ''}` };
    }
    const username = typeof st.user?.username === 'string' ? st.user.username : '';
    if (!username) return { ok: false, kind: 'rejected', message: 'TokenReview authenticated no username' };
    const audiences = Array.isArray(st.audiences) ? st.audiences.filter((a): a is string => typeof a === 'string') : [];
    const wanted = this.opts.audiences ?? [];
    // The API server answers the subset of the requested audiences the token is valid for;
    // an authenticator that ignores audiences returns none, which must not count as a match.
    if (wanted.length > 0 && !audiences.some((a) => wanted.includes(a))) {
      return { ok: false, kind: 'rejected', message: 'token is not valid for the expected audiences' };
    }
    let claims: Record<string, unknown> = {};
    try {
      claims = decodeJwt(token) as Record<string, unknown>;
    } catch {
      claims = {};
    }
    const exp = typeof claims['exp'] === 'number' ? claims['exp'] : undefined;
    return {
      ok: true,
      username,
      uid: typeof st.user?.uid === 'string' ? st.user.uid : '',
      groups: Array.isArray(st.user?.groups) ? (st.user.groups as unknown[]).filter((g): g is string => typeof g === 'string') : [],
      audiences,
      serviceAccount: parseServiceAccountUser(username),
      issuer: typeof claims['iss'] === 'string' ? claims['iss'] : '',
      ...(exp !== undefined ? { expiresAt: exp } : {}),
      claims,
    };
  }

  dispose(): void {
    this.cache.clear();
    this.inflight.clear();
    this.http.dispose();
    this.bearer?.dispose();
  }
}

const ABORTED = Symbol('aborted');
function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T | typeof ABORTED> {
  if (signal.aborted) return Promise.resolve(ABORTED);
  return new Promise((resolve) => {
    const on = () => resolve(ABORTED);
    signal.addEventListener('abort', on, { once: true });
    p.then((v) => {
      signal.removeEventListener('abort', on);
      resolve(v);
    });
  });
}

export function createTokenReviewClient(runtime: Runtime, opts: TokenReviewOptions): TokenReviewClient {
  return new TokenReviewClient(opts, runtime);
}
