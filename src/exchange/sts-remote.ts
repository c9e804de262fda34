/**
 * A remote STS (SecurityTokenService `spec.remote`): its compile and the RFC 8693 client.
 * The client builds the form (repeated `resource` / `audience`),
 * authenticates the client (client_secret_basic, client_secret_post, private_key_jwt
 * per RFC 7523 §2.2, or none), validates the response (RFC 8693 §2.2.1) and maps errors
 * to reason codes. The STS's own error text is sanitized and only logged,
 * never echoed in a deny.
 */
import { scopeTokens } from '../core/scopes.js';
import { randomUUID, type KeyObject } from 'node:crypto';
import { decodeJwt, SignJWT } from 'jose';
import type { CompileContext, KindDocument } from '../config/kinds.js';
import { duration, obj, record, str, type Schema } from '../config/schema.js';
import { sanitizeRemoteText } from '../observability/redact.js';
import type { Runtime } from '../core/runtime.js';
import { httpUrl, readFileAt, secretFn, sha256 } from './compile-helpers.js';
import { LastOutcome, type StatusReport, type StatusReporter } from '../core/status.js';
import { fail, OAUTH_ERRORS, type ExchangeFailure } from './errors.js';
import { loadKey, standInKey, type SigningAlg } from './keys.js';
import { HttpPostClient, type PostAnswer } from '../net/http-post.js';
import { BodyTooLargeError, MAX_RESPONSE_BYTES } from '../net/read-capped.js';
import { GRANT_TYPE_TOKEN_EXCHANGE } from './oauth.js';
import { isAbort } from '../net/errors.js';
import { isJwtShaped } from '../jwt/jwt-format.js';

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' | 'none';

export interface RemoteStsOptions {
  readonly ref: string;
  readonly tokenEndpoint: string;
  readonly authMethod: ClientAuthMethod;
  readonly clientId: string;
  /** Returns the current client secret (re-read from its file on change). */
  readonly clientSecret?: () => string;
  readonly assertionKey?: { key: KeyObject; kid: string; alg: 'ES256' | 'RS256' };
  readonly timeoutMs: number;
  readonly extraParameters: Readonly<Record<string, string>>;
}

export interface RemoteExchangeRequest {
  readonly subjectToken: string;
  readonly subjectTokenType: string;
  readonly actorToken?: string;
  readonly actorTokenType?: string;
  readonly audiences: readonly string[];
  readonly resources: readonly string[];
  readonly scopes: readonly string[];
  readonly requestedTokenType?: string;
}

export interface RemoteIssuedToken {
  readonly ok: true;
  readonly accessToken: string;
  readonly issuedTokenType: string;
  readonly tokenType: string;
  /** Absolute expiry (s), undefined when the STS sent no expires_in and the token carries no exp. */
  readonly expiresAt: number | undefined;
  readonly scopes: readonly string[];
}

/** Percent-encode per application/x-www-form-urlencoded, as RFC 6749 §2.3.1 requires before Basic. */
function formEncode(s: string): string {
  return encodeURIComponent(s).replace(/%20/g, '+');
}

function normAud(a: string): string {
  return a.replace(/^https?:\/\//, '').replace(/\/$/, '');
}

export class RemoteStsClient implements StatusReporter {
  /** Keep-alive connections to the token endpoint (net/http-post.ts). */
  private readonly http = new HttpPostClient();
  /** Last exchange outcome (recorded by the exchange stage), for GET /status. */
  readonly outcomes = new LastOutcome();

  constructor(
    readonly opts: RemoteStsOptions,
    private readonly runtime: Runtime,
  ) {}

  dispose(): void {
    this.http.dispose();
  }

  statusReport(): StatusReport {
    const u = new URL(this.opts.tokenEndpoint);
    return { kind: 'sts', name: this.opts.ref, ok: this.outcomes.ok, details: { type: 'remote', tokenEndpoint: `${u.protocol}//${u.host}${u.pathname}`, ...this.outcomes.details() } };
  }

  /** The form body (exposed for tests). */
  async buildForm(req: RemoteExchangeRequest): Promise<{ body: URLSearchParams; headers: Record<string, string> }> {
    const f = new URLSearchParams();
    f.set('grant_type', GRANT_TYPE_TOKEN_EXCHANGE);
    for (const a of req.resources) f.append('resource', a);
    for (const a of req.audiences) f.append('audience', a);
    if (req.scopes.length > 0) f.set('scope', req.scopes.join(' '));
    if (req.requestedTokenType) f.set('requested_token_type', req.requestedTokenType);
    f.set('subject_token', req.subjectToken);
    f.set('subject_token_type', req.subjectTokenType);
    // RFC 8693 §2.1: actor_token_type is REQUIRED with actor_token and MUST NOT be sent without it.
    if (req.actorToken) {
      f.set('actor_token', req.actorToken);
      f.set('actor_token_type', req.actorTokenType ?? 'urn:ietf:params:oauth:token-type:jwt');
    }
    for (const [k, v] of Object.entries(this.opts.extraParameters)) if (!f.has(k)) f.set(k, v);
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    };
    const o = this.opts;
    switch (o.authMethod) {
      case 'client_secret_basic': {
        const secret = o.clientSecret?.() ?? '';
        headers['authorization'] = 'Basic ' + Buffer.from(`${formEncode(o.clientId)}:${formEncode(secret)}`).toString('base64');
        break;
      }
      case 'client_secret_post':
        f.set('client_id', o.clientId);
        f.set('client_secret', o.clientSecret?.() ?? '');
        break;
      case 'private_key_jwt': {
        const k = o.assertionKey!;
        const now = Math.floor(this.runtime.now() / 1000);
        const assertion = await new SignJWT({})
          .setProtectedHeader({ alg: k.alg, kid: k.kid, typ: 'JWT' })
          .setIssuer(o.clientId)
          .setSubject(o.clientId)
          .setAudience(o.tokenEndpoint)
          .setIssuedAt(now)
          .setExpirationTime(now + 60)
          .setJti(randomUUID())
          .sign(k.key);
        f.set('client_id', o.clientId);
        f.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
        f.set('client_assertion', assertion);
        break;
      }
      case 'none':
        if (o.clientId) f.set('client_id', o.clientId);
        break;
    }
    return { body: f, headers };
  }

  /**
   * One exchange. `signal` is the caller's bound (Check deadline); the STS timeout is
   * applied on top. Never throws.
   */
  async exchange(req: RemoteExchangeRequest, signal?: AbortSignal): Promise<RemoteIssuedToken | ExchangeFailure> {
    const o = this.opts;
    let res: PostAnswer;
    let text: string;
    try {
      const { body, headers } = await this.buildForm(req);
      // Read with a byte cap: a huge (or endless) body is an unusable response. Redirects are
      // not followed (a 3xx is an unusable answer, as with fetch's redirect: 'manual').
      res = await this.http.post(o.tokenEndpoint, { headers, body: body.toString(), signal, timeoutMs: o.timeoutMs, maxBytes: MAX_RESPONSE_BYTES });
      text = res.text;
    } catch (e) {
      if (e instanceof BodyTooLargeError) return fail('ERR_EXCHANGE_MISCONFIGURED', `STS ${o.ref} sent an unusable response: body larger than ${MAX_RESPONSE_BYTES} bytes`);
      if ((e as Error)?.name === 'TimeoutError') return fail('ERR_EXCHANGE_UNAVAILABLE', `STS ${o.ref} timed out after ${o.timeoutMs}ms`);
      if (signal?.aborted || isAbort(e)) return fail('ERR_DEADLINE', `STS ${o.ref} call aborted at the Check deadline`);
      const code = (e as { cause?: { code?: string } })?.cause?.code;
      return fail('ERR_EXCHANGE_UNAVAILABLE', `STS ${o.ref} unreachable${code ? ` (${sanitizeRemoteText(code, 40)})` : ''}`);
    }
    if (res.status >= 500 || res.status === 429) {
      return fail('ERR_EXCHANGE_UNAVAILABLE', `STS ${o.ref} answered HTTP ${res.status}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (res.status !== 200) {
      const err = json && typeof json === 'object' ? (json as Record<string, unknown>)['error'] : undefined;
      const desc = json && typeof json === 'object' ? (json as Record<string, unknown>)['error_description'] : undefined;
      const code = typeof err === 'string' && OAUTH_ERRORS.has(err) ? err : 'other';
      const detail = `STS ${o.ref} answered HTTP ${res.status} error=${code}${desc !== undefined ? ` description="${sanitizeRemoteText(desc, 120)}"` : ''}`;
      switch (code) {
        // The subject was verified locally, so a refusal of the grant/target is a policy answer.
        case 'invalid_request':
        case 'invalid_grant':
        case 'invalid_target':
        case 'invalid_scope':
          return fail('ERR_EXCHANGE_REFUSED', detail, code);
        // Our client registration or request shape is wrong: our side is misconfigured.
        default:
          return fail('ERR_EXCHANGE_MISCONFIGURED', detail, code);
      }
    }
    return this.parseSuccess(json, req);
  }

  private parseSuccess(json: unknown, req: RemoteExchangeRequest): RemoteIssuedToken | ExchangeFailure {
    const ref = this.opts.ref;
    const bad = (why: string) => fail('ERR_EXCHANGE_MISCONFIGURED', `STS ${ref} sent an unusable response: ${why}`);
    if (!json || typeof json !== 'object' || Array.isArray(json)) return bad('not a JSON object');
    const j = json as Record<string, unknown>;
    const token = j['access_token'];
    if (typeof token !== 'string' || token.length === 0) return bad('access_token missing');
    if (/[\s\0]/.test(token) || token.length > 16_384) return bad('access_token is not a valid header value');
    const itt = j['issued_token_type'];
    if (typeof itt !== 'string' || !itt) return bad('issued_token_type missing');
    if (req.requestedTokenType && itt !== req.requestedTokenType) return bad('issued_token_type differs from requested_token_type');
    const tt = j['token_type'];
    if (typeof tt !== 'string' || tt.toLowerCase() !== 'bearer') return bad('token_type is not Bearer');
    const ei = j['expires_in'];
    if (ei !== undefined && (typeof ei !== 'number' || !Number.isFinite(ei) || ei <= 0)) return bad('expires_in is not a positive number');
    const nowSec = this.runtime.now() / 1000;
    let expiresAt = typeof ei === 'number' ? Math.floor(nowSec + ei) : undefined;
    if (isJwtShaped(token)) {
      // when the issued token is a JWT, check it is for the audience we asked for.
      let payload: Record<string, unknown>;
      try {
        payload = decodeJwt(token) as Record<string, unknown>;
      } catch {
        return bad('issued JWT cannot be decoded');
      }
      const want = [...req.audiences, ...req.resources];
      if (want.length > 0) {
        const aud = payload['aud'];
        const have = (Array.isArray(aud) ? aud : aud === undefined ? [] : [aud]).filter((a): a is string => typeof a === 'string').map(normAud);
        if (!want.some((w) => have.includes(normAud(w)))) return bad('issued JWT aud does not name the requested target');
      }
      const exp = payload['exp'];
      if (typeof exp === 'number') expiresAt = expiresAt === undefined ? exp : Math.min(expiresAt, exp);
    }
    const scope = j['scope'];
    const scopes = typeof scope === 'string' ? scopeTokens(scope) : req.scopes;
    return { ok: true, accessToken: token, issuedTokenType: itt, tokenType: tt, expiresAt, scopes };
  }
}

// ---------------------------------------------------------------- compile (SecurityTokenService spec.remote)

export interface RawRemote {
  tokenEndpoint?: string;
  clientAuthentication?: {
    method?: ClientAuthMethod;
    clientId?: string;
    clientSecret?: string;
    clientSecretFile?: string;
    privateKeyFile?: string;
    keyId?: string;
    algorithm?: SigningAlg;
  };
  timeout?: number;
  extraParameters?: Record<string, string>;
}

export const remoteSchema = obj<RawRemote>(
  {
    tokenEndpoint: httpUrl(),
    clientAuthentication: obj({
      method: str({ enum: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'] }) as Schema<ClientAuthMethod>,
      clientId: str({ nonEmpty: true }),
      clientSecret: str({ nonEmpty: true }),
      clientSecretFile: str({ nonEmpty: true }),
      privateKeyFile: str({ nonEmpty: true }),
      keyId: str({ nonEmpty: true }),
      algorithm: str({ enum: ['ES256', 'RS256'] }) as Schema<SigningAlg>,
    }),
    timeout: duration({ minMs: 1, maxMs: 60_000 }),
    extraParameters: record(str()),
  },
  { required: ['tokenEndpoint'] },
);

export interface CompiledRemoteSts {
  readonly kind: 'remote';
  readonly ref: string;
  /** Identity of the STS for cache keys: changes when its settings or key file change. */
  readonly id: string;
  readonly client: RemoteStsClient;
}

/** Parameters the exchange sets itself: `extraParameters` may not name them. */
const RESERVED = ['grant_type', 'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'client_secret', 'client_assertion'];

export function compileRemote(k: KindDocument, r: RawRemote, cc: CompileContext): CompiledRemoteSts | undefined {
  const base = ['spec', 'remote', 'clientAuthentication'];
  const ca = r.clientAuthentication ?? {};
  const method = ca.method ?? (ca.privateKeyFile ? 'private_key_jwt' : ca.clientId ? 'client_secret_basic' : 'none');
  if (method !== 'none' && !ca.clientId) k.v.error([...base, 'clientId'], `required for ${method}`);
  let clientSecret: (() => string | undefined) | undefined;
  let assertionKey: { key: KeyObject; kid: string; alg: SigningAlg } | undefined;
  let keyMaterial = '';
  if (method === 'client_secret_basic' || method === 'client_secret_post') {
    clientSecret = secretFn(k, cc, base, ca.clientSecret, ca.clientSecretFile);
    if (!clientSecret && ca.clientSecret === undefined && ca.clientSecretFile === undefined) k.v.error([...base, 'clientSecretFile'], `one of clientSecret or clientSecretFile is required for ${method}`);
  } else if (ca.clientSecret !== undefined || ca.clientSecretFile !== undefined) {
    k.v.error([...base, ca.clientSecret !== undefined ? 'clientSecret' : 'clientSecretFile'], `not used with method ${method}`);
  }
  if (method === 'private_key_jwt') {
    if (!ca.privateKeyFile) k.v.error([...base, 'privateKeyFile'], 'required for private_key_jwt');
    if (!ca.keyId) k.v.error([...base, 'keyId'], 'required for private_key_jwt');
    if (ca.privateKeyFile && ca.keyId) {
      const f = readFileAt(k, cc, [...base, 'privateKeyFile'], ca.privateKeyFile, () => standInKey(ca.algorithm ?? 'ES256'));
      if (f) {
        const lk = loadKey(f.text, ca.keyId, ca.algorithm ?? 'ES256');
        if (!lk.ok) k.v.error([...base, 'privateKeyFile'], lk.message);
        else if (!lk.key.privateKey) k.v.error([...base, 'privateKeyFile'], 'must hold a private key');
        else {
          keyMaterial = f.text;
          assertionKey = { key: lk.key.privateKey, kid: ca.keyId, alg: ca.algorithm ?? 'ES256' };
        }
      }
    }
  } else if (ca.privateKeyFile !== undefined) k.v.error([...base, 'privateKeyFile'], `not used with method ${method}`);
  if (k.v.hasErrors) return undefined;
  for (const p of RESERVED) {
    if (r.extraParameters && p in r.extraParameters) {
      k.v.error(['spec', 'remote', 'extraParameters', p], 'this parameter is set by the exchange itself');
      return undefined;
    }
  }
  const opts: RemoteStsOptions = {
    ref: k.ref,
    tokenEndpoint: r.tokenEndpoint!,
    authMethod: method,
    clientId: ca.clientId ?? '',
    ...(clientSecret ? { clientSecret: () => clientSecret!() ?? '' } : {}),
    ...(assertionKey ? { assertionKey } : {}),
    timeoutMs: r.timeout ?? 750,
    extraParameters: r.extraParameters ?? {},
  };
  const id = sha256('remote', k.ref, JSON.stringify(r), keyMaterial);
  const client = cc.runtime.shared.get(`exchange:remote:${id}`, () => new RemoteStsClient(opts, cc.runtime));
  return { kind: 'remote', ref: k.ref, id, client };
}
