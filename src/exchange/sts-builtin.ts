/**
 * The built-in STS: mints RFC 8693 tokens signed with our own keys, in process (no
 * network hop on the Check path) and over HTTP (src/http/sts.ts). What it mints
 *: iss = our issuer, sub = the user, aud = the target, scopes narrowed
 * to what was requested and the subject held, exp = min(now + lifetime, subject exp),
 * `act` for delegation (RFC 8693 §4.1; an existing chain nests under the new actor,
 * outermost = current actor), no `act` when the actor is the subject, and a jti.
 */
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import type { Runtime } from '../core/runtime.js';
import { fail, type ExchangeFailure } from './errors.js';
import type { LoadedKey } from './keys.js';
import { scopesOf, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT } from './util.js';

export interface BuiltinStsOptions {
  /** `namespace/name` of the SecurityTokenService. */
  readonly ref: string;
  readonly issuer: string;
  readonly keys: readonly LoadedKey[];
  readonly activeKid: string;
  readonly tokenLifetimeSec: number;
  readonly maxDelegationDepth: number;
  /** Subject claims copied into minted tokens (e.g. email, name). */
  readonly copyClaims: readonly string[];
}

export interface ActorRef {
  readonly sub: string;
  readonly iss?: string;
}

export interface MintRequest {
  /** Verified claims of the subject token. */
  readonly subjectClaims: Readonly<Record<string, unknown>>;
  /** Subject expiry (s), when known. */
  readonly subjectExp?: number;
  /** The validated actor (delegation); undefined for impersonation. */
  readonly actor?: ActorRef;
  readonly audiences: readonly string[];
  readonly resources: readonly string[];
  readonly scopes: readonly string[];
  readonly requestedTokenType?: string;
  /** Extra claims (e.g. client_id over HTTP). */
  readonly extraClaims?: Readonly<Record<string, unknown>>;
}

export interface IssuedToken {
  readonly ok: true;
  readonly accessToken: string;
  readonly issuedTokenType: string;
  readonly tokenType: 'Bearer';
  /** Absolute expiry (s since epoch). */
  readonly expiresAt: number;
  readonly expiresIn: number;
  readonly scopes: readonly string[];
}

/** Depth of an `act` chain: {sub} = 1, {sub, act: {sub}} = 2 ... */
export function actDepth(act: unknown): number {
  let d = 0;
  let cur = act;
  while (cur && typeof cur === 'object' && !Array.isArray(cur)) {
    d++;
    cur = (cur as Record<string, unknown>)['act'];
    if (d > 64) break;
  }
  return d;
}

export class BuiltinSts {
  readonly ref: string;
  readonly issuer: string;
  readonly jwks: { keys: Readonly<Record<string, unknown>>[] };
  private readonly active: LoadedKey;
  constructor(readonly opts: BuiltinStsOptions) {
    this.ref = opts.ref;
    this.issuer = opts.issuer;
    this.jwks = { keys: opts.keys.map((k) => k.publicJwk) };
    const a = opts.keys.find((k) => k.kid === opts.activeKid && k.privateKey);
    if (!a) throw new Error(`no usable active key ${opts.activeKid}`);
    this.active = a;
  }

  get activeAlg(): string {
    return this.active.alg;
  }

  /**
   * OpenID-style discovery document; URLs derive from the issuer (serve the HTTP port at the
   * issuer URL). The token endpoint is advertised only when it is enabled, so clients never
   * discover an endpoint that answers 404.
   */
  discovery(tokenEndpointEnabled = true): Record<string, unknown> {
    const base = this.issuer.replace(/\/+$/, '');
    const algs = [...new Set(this.opts.keys.map((k) => k.alg))];
    const doc: Record<string, unknown> = {
      issuer: this.issuer,
      jwks_uri: `${base}/.well-known/jwks.json`,
      id_token_signing_alg_values_supported: algs,
      response_types_supported: ['token'],
      subject_types_supported: ['public'],
    };
    if (tokenEndpointEnabled) {
      doc['token_endpoint'] = `${base}/oauth2/token`;
      doc['grant_types_supported'] = ['urn:ietf:params:oauth:grant-type:token-exchange'];
      doc['token_endpoint_auth_methods_supported'] = ['client_secret_basic', 'client_secret_post'];
    }
    return doc;
  }

  async mint(req: MintRequest, runtime: Runtime): Promise<IssuedToken | ExchangeFailure> {
    const sub = req.subjectClaims['sub'];
    if (typeof sub !== 'string' || !sub) return fail('ERR_EXCHANGE_REFUSED', 'subject token has no sub claim', 'invalid_grant');
    const tokenType = req.requestedTokenType ?? TOKEN_TYPE_ACCESS_TOKEN;
    if (tokenType !== TOKEN_TYPE_ACCESS_TOKEN && tokenType !== TOKEN_TYPE_JWT) {
      return fail('ERR_EXCHANGE_REFUSED', 'requested token type is not supported by the built-in STS', 'invalid_request');
    }
    const audiences = [...new Set([...req.audiences, ...req.resources])];
    if (audiences.length === 0) return fail('ERR_EXCHANGE_REFUSED', 'no audience or resource requested', 'invalid_target');
    // Scopes are narrowed: only what was requested AND what the subject already held.
    const held = scopesOf(req.subjectClaims);
    const granted = req.scopes.filter((s) => held.has(s));
    if (req.scopes.length > 0 && granted.length === 0) {
      return fail('ERR_EXCHANGE_REFUSED', 'the subject holds none of the requested scopes', 'invalid_scope');
    }
    const nowSec = Math.floor(runtime.now() / 1000);
    let exp = nowSec + this.opts.tokenLifetimeSec;
    if (req.subjectExp !== undefined) exp = Math.min(exp, Math.floor(req.subjectExp));
    if (exp <= nowSec) return fail('ERR_EXCHANGE_REFUSED', 'the subject token has expired', 'invalid_grant');

    const claims: Record<string, unknown> = {};
    for (const c of this.opts.copyClaims) if (req.subjectClaims[c] !== undefined) claims[c] = req.subjectClaims[c];
    if (req.extraClaims) Object.assign(claims, req.extraClaims);
    if (granted.length > 0) claims['scope'] = granted.join(' ');
    const prevAct = req.subjectClaims['act'];
    // Actor == subject only when sub AND issuer are exactly equal (no wildcard for a missing
    // issuer): then no new `act` link. Callers run the delegation check before minting.
    const subjectIss = typeof req.subjectClaims['iss'] === 'string' ? req.subjectClaims['iss'] : '';
    const actorIsSubject = req.actor !== undefined && req.actor.sub === sub && (req.actor.iss ?? '') === subjectIss;
    if (req.actor && !actorIsSubject) {
      const act: Record<string, unknown> = { sub: req.actor.sub };
      if (req.actor.iss) act['iss'] = req.actor.iss;
      if (prevAct && typeof prevAct === 'object' && !Array.isArray(prevAct)) act['act'] = prevAct;
      if (actDepth(act) > this.opts.maxDelegationDepth) {
        return fail('ERR_DELEGATION_DENIED', `delegation chain deeper than maxDelegationDepth ${this.opts.maxDelegationDepth}`);
      }
      claims['act'] = act;
    } else if (prevAct && typeof prevAct === 'object' && !Array.isArray(prevAct)) {
      // Actor == subject (or impersonation of a token that already records a chain): keep
      // the recorded chain as is, so the audit trail is not lost; add no new link.
      claims['act'] = prevAct;
    }
    const jwt = await new SignJWT(claims)
      .setProtectedHeader({ alg: this.active.alg, kid: this.active.kid, typ: tokenType === TOKEN_TYPE_ACCESS_TOKEN ? 'at+jwt' : 'JWT' })
      .setIssuer(this.issuer)
      .setSubject(sub)
      .setAudience(audiences.length === 1 ? audiences[0]! : audiences)
      .setIssuedAt(nowSec)
      .setNotBefore(nowSec)
      .setExpirationTime(exp)
      .setJti(randomUUID())
      .sign(this.active.privateKey!);
    return {
      ok: true,
      accessToken: jwt,
      issuedTokenType: tokenType,
      tokenType: 'Bearer',
      expiresAt: exp,
      expiresIn: exp - nowSec,
      scopes: granted,
    };
  }
}
