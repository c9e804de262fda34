/**
 * The built-in STS (SecurityTokenService `spec.builtin`): its compile and the minter. It mints
 * RFC 8693 tokens signed with our own keys, in process (no network hop on the Check path) and
 * over HTTP (src/http/sts.ts, token-endpoint.ts). What it mints: iss = our issuer, sub = the
 * user, aud = the target, scopes narrowed to what was requested and the subject held,
 * exp = min(now + lifetime, subject exp), `act` for delegation (RFC 8693 §4.1; an existing
 * chain nests under the new actor, outermost = current actor), no `act` when the actor is the
 * subject, and a jti.
 */
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import type { CompileContext, KindDocument } from '../config/kinds.js';
import { duration, list, num, obj, str, type Schema } from '../config/schema.js';
import type { Runtime } from '../core/runtime.js';
import { LastOutcome, type StatusReport, type StatusReporter } from '../core/status.js';
import { readFileAt, sha256, strs } from './compile-helpers.js';
import { fail, type ExchangeFailure } from './errors.js';
import { loadKey, standInKey, type LoadedKey, type SigningAlg } from './keys.js';
import { scopesOf, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT } from './oauth.js';

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

export class BuiltinSts implements StatusReporter {
  /** Last exchange (the exchange stage records it) and last token-endpoint answer, for GET /status. */
  readonly outcomes = new LastOutcome();
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

  statusReport(): StatusReport {
    return { kind: 'sts', name: this.ref, ok: this.outcomes.ok, details: { type: 'builtin', issuer: this.issuer, activeKeyId: this.active.kid, ...this.outcomes.details() } };
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

// ---------------------------------------------------------------- compile (SecurityTokenService spec.builtin)

interface RawKey {
  kid?: string;
  file?: string;
  algorithm?: SigningAlg;
}

/** `spec.builtin` as written; its `tokenEndpoint` block is compiled by token-endpoint.ts. */
export interface RawBuiltin {
  issuer?: string;
  keys?: RawKey[];
  activeKeyId?: string;
  tokenLifetime?: number;
  maxDelegationDepth?: number;
  copyClaims?: string[];
  tokenEndpoint?: unknown;
}

/** Schema fields of `spec.builtin` other than `tokenEndpoint` (sts.ts adds it). */
export const BUILTIN_FIELDS = {
  issuer: str({ nonEmpty: true, pattern: /^https?:\/\/\S+$/, patternHint: 'must be an http(s) URL' }),
  keys: list(
    obj<RawKey>(
      { kid: str({ nonEmpty: true }), file: str({ nonEmpty: true }), algorithm: str({ enum: ['ES256', 'RS256'] }) as Schema<SigningAlg> },
      { required: ['kid', 'file', 'algorithm'] },
    ),
    { minItems: 1 },
  ),
  activeKeyId: str({ nonEmpty: true }),
  tokenLifetime: duration({ minMs: 1000, maxMs: 86_400_000 }),
  maxDelegationDepth: num({ int: true, min: 1, max: 32 }),
  copyClaims: strs,
};

/** Load the signing keys (`spec.builtin.keys`); undefined after reporting a problem. */
function compileKeys(k: KindDocument, b: RawBuiltin, cc: CompileContext): { keys: LoadedKey[]; material: string[]; activeKid: string } | undefined {
  const keys: LoadedKey[] = [];
  const material: string[] = [];
  const kids = new Set<string>();
  (b.keys ?? []).forEach((rk, i) => {
    const path = ['spec', 'builtin', 'keys', i];
    if (kids.has(rk.kid!)) {
      k.v.error([...path, 'kid'], `duplicate kid ${JSON.stringify(rk.kid)}`);
      return;
    }
    kids.add(rk.kid!);
    const f = readFileAt(k, cc, [...path, 'file'], rk.file!, () => standInKey(rk.algorithm!));
    if (!f) return;
    const r = loadKey(f.text, rk.kid!, rk.algorithm!);
    if (!r.ok) {
      k.v.error([...path, 'file'], r.message);
      return;
    }
    keys.push(r.key);
    material.push(f.text);
  });
  if (keys.length !== (b.keys ?? []).length) return undefined;
  const activeKid = b.activeKeyId ?? keys[0]!.kid;
  const active = keys.find((x) => x.kid === activeKid);
  if (!active) {
    k.v.error(['spec', 'builtin', 'activeKeyId'], `no key with kid ${JSON.stringify(activeKid)}`);
    return undefined;
  }
  if (!active.privateKey) {
    k.v.error(b.activeKeyId ? ['spec', 'builtin', 'activeKeyId'] : ['spec', 'builtin', 'keys', 0, 'file'], `the active key ${JSON.stringify(activeKid)} has no private key (public keys can only be published for rotation)`);
    return undefined;
  }
  return { keys, material, activeKid };
}

/**
 * The minter of `spec.builtin` (shared across reloads while its settings and key files are
 * unchanged) and its identity for exchange cache keys; undefined after reporting a problem.
 */
export function compileBuiltinSts(k: KindDocument, b: RawBuiltin, cc: CompileContext): { id: string; sts: BuiltinSts } | undefined {
  const loaded = compileKeys(k, b, cc);
  if (!loaded) return undefined;
  const { keys, material, activeKid } = loaded;
  const stsOpts = {
    ref: k.ref,
    issuer: b.issuer!,
    keys,
    activeKid,
    tokenLifetimeSec: Math.floor((b.tokenLifetime ?? 300_000) / 1000),
    maxDelegationDepth: b.maxDelegationDepth ?? 4,
    copyClaims: b.copyClaims ?? [],
  };
  const id = sha256('builtin', k.ref, JSON.stringify({ ...b, tokenEndpoint: undefined }), ...material);
  const sts = cc.runtime.shared.get(`exchange:builtin:${id}`, () => new BuiltinSts(stsOpts));
  return { id, sts };
}
