/**
 * The actor of a Delegation (TokenExchangePolicy `spec.actor`): its compile, where its token
 * comes from (a request header such as x-actor-token, with or without `Bearer `, or a file
 * such as a projected service-account token) and how it is validated (JWKS, or Kubernetes
 * TokenReview). The actor token is a credential: it is always validated, never trusted as a
 * plain statement.
 */
import { existsSync } from 'node:fs';
import type { CompileContext, KindDocument } from '../config/kinds.js';
import { duration, obj, str } from '../config/schema.js';
import type { Identity } from '../core/identity.js';
import type { RequestContext } from '../core/context.js';
import type { ReasonCode } from '../core/reasons.js';
import { createJwtValidator } from '../jwt/jwt-validator.js';
import { readTokenFile, sharedTokenFile, type TokenFile } from '../kubernetes/file-token.js';
import { tokenReviewIdentity, type TokenReviewClient } from '../kubernetes/tokenreview.js';
import { compileTokenReviewSettings, TOKENREVIEW_SETTINGS_FIELDS, type RawTokenReviewSettings } from '../kubernetes/tokenreview-settings.js';
import { headerNameOk, httpUrl, strs } from './compile-helpers.js';
import { fail, type ExchangeFailure } from './errors.js';
import { stripBearer, TOKEN_TYPE_JWT } from './oauth.js';

export interface ActorTokenSource {
  /** Lower-case header name, when the actor token comes from the request. */
  readonly header?: string;
  /** File source (re-read on change), when the actor is this workload itself. */
  readonly file?: TokenFile;
}

export function readActorToken(src: ActorTokenSource, ctx: RequestContext): { token: string; location: string } | undefined {
  if (src.header) {
    const v = ctx.header(src.header);
    if (v === undefined) return undefined;
    const t = stripBearer(v);
    return t ? { token: t, location: `header:${src.header}` } : undefined;
  }
  if (src.file) {
    const t = readTokenFile(src.file);
    return t ? { token: t, location: `file:${src.file.path}` } : undefined;
  }
  return undefined;
}

export type ActorResult = { ok: true; identity: Identity } | ExchangeFailure;

export interface ActorValidator {
  readonly kind: 'jwt' | 'tokenReview';
  validate(token: string, location: string, signal: AbortSignal): Promise<ActorResult>;
}

/** What a JWT verifier answers (the surface of src/jwt/jwt-validator.ts). */
export type JwtVerifyFn = (
  token: string,
  signal?: AbortSignal,
) => Promise<{ ok: true; payload: Record<string, unknown> } | { ok: false; reason: ReasonCode | string; message: string }>;

export function jwtActorValidator(ref: string, verify: JwtVerifyFn): ActorValidator {
  return {
    kind: 'jwt',
    async validate(token, location, signal) {
      const r = await verify(token, signal);
      if (!r.ok) {
        // Keys unreachable is an outage, not a bad actor token.
        if (r.reason === 'ERR_JWKS_UNAVAILABLE') return fail('ERR_JWKS_UNAVAILABLE', `actor JWKS unavailable: ${r.message}`);
        return fail('ERR_ACTOR_TOKEN_INVALID', `actor token rejected: ${r.message}`);
      }
      const p = r.payload;
      const iss = typeof p['iss'] === 'string' ? p['iss'] : '';
      const sub = typeof p['sub'] === 'string' ? p['sub'] : '';
      if (!sub) return fail('ERR_ACTOR_TOKEN_INVALID', 'actor token has no sub claim');
      const aud = p['aud'];
      return {
        ok: true,
        identity: {
          kind: 'jwt',
          principal: `${iss}/${sub}`,
          issuer: iss,
          subject: sub,
          audiences: Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : typeof aud === 'string' ? [aud] : [],
          presenter: typeof p['azp'] === 'string' ? p['azp'] : '',
          claims: p,
          token,
          location,
          ...(typeof p['exp'] === 'number' ? { expiresAt: p['exp'] } : {}),
          admittedBy: ref,
        },
      };
    },
  };
}

export function tokenReviewActorValidator(ref: string, client: TokenReviewClient): ActorValidator {
  return {
    kind: 'tokenReview',
    async validate(token, location, signal) {
      const r = await client.review(token, signal);
      if (!r.ok) {
        if (r.kind === 'unavailable') return fail('ERR_EXCHANGE_UNAVAILABLE', `actor TokenReview unavailable: ${r.message}`);
        return fail('ERR_ACTOR_TOKEN_INVALID', `actor token rejected by TokenReview: ${r.message}`);
      }
      return { ok: true, identity: tokenReviewIdentity(r, token, ref, location) };
    },
  };
}

// ---------------------------------------------------------------- compile (TokenExchangePolicy spec.actor)

interface RawJwtValidation {
  issuer?: string;
  audiences?: string[];
  jwksUri?: string;
  jwks?: string;
  timeout?: number;
}
interface RawTokenReview extends RawTokenReviewSettings {
  audiences?: string[];
}
export interface RawActor {
  header?: string;
  file?: string;
  jwt?: RawJwtValidation;
  tokenReview?: RawTokenReview;
  tokenType?: string;
}

export const actorSchema = obj<RawActor>({
  header: str({ nonEmpty: true }),
  file: str({ nonEmpty: true }),
  jwt: obj<RawJwtValidation>(
    { issuer: str({ nonEmpty: true }), audiences: strs, jwksUri: httpUrl(), jwks: str({ nonEmpty: true }), timeout: duration({ minMs: 1, maxMs: 60_000 }) },
    { required: ['issuer'] },
  ),
  tokenReview: obj<RawTokenReview>({ ...TOKENREVIEW_SETTINGS_FIELDS, audiences: strs }),
  tokenType: str({ nonEmpty: true }),
});

export interface CompiledActor {
  readonly source: ActorTokenSource;
  readonly validator: ActorValidator;
  /** RFC 8693 actor_token_type sent to a remote STS. */
  readonly tokenType: string;
}

function compileSource(a: RawActor, k: KindDocument, cc: CompileContext): ActorTokenSource | undefined {
  const v = k.v;
  if (a.header) {
    const h = a.header.toLowerCase();
    return headerNameOk(v, ['spec', 'actor', 'header'], h) ? { header: h } : undefined;
  }
  if (a.file) {
    const abs = cc.resolvePath(k.doc, a.file);
    if (!existsSync(abs)) v.warn(['spec', 'actor', 'file'], `file ${JSON.stringify(a.file)} does not exist yet; delegation is refused (401) until it does`);
    return { file: sharedTokenFile(cc.runtime, abs) };
  }
  return undefined;
}

function compileJwt(j: RawJwtValidation, k: KindDocument, cc: CompileContext): ActorValidator | undefined {
  const v = k.v;
  if (j.jwks && j.jwksUri) v.error(['spec', 'actor', 'jwt', 'jwks'], 'set only one of jwks or jwksUri');
  if (!j.audiences || j.audiences.length === 0) v.warn(['spec', 'actor', 'jwt', 'audiences'], 'without audiences any token of this issuer (e.g. one meant for another service) is admitted as the actor');
  if (j.jwks) {
    try {
      JSON.parse(j.jwks);
    } catch {
      v.error(['spec', 'actor', 'jwt', 'jwks'], 'must be a JSON Web Key Set');
    }
  }
  if (v.hasErrors) return undefined;
  // Verified exactly like jwtRules (Envoy semantics, shared JWKS sources); without jwks or
  // jwksUri the keys come from the issuer's OIDC discovery.
  const jwt = createJwtValidator(cc.runtime, {
    issuer: j.issuer!,
    ...(j.audiences ? { audiences: j.audiences } : {}),
    ...(j.jwksUri ? { jwksUri: j.jwksUri } : {}),
    ...(j.jwks ? { jwks: j.jwks } : {}),
    ...(j.timeout ? { timeoutMs: j.timeout } : {}),
  });
  return jwtActorValidator(k.ref, (token, signal) => jwt.verify(token, signal));
}

/**
 * `spec.actor` of a policy in `mode`: null when there is no usable actor (Impersonation, or
 * errors reported on the document). Delegation requires one; Impersonation ignores it.
 */
export function compileActor(a: RawActor | undefined, mode: 'Impersonation' | 'Delegation', k: KindDocument, cc: CompileContext): CompiledActor | null {
  const v = k.v;
  if (mode === 'Delegation' && !a) v.error(['spec', 'actor'], 'required when mode is Delegation (where the actor token comes from and how it is validated)');
  if (!a) return null;
  if (mode === 'Impersonation') v.warn(['spec', 'actor'], 'ignored when mode is Impersonation');
  if ((a.header ? 1 : 0) + (a.file ? 1 : 0) !== 1) v.error(['spec', 'actor'], 'exactly one of header or file must be set');
  if ((a.jwt ? 1 : 0) + (a.tokenReview ? 1 : 0) !== 1) v.error(['spec', 'actor'], 'exactly one of jwt or tokenReview must be set (the actor token is always validated)');
  const source = compileSource(a, k, cc);
  let validator: ActorValidator | undefined;
  if (a.jwt) {
    validator = compileJwt(a.jwt, k, cc);
  } else if (a.tokenReview) {
    const t = a.tokenReview;
    if (!t.audiences || t.audiences.length === 0) v.warn(['spec', 'actor', 'tokenReview', 'audiences'], 'without audiences any token the API server accepts (e.g. one meant for another service) is admitted; set the audience the agent requests its projected token for');
    const site = { v, path: ['spec', 'actor', 'tokenReview'], resolvePath: (p: string) => cc.resolvePath(k.doc, p), outsideCluster: cc.outsideCluster === true };
    const client = compileTokenReviewSettings(t, t.audiences ?? [], site, cc.runtime);
    if (client) validator = tokenReviewActorValidator(k.ref, client);
  }
  return source && validator && mode === 'Delegation' ? { source, validator, tokenType: a.tokenType ?? TOKEN_TYPE_JWT } : null;
}
