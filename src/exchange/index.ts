/**
 * Token exchange stage (phase 4): after authentication and authorization, exchange the
 * caller's token for one scoped to the backend that still names the user (RFC 8693
 * on-behalf-of). Impersonation: sub = user, no act. Delegation: the actor token is
 * read (header or file), validated (JWKS or TokenReview), checked against the
 * DelegationPolicy (and may_act) — always, also when the actor is the subject — and the
 * minted token carries `act` unless the actor is the subject. Upstream gets only the
 * exchanged token: every token location of the applying jwtRules and of the
 * admitted identities, and any client-sent actor/identity headers, are removed. CORS
 * preflights skip the stage. Never throws; every failure is a Deny
 * with a closed reason code and a fixed body (never STS text).
 */
import { createJwtValidator } from '../jwt/jwt-validator.js';
import { isCorsPreflight, removeCookie } from '../core/context.js';
import type { CompileContext } from '../config/kinds.js';
import type { KindDocument } from '../config/kinds.js';
import { scopeAppliesStrict } from '../config/scope.js';
import { isValidHeaderValue } from '../core/headers.js';
import { sanitizeRemoteText } from '../observability/redact.js';
import type { Workload } from '../core/context.js';
import type { Identity } from '../core/identity.js';
import type { Runtime } from '../core/runtime.js';
import { deny, type CheckState, type Deny } from '../core/state.js';
import { readActorToken } from './actor.js';
import { compileExchangeDocs, matchApplies, type CompiledBuiltinSts, type CompiledPolicy, type CompiledSts } from './compile.js';
import { checkDelegation } from './delegation.js';
import { fail, outcomeOf, type ExchangeFailure, type ExchangeReason } from './errors.js';
import type { CachedToken, CacheLookup } from './cache.js';
import { exchangeCacheKey } from './util.js';

export type { CompiledBuiltinSts, CompiledPolicy, CompiledSts } from './compile.js';
export { BuiltinSts } from './sts-builtin.js';
export { RemoteStsClient } from './sts-remote.js';
export { ExchangeCache } from './cache.js';
export * from '../kubernetes/tokenreview.js';

export interface ExchangeInput {
  readonly tokenExchangePolicies: readonly KindDocument[];
  readonly securityTokenServices: readonly KindDocument[];
  readonly delegationPolicies: readonly KindDocument[];
}

export interface ExchangeConfig {
  /** Number of TokenExchangePolicy documents in force. */
  readonly count: number;
  /** Most specific first, ties by namespace/name. */
  readonly policies: readonly CompiledPolicy[];
  /** Every SecurityTokenService by `namespace/name`. */
  readonly stss: ReadonlyMap<string, CompiledSts>;
  /** The builtin STS served on the HTTP port (the one with `default: true`, or the only one). */
  readonly builtinSts: CompiledBuiltinSts | null;
}

export const EMPTY_EXCHANGE: ExchangeConfig = Object.freeze({ count: 0, policies: [], stss: new Map(), builtinSts: null });

export function compileExchange(input: ExchangeInput, cc: CompileContext): ExchangeConfig {
  const r = compileExchangeDocs(
    {
      tokenExchangePolicies: input.tokenExchangePolicies,
      securityTokenServices: input.securityTokenServices,
      delegationPolicies: input.delegationPolicies,
      // Actor tokens are verified exactly like jwtRules (Envoy semantics, shared JWKS sources).
      jwtVerifier: (opts) => {
        const v = createJwtValidator(cc.runtime, opts);
        return (token, signal) => v.verify(token, signal);
      },
    },
    cc,
  );
  return Object.freeze({ count: r.policies.length, policies: r.policies, stss: r.stss, builtinSts: r.httpSts });
}

/**
 * The policy that applies to this request: the first (most specific) whose scope and match
 * hold. Scope is checked strictly: a policy narrowed by `selector` / `targetRefs` mints
 * tokens for one workload's backend, so it applies only on a positive label / gateway /
 * service match — never to a request that carries no labels (unlike AuthorizationPolicy,
 * where "no labels -> applies" is the stricter choice).
 */
export function selectPolicy(cfg: ExchangeConfig, state: CheckState): CompiledPolicy | null {
  const ctx = state.ctx;
  for (const p of cfg.policies) {
    if (!scopeAppliesStrict(p.scope, ctx.workload)) continue;
    if (!matchApplies(p.match, ctx.host, ctx.path, ctx.workload.backend)) continue;
    return p;
  }
  return null;
}

/** A quoted-string value (RFC 9110 §5.6.4): `\` and `"` escaped; CR, LF, NUL dropped. */
function quote(s: string): string {
  return s.replace(/[\\"]/g, (m) => `\\${m}`).replace(/[\r\n\0]/g, '');
}

function realm(state: CheckState): string {
  const c = state.ctx;
  return `Bearer realm="${quote(`${c.scheme}://${c.host}${c.path}`)}"`;
}

function toDeny(state: CheckState, p: CompiledPolicy, f: ExchangeFailure | { reason: ExchangeReason; message: string }): Deny {
  const headers: [string, string][] = [];
  if (f.reason === 'ERR_SUBJECT_MISSING' || f.reason === 'ERR_ACTOR_TOKEN_MISSING') headers.push(['www-authenticate', realm(state)]);
  if (f.reason === 'ERR_ACTOR_TOKEN_INVALID') headers.push(['www-authenticate', `${realm(state)}, error="invalid_token"`]);
  state.trace?.add('exchange', `${p.ref}: denied ${f.reason}: ${f.message}`);
  return deny(f.reason, f.message, { headers, policy: p.ref });
}

type ExchangeMetrics = ReturnType<typeof makeMetrics>;
const METRICS = new WeakMap<Runtime['metrics'], ExchangeMetrics>();

/** The stage's metrics, looked up once per metrics registry (not on every Check). */
function metricsOf(rt: Runtime): ExchangeMetrics {
  let m = METRICS.get(rt.metrics);
  if (!m) METRICS.set(rt.metrics, (m = makeMetrics(rt)));
  return m;
}

/** token_exchange_cache_total{result="hit"} of one policy, its label child resolved once. */
function hitCounter(rt: Runtime, p: CompiledPolicy): { inc(): void } {
  const m = metricsOf(rt);
  let c = m.hits.get(p.ref);
  if (!c) m.hits.set(p.ref, (c = m.cache.labels({ policy: p.ref, result: 'hit' })));
  return c;
}

function makeMetrics(rt: Runtime) {
  const m = rt.metrics;
  return {
    exchanges: m.counter('token_exchanges_total', 'STS exchanges by STS (namespace/name) and outcome.', ['sts', 'outcome'] as const),
    latency: m.histogram('token_exchange_duration_seconds', 'Time of one STS exchange (built-in mint or remote call), by STS.', ['sts'] as const),
    cache: m.counter('token_exchange_cache_total', 'Exchange cache lookups by policy and result (hit|miss|negative).', ['policy', 'result'] as const),
    denials: m.counter('token_exchange_denials_total', 'Exchange-stage denials by policy and reason code.', ['policy', 'reason'] as const),
    /** Children of `cache` for hits, by policy ref (config-bounded). */
    hits: new Map<string, { inc(): void }>(),
  };
}

/**
 * Is the actor the subject itself (machine-to-machine)? Strictly the same `sub` and exactly
 * the same issuer: no wildcard for an empty issuer and no exemption by kind (a Kubernetes
 * actor is the same party only when its username and issuer equal the subject's). This
 * only decides whether an `act` link is added; the delegation check runs regardless.
 */
export function sameParty(actor: Pick<Identity, 'subject' | 'issuer'>, subject: Pick<Identity, 'subject' | 'issuer'>): boolean {
  return actor.subject === subject.subject && actor.issuer === subject.issuer;
}

function subjectExp(id: Identity): number | undefined {
  if (id.expiresAt !== undefined) return id.expiresAt;
  const e = id.claims['exp'];
  return typeof e === 'number' ? e : undefined;
}

interface Issued {
  readonly ok: true;
  readonly accessToken: string;
  readonly expiresAt: number | undefined;
}

async function callSts(p: CompiledPolicy, subject: Identity, actor: Identity | null, actorIsSubject: boolean, actorTokenType: string, rt: Runtime): Promise<Issued | ExchangeFailure> {
  const sts = p.sts;
  if (sts.kind === 'builtin') {
    const r = await sts.sts.mint(
      {
        subjectClaims: subject.claims,
        ...(subjectExp(subject) !== undefined ? { subjectExp: subjectExp(subject)! } : {}),
        // Actor == subject (machine-to-machine): no act claim.
        ...(actor && !actorIsSubject ? { actor: { sub: actor.subject, ...(actor.issuer ? { iss: actor.issuer } : {}) } } : {}),
        audiences: p.audiences,
        resources: p.resources,
        scopes: p.scopes,
        ...(p.requestedTokenType ? { requestedTokenType: p.requestedTokenType } : {}),
      },
      rt,
    );
    return r.ok ? { ok: true, accessToken: r.accessToken, expiresAt: r.expiresAt } : r;
  }
  const r = await sts.client.exchange({
    subjectToken: subject.token!,
    subjectTokenType: p.subjectTokenType,
    ...(actor ? { actorToken: actor.token!, actorTokenType } : {}),
    audiences: p.audiences,
    resources: p.resources,
    scopes: p.scopes,
    ...(p.requestedTokenType ? { requestedTokenType: p.requestedTokenType } : {}),
  });
  return r.ok ? { ok: true, accessToken: r.accessToken, expiresAt: r.expiresAt } : r;
}

/**
 * Phase 4. Synchronous (no promise, no allocation) when no policy applies, which is the
 * common case on routes without an exchange, and on an exchange cache hit in Impersonation
 * mode (no actor token to validate): the key is computed and the cache probed here, and a
 * valid cached token is applied at once. Asynchronous otherwise: a miss (STS call), a
 * cached refusal (denied exactly as before), a missing subject, and Delegation mode (the
 * actor token is validated on every Check).
 */
export function exchange(state: CheckState, cfg: ExchangeConfig): Deny | null | Promise<Deny | null> {
  if (cfg.policies.length === 0) return null;
  // Authentication lets CORS preflights through (Envoy's bypass_cors_preflight); they carry
  // no credentials, so there is nothing to exchange and nothing to deny.
  if (isCorsPreflight(state)) {
    state.trace?.add('exchange', 'CORS preflight: token exchange skipped');
    return null;
  }
  const p = selectPolicy(cfg, state);
  if (!p) {
    state.trace?.add('exchange', 'no TokenExchangePolicy applies');
    return null;
  }
  const subject = state.identity;
  const cache = p.cache;
  if (p.mode === 'Impersonation' && cache && subject && subject.token) {
    const key = cacheKey(p, subject, null);
    const hit = cache.lookup(key);
    if (hit.kind === 'hit') {
      const value = upstreamValue(p, hit.token);
      // An unusable cached value takes the ordinary path (which denies it, as before).
      if (value !== undefined) {
        enter(state, p);
        hitCounter(state.runtime, p).inc();
        state.attribution.exchangeCache = 'hit';
        return finish(state, p, cfg, subject, null, value);
      }
    }
    return runExchange(state, cfg, p, { key, hit });
  }
  return runExchange(state, cfg, p, null);
}

/** prefix + cached token, validated once per cache entry and prefix (not on every hit). */
const VALUES = new WeakMap<CachedToken, { readonly prefix: string; readonly value: string | undefined }>();

function upstreamValue(p: CompiledPolicy, t: CachedToken): string | undefined {
  const prefix = p.upstream.prefix;
  const memo = VALUES.get(t);
  if (memo && memo.prefix === prefix) return memo.value;
  const value = prefix + t.accessToken;
  const ok = isValidHeaderValue(value) ? value : undefined;
  VALUES.set(t, { prefix, value: ok });
  return ok;
}

/** Attribution and trace of an applying policy (both paths). */
function enter(state: CheckState, p: CompiledPolicy): void {
  state.attribution.exchangePolicy = p.ref;
  const audience = p.audiences[0] ?? p.resources[0];
  if (audience !== undefined) state.attribution.audience = audience;
  state.trace?.add('exchange', `${p.ref} applies (mode ${p.mode}, STS ${p.sts.ref})`);
}

/** Cache key: a hash of everything that affects the result. */
/**
 * Impersonation keys by subject Identity. A repeated token brings back the same frozen
 * Identity (the verified-token cache keeps it), so a cache hit costs a lookup here instead of
 * a SHA-256 over the token on every Check. One key per Identity: the last policy's.
 */
const SUBJECT_KEYS = new WeakMap<Identity, { readonly prefix: string; readonly key: string }>();

function cacheKey(p: CompiledPolicy, subject: Identity, actor: Identity | null): string {
  if (actor === null) {
    const m = SUBJECT_KEYS.get(subject);
    if (m !== undefined && m.prefix === p.keyPrefix) return m.key;
  }
  const key = exchangeCacheKey(p.keyPrefix, subject.token!, subject.kind === 'jwt' ? '' : subject.principal, actor ? actor.principal : '');
  if (actor === null) SUBJECT_KEYS.set(subject, { prefix: p.keyPrefix, key });
  return key;
}

function finish(state: CheckState, p: CompiledPolicy, cfg: ExchangeConfig, subject: Identity, actor: Identity | null, value: string): null {
  applyUpstream(state, p, cfg, subject, actor, value);
  state.trace?.add('exchange', `exchanged token set in ${p.upstream.header}${state.attribution.exchangeCache ? ` (cache ${state.attribution.exchangeCache})` : ''}`);
  return null;
}

/** A key computed and a cache probed synchronously by exchange(), not served there. */
interface Probed {
  readonly key: string;
  readonly hit: CacheLookup;
}

async function runExchange(state: CheckState, cfg: ExchangeConfig, p: CompiledPolicy, probed: Probed | null): Promise<Deny | null> {
  const rt = state.runtime;
  const m = metricsOf(rt);
  const denyWith = (f: ExchangeFailure | { reason: ExchangeReason; message: string }): Deny => {
    m.denials.inc({ policy: p.ref, reason: f.reason });
    return toDeny(state, p, f);
  };
  enter(state, p);

  const subject = state.identity;
  if (!subject || !subject.token) {
    return denyWith(fail('ERR_SUBJECT_MISSING', subject ? 'the authenticated identity carries no token to exchange' : 'token exchange needs an authenticated subject'));
  }

  // Actor (delegation only; never a silent fall-back to impersonation).
  let actor: Identity | null = null;
  let actorIsSubject = false;
  if (p.mode === 'Delegation') {
    const a = p.actor!;
    const at = readActorToken(a.source, state.ctx);
    if (!at) return denyWith(fail('ERR_ACTOR_TOKEN_MISSING', a.source.header ? `no actor token in ${a.source.header}` : 'actor token file is missing or empty'));
    const r = await a.validator.validate(at.token, at.location, state.signal);
    if (!r.ok) return denyWith(r);
    actor = r.identity;
    state.actor = actor;
    // The delegation check always runs in Delegation mode, also when the actor is the
    // subject: sending one's own token as the actor token must not bypass DelegationPolicy
    // and may_act. Actor == subject only suppresses the `act` link.
    const v = checkDelegation(
      p.delegation!,
      { sub: actor.subject, iss: actor.issuer },
      { sub: subject.subject, iss: subject.issuer },
      subject.claims,
      [...p.audiences, ...p.resources],
    );
    if (!v.ok) return denyWith(fail('ERR_DELEGATION_DENIED', v.message));
    state.trace?.add('exchange', `${p.delegation!.ref} rule ${v.rule} allows the actor`);
    actorIsSubject = sameParty(actor, subject);
    if (actorIsSubject) state.trace?.add('exchange', 'actor is the subject (same sub and issuer): no act claim');
  }

  // Impersonation: exchange() already computed the key and probed the cache.
  const key = probed ? probed.key : cacheKey(p, subject, actor);
  let token: string | undefined;
  const cache = p.cache;
  if (cache) {
    const hit = probed ? probed.hit : cache.lookup(key);
    if (hit.kind === 'hit') {
      m.cache.inc({ policy: p.ref, result: 'hit' });
      state.attribution.exchangeCache = 'hit';
      token = hit.token.accessToken;
    } else if (hit.kind === 'negative') {
      m.cache.inc({ policy: p.ref, result: 'negative' });
      state.attribution.exchangeCache = 'hit';
      return denyWith(hit.refusal);
    } else {
      m.cache.inc({ policy: p.ref, result: 'miss' });
      state.attribution.exchangeCache = 'miss';
    }
  }
  if (token === undefined) {
    const run = async (): Promise<Issued | ExchangeFailure> => {
      const t0 = performance.now();
      let r: Issued | ExchangeFailure;
      try {
        r = await callSts(p, subject, actor, actorIsSubject, p.actor?.tokenType ?? '', rt);
      } catch (e) {
        r = fail('ERR_EXCHANGE_MISCONFIGURED', `exchange failed: ${sanitizeRemoteText(e instanceof Error ? e.message : String(e))}`);
      }
      m.latency.observe({ sts: p.sts.ref }, (performance.now() - t0) / 1000);
      m.exchanges.inc({ sts: p.sts.ref, outcome: outcomeOf(r.ok ? 'OK' : r.reason) });
      if (!r.ok) {
        rt.logger.warn({ requestId: state.ctx.id, policy: p.ref, sts: p.sts.ref, reason: r.reason, detail: r.message }, 'token exchange failed');
      }
      if (cache) {
        if (r.ok) cache.storeToken(key, r.accessToken, p.scopes, [r.expiresAt, subjectExp(subject), actor?.expiresAt]);
        else if (r.reason === 'ERR_EXCHANGE_REFUSED') cache.storeRefusal(key, r);
      }
      return r;
    };
    let r: Issued | ExchangeFailure;
    try {
      r = await withAbort(cache ? cache.singleFlight(key, run) : run(), state.signal);
    } catch {
      return denyWith(fail('ERR_DEADLINE', 'Check deadline passed during the exchange'));
    }
    if (!r.ok) return denyWith(r);
    token = r.accessToken;
  }

  const value = p.upstream.prefix + token;
  if (!isValidHeaderValue(value)) return denyWith(fail('ERR_EXCHANGE_MISCONFIGURED', 'exchanged token is not a valid header value'));
  return finish(state, p, cfg, subject, actor, value);
}

/**
 * Upstream gets only the exchanged token: the location of every admitted
 * identity and every header / query parameter / cookie token location of every jwtRule that
 * applies to the workload is removed (a second user token at another rule's location must
 * not travel next to the exchanged one), as are client-sent actor/identity headers. The
 * output header itself is never removed.
 */
function applyUpstream(state: CheckState, p: CompiledPolicy, cfg: ExchangeConfig, subject: Identity, actor: Identity | null, value: string): void {
  const up = state.upstream;
  const ctx = state.ctx;
  const out = p.upstream.header;
  const remove = (h: string) => {
    if (h === out) return;
    up.set.delete(h);
    up.removeHeader(h);
  };
  // Usually one header location (Authorization): plain arrays, sets only when needed.
  const headers: string[] = [];
  let params: Set<string> | null = null;
  let cookies: Set<string> | null = null;
  const addLocation = (loc: string | undefined) => {
    if (!loc) return;
    if (loc.startsWith('header:')) headers.push(loc.slice(7).toLowerCase());
    else if (loc.startsWith('query:') || loc.startsWith('param:')) (params ??= new Set()).add(loc.slice(6));
    else if (loc.startsWith('cookie:')) (cookies ??= new Set()).add(loc.slice(7));
  };
  addLocation(subject.location);
  for (const id of state.identities) if (id !== subject) addLocation(id.location);
  // Every place authn looked for a user token on this request (state.tokenLocations).
  for (const l of state.tokenLocations) {
    if (l.kind === 'header') {
      const h = l.name.toLowerCase();
      if (ctx.header(h) !== undefined || up.set.has(h)) headers.push(h);
    } else if (l.kind === 'param') {
      // No query string, no parameter (and no parse of it).
      if (ctx.query !== '' && ctx.queryParams.has(l.name)) (params ??= new Set()).add(l.name);
    } else if (ctx.cookie(l.name) !== undefined) {
      (cookies ??= new Set()).add(l.name);
    }
  }
  for (const h of headers) remove(h);
  if (params) for (const q of params) up.removeQuery.add(q);
  if (cookies && out !== 'cookie') {
    // Drop just those cookies (other cookies stay), as authn does without forwardOriginalToken.
    const before = up.set.get('cookie') ?? ctx.header('cookie') ?? '';
    let cookie = before;
    for (const n of cookies) cookie = removeCookie(cookie, n);
    if (cookie) {
      if (cookie !== before) up.setHeader('cookie', cookie);
    } else if (before) {
      remove('cookie');
    }
  }
  // The actor headers and removeHeaders are precomputed per policy (compile.ts).
  if (p.upstream.forwardActorToken && actor?.token) {
    // Opt-in, contrary to MCP's "no token passthrough": for backends that exchange themselves.
    for (const h of p.upstream.stripForwarding) remove(h);
    if (isValidHeaderValue(actor.token)) up.setHeader(p.upstream.actorHeader, actor.token);
    for (const h of p.upstream.removeHeaders) remove(h);
  } else {
    for (const h of p.upstream.strip) remove(h);
  }
  up.setHeader(out, value);
}

function withAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new Error('aborted'));
  return new Promise<T>((resolve, reject) => {
    const on = () => reject(new Error('aborted'));
    signal.addEventListener('abort', on, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', on);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', on);
        reject(e);
      },
    );
  });
}
