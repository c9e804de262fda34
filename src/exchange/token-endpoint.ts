/**
 * The built-in STS's RFC 8693 token endpoint: the compile of `spec.builtin.tokenEndpoint` and
 * the handler, a pure function of the form, the Authorization header and the compiled STS, so
 * it can be tested without HTTP (src/http/sts.ts wires it to POST /oauth2/token). Clients authenticate with
 * client_secret_basic or client_secret_post (RFC 6749 §2.3.1; one method per request).
 * Subject tokens must come from a configured issuer (or from this STS itself); an actor
 * token makes it a delegation, checked against the DelegationPolicy and may_act.
 * Error answers follow RFC 6749 §5.2 / RFC 8693 §2.2.2 and carry no token material.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { CompileContext, KindDocument } from '../config/kinds.js';
import { list, obj, str } from '../config/schema.js';
import type { Runtime } from '../core/runtime.js';
import { scopeTokens } from '../core/scopes.js';
import { isValidTarget, TargetSet } from '../match/targets.js';
import { httpUrl, resolveRef, secretFn, sha256, strs } from './compile-helpers.js';
import { checkDelegation, type CompiledDelegationPolicy } from './delegation.js';
import { GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_JWT } from './oauth.js';
import type { BuiltinSts } from './sts-builtin.js';
import { makeTrustedIssuer, verifyWithIssuers, type TrustedIssuer, type TrustedIssuerSpec } from './verify.js';

// ---------------------------------------------------------------- compile (spec.builtin.tokenEndpoint)

interface RawClient {
  clientId?: string;
  clientSecret?: string;
  clientSecretFile?: string;
  audiences?: string[];
}
export interface RawTokenEndpoint {
  clients?: RawClient[];
  subjectIssuers?: TrustedIssuerSpec[];
  actorIssuers?: TrustedIssuerSpec[];
  delegationPolicy?: string;
}

const issuerSpecSchema = obj<TrustedIssuerSpec>({ issuer: str({ nonEmpty: true }), audiences: strs, jwks: str({ nonEmpty: true }), jwksUri: httpUrl() }, { required: ['issuer'] });

export const tokenEndpointSchema = obj<RawTokenEndpoint>({
  clients: list(
    obj<RawClient>(
      { clientId: str({ nonEmpty: true }), clientSecret: str({ nonEmpty: true }), clientSecretFile: str({ nonEmpty: true }), audiences: strs },
      { required: ['clientId'] },
    ),
    { minItems: 1 },
  ),
  subjectIssuers: list(issuerSpecSchema, { minItems: 1 }),
  actorIssuers: list(issuerSpecSchema),
  delegationPolicy: str({ nonEmpty: true }),
});

/** An OAuth client of the token endpoint. */
export interface HttpClient {
  readonly clientId: string;
  readonly secret: () => string | undefined;
  /** The audience/resource globs this client may request, as written. */
  readonly audiences: readonly string[];
  /** The same, compiled (match/strings.ts globs). */
  /** URL-aware: `*` never crosses URL structure (match/targets.ts). */
  readonly allowed: TargetSet;
}

export interface CompiledTokenEndpoint {
  readonly clients: readonly HttpClient[];
  readonly subjectIssuers: readonly TrustedIssuer[];
  readonly actorIssuers: readonly TrustedIssuer[];
  readonly delegation: CompiledDelegationPolicy | null;
}

/** `spec.builtin.tokenEndpoint` of the STS `sts` (identity `stsId`); issues reported on `k`. */
export function compileTokenEndpoint(
  k: KindDocument,
  te: RawTokenEndpoint,
  sts: BuiltinSts,
  stsId: string,
  cc: CompileContext,
  delegations: ReadonlyMap<string, CompiledDelegationPolicy>,
): CompiledTokenEndpoint {
  const base = ['spec', 'builtin', 'tokenEndpoint'];
  if (!te.clients) k.v.error([...base, 'clients'], 'required field is missing (the token endpoint authenticates its clients)');
  if (!te.subjectIssuers) k.v.error([...base, 'subjectIssuers'], 'required field is missing (which issuers\' subject tokens are accepted)');
  const clients: HttpClient[] = [];
  (te.clients ?? []).forEach((c, i) => {
    // No default: an unrestricted client could mint tokens for every backend (and, with
    // this STS's own issuer among subjectIssuers, re-exchange a token meant for one
    // backend into another's audience). "*" must be spelled out.
    if (!c.audiences) k.v.error([...base, 'clients', i, 'audiences'], 'required field is missing (the audience/resource globs this client may request tokens for; there is no default, so that a client cannot mint tokens for every backend — use ["*"] to allow any explicitly)');
    else if (c.audiences.length === 0) k.v.error([...base, 'clients', i, 'audiences'], 'must list at least one audience/resource glob (with none the client can request nothing)');
    const s = secretFn(k, cc, [...base, 'clients', i], c.clientSecret, c.clientSecretFile);
    if (!s) {
      if (c.clientSecret === undefined && c.clientSecretFile === undefined) k.v.error([...base, 'clients', i], 'one of clientSecret or clientSecretFile is required');
      return;
    }
    const audiences = c.audiences ?? [];
    const allowed = new TargetSet(audiences);
    allowed.patterns.forEach((p, j) => {
      if (p.error) k.v.error([...base, 'clients', i, 'audiences', j], `${JSON.stringify(p.source)}: ${p.error}`);
    });
    clients.push({ clientId: c.clientId!, secret: s, audiences, allowed });
  });
  const own = { issuer: sts.issuer, jwks: sts.jwks };
  const issuers = (specs: TrustedIssuerSpec[] | undefined, field: string): TrustedIssuer[] => {
    const out: TrustedIssuer[] = [];
    (specs ?? []).forEach((sp, i) => {
      if (sp.jwks && sp.jwksUri) k.v.error([...base, field, i, 'jwks'], 'set only one of jwks or jwksUri');
      if (!sp.jwks && !sp.jwksUri && sp.issuer !== sts.issuer) {
        k.v.error([...base, field, i], 'one of jwks or jwksUri is required (only this STS\'s own issuer may omit both)');
        return;
      }
      try {
        out.push(cc.runtime.shared.get(`exchange:issuer:${sha256(JSON.stringify(sp), stsId)}`, () => makeTrustedIssuer(sp, cc.runtime, own)));
      } catch {
        k.v.error([...base, field, i, 'jwks'], 'cannot parse the JWKS');
      }
    });
    return out;
  };
  const subjectIssuers = issuers(te.subjectIssuers, 'subjectIssuers');
  const actorIssuers = issuers(te.actorIssuers, 'actorIssuers');
  let delegation: CompiledDelegationPolicy | null = null;
  if (te.delegationPolicy) {
    delegation = resolveRef(delegations, k, te.delegationPolicy, cc.settings.rootNamespace) ?? null;
    if (!delegation) k.v.error([...base, 'delegationPolicy'], `DelegationPolicy ${JSON.stringify(te.delegationPolicy)} not found`);
  } else if (actorIssuers.length > 0) {
    k.v.error([...base, 'delegationPolicy'], 'required when actorIssuers is set (who may act for whom)');
  }
  return { clients, subjectIssuers, actorIssuers, delegation };
}

// ---------------------------------------------------------------- POST /oauth2/token

/** What the handler needs of a compiled builtin STS (sts.ts CompiledBuiltinSts). */
export interface TokenEndpointSts {
  readonly tokenEndpoint: CompiledTokenEndpoint | null;
  readonly sts: BuiltinSts;
}

export interface TokenEndpointAnswer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Record<string, unknown>;
  /** Closed-set outcome for metrics/logs. */
  readonly outcome: string;
  /** Who asked, for the audit log: identifiers only, never a token or secret. */
  readonly audit?: TokenRequestAudit;
}

/** Filled in as each fact is established (the client authenticated, the subject verified ...). */
export interface TokenRequestAudit {
  /** The authenticated client; unset when client authentication failed. */
  clientId?: string;
  /** `sub` and `iss` of the verified subject token. */
  subject?: string;
  subjectIssuer?: string;
  /** `sub` of the verified actor token (delegation). */
  actor?: string;
  audiences?: string[];
  resources?: string[];
  scopes?: string[];
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
  b: TokenEndpointSts,
  form: URLSearchParams,
  authorization: string | undefined,
  runtime: Runtime,
): Promise<TokenEndpointAnswer> {
  const audit: TokenRequestAudit = {};
  return { ...(await answerTokenRequest(b, form, authorization, runtime, audit)), audit };
}

async function answerTokenRequest(
  b: TokenEndpointSts,
  form: URLSearchParams,
  authorization: string | undefined,
  runtime: Runtime,
  audit: TokenRequestAudit,
): Promise<TokenEndpointAnswer> {
  const te = b.tokenEndpoint;
  if (!te) return oauthError(400, 'unsupported_grant_type', 'the token endpoint is not enabled');
  for (const k of SINGLE) if (form.getAll(k).length > 1) return oauthError(400, 'invalid_request', `parameter ${k} must not repeat`);
  const client = authenticateClient(te.clients, form, authorization);
  if ('status' in client) return client;
  audit.clientId = client.clientId;
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
  Object.assign(audit, { audiences, resources });
  if (audiences.length + resources.length === 0) return oauthError(400, 'invalid_target', 'audience or resource is required');
  for (const t of [...audiences, ...resources]) {
    // minted into `aud` as is: a target with white space or a control character is no target
    if (!isValidTarget(t)) return oauthError(400, 'invalid_target', 'a target must not contain white space or control characters');
    if (!client.allowed.test(t)) return oauthError(400, 'invalid_target', 'the client may not request this target');
  }
  const scopes = scopeTokens(form.get('scope') ?? '');
  audit.scopes = scopes;
  const requested = form.get('requested_token_type') ?? undefined;

  const subj = await verifyWithIssuers(subjectToken, te.subjectIssuers, runtime);
  if (!subj.ok) return oauthError(400, 'invalid_grant', 'the subject token is not valid');
  const sp = subj.payload;
  if (typeof sp['sub'] === 'string') audit.subject = sp['sub'];
  if (typeof sp['iss'] === 'string') audit.subjectIssuer = sp['iss'];
  let actor: { sub: string; iss?: string } | undefined;
  if (actorToken) {
    if (te.actorIssuers.length === 0 || !te.delegation) return oauthError(400, 'invalid_request', 'delegation is not enabled');
    const act = await verifyWithIssuers(actorToken, te.actorIssuers, runtime);
    if (!act.ok) return oauthError(400, 'invalid_grant', 'the actor token is not valid');
    const asub = typeof act.payload['sub'] === 'string' ? act.payload['sub'] : '';
    const aiss = typeof act.payload['iss'] === 'string' ? act.payload['iss'] : '';
    if (!asub) return oauthError(400, 'invalid_grant', 'the actor token has no sub');
    actor = { sub: asub, iss: aiss };
    audit.actor = asub;
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
