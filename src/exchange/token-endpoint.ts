/**
 * The built-in STS's RFC 8693 token endpoint, as a pure function of the form, the
 * Authorization header and the compiled STS, so it can be tested without HTTP
 * (src/http/sts.ts wires it to POST /oauth2/token). Clients authenticate with
 * client_secret_basic or client_secret_post (RFC 6749 §2.3.1; one method per request).
 * Subject tokens must come from a configured issuer (or from this STS itself); an actor
 * token makes it a delegation, checked against the DelegationPolicy and may_act.
 * Error answers follow RFC 6749 §5.2 / RFC 8693 §2.2.2 and carry no token material.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Runtime } from '../core/runtime.js';
import type { CompiledBuiltinSts, HttpClient } from './compile.js';
import { checkDelegation } from './delegation.js';
import { compileGlob, GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_JWT } from './util.js';
import { verifyWithIssuers } from './verify.js';

export interface TokenEndpointAnswer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Record<string, unknown>;
  /** Closed-set outcome for metrics/logs. */
  readonly outcome: string;
}

const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache', 'content-type': 'application/json' };
const SUBJECT_TYPES = new Set([TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT, TOKEN_TYPE_ID_TOKEN]);
const SINGLE = ['grant_type', 'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'scope', 'requested_token_type', 'client_id', 'client_secret'];

function oauthError(status: number, error: string, description: string, extra: Record<string, string> = {}): TokenEndpointAnswer {
  return { status, headers: { ...NO_STORE, ...extra }, body: { error, error_description: description }, outcome: error };
}

function formDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

function secretEquals(a: string, b: string): boolean {
  // Compare digests so length differences do not leak through timing.
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

/** Every 401 carries a challenge (RFC 9110 §15.5.2; RFC 6749 §5.2 for Basic). */
const CHALLENGE = { 'www-authenticate': 'Basic realm="obo-authz"' };
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

function invalidClient(): TokenEndpointAnswer {
  return oauthError(401, 'invalid_client', 'client authentication failed', CHALLENGE);
}

/** Strict RFC 4648 §4 base64 then UTF-8; undefined for anything else (no lenient decoding). */
function decodeBasic(token: string): string | undefined {
  if (token.length === 0 || token.length % 4 !== 0 || !BASE64.test(token)) return undefined;
  const buf = Buffer.from(token, 'base64');
  if (buf.toString('base64') !== token) return undefined;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    return undefined;
  }
}

function authenticateClient(clients: readonly HttpClient[], form: URLSearchParams, authorization: string | undefined): HttpClient | TokenEndpointAnswer {
  let id: string | undefined;
  let secret: string | undefined;
  const basic = authorization && /^basic(\s|$)/i.test(authorization) ? authorization.replace(/^basic\s*/i, '').trim() : undefined;
  if (basic !== undefined) {
    if (form.has('client_secret')) return oauthError(400, 'invalid_request', 'use only one client authentication method');
    const dec = decodeBasic(basic);
    const i = dec === undefined ? -1 : dec.indexOf(':');
    if (dec === undefined || i < 0) return invalidClient();
    id = formDecode(dec.slice(0, i));
    secret = formDecode(dec.slice(i + 1));
    // RFC 6749 §2.3: one method per request. A body client_id may only repeat the Basic id.
    const bodyId = form.get('client_id');
    if (bodyId !== null && bodyId !== id) return oauthError(400, 'invalid_request', 'client_id does not match the client authenticated by the Authorization header');
  } else {
    id = form.get('client_id') ?? undefined;
    secret = form.get('client_secret') ?? undefined;
  }
  const c = id !== undefined ? clients.find((x) => x.clientId === id) : undefined;
  const expected = c?.secret();
  if (!c || secret === undefined || expected === undefined || !secretEquals(secret, expected)) return invalidClient();
  return c;
}

export async function handleTokenRequest(
  b: CompiledBuiltinSts,
  form: URLSearchParams,
  authorization: string | undefined,
  runtime: Runtime,
): Promise<TokenEndpointAnswer> {
  const te = b.tokenEndpoint;
  if (!te) return oauthError(400, 'unsupported_grant_type', 'the token endpoint is not enabled');
  for (const k of SINGLE) if (form.getAll(k).length > 1) return oauthError(400, 'invalid_request', `parameter ${k} must not repeat`);
  const client = authenticateClient(te.clients, form, authorization);
  if ('status' in client) return client;
  if (form.get('grant_type') !== GRANT_TYPE_TOKEN_EXCHANGE) return oauthError(400, 'unsupported_grant_type', 'only token exchange is supported');
  const subjectToken = form.get('subject_token');
  const subjectType = form.get('subject_token_type');
  if (!subjectToken || !subjectType) return oauthError(400, 'invalid_request', 'subject_token and subject_token_type are required');
  if (!SUBJECT_TYPES.has(subjectType)) return oauthError(400, 'invalid_request', 'unsupported subject_token_type');
  const actorToken = form.get('actor_token');
  const actorType = form.get('actor_token_type');
  // RFC 8693 §2.1: actor_token_type is required with actor_token and must not appear without it.
  if (actorToken && !actorType) return oauthError(400, 'invalid_request', 'actor_token_type is required with actor_token');
  if (!actorToken && actorType) return oauthError(400, 'invalid_request', 'actor_token_type without actor_token');
  if (actorType && !SUBJECT_TYPES.has(actorType)) return oauthError(400, 'invalid_request', 'unsupported actor_token_type');
  const audiences = form.getAll('audience').filter(Boolean);
  const resources = form.getAll('resource').filter(Boolean);
  if (audiences.length + resources.length === 0) return oauthError(400, 'invalid_target', 'audience or resource is required');
  const allowed = client.audiences.map(compileGlob);
  for (const t of [...audiences, ...resources]) if (!allowed.some((m) => m(t))) return oauthError(400, 'invalid_target', 'the client may not request this target');
  const scopes = (form.get('scope') ?? '').split(' ').filter(Boolean);
  const requested = form.get('requested_token_type') ?? undefined;

  const subj = await verifyWithIssuers(subjectToken, te.subjectIssuers, runtime);
  if (!subj.ok) return oauthError(400, 'invalid_grant', 'the subject token is not valid');
  const sp = subj.payload;
  let actor: { sub: string; iss?: string } | undefined;
  if (actorToken) {
    if (te.actorIssuers.length === 0 || !te.delegation) return oauthError(400, 'invalid_request', 'delegation is not enabled');
    const act = await verifyWithIssuers(actorToken, te.actorIssuers, runtime);
    if (!act.ok) return oauthError(400, 'invalid_grant', 'the actor token is not valid');
    const asub = typeof act.payload['sub'] === 'string' ? act.payload['sub'] : '';
    const aiss = typeof act.payload['iss'] === 'string' ? act.payload['iss'] : '';
    if (!asub) return oauthError(400, 'invalid_grant', 'the actor token has no sub');
    actor = { sub: asub, iss: aiss };
    const ssub = typeof sp['sub'] === 'string' ? sp['sub'] : '';
    const siss = typeof sp['iss'] === 'string' ? sp['iss'] : '';
    // Always checked, also when the actor is the subject (machine-to-machine): presenting
    // one's own token as the actor token must not bypass DelegationPolicy and may_act.
    // mint() adds no `act` link when actor and subject are the same party.
    const v = checkDelegation(te.delegation, { sub: asub, iss: aiss }, { sub: ssub, iss: siss }, sp, [...audiences, ...resources]);
    if (!v.ok) return oauthError(400, 'invalid_grant', 'delegation is not allowed for this actor');
  }
  const r = await b.sts.mint(
    {
      subjectClaims: sp,
      ...(typeof sp['exp'] === 'number' ? { subjectExp: sp['exp'] } : {}),
      ...(actor ? { actor } : {}),
      audiences,
      resources,
      scopes,
      ...(requested ? { requestedTokenType: requested } : {}),
      extraClaims: { client_id: client.clientId },
    },
    runtime,
  );
  if (!r.ok) {
    const code = r.oauthError ?? (r.reason === 'ERR_DELEGATION_DENIED' ? 'invalid_grant' : 'invalid_request');
    return oauthError(400, code, r.reason === 'ERR_DELEGATION_DENIED' ? 'delegation chain too deep' : 'the token cannot be issued');
  }
  return {
    status: 200,
    headers: { ...NO_STORE },
    body: {
      access_token: r.accessToken,
      issued_token_type: r.issuedTokenType,
      token_type: 'Bearer',
      expires_in: r.expiresIn,
      ...(r.scopes.length > 0 ? { scope: r.scopes.join(' ') } : {}),
    },
    outcome: 'success',
  };
}
