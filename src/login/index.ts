/**
 * Login stage (phase 1b, before authn): browser login at the edge (OIDC authorization code
 * + PKCE) answered through the Check. For a request an OIDCLogin covers:
 * - the callback and logout paths are answered here (flow.ts, logout.ts);
 * - a request with a session continues as that session's identity (session.ts);
 * - without a session, a browser gets a 302 to the identity provider, and an API client
 *   (an Authorization header, no text/html in Accept, an XHR; configurable) a 401 with a
 *   challenge. An API client with its own bearer token goes on to authn, and is answered
 *   401 after it when nobody admitted it (requireLogin): never anonymous.
 * Never throws for bad input; store and IdP failures are explicit 503s.
 */
import { isCorsPreflight } from '../core/context.js';
import type { CompileContext, KindDocument } from '../config/kinds.js';
import { scopeApplies } from '../config/scope.js';
import { deny, type CheckState, type Deny } from '../core/state.js';
import { SessionStoreUnavailable, type SessionRecord } from '../session/store.js';
import { checkClashes, compileLogin, type CompiledLogin } from './compile.js';
import { callback, startLogin, storeUnavailable } from './flow.js';
import { logout } from './logout.js';
import { sanitize, serve, usable } from './session.js';

export type { CompiledLogin } from './compile.js';

export interface LoginConfig {
  readonly count: number;
  /** Most specific first (scope, then path patterns), ties by namespace/name. */
  readonly logins: readonly CompiledLogin[];
}

export const EMPTY_LOGIN: LoginConfig = Object.freeze({ count: 0, logins: Object.freeze([]) });

export function compileLogins(docs: readonly KindDocument[], cc: CompileContext): LoginConfig {
  const compiled: { k: KindDocument; c: CompiledLogin }[] = [];
  for (const k of docs) {
    const c = compileLogin(k, cc);
    if (c) compiled.push({ k, c });
  }
  checkClashes(compiled);
  const logins = compiled
    .map((x) => x.c)
    .sort((a, b) => b.specificity - a.specificity || b.pathWeight - a.pathWeight || (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
  return Object.freeze({ count: logins.length, logins: Object.freeze(logins) });
}

function hostMatches(l: CompiledLogin, host: string): boolean {
  for (const h of l.hosts) {
    if (h === host || h === '*') return true;
    if (h.startsWith('*') && host.endsWith(h.slice(1))) return true;
  }
  return false;
}

/** The login that covers this request, if any. */
export function selectLogin(cfg: LoginConfig, state: CheckState): CompiledLogin | null {
  const ctx = state.ctx;
  const host = ctx.host.toLowerCase();
  for (const l of cfg.logins) {
    if (!scopeApplies(l.scope, ctx.workload)) continue;
    // The callback and logout paths belong to their login whatever `match.paths` says.
    if (host === l.appHost && (ctx.path === l.callbackPath || ctx.path === l.logoutPath)) return l;
    if (!hostMatches(l, host)) continue;
    if (l.paths && !l.paths.some((m) => m.test(ctx.path))) continue;
    return l;
  }
  return null;
}

type Client = 'browser' | 'api' | 'bearer';

/** Who is asking: a browser navigation (redirect) or an API client (401). Documented in docs/browser-login.md. */
export function clientKind(state: CheckState, l: CompiledLogin): Client {
  const ctx = state.ctx;
  const r = l.apiClients;
  if (r.redirectPaths.some((m) => m.test(ctx.path))) return 'browser';
  if (r.paths.some((m) => m.test(ctx.path))) return 'api';
  if (r.authorizationHeader && ctx.header('authorization') !== undefined) return 'bearer';
  if (r.xhr && (ctx.header('x-requested-with') ?? '').toLowerCase() === 'xmlhttprequest') return 'api';
  if (r.nonHtml && ctx.header('sec-fetch-mode') !== 'navigate' && !(ctx.header('accept') ?? '').includes('text/html')) return 'api';
  return 'browser';
}

function challenge(l: CompiledLogin, lines: readonly string[]): Deny {
  const headers: [string, string][] = [['www-authenticate', `Bearer realm="${l.appOrigin}"`], ['cache-control', 'no-store']];
  for (const x of lines) headers.push(['set-cookie', x]);
  return deny('ERR_LOGIN_REQUIRED', `${l.ref}: no session (API client: 401, not redirected)`, { headers, policy: l.ref });
}

/** No usable session: 302 for a browser, 401 for an API client, authn for a bearer client. */
function noSession(state: CheckState, l: CompiledLogin, clear: readonly string[]): Deny | null | Promise<Deny | null> {
  const kind = clientKind(state, l);
  if (kind === 'browser') return startLogin(state, l, clear);
  if (kind === 'bearer') {
    // Its own token may admit it (jwtRules); if nobody does, requireLogin answers 401.
    state.loginRequired = challenge(l, clear);
    state.trace?.add('login', `${l.ref}: no session, Authorization header: left to authn (401 if nobody admits it)`);
    return null;
  }
  state.trace?.add('login', `${l.ref}: no session, API client: 401`);
  return challenge(l, clear);
}

function withRecord(state: CheckState, l: CompiledLogin, rec: SessionRecord | null): Deny | null | Promise<Deny | null> {
  const get = (n: string) => state.ctx.cookie(n);
  if (rec && usable(rec, l, state.runtime.now())) {
    const r = serve(state, l, rec);
    const after = (x: Deny | null | 'ended'): Deny | null | Promise<Deny | null> => {
      if (x !== 'ended') return x;
      return Promise.resolve(l.store.remove(rec, get)).then(
        (lines) => noSession(state, l, lines),
        () => noSession(state, l, []),
      );
    };
    return r instanceof Promise ? r.then(after) : after(r);
  }
  // A cookie that is no (longer a) session is cleared in the same answer.
  const present = l.store.kind === 'cookie' ? get(l.cookie.name) ?? get(`${l.cookie.name}_0`) : get(l.cookie.name);
  if (present === undefined) return noSession(state, l, []);
  const cleared = l.store.remove(rec, get);
  if (Array.isArray(cleared)) return noSession(state, l, cleared);
  return cleared.then(
    (lines) => noSession(state, l, lines),
    () => noSession(state, l, []),
  );
}

export function login(state: CheckState, cfg: LoginConfig): Deny | null | Promise<Deny | null> {
  const l = selectLogin(cfg, state);
  if (!l) return null;
  const ctx = state.ctx;
  sanitize(state, l);
  if (ctx.host.toLowerCase() === l.appHost) {
    if (ctx.path === l.callbackPath) return callback(state, l);
    if (ctx.path === l.logoutPath) return logout(state, l);
  }
  // Preflights carry no cookies; Envoy's jwt_authn lets them through as well.
  if (isCorsPreflight(state)) return null;
  const onError = (e: unknown): Deny | null | Promise<Deny | null> => {
    if (!(e instanceof SessionStoreUnavailable)) throw e;
    if (l.failOnStoreError) return storeUnavailable(state, l, e);
    // Opt-out (documented as less safe): behave as if there were no session.
    return noSession(state, l, []);
  };
  let loaded: SessionRecord | null | Promise<SessionRecord | null>;
  try {
    loaded = l.store.load((n) => ctx.cookie(n), state.runtime.now());
  } catch (e) {
    return onError(e);
  }
  if (loaded instanceof Promise) return loaded.then((rec) => withRecord(state, l, rec), onError);
  return withRecord(state, l, loaded);
}

/** After authn: a login-protected request that nobody admitted (no session, no valid token) is a 401. */
export function requireLogin(state: CheckState): Deny | null {
  const d = state.loginRequired;
  if (!d || state.identity) return null;
  state.trace?.add('login', 'nobody admitted the API client: 401');
  return d;
}
