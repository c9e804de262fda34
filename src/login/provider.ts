/**
 * The relying party's side of OpenID Connect: the provider's metadata (discovery, cached
 * with stale-if-error), the token endpoint (code exchange and refresh, with client
 * authentication client_secret_basic / client_secret_post / private_key_jwt / none), and
 * id token validation (OIDC Core 3.1.3.7: signature by the provider's JWKS, `iss` equal to
 * the issuer, `aud` containing the client id, `azp` when present or when there are several
 * audiences, `exp`; the nonce is the caller's check). Every call is bounded by the
 * configured timeout and the Check's deadline; answers are capped in size; remote text is
 * never put in a deny body.
 */
import { createHash, createPrivateKey, randomBytes, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Runtime } from '../core/runtime.js';
import { documentFetcherOn } from '../jwt/jwks-fetch.js';
import { createJwtValidator, type JwtValidator } from '../jwt/jwt-validator.js';
import { HttpPostClient } from '../net/http-post.js';

export type ClientAuth =
  | { readonly method: 'client_secret_basic' | 'client_secret_post'; readonly clientId: string; readonly secret: string }
  | { readonly method: 'private_key_jwt'; readonly clientId: string; readonly key: KeyObject; readonly alg: 'RS256' | 'ES256'; readonly kid: string }
  | { readonly method: 'none'; readonly clientId: string };

export interface ProviderMetadata {
  readonly issuer: string;
  readonly authorizationEndpoint: string;
  readonly tokenEndpoint: string;
  readonly jwksUri: string;
  readonly endSessionEndpoint?: string;
  readonly revocationEndpoint?: string;
}

export interface MetadataOverride {
  authorizationEndpoint?: string;
  tokenEndpoint?: string;
  jwksUri?: string;
  endSessionEndpoint?: string;
  revocationEndpoint?: string;
}

/** A remote failure: `unavailable` (network, 5xx, timeout) or `refused` (the IdP said no: 4xx OAuth error). */
export type RemoteFailure = { readonly ok: false; readonly kind: 'unavailable' | 'refused'; readonly error: string; readonly message: string };
export type TokenAnswer = { readonly ok: true; readonly body: Record<string, unknown> } | RemoteFailure;

/** Load a private key for private_key_jwt: PEM; alg inferred (RSA -> RS256, EC P-256 -> ES256). */
export function loadSigningKey(file: string, alg?: 'RS256' | 'ES256'): { key: KeyObject; alg: 'RS256' | 'ES256'; kid: string } | string {
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(file, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code && code.startsWith('E') && !code.startsWith('ERR_') ? `cannot read key file: ${code}` : 'the key file is not a PEM private key';
  }
  const type = key.asymmetricKeyType;
  const inferred = type === 'rsa' ? 'RS256' : type === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1' ? 'ES256' : undefined;
  if (!inferred) return 'private_key_jwt needs an RSA or EC P-256 key';
  if (alg && alg !== inferred) return `algorithm ${alg} does not fit the key (${inferred})`;
  // RFC 7638 thumbprint as the default kid.
  const jwk = key.export({ format: 'jwk' }) as Record<string, string>;
  const members = inferred === 'RS256' ? { e: jwk['e'], kty: 'RSA', n: jwk['n'] } : { crv: jwk['crv'], kty: 'EC', x: jwk['x'], y: jwk['y'] };
  const kid = createHash('sha256').update(JSON.stringify(members)).digest('base64url');
  return { key, alg: inferred, kid };
}

function b64json(o: unknown): string {
  return Buffer.from(JSON.stringify(o)).toString('base64url');
}

/** RFC 7523 client assertion for private_key_jwt (aud = token endpoint). */
function clientAssertion(a: Extract<ClientAuth, { method: 'private_key_jwt' }>, audience: string, nowS: number): string {
  const input = `${b64json({ alg: a.alg, typ: 'JWT', kid: a.kid })}.${b64json({ iss: a.clientId, sub: a.clientId, aud: audience, jti: randomBytes(16).toString('base64url'), iat: nowS, exp: nowS + 60 })}`;
  const sig = sign('sha256', Buffer.from(input), a.alg === 'ES256' ? { key: a.key, dsaEncoding: 'ieee-p1363' } : a.key);
  return `${input}.${sig.toString('base64url')}`;
}

function isNetworkError(e: unknown): boolean {
  const n = (e as { name?: string })?.name;
  return n === 'TimeoutError' || n === 'AbortError' || (e as { cause?: unknown })?.cause !== undefined;
}

function parseJsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const METADATA_TTL_MS = 3_600_000;
const METADATA_RETRY_MS = 10_000;

/**
 * One provider (issuer, CA, timeout, overrides), shared through runtime.shared: metadata
 * fetched on first use and refreshed hourly (the last good copy is kept when a refresh
 * fails), one keep-alive POST client, id token validators by client id.
 */
export class OidcProvider {
  private meta: ProviderMetadata | null = null;
  private fetchedAt = 0;
  private failedAt = 0;
  private inflight: Promise<ProviderMetadata | RemoteFailure> | null = null;
  private readonly post: HttpPostClient;
  private readonly validators = new Map<string, JwtValidator>();
  /** A digest of the caFile's PEM ('' without one). */
  private readonly caId: string;

  constructor(
    private readonly runtime: Runtime,
    readonly issuer: string,
    private readonly override: MetadataOverride,
    private readonly timeoutMs: number,
    ca: string | undefined,
  ) {
    this.post = new HttpPostClient(ca ? { ca } : {});
    this.caId = ca ? createHash('sha256').update(ca).digest('base64url').slice(0, 16) : '';
    // Everything overridden: no discovery needed.
    const o = override;
    if (o.authorizationEndpoint && o.tokenEndpoint && o.jwksUri) {
      this.meta = Object.freeze({ issuer, authorizationEndpoint: o.authorizationEndpoint, tokenEndpoint: o.tokenEndpoint, jwksUri: o.jwksUri, ...(o.endSessionEndpoint ? { endSessionEndpoint: o.endSessionEndpoint } : {}), ...(o.revocationEndpoint ? { revocationEndpoint: o.revocationEndpoint } : {}) });
      this.fetchedAt = Infinity;
    }
  }

  /** Metadata when known and fresh enough to use without waiting. */
  metadataNow(): ProviderMetadata | null {
    const now = this.runtime.now();
    if (this.meta && now - this.fetchedAt > METADATA_TTL_MS && !this.inflight && now - this.failedAt > METADATA_RETRY_MS) void this.refresh();
    return this.meta;
  }

  async metadata(signal?: AbortSignal): Promise<ProviderMetadata | RemoteFailure> {
    const m = this.metadataNow();
    if (m) return m;
    return this.refresh(signal);
  }

  private refresh(signal?: AbortSignal): Promise<ProviderMetadata | RemoteFailure> {
    this.inflight ??= this.discover(signal).then((r) => {
      this.inflight = null;
      if ('ok' in r) {
        this.failedAt = this.runtime.now();
        // Stale-if-error: a known copy keeps serving.
        return this.meta ?? r;
      }
      this.meta = r;
      this.fetchedAt = this.runtime.now();
      return r;
    });
    return this.inflight;
  }

  private async discover(signal?: AbortSignal): Promise<ProviderMetadata | RemoteFailure> {
    const url = `${this.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    let r: { status: number; text: string };
    try {
      r = await this.post.get(url, { headers: { accept: 'application/json' }, timeoutMs: this.timeoutMs, ...(signal ? { signal } : {}) });
    } catch (e) {
      return { ok: false, kind: 'unavailable', error: 'discovery_failed', message: `discovery failed: ${(e as Error).name}` };
    }
    const d = parseJsonOrUndefined(r.text) as Record<string, unknown> | undefined;
    if (r.status !== 200 || !d || typeof d !== 'object') return { ok: false, kind: 'unavailable', error: 'discovery_failed', message: `discovery answered HTTP ${r.status}` };
    // OIDC Discovery 4.3: the issuer in the document must equal the configured one exactly.
    if (d['issuer'] !== this.issuer) return { ok: false, kind: 'unavailable', error: 'discovery_issuer_mismatch', message: 'discovery document names another issuer' };
    const o = this.override;
    const pick = (over: string | undefined, key: string) => over ?? (typeof d[key] === 'string' ? (d[key] as string) : undefined);
    const authorizationEndpoint = pick(o.authorizationEndpoint, 'authorization_endpoint');
    const tokenEndpoint = pick(o.tokenEndpoint, 'token_endpoint');
    const jwksUri = pick(o.jwksUri, 'jwks_uri');
    if (!authorizationEndpoint || !tokenEndpoint || !jwksUri) return { ok: false, kind: 'unavailable', error: 'discovery_incomplete', message: 'discovery lacks authorization_endpoint, token_endpoint or jwks_uri' };
    const endSessionEndpoint = pick(o.endSessionEndpoint, 'end_session_endpoint');
    const revocationEndpoint = pick(o.revocationEndpoint, 'revocation_endpoint');
    return Object.freeze({ issuer: this.issuer, authorizationEndpoint, tokenEndpoint, jwksUri, ...(endSessionEndpoint ? { endSessionEndpoint } : {}), ...(revocationEndpoint ? { revocationEndpoint } : {}) });
  }

  /** POST to the token endpoint (RFC 6749 §4.1.3 / §6) with client authentication. */
  async token(meta: ProviderMetadata, auth: ClientAuth, params: Record<string, string>, signal?: AbortSignal): Promise<TokenAnswer> {
    const form = new URLSearchParams(params);
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    if (auth.method === 'client_secret_basic') {
      // RFC 6749 §2.3.1: form-urlencode id and secret before base64.
      const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
      headers['authorization'] = `Basic ${Buffer.from(`${enc(auth.clientId)}:${enc(auth.secret)}`).toString('base64')}`;
    } else if (auth.method === 'client_secret_post') {
      form.set('client_id', auth.clientId);
      form.set('client_secret', auth.secret);
    } else if (auth.method === 'private_key_jwt') {
      form.set('client_id', auth.clientId);
      form.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
      form.set('client_assertion', clientAssertion(auth, meta.tokenEndpoint, Math.floor(this.runtime.now() / 1000)));
    } else {
      form.set('client_id', auth.clientId);
    }
    let res;
    try {
      res = await this.post.post(meta.tokenEndpoint, { headers, body: form.toString(), timeoutMs: this.timeoutMs, ...(signal ? { signal } : {}), maxBytes: 256 * 1024 });
    } catch (e) {
      return { ok: false, kind: 'unavailable', error: 'network', message: `token endpoint unreachable: ${isNetworkError(e) ? (e as Error).name : 'error'}` };
    }
    let body: Record<string, unknown> | undefined;
    try {
      const j = JSON.parse(res.text) as unknown;
      if (j && typeof j === 'object' && !Array.isArray(j)) body = j as Record<string, unknown>;
    } catch {
      body = undefined;
    }
    if (res.status >= 500 || !body) return { ok: false, kind: 'unavailable', error: 'bad_response', message: `token endpoint answered HTTP ${res.status}` };
    if (res.status !== 200) {
      const err = typeof body['error'] === 'string' ? (body['error'] as string).replace(/[^A-Za-z0-9_.-]/g, '').slice(0, 64) : 'error';
      return { ok: false, kind: 'refused', error: err, message: `token endpoint refused: ${err}` };
    }
    return { ok: true, body };
  }

  /** RFC 7009 revocation, best effort (logout). */
  async revoke(meta: ProviderMetadata, auth: ClientAuth, token: string, hint: string, signal?: AbortSignal): Promise<boolean> {
    if (!meta.revocationEndpoint) return false;
    const r = await this.token({ ...meta, tokenEndpoint: meta.revocationEndpoint }, auth, { token, token_type_hint: hint }, signal);
    return r.ok;
  }

  /** The id token validator for a client (signature, iss, aud = client id, exp; no cache). */
  validator(meta: ProviderMetadata, clientId: string): JwtValidator {
    const key = `${clientId}\0${meta.jwksUri}`;
    let v = this.validators.get(key);
    if (!v) {
      // With a caFile, the JWKS comes through the same client (and CA) as discovery and the token endpoint.
      const fetcher = this.caId ? { id: `login-ca:${this.caId}`, fetch: documentFetcherOn((url, o) => this.post.get(url, o)) } : undefined;
      v = createJwtValidator(this.runtime, { issuer: this.issuer, audiences: [clientId], jwksUri: meta.jwksUri, timeoutMs: this.timeoutMs, cache: false, fetcher });
      this.validators.set(key, v);
    }
    return v;
  }

  dispose(): void {
    this.post.dispose();
    this.validators.clear();
  }
}

/** The shared provider for these settings (one per issuer, CA, timeout and overrides). */
export function sharedProvider(runtime: Runtime, issuer: string, override: MetadataOverride | undefined, timeoutMs: number, ca: string | undefined): OidcProvider {
  const caId = ca ? createHash('sha256').update(ca).digest('base64url').slice(0, 16) : '';
  return runtime.shared.get(`login:oidc:${issuer}|${JSON.stringify(override ?? {})}|${timeoutMs}|${caId}`, () => new OidcProvider(runtime, issuer, override ?? {}, timeoutMs, ca));
}
