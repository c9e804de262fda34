/**
 * The actor: where its token comes from (a request header such as x-actor-token, with
 * or without `Bearer `, or a file such as a projected service-account token) and how it
 * is validated (JWKS, or Kubernetes TokenReview). The actor token is a credential: it is
 * always validated, never trusted as a plain statement.
 */
import type { Identity } from '../core/identity.js';
import type { RequestContext } from '../core/context.js';
import type { ReasonCode } from '../core/reasons.js';
import { fail, type ExchangeFailure } from './errors.js';
import { readTokenFile, type TokenFile } from '../kubernetes/file-token.js';
import { tokenReviewIdentity, type TokenReviewClient } from '../kubernetes/tokenreview.js';
import { stripBearer } from './util.js';

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

/** What a JWT verifier answers (the agreed surface of src/authn/jwt-validator.ts). */
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
