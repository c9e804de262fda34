/**
 * The jwtRules member of the credential chain: Envoy jwt_authn as Istio configures it for
 * the applying RequestAuthentications (one provider per jwtRule, `requires_any: [rule...,
 * allow_missing]`, CORS preflight bypass).
 *
 * Per rule (Envoy ProviderVerifier): tokens are taken from the rule's locations (default
 * `Authorization: Bearer ` and `?access_token=`); none = JwtMissed; otherwise every token
 * must verify (a token with another `iss` is JwtUnknownIssuer for this rule).
 * Across rules (Envoy AnyVerifier, envoy verifier.cc): the first rule that passes wins;
 * if none passes the final status is the last status that is neither JwtMissed nor
 * JwtUnknownIssuer, else JwtUnknownIssuer if any, else JwtMissed — and JwtMissed is
 * allowed (anonymous; requiring a token is AuthorizationPolicy's job).
 */
import type { Identity } from '../core/identity.js';
import { deny, type CheckState, type Deny, type Trace } from '../core/state.js';
import { isCorsPreflight, removeCookie } from '../core/context.js';
import { ABSTAIN, type CredentialValidatorMember, type ValidatorResult } from './chain.js';
import { claimHeaderValue, getClaim, splitSpaceDelimited } from './claims.js';
import { realmOf } from './credential-common.js';
import type { AdmitMemo, CompiledJwtRule } from './request-authentication.js';
import { extractTokens, type FoundToken } from './token-extraction.js';
import type { TypeParts, ValidatorTypeDef } from './validator-type.js';
import { JWT_STATUS, parseJwt, reasonForStatus, type JwtStatus, type ParsedJwt } from '../jwt/jwt-format.js';
import type { VerifiedEntry, VerifyOutcome } from '../jwt/verifier.js';

export interface JwtDenyOptions {
  readonly jwksUnavailableStatus: 401 | 503;
}

/** How the jwtRules member shares the request with other credential validators. */
export interface JwtMemberOptions extends JwtDenyOptions {
  /** Headers (lower-case) where non-JWT-shaped values belong to API-key / shared-token validators. */
  readonly nonJwtHeaders?: ReadonlySet<string>;
  /**
   * A later validator also takes JWTs (Kubernetes service-account tokens): a token whose
   * issuer matches no rule is then a soft reject, so that validator may still admit it.
   */
  readonly unknownIssuerSoft?: boolean;
}

/**
 * Envoy's deny for a final status: 401 (403 for audiences) with its status string and
 * `www-authenticate: Bearer realm="<scheme>://<host><path>"` + `, error="invalid_token"`
 * (unless missing). Deviations: no query in the realm; JwksFetchFail is 503 by default.
 */
export function jwtDeny(state: CheckState, status: JwtStatus, message: string, opts: JwtDenyOptions, rule?: CompiledJwtRule): Deny {
  const reason = reasonForStatus(status);
  const body = JWT_STATUS[status];
  const http = status === 'JwksFetchFail' ? opts.jwksUnavailableStatus : status === 'JwtAudienceNotAllowed' ? 403 : 401;
  let headers: [string, string][] = [];
  if (http !== 503) {
    let v = `Bearer realm="${realmOf(state)}"`;
    if (status !== 'JwtMissed') v += ', error="invalid_token"';
    headers = [['www-authenticate', v]];
  }
  return deny(reason, message, { body, status: http, headers, policy: rule?.ref, rule: rule?.index });
}

function buildIdentity(rule: CompiledJwtRule, jwt: ParsedJwt, found: FoundToken): Identity {
  const azp = jwt.payload['azp'];
  return Object.freeze({
    kind: 'jwt',
    principal: `${jwt.iss}/${jwt.sub}`,
    issuer: jwt.iss,
    subject: jwt.sub,
    audiences: Object.freeze([...jwt.audiences]),
    presenter: typeof azp === 'string' ? azp : '',
    claims: Object.freeze(splitSpaceDelimited(jwt.payload, rule.spaceDelimitedClaims)),
    token: found.token,
    location: found.location.label,
    expiresAt: jwt.exp || undefined,
    admittedBy: rule.id,
  });
}

/** Envoy's payload and claim headers for a verified token (rule order; absent claims skipped). */
function outputHeaders(rule: CompiledJwtRule, jwt: ParsedJwt): string[] {
  const h: string[] = [];
  if (rule.outputPayloadToHeader) h.push(rule.outputPayloadToHeader, jwt.payloadB64);
  for (const c of rule.outputClaimToHeaders) {
    const v = claimHeaderValue(getClaim(jwt.payload, c.path));
    if (v !== undefined) h.push(c.header, v);
  }
  return h;
}

/** The rule's memo for a cached token at this location, built on first use (rule.admitMemos). */
function memoFor(rule: CompiledJwtRule, found: FoundToken, entry: VerifiedEntry): AdmitMemo {
  const m = rule.admitMemos.get(entry);
  if (m !== undefined && m.label === found.location.label) return m;
  const identity = buildIdentity(rule, entry.jwt, found);
  const memo: AdmitMemo = Object.freeze({
    label: found.location.label,
    identity,
    headers: Object.freeze(outputHeaders(rule, entry.jwt)),
    single: Object.freeze({ kind: 'admit' as const, identities: Object.freeze([identity]) }),
  });
  rule.admitMemos.set(entry, memo);
  return memo;
}

interface Verified {
  readonly found: FoundToken;
  readonly jwt: ParsedJwt;
  /** Set when the token came from the verified-token cache (its memo is then used). */
  readonly entry?: VerifiedEntry;
}

function traceVerified(trace: Trace, rule: CompiledJwtRule, found: FoundToken, keyId: string, alg: string, cached: boolean): void {
  trace.add('authn', `${rule.id}: token at ${found.location.label} verified with key ${keyId} (${alg}) from ${rule.verifier.source.description}${cached ? ' [cached]' : ''}`);
}

function traceNoToken(trace: Trace, rule: CompiledJwtRule): void {
  trace.add('authn', `${rule.id}: no token at ${rule.locations.map((l) => l.label).join(', ')}`);
}


/** The jwtRules member of the credential chain for one request's workload. */
export class JwtRulesMember implements CredentialValidatorMember {
  readonly name = 'jwtRules';
  constructor(
    private readonly rules: readonly CompiledJwtRule[],
    private readonly opts: JwtMemberOptions,
  ) {}

  /**
   * Envoy sanitizePayloadHeaders: inbound copies of output headers never reach upstream,
   * whether or not a token is present (a client must not be able to forge them).
   */
  sanitize(state: CheckState): void {
    const rules = this.rules;
    for (let i = 0; i < rules.length; i++) {
      const r = rules[i]!;
      if (r.outputPayloadToHeader) state.upstream.removeHeader(r.outputPayloadToHeader);
      const out = r.outputClaimToHeaders;
      for (let j = 0; j < out.length; j++) state.upstream.removeHeader(out[j]!.header);
    }
  }

  /**
   * Synchronous when the first rule that finds tokens finds only verified-token cache hits
   * (the common case: a repeated token; fromCache()); otherwise validateSlow() starts over
   * from the first rule, with the same outcome it would have had alone.
   */
  validate(state: CheckState): ValidatorResult | Promise<ValidatorResult> {
    const rules = this.rules;
    const trace = state.trace;
    // sanitize() has run already: the chain sanitizes every member before any validates.
    if (isCorsPreflight(state)) {
      trace?.add('authn', 'CORS preflight (OPTIONS with origin and access-control-request-method): JWT checks skipped');
      return ABSTAIN;
    }
    trace?.add('authn', `jwtRules in force: ${rules.map((r) => `${r.id} (issuer ${JSON.stringify(r.issuer)})`).join(', ')}`);
    return this.fromCache(state) ?? this.validateSlow(state);
  }

  /**
   * The answer from the verified-token cache alone: the cache is probed with the raw tokens,
   * before any parsing, and the Identity and header values memoised for the rule are reused.
   * undefined as soon as a token is not a valid hit; until then nothing has been counted,
   * traced or changed (probe() changes nothing), so the slow path can start over.
   */
  private fromCache(state: CheckState): ValidatorResult | undefined {
    const rules = this.rules;
    const trace = state.trace;
    for (let ri = 0; ri < rules.length; ri++) {
      const rule = rules[ri]!;
      const tokens = extractTokens(state, rule.locations, this.opts.nonJwtHeaders);
      if (tokens.length === 0) continue; // JwtMissed never overrides anything
      if (tokens.length === 1) {
        const found = tokens[0]!;
        const hit = rule.verifier.probe(found.token);
        if (typeof hit !== 'object') return undefined;
        if (trace) {
          for (let i = 0; i < ri; i++) traceNoToken(trace, rules[i]!);
          traceVerified(trace, rule, found, hit.keyId, hit.jwt.alg, true);
        }
        rule.verifier.accept(hit);
        return this.admitOne(state, rule, found, hit);
      }
      const verified: Verified[] = [];
      for (let ti = 0; ti < tokens.length; ti++) {
        const found = tokens[ti]!;
        const hit = rule.verifier.probe(found.token);
        if (typeof hit !== 'object') return undefined;
        verified.push({ found, jwt: hit.jwt, entry: hit });
      }
      if (trace) for (let i = 0; i < ri; i++) traceNoToken(trace, rules[i]!);
      for (const v of verified) {
        if (trace) traceVerified(trace, rule, v.found, v.entry!.keyId, v.jwt.alg, true);
        rule.verifier.accept(v.entry!);
      }
      return this.admit(state, rule, verified);
    }
    if (trace) {
      for (const r of rules) traceNoToken(trace, r);
      trace.add('authn', 'no JWT presented: request continues without identity (allow_missing)');
    }
    return ABSTAIN;
  }

  /**
   * Every rule, every token, each through JwtVerifier.verify() (which answers from the
   * verified-token cache when it can).
   *
   * Per rule (Envoy ProviderVerifier) every token must verify; across rules (AnyVerifier)
   * the first rule that passes wins, else the last real error, else JwtUnknownIssuer, else
   * JwtMissed (allowed).
   */
  private async validateSlow(state: CheckState): Promise<ValidatorResult> {
    const rules = this.rules;
    const trace = state.trace;
    const parsed = new Map<string, ParsedJwt | { status: JwtStatus }>();
    const parseOnce = (t: string) => {
      let p = parsed.get(t);
      if (!p) {
        p = parseJwt(t);
        parsed.set(t, p);
      }
      return p;
    };
    let final: JwtStatus = 'JwtMissed';
    let finalRule: CompiledJwtRule | undefined;
    let finalDetail = '';
    for (let ri = 0; ri < rules.length; ri++) {
      const rule = rules[ri]!;
      const tokens = extractTokens(state, rule.locations, this.opts.nonJwtHeaders);
      if (tokens.length === 0) {
        if (trace) traceNoToken(trace, rule);
        continue; // JwtMissed never overrides anything
      }
      let failed: { status: JwtStatus; detail: string } | null = null;
      const verified: Verified[] = [];
      for (let ti = 0; ti < tokens.length; ti++) {
        const found = tokens[ti]!;
        // A token that is not in the cache: its issuer first, without touching the verifier
        // (cheap, and no metrics noise for a token meant for another rule).
        const p = rule.issuer !== '' && rule.verifier.probe(found.token) === undefined ? parseOnce(found.token) : undefined;
        let outcome: VerifyOutcome;
        if (p !== undefined && !('status' in p) && p.iss !== rule.issuer) outcome = { ok: false, status: 'JwtUnknownIssuer', jwt: p };
        else outcome = await rule.verifier.verify(found.token, () => state.signal, p);
        if (!outcome.ok) {
          failed = { status: outcome.status, detail: outcome.detail ?? '' };
          trace?.add(
            'authn',
            `${rule.id}: token at ${found.location.label} rejected: ${JWT_STATUS[outcome.status]}${outcome.detail ? ` (${outcome.detail})` : ''}${
              outcome.status === 'JwtUnknownIssuer' && outcome.jwt ? ` (token iss ${JSON.stringify(outcome.jwt.iss)})` : ''
            }`,
          );
          break; // Envoy: all tokens at a provider's locations must pass
        }
        verified.push({ found, jwt: outcome.jwt, entry: outcome.entry });
        if (trace) traceVerified(trace, rule, found, outcome.keyId, outcome.jwt.alg, outcome.cached);
      }
      if (!failed) return this.admit(state, rule, verified);
      // Envoy AnyVerifier aggregation: prefer real errors over unknown issuer over missing.
      if ((failed.status !== 'JwtUnknownIssuer' && failed.status !== 'JwtMissed') || final === 'JwtMissed') {
        final = failed.status;
        finalRule = rule;
        finalDetail = failed.detail;
      }
    }
    if (final === 'JwtMissed') {
      trace?.add('authn', 'no JWT presented: request continues without identity (allow_missing)');
      return ABSTAIN;
    }
    const d = jwtDeny(state, final, `${JWT_STATUS[final]}${finalDetail ? ` (${finalDetail})` : ''}${finalRule ? ` [${finalRule.id}]` : ''}`, this.opts, finalRule);
    if (final === 'JwtUnknownIssuer' && this.opts.unknownIssuerSoft) {
      trace?.add('authn', 'token issuer matches no jwtRule: left to the next validator');
      return { kind: 'reject', deny: d, soft: true };
    }
    trace?.add('authn', `denied ${d.status ?? ''}: ${d.body}`);
    return { kind: 'reject', deny: d };
  }

  /** admit() for one cached token: the memo's Identity, header values and result. */
  private admitOne(state: CheckState, rule: CompiledJwtRule, found: FoundToken, entry: VerifiedEntry): ValidatorResult {
    const m = memoFor(rule, found, entry);
    const up = state.upstream;
    const l = found.location;
    if (!rule.forwardOriginalToken && l.kind === 'header') up.removeHeader(l.name);
    else if (!rule.forwardOriginalToken && l.kind === 'param') up.removeQueryParam(l.name, state.ctx.queryParamNamesAsSent(l.name));
    const h = m.headers;
    for (let i = 0; i < h.length; i += 2) up.setHeader(h[i]!, h[i + 1]!);
    if (!rule.forwardOriginalToken && l.kind === 'cookie') removeCookies(state, [l.name]);
    if (this.rules.length > 1) this.stripOtherRules(state, rule);
    return m.single;
  }

  private admit(state: CheckState, rule: CompiledJwtRule, verified: readonly Verified[]): ValidatorResult {
    const identities: Identity[] = [];
    const up = state.upstream;
    const cookiesToRemove: string[] = [];
    for (const { found, jwt, entry } of verified) {
      let identity: Identity;
      let headers: readonly string[];
      if (entry) {
        const m = memoFor(rule, found, entry);
        identity = m.identity;
        headers = m.headers;
      } else {
        identity = buildIdentity(rule, jwt, found);
        headers = outputHeaders(rule, jwt);
      }
      identities.push(identity);
      if (!rule.forwardOriginalToken) {
        const l = found.location;
        if (l.kind === 'header') up.removeHeader(l.name);
        else if (l.kind === 'param') up.removeQueryParam(l.name, state.ctx.queryParamNamesAsSent(l.name));
        else cookiesToRemove.push(l.name);
      }
      for (let i = 0; i < headers.length; i += 2) up.setHeader(headers[i]!, headers[i + 1]!);
    }
    if (cookiesToRemove.length > 0) removeCookies(state, cookiesToRemove);
    if (this.rules.length > 1) this.stripOtherRules(state, rule);
    return { kind: 'admit', identities };
  }

  /**
   * The first rule that passes admits, so the tokens at the other rules' locations are never
   * verified; without forwardOriginalToken they are removed all the same (Envoy removes each
   * provider's token when it verifies it), so a second copy of a user token, at another
   * rule's header, parameter or cookie, never travels upstream. A location of the admitting
   * rule is left as that rule says.
   */
  private stripOtherRules(state: CheckState, admitted: CompiledJwtRule): void {
    const up = state.upstream;
    let cookies: string[] | null = null;
    for (const r of this.rules) {
      if (r === admitted || r.forwardOriginalToken) continue;
      for (const { location: l } of extractTokens(state, r.locations, this.opts.nonJwtHeaders)) {
        if (admitted.locations.some((a) => a.kind === l.kind && a.name === l.name)) continue;
        if (l.kind === 'header') up.removeHeader(l.name);
        else if (l.kind === 'param') up.removeQueryParam(l.name, state.ctx.queryParamNamesAsSent(l.name));
        else (cookies ??= []).push(l.name);
      }
    }
    if (cookies) removeCookies(state, cookies);
  }
}

/** Envoy leaves cookie tokens in place; we drop just those cookies (other cookies stay). */
function removeCookies(state: CheckState, names: readonly string[]): void {
  const up = state.upstream;
  let cookie = up.set.get('cookie') ?? state.ctx.header('cookie') ?? '';
  for (const n of names) cookie = removeCookie(cookie, n);
  if (cookie) up.setHeader('cookie', cookie);
  else {
    up.set.delete('cookie');
    up.removeHeader('cookie');
  }
}

const NO_PARTS: TypeParts = Object.freeze({ member: null, locations: Object.freeze([]), opaqueHeaders: Object.freeze([]), takesJwt: false });

/**
 * CredentialValidator `type: JWT`: no settings of its own; it places (by `order`) and may
 * require the jwtRules member, which the applying RequestAuthentications make.
 */
export const JWT_TYPE: ValidatorTypeDef<undefined> = {
  block: null,
  schema: null,
  defaultIssuer: () => '',
  checkShared(spec, k) {
    if (spec.match) k.v.error(['spec', 'match'], 'type: JWT takes no match: the jwtRules apply as their RequestAuthentication says');
    if (spec.issuer) k.v.error(['spec', 'issuer'], 'type: JWT takes no issuer: it comes from the token');
    if (spec.forwardClaims) k.v.error(['spec', 'forwardClaims'], 'type: JWT takes no forwardClaims: use outputClaimToHeaders in the RequestAuthentication');
  },
  compile: () => NO_PARTS,
};
