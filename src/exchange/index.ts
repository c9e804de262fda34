/**
 * Token exchange stage (phase 4): after authentication and authorization, exchange the
 * caller's token for one scoped to the backend that still names the user (RFC 8693
 * on-behalf-of). Impersonation: sub = user, no act. Delegation: the actor token is
 * read (header or file), validated (JWKS or TokenReview), checked against the
 * DelegationPolicy (and may_act) — always, also when the actor is the subject — and the
 * minted token carries `act` unless the actor is the subject. Upstream gets only the
 * exchanged token (upstream.ts). CORS preflights skip the stage. Never throws; every failure
 * is a Deny with a closed reason code and a fixed body (never STS text).
 *
 * The config is compiled by compile.ts; the policy that applies is chosen by select.ts.
 */
import { narrowForTool } from './tools.js';
import { isCorsPreflight } from '../core/context.js';
import { isValidHeaderValue } from '../core/headers.js';
import type { Identity } from '../core/identity.js';
import { deny, type CheckState, type Deny } from '../core/state.js';
import { sanitizeRemoteText } from '../observability/redact.js';
import { readActorToken } from './actor.js';
import type { CacheLookup, ExchangeCache } from './cache.js';
import type { SharedFlight } from '../redis/shared-cache.js';
import type { ExchangeConfig } from './compile.js';
import { checkDelegation } from './delegation.js';
import { fail, outcomeOf, type ExchangeFailure, type ExchangeReason } from './errors.js';
import type { CompiledPolicy } from './policy.js';
import { selectPolicy } from './select.js';
import { callSts, subjectExp, type Issued } from './sts.js';
import { applyUpstream } from './upstream.js';

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
  const selected = selectPolicy(cfg, state);
  if (!selected) {
    state.trace?.add('exchange', 'no TokenExchangePolicy applies');
    return null;
  }
  // MCP tools/call: the variant of the called tool (its own audience / scopes), if any.
  const p = narrowForTool(state, selected, selected.tools);
  if ('reason' in p) return p;
  const subject = state.identity;
  const cache = p.cache;
  if (p.mode === 'Impersonation' && cache && subject && subject.token) {
    const key = p.keys.key(subject, null);
    const hit = cache.lookup(key);
    if (hit.kind === 'hit') {
      const value = p.upstream.values.of(hit.token);
      // An unusable cached value takes the ordinary path (which denies it, as before).
      if (value !== undefined) {
        enter(state, p);
        p.hits.inc();
        state.attribution.exchangeCache = 'hit';
        return finish(state, p, subject, null, value);
      }
    }
    return runExchange(state, p, { key, hit });
  }
  return runExchange(state, p, null);
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

/** Attribution and trace of an applying policy (both paths). */
function enter(state: CheckState, p: CompiledPolicy): void {
  state.attribution.exchangePolicy = p.ref;
  const audience = p.audiences[0] ?? p.resources[0];
  if (audience !== undefined) state.attribution.audience = audience;
  state.trace?.add('exchange', `${p.ref} applies (mode ${p.mode}, STS ${p.sts.ref})`);
}

function finish(state: CheckState, p: CompiledPolicy, subject: Identity, actor: Identity | null, value: string): null {
  applyUpstream(state, p.upstream, subject, actor, value);
  state.trace?.add('exchange', `exchanged token set in ${p.upstream.header}${state.attribution.exchangeCache ? ` (cache ${state.attribution.exchangeCache})` : ''}`);
  return null;
}

/** A key computed and a cache probed synchronously by exchange(), not served there. */
interface Probed {
  readonly key: string;
  readonly hit: CacheLookup;
}

async function runExchange(state: CheckState, p: CompiledPolicy, probed: Probed | null): Promise<Deny | null> {
  const rt = state.runtime;
  const m = p.metrics;
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
  const key = probed ? probed.key : p.keys.key(subject, actor);
  let token: string | undefined;
  const cache = p.cache;
  if (cache) {
    const hit = probed ? probed.hit : cache.lookup(key);
    if (hit.kind === 'hit') {
      p.hits.inc();
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
      const outcome = outcomeOf(r.ok ? 'OK' : r.reason);
      m.exchanges.inc({ sts: p.sts.ref, outcome });
      (p.sts.kind === 'builtin' ? p.sts.sts : p.sts.client).outcomes.record(rt.now(), outcome, r.ok || r.reason === 'ERR_EXCHANGE_REFUSED' || r.reason === 'ERR_DELEGATION_DENIED', r.ok ? undefined : r.message);
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
      const shared = p.sharedCache;
      const flight = shared && cache ? () => shared.through(key, run, sharedFlight(state, p, cache, key)) : run;
      r = await withAbort(cache ? cache.singleFlight(key, flight) : flight(), state.signal);
    } catch {
      return denyWith(fail('ERR_DEADLINE', 'Check deadline passed during the exchange'));
    }
    if (!r.ok) return denyWith(r);
    token = r.accessToken;
  }

  const value = p.upstream.prefix + token;
  if (!isValidHeaderValue(value)) return denyWith(fail('ERR_EXCHANGE_MISCONFIGURED', 'exchanged token is not a valid header value'));
  return finish(state, p, subject, actor, value);
}

/**
 * How the shared (Redis) cache meets this policy's local cache: a token found there is kept
 * locally until the same moment, and a fresh token is published with the validity the local
 * cache computed (same expiry rules on every replica).
 */
function sharedFlight(state: CheckState, p: CompiledPolicy, cache: ExchangeCache, key: string): SharedFlight<Issued | ExchangeFailure> {
  return {
    deadline: state.ctx.deadline,
    fromShared(token, validUntilMs) {
      cache.storeToken(key, token, p.scopes, [(validUntilMs + cache.opts.skewMs) / 1000]);
      return { ok: true, accessToken: token, expiresAt: undefined };
    },
    toShare(r) {
      if (!r.ok) return undefined;
      const l = cache.lookup(key);
      return l.kind === 'hit' ? { token: l.token.accessToken, validUntilMs: l.token.validUntilMs } : undefined;
    },
  };
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
