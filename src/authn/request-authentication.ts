/**
 * Istio RequestAuthentication as Envoy's jwt_authn runs it when Istio configures it
 *: one provider per jwtRule, `requires_any: [rule..., allow_missing]`,
 * CORS preflight bypass.
 *
 * Per rule (Envoy ProviderVerifier): tokens are taken from the rule's locations (default
 * `Authorization: Bearer ` and `?access_token=`); none = JwtMissed; otherwise every token
 * must verify (a token with another `iss` is JwtUnknownIssuer for this rule).
 * Across rules (Envoy AnyVerifier, envoy verifier.cc): the first rule that passes wins;
 * if none passes the final status is the last status that is neither JwtMissed nor
 * JwtUnknownIssuer, else JwtUnknownIssuer if any, else JwtMissed — and JwtMissed is
 * allowed (anonymous; requiring a token is AuthorizationPolicy's job).
 */
import type { CompileContext } from '../config/kinds.js';
import type { KindDocument } from '../config/kinds.js';
import { bool, duration, list, obj, str, type Schema } from '../config/schema.js';
import { parseScope, ScopedIndex, type CompiledScope } from '../config/scope.js';
import type { Workload } from '../core/context.js';
import type { Identity } from '../core/identity.js';
import { deny, NO_TOKEN_LOCATIONS, type CheckState, type Deny, type TokenLocation, type Trace } from '../core/state.js';
import { isCorsPreflight, removeCookie } from '../core/context.js';
import { ABSTAIN, type CredentialValidatorMember, type ValidatorResult } from './chain.js';
import { claimHeaderValue, DEFAULT_SPACE_DELIMITED, getClaim, splitSpaceDelimited } from './claims.js';
import { DEFAULT_JWKS_TIMEOUT_MS, type JwksTuning } from '../jwt/jwks-source.js';
import { isJwtShaped, JWT_STATUS, parseJwt, reasonForStatus, type JwtStatus, type ParsedJwt } from '../jwt/jwt-format.js';
import { createKeySource } from '../jwt/jwt-validator.js';
import { JwtVerifier, sharedVerifiedCache, type VerifiedEntry, type VerifyOutcome } from '../jwt/verifier.js';

interface RawHeaderLocation {
  name?: string;
  prefix?: string;
}
interface RawClaimToHeader {
  header?: string;
  claim?: string;
}
interface RawJwtRule {
  issuer?: string;
  audiences?: string[];
  jwksUri?: string;
  jwks?: string;
  fromHeaders?: RawHeaderLocation[];
  fromParams?: string[];
  fromCookies?: string[];
  forwardOriginalToken?: boolean;
  outputPayloadToHeader?: string;
  outputClaimToHeaders?: RawClaimToHeader[];
  timeout?: number;
  spaceDelimitedClaims?: string[];
}
interface RawSpec {
  selector?: unknown;
  targetRef?: unknown;
  targetRefs?: unknown;
  jwtRules?: RawJwtRule[];
}

/** Istio's CRD pattern for claim header names (ValidateStrictHTTPHeaderName). */
const HEADER_NAME = /^[-_A-Za-z0-9]+$/;

const jwtRuleSchema: Schema<RawJwtRule> = obj<RawJwtRule>({
  issuer: str(),
  audiences: list(str()),
  jwksUri: str(),
  jwks: str(),
  fromHeaders: list(obj<RawHeaderLocation>({ name: str(), prefix: str() })),
  fromParams: list(str()),
  fromCookies: list(str()),
  forwardOriginalToken: bool(),
  outputPayloadToHeader: str(),
  outputClaimToHeaders: list(obj<RawClaimToHeader>({ header: str(), claim: str() })),
  timeout: duration(),
  spaceDelimitedClaims: list(str()),
});

const specSchema: Schema<RawSpec> = obj<RawSpec>({
  selector: { typeName: 'mapping', parse: (v) => v },
  targetRef: { typeName: 'mapping', parse: (v) => v },
  targetRefs: { typeName: 'list', parse: (v) => v },
  jwtRules: list(jwtRuleSchema),
});

export type { TokenLocation };

export interface CompiledJwtRule {
  /** `namespace/name` of the RequestAuthentication. */
  readonly ref: string;
  readonly index: number;
  /** `ns/name jwtRules[i]` (Identity.admittedBy, --explain). */
  readonly id: string;
  /** Unique in the process (compiled rules are immutable): tags what is memoized per rule. */
  readonly serial: number;
  readonly issuer: string;
  readonly locations: readonly TokenLocation[];
  readonly forwardOriginalToken: boolean;
  readonly outputPayloadToHeader: string | null;
  readonly outputClaimToHeaders: readonly { readonly header: string; readonly path: readonly string[] }[];
  readonly spaceDelimitedClaims: readonly string[];
  readonly verifier: JwtVerifier;
}

export interface CompiledRequestAuthentication {
  readonly ref: string;
  readonly scope: CompiledScope;
  readonly rules: readonly CompiledJwtRule[];
}

export const DEFAULT_LOCATIONS: readonly TokenLocation[] = Object.freeze([
  { kind: 'header', name: 'authorization', prefix: 'Bearer ', label: 'header:authorization' },
  { kind: 'param', name: 'access_token', prefix: '', label: 'param:access_token' },
] as const);

function validJwksUri(u: string): string | null {
  if (u.length > 2048) return 'jwksUri must be at most 2048 characters';
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    // Not echoed: the value may carry credentials (validate output ends up in logs).
    return 'invalid jwksUri: not a URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `URI scheme ${JSON.stringify(url.protocol.slice(0, -1))} is not supported (use http or https)`;
  if (!url.hostname) return 'jwksUri must have a host';
  return null;
}

let ruleSerial = 0;

/** Compile one RequestAuthentication; reports issues on `k.v`; undefined when invalid. */
export function compileRequestAuthentication(
  k: KindDocument,
  cc: CompileContext,
  tuning: JwksTuning,
): CompiledRequestAuthentication | undefined {
  const specRaw = k.spec ?? {};
  const spec = specSchema.parse(specRaw, ['spec'], k.v);
  if (!spec) return undefined;
  const scope = parseScope(k, specRaw as Record<string, unknown>, cc.settings);
  const rules: CompiledJwtRule[] = [];
  const cache = sharedVerifiedCache(cc.runtime);
  let ok = true;
  (spec.jwtRules ?? []).forEach((r, i) => {
    const p = (...rest: (string | number)[]) => ['spec', 'jwtRules', i, ...rest];
    const before = k.v.issues.length;
    const issuer = r.issuer ?? '';
    // Istio validateJwtRule: "issuer or jwksUri must be non-empty string".
    if (!issuer && !r.jwksUri) k.v.error(p('issuer'), 'issuer or jwksUri must be non-empty string');
    (r.audiences ?? []).forEach((a, j) => {
      if (!a) k.v.error(p('audiences', j), 'audience must be non-empty string');
    });
    if (r.jwksUri !== undefined && r.jwksUri !== '') {
      const e = validJwksUri(r.jwksUri);
      if (e) k.v.error(p('jwksUri'), e);
    }
    if (r.jwks && r.jwksUri) k.v.warn(p('jwksUri'), 'both jwks and jwksUri are set: the inline jwks is used and jwksUri is ignored');
    (r.fromHeaders ?? []).forEach((h, j) => {
      if (!h.name) k.v.error(p('fromHeaders', j, 'name'), 'location header name must be non-empty string');
      else if (!HEADER_NAME.test(h.name)) k.v.error(p('fromHeaders', j, 'name'), `invalid header name ${JSON.stringify(h.name)}`);
    });
    (r.fromParams ?? []).forEach((q, j) => {
      if (!q) k.v.error(p('fromParams', j), 'location query must be non-empty string');
    });
    (r.fromCookies ?? []).forEach((c, j) => {
      if (!c) k.v.error(p('fromCookies', j), 'cookie name must be non-empty string');
    });
    if (r.outputPayloadToHeader !== undefined && r.outputPayloadToHeader !== '' && !HEADER_NAME.test(r.outputPayloadToHeader)) {
      k.v.error(p('outputPayloadToHeader'), `invalid header name ${JSON.stringify(r.outputPayloadToHeader)}`);
    }
    const outHeaders = new Set<string>();
    if (r.outputPayloadToHeader) outHeaders.add(r.outputPayloadToHeader.toLowerCase());
    (r.outputClaimToHeaders ?? []).forEach((c, j) => {
      if (!c.header || !c.claim) {
        k.v.error(p('outputClaimToHeaders', j), 'outputClaimToHeaders header and claim value must be non-empty string');
        return;
      }
      if (!HEADER_NAME.test(c.header)) k.v.error(p('outputClaimToHeaders', j, 'header'), `invalid header name ${JSON.stringify(c.header)}`);
      const lh = c.header.toLowerCase();
      if (outHeaders.has(lh)) k.v.error(p('outputClaimToHeaders', j, 'header'), `header ${JSON.stringify(c.header)} is written twice by this rule`);
      outHeaders.add(lh);
    });
    if (r.timeout !== undefined && r.timeout < 1) k.v.error(p('timeout'), 'duration must be at least 1ms');
    (r.spaceDelimitedClaims ?? []).forEach((c, j) => {
      if (!c) k.v.error(p('spaceDelimitedClaims', j), 'claim name must be non-empty string');
    });

    const locations: TokenLocation[] = [];
    for (const h of r.fromHeaders ?? []) {
      const name = (h.name ?? '').toLowerCase();
      locations.push({ kind: 'header', name, prefix: h.prefix ?? '', label: `header:${name}` });
    }
    for (const q of r.fromParams ?? []) locations.push({ kind: 'param', name: q, prefix: '', label: `param:${q}` });
    for (const c of r.fromCookies ?? []) locations.push({ kind: 'cookie', name: c, prefix: '', label: `cookie:${c}` });
    for (const l of locations) {
      if (l.kind === 'header' && outHeaders.has(l.name)) {
        k.v.error(p('outputClaimToHeaders'), `output header ${JSON.stringify(l.name)} is also a token location of this rule`);
      }
    }
    if (k.v.issues.slice(before).some((x) => x.severity === 'error')) {
      ok = false;
      return;
    }
    const timeoutMs = r.timeout ?? DEFAULT_JWKS_TIMEOUT_MS;
    let source;
    try {
      source = createKeySource(cc.runtime, { issuer, jwksUri: r.jwksUri || undefined, jwks: r.jwks || undefined, timeoutMs, tuning });
    } catch (e) {
      k.v.error(p('jwks'), (e as Error).message);
      ok = false;
      return;
    }
    rules.push(
      Object.freeze({
        ref: k.ref,
        index: i,
        id: `${k.ref} jwtRules[${i}]`,
        serial: ++ruleSerial,
        issuer,
        locations: locations.length > 0 ? Object.freeze(locations) : DEFAULT_LOCATIONS,
        forwardOriginalToken: r.forwardOriginalToken ?? false,
        outputPayloadToHeader: r.outputPayloadToHeader ? r.outputPayloadToHeader.toLowerCase() : null,
        outputClaimToHeaders: Object.freeze(
          (r.outputClaimToHeaders ?? []).map((c) => Object.freeze({ header: c.header!.toLowerCase(), path: Object.freeze(c.claim!.split('.')) })),
        ),
        spaceDelimitedClaims: Object.freeze([...new Set([...DEFAULT_SPACE_DELIMITED, ...(r.spaceDelimitedClaims ?? [])])]),
        verifier: new JwtVerifier(cc.runtime, { issuer, audiences: r.audiences ?? [], source, timeoutMs, cache }),
      }),
    );
  });
  if (!ok) return undefined;
  return Object.freeze({ ref: k.ref, scope, rules: Object.freeze(rules) });
}

/**
 * RequestAuthentication policies indexed by namespace. rulesFor(): the concatenated jwtRules
 * of every applying policy, root namespace first, then the workload's namespace, each in
 * config order (Istio concatenates all applying policies).
 */
export class RequestAuthenticationIndex extends ScopedIndex<CompiledRequestAuthentication, CompiledJwtRule> {
  constructor(policies: readonly CompiledRequestAuthentication[], rootNamespace: string) {
    super(policies, rootNamespace, (p) => p.rules);
  }

  get policyCount(): number {
    return this.count;
  }

  rulesFor(w: Workload): readonly CompiledJwtRule[] {
    return this.forWorkload(w);
  }

  /** Every token location of the jwtRules in force for the workload (one array per rules array). */
  locationsFor(w: Workload): readonly TokenLocation[] {
    const rules = this.forWorkload(w);
    if (rules.length === 0) return NO_TOKEN_LOCATIONS;
    let out = this.locations.get(rules);
    if (!out) {
      const seen = new Set<string>();
      const list: TokenLocation[] = [];
      for (const r of rules) for (const l of r.locations) if (!seen.has(l.label)) (seen.add(l.label), list.push(l));
      this.locations.set(rules, (out = Object.freeze(list)));
    }
    return out;
  }

  private readonly locations = new WeakMap<readonly CompiledJwtRule[], readonly TokenLocation[]>();
}

/** A run of JWT characters from lastIndex (matches empty: test() always succeeds). */
const JWT_RUN = /[A-Za-z0-9_.-]*/y;

/** A base64url character or a dot: what a JWT is made of (Envoy's token run after a prefix). */
function isJwtChar(c: number): boolean {
  // 0-9, A-Z, a-z, '_', '.', '-'
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 46 || c === 45;
}

interface FoundToken {
  readonly token: string;
  readonly location: TokenLocation;
}

/**
 * Envoy JwtHeaderLocation: with a prefix, the value must contain it; the token is the run
 * of base64url characters and dots after it (so `Bearer <jwt>, ...` and quoted forms work).
 * Without a prefix the whole value is the token. Appends to `out`; `nonJwt`: skip values
 * that are not JWT-shaped (see extractTokens).
 */
function extractFromHeader(value: string, l: TokenLocation, nonJwt: boolean, out: FoundToken[]): void {
  const prefix = l.prefix;
  if (!prefix) {
    if (!nonJwt || isJwtShaped(value)) out.push({ token: value, location: l });
    return;
  }
  // Envoy sees repeated headers as separate values; here they arrive joined by ','. Each
  // comma-separated part is looked at on its own (a prefix never spans a comma).
  const len = value.length;
  let partStart = 0;
  for (;;) {
    let partEnd = value.indexOf(',', partStart);
    if (partEnd < 0) partEnd = len;
    const pos = value.indexOf(prefix, partStart);
    if (pos >= 0 && pos + prefix.length <= partEnd) {
      let start = pos + prefix.length;
      while (start < partEnd && !isJwtChar(value.charCodeAt(start))) start++;
      // The run of token characters (a sticky regex: ~3x faster than a char loop on a long
      // token). It stops at the first other character, so never past the comma at partEnd.
      JWT_RUN.lastIndex = start;
      JWT_RUN.test(value);
      const end = JWT_RUN.lastIndex;
      const t = start >= partEnd ? value.slice(partStart, partEnd) : value.slice(start, end);
      // with API-key / shared-token validators reading this header, a value
      // that is not JWT-shaped belongs to them, not to the jwtRules.
      if (!nonJwt || isJwtShaped(t)) out.push({ token: t, location: l });
    }
    if (partEnd >= len) return;
    partStart = partEnd + 1;
  }
}


function extractTokens(state: CheckState, rule: CompiledJwtRule, nonJwtElsewhere?: ReadonlySet<string>): FoundToken[] {
  const ctx = state.ctx;
  const out: FoundToken[] = [];
  const locations = rule.locations;
  for (let i = 0; i < locations.length; i++) {
    const l = locations[i]!;
    if (l.kind === 'header') {
      const v = ctx.header(l.name);
      if (v === undefined) continue;
      extractFromHeader(v, l, nonJwtElsewhere !== undefined && nonJwtElsewhere.has(l.name), out);
    } else if (l.kind === 'param') {
      const v = ctx.queryParams.get(l.name);
      if (v && v.length > 0) out.push({ token: v[0]!, location: l });
    } else {
      const v = ctx.cookie(l.name);
      if (v !== undefined) out.push({ token: v, location: l });
    }
  }
  return out;
}


/** RFC 9110 quoted-string escaping for the realm. */
function quote(s: string): string {
  return s.replace(/[\\"]/g, (m) => `\\${m}`).replace(/[\r\n\0]/g, '');
}

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
  const c = state.ctx;
  let headers: [string, string][] = [];
  if (http !== 503) {
    let v = `Bearer realm="${quote(`${c.scheme}://${c.host}${c.path}`)}"`;
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

/**
 * What admitting a verified, cached token derives from it for one rule and one token
 * location, kept in the verified-token cache entry (VerifiedEntry.memo) so a repeated token
 * reuses its frozen Identity and header values. It depends only on the token (the entry's
 * key), the rule (`serial`: compiled rules are immutable, a reload compiles new ones) and
 * the location label the Identity names.
 */
class AdmitMemo {
  constructor(
    readonly serial: number,
    readonly label: string,
    readonly identity: Identity,
    /** outputPayloadToHeader, then outputClaimToHeaders in order: name, value, name, value, ... */
    readonly headers: readonly string[],
    /** The ValidatorResult when this token is the only one the rule found. */
    readonly single: ValidatorResult,
  ) {}
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

function memoFor(rule: CompiledJwtRule, found: FoundToken, entry: VerifiedEntry): AdmitMemo {
  const m = entry.memo;
  if (m instanceof AdmitMemo && m.serial === rule.serial && m.label === found.location.label) return m;
  const identity = buildIdentity(rule, entry.jwt, found);
  const memo = new AdmitMemo(
    rule.serial,
    found.location.label,
    identity,
    Object.freeze(outputHeaders(rule, entry.jwt)),
    Object.freeze({ kind: 'admit' as const, identities: Object.freeze([identity]) }),
  );
  entry.memo = memo;
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
   * Synchronous as long as every token found is a verified-token cache hit (the common case:
   * a repeated token): the cache is probed with the raw token, before any parsing, and the
   * Identity and header values kept in the entry are reused. The first token that is not a
   * valid hit continues in validateSlow(), in the same order with the same outcome.
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

    for (let ri = 0; ri < rules.length; ri++) {
      const rule = rules[ri]!;
      const tokens = extractTokens(state, rule, this.opts.nonJwtHeaders);
      if (tokens.length === 0) {
        trace?.add('authn', `${rule.id}: no token at ${rule.locations.map((l) => l.label).join(', ')}`);
        continue; // JwtMissed never overrides anything
      }
      if (tokens.length === 1) {
        const found = tokens[0]!;
        const hit = rule.verifier.probe(found.token);
        if (hit === undefined || typeof hit === 'string') return this.validateSlow(state, ri, tokens, [], hit);
        if (trace) traceVerified(trace, rule, found, hit.keyId, hit.jwt.alg, true);
        return this.admitOne(state, rule, found, hit);
      }
      const verified: Verified[] = [];
      for (let ti = 0; ti < tokens.length; ti++) {
        const found = tokens[ti]!;
        const hit = rule.verifier.probe(found.token);
        if (hit === undefined || typeof hit === 'string') return this.validateSlow(state, ri, tokens, verified, hit);
        verified.push({ found, jwt: hit.jwt, entry: hit });
        if (trace) traceVerified(trace, rule, found, hit.keyId, hit.jwt.alg, true);
      }
      return this.admit(state, rule, verified);
    }
    trace?.add('authn', 'no JWT presented: request continues without identity (allow_missing)');
    return ABSTAIN;
  }

  /**
   * The rules from `startRule` on, whose tokens `startTokens` were extracted already and the
   * first `startVerified.length` of them verified (cache hits); the next one was probed with
   * the result `startProbe` (undefined: a miss; a JwtStatus: cached but out of its time).
   *
   * Per rule (Envoy ProviderVerifier) every token must verify; across rules (AnyVerifier)
   * the first rule that passes wins, else the last real error, else JwtUnknownIssuer, else
   * JwtMissed (allowed).
   */
  private async validateSlow(
    state: CheckState,
    startRule: number,
    startTokens: readonly FoundToken[],
    startVerified: Verified[],
    startProbe: JwtStatus | undefined,
  ): Promise<ValidatorResult> {
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
    for (let ri = startRule; ri < rules.length; ri++) {
      const rule = rules[ri]!;
      const resuming = ri === startRule;
      const tokens = resuming ? startTokens : extractTokens(state, rule, this.opts.nonJwtHeaders);
      if (tokens.length === 0) {
        trace?.add('authn', `${rule.id}: no token at ${rule.locations.map((l) => l.label).join(', ')}`);
        continue; // JwtMissed never overrides anything
      }
      let failed: { status: JwtStatus; detail: string } | null = null;
      const verified: Verified[] = resuming ? startVerified : [];
      const probedAt = resuming ? verified.length : -1;
      for (let ti = verified.length; ti < tokens.length; ti++) {
        const found = tokens[ti]!;
        const probe = ti === probedAt ? startProbe : rule.verifier.probe(found.token);
        let outcome: VerifyOutcome;
        if (probe === undefined) {
          // Issuer first, without touching the verifier (cheap, no metrics noise).
          const p = parseOnce(found.token);
          if (!('status' in p) && rule.issuer !== '' && p.iss !== rule.issuer) outcome = { ok: false, status: 'JwtUnknownIssuer', jwt: p };
          else outcome = await rule.verifier.verify(found.token, () => state.signal, rule.issuer === '' ? undefined : p, true);
        } else if (typeof probe === 'string') {
          outcome = { ok: false, status: probe };
        } else {
          verified.push({ found, jwt: probe.jwt, entry: probe });
          if (trace) traceVerified(trace, rule, found, probe.keyId, probe.jwt.alg, true);
          continue;
        }
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
        verified.push({ found, jwt: outcome.jwt });
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
    else if (!rule.forwardOriginalToken && l.kind === 'param') up.removeQuery.add(l.name);
    const h = m.headers;
    for (let i = 0; i < h.length; i += 2) up.setHeader(h[i]!, h[i + 1]!);
    if (!rule.forwardOriginalToken && l.kind === 'cookie') removeCookies(state, [l.name]);
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
        else if (l.kind === 'param') up.removeQuery.add(l.name);
        else cookiesToRemove.push(l.name);
      }
      for (let i = 0; i < headers.length; i += 2) up.setHeader(headers[i]!, headers[i + 1]!);
    }
    if (cookiesToRemove.length > 0) removeCookies(state, cookiesToRemove);
    return { kind: 'admit', identities };
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
