/**
 * The authorization code flow, answered through the Check (OIDC Core 3.1, RFC 7636):
 *
 * start: a browser without a session gets a 302 to the provider's authorization endpoint
 *   with `state` (CSRF), `nonce` (binds the id token to this login) and an S256 PKCE
 *   challenge. The three secrets and the URL to come back to are sealed into a short-lived
 *   pending-login cookie named after the state (SameSite=Lax: the provider's redirect back
 *   is a top-level GET, which carries it). At most `pendingMax` such cookies per browser:
 *   the oldest is dropped when a new login starts.
 * callback: the provider redirects to the callback path with `code` and `state`. The Check
 *   answers it: the pending cookie for that state must exist, open with our key and name the
 *   same state and login; a state already used is a replay; the code is exchanged with the
 *   PKCE verifier; the id token is validated (provider.ts) and must carry the nonce. Then a
 *   session is created and the browser is sent back to the original (same-origin) URL.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { parseCookies } from '../core/context.js';
import { deny, type CheckState, type Deny } from '../core/state.js';
import { clearCookie, setCookie, type CookieOptions } from '../session/cookie.js';
import { randomToken } from '../session/keys.js';
import { SessionStoreUnavailable, SessionTooLarge, type SessionRecord } from '../session/store.js';
import type { CompiledLogin } from './compile.js';
import type { ProviderMetadata, RemoteFailure } from './provider.js';

interface Pending {
  /** state, nonce, PKCE verifier, return path, issued at (ms), login ref */
  readonly s: string;
  readonly n: string;
  readonly v: string;
  readonly r: string;
  readonly t: number;
  readonly l: string;
}

const NO_STORE: [string, string] = ['cache-control', 'no-store'];

function b64sha256(s: string): string {
  return createHash('sha256').update(s).digest('base64url');
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Pending-login cookie of a state: `<session cookie>-login-<first 16 chars of the state>`. */
export function pendingName(l: CompiledLogin, state: string): string {
  return `${l.cookie.name}-login-${state.slice(0, 16)}`;
}

export function pendingPrefix(l: CompiledLogin): string {
  return `${l.cookie.name}-login-`;
}

function pendingCookie(l: CompiledLogin, name: string): CookieOptions {
  // Path=/ (as __Host- requires): a new login must see the browser's other pending logins to
  // bound them. They never go upstream (the login stage strips them from the Cookie header).
  return { name, path: '/', secure: l.cookie.secure, sameSite: 'Lax', maxAgeS: Math.floor(l.pendingTtlMs / 1000) };
}

/**
 * The path (and query) to come back to, only ever on the app's origin: a path that starts
 * with one `/` (never `//` or `/\`, which browsers read as another host), resolved against the
 * app origin and checked to stay there. Anything else comes back to `/`.
 */
export function safeReturnPath(l: CompiledLogin, rawPath: string): string {
  if (!rawPath.startsWith('/') || rawPath.startsWith('//') || rawPath.startsWith('/\\') || /[\r\n\t\0]/.test(rawPath)) return '/';
  try {
    const u = new URL(rawPath, l.appOrigin);
    if (u.origin !== l.appOrigin) return '/';
    return `${u.pathname}${u.search}`;
  } catch {
    return '/';
  }
}

export function idpUnavailable(state: CheckState, l: CompiledLogin, f: RemoteFailure | { message: string }): Deny {
  state.runtime.logger.warn({ requestId: state.ctx.id, login: l.ref, detail: f.message }, 'identity provider unavailable');
  return deny('ERR_LOGIN_IDP_UNAVAILABLE', `${l.ref}: ${f.message}`, { headers: [NO_STORE], policy: l.ref });
}

export function storeUnavailable(state: CheckState, l: CompiledLogin, e: unknown): Deny {
  state.runtime.logger.warn({ requestId: state.ctx.id, login: l.ref, detail: (e as Error).message }, 'session store unavailable');
  return deny('ERR_SESSION_STORE_UNAVAILABLE', `${l.ref}: session store unavailable`, { headers: [NO_STORE], policy: l.ref });
}

/** 302 to the authorization endpoint with a new pending login; `extra` = Set-Cookie lines to add (e.g. clearing a dead session). */
export async function startLogin(state: CheckState, l: CompiledLogin, extra: readonly string[]): Promise<Deny> {
  const meta = await l.provider.metadata(state.signal);
  if ('ok' in meta) return idpUnavailable(state, l, meta);
  const ctx = state.ctx;
  const now = state.runtime.now();
  const s = randomToken();
  const nonce = randomToken();
  const verifier = randomToken();
  const pending: Pending = { s, n: nonce, v: verifier, r: safeReturnPath(l, ctx.rawPath), t: now, l: l.ref };
  const name = pendingName(l, s);
  const headers: [string, string][] = [];

  // Bound the pending logins of this browser: drop unreadable / expired ones and the oldest.
  const prefix = pendingPrefix(l);
  const existing: { name: string; t: number }[] = [];
  for (const [n, v] of parseCookies(ctx.header('cookie'))) {
    if (!n.startsWith(prefix)) continue;
    const p = parsePending(l.keys.open(v));
    existing.push({ name: n, t: p && p.l === l.ref && now - p.t <= l.pendingTtlMs ? p.t : -1 });
  }
  existing.sort((a, b) => a.t - b.t);
  let keep = existing.filter((e) => e.t >= 0).length;
  for (const e of existing) {
    if (e.t >= 0 && keep < l.pendingMax) continue;
    headers.push(['set-cookie', clearCookie(e.name, pendingCookie(l, e.name))]);
    if (e.t >= 0) keep--;
  }

  headers.push(['set-cookie', setCookie(name, l.keys.seal(JSON.stringify(pending)), pendingCookie(l, name))]);
  for (const line of extra) headers.push(['set-cookie', line]);
  const q = new URLSearchParams({
    ...l.authorizationParams,
    response_type: 'code',
    client_id: l.clientId,
    redirect_uri: l.redirectUri,
    scope: l.scopes,
    state: s,
    nonce,
    code_challenge: b64sha256(verifier),
    code_challenge_method: 'S256',
  });
  const url = `${meta.authorizationEndpoint}${meta.authorizationEndpoint.includes('?') ? '&' : '?'}${q.toString()}`;
  headers.push(['location', url], NO_STORE);
  state.trace?.add('login', `${l.ref}: no session: 302 to the identity provider (PKCE S256, state, nonce)`);
  return deny('LOGIN_REDIRECT', `${l.ref}: login started`, { headers, policy: l.ref });
}

function parsePending(text: string | null): Pending | null {
  if (text === null) return null;
  try {
    const p = JSON.parse(text) as Partial<Pending>;
    if (typeof p.s !== 'string' || typeof p.n !== 'string' || typeof p.v !== 'string' || typeof p.r !== 'string' || typeof p.t !== 'number' || typeof p.l !== 'string') return null;
    return p as Pending;
  } catch {
    return null;
  }
}

function first(state: CheckState, name: string): string | undefined {
  const v = state.ctx.queryParams.get(name);
  return v && v.length === 1 ? v[0] : undefined;
}

function refuse(state: CheckState, l: CompiledLogin, reason: Parameters<typeof deny>[0], message: string, clear?: string): Deny {
  state.trace?.add('login', `${l.ref}: callback refused: ${reason}: ${message}`);
  state.runtime.logger.info({ requestId: state.ctx.id, login: l.ref, reason }, 'login callback refused');
  const headers: [string, string][] = [NO_STORE];
  if (clear) headers.push(['set-cookie', clearCookie(clear, pendingCookie(l, clear))]);
  return deny(reason, `${l.ref}: ${message}`, { headers, policy: l.ref });
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** The id token checks beyond the JWT validator's (OIDC Core 3.1.3.7 items 4, 5, 9, 11). */
export function idTokenClaimsProblem(p: Record<string, unknown>, clientId: string): string | null {
  if (typeof p['sub'] !== 'string' || p['sub'] === '') return 'id token has no sub';
  if (num(p['exp']) === undefined) return 'id token has no exp';
  const aud = Array.isArray(p['aud']) ? p['aud'] : [p['aud']];
  if (!aud.includes(clientId)) return 'id token audience does not contain the client id';
  const azp = p['azp'];
  if (aud.length > 1 && azp === undefined) return 'id token with several audiences has no azp';
  if (azp !== undefined && azp !== clientId) return 'id token azp is not the client id';
  return null;
}

/** Validate an id token from the token endpoint: signature, iss, aud, azp, exp. */
export async function validateIdToken(state: CheckState, l: CompiledLogin, meta: ProviderMetadata, idToken: string): Promise<{ ok: true; payload: Record<string, unknown> } | { ok: false; deny: Deny }> {
  const r = await l.provider.validator(meta, l.clientId).verify(idToken, state.signal);
  if (!r.ok) {
    if (r.reason === 'ERR_JWKS_UNAVAILABLE') return { ok: false, deny: idpUnavailable(state, l, { message: 'provider keys unreachable' }) };
    return { ok: false, deny: refuse(state, l, 'ERR_LOGIN_ID_TOKEN_INVALID', `id token rejected: ${r.reason}`) };
  }
  const problem = idTokenClaimsProblem(r.payload, l.clientId);
  if (problem) return { ok: false, deny: refuse(state, l, 'ERR_LOGIN_ID_TOKEN_INVALID', problem) };
  return { ok: true, payload: r.payload };
}

/** Access token expiry from `expires_in` (RFC 6749 §5.1), or the token's own `exp` when it is a JWT. */
export function accessExpiry(body: Record<string, unknown>, accessToken: string, nowMs: number): number | undefined {
  const ei = num(body['expires_in']);
  if (ei !== undefined && ei > 0) return Math.floor(nowMs / 1000 + ei);
  const parts = accessToken.split('.');
  if (parts.length === 3) {
    try {
      return num((JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as Record<string, unknown>)['exp']);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

export async function callback(state: CheckState, l: CompiledLogin): Promise<Deny> {
  const ctx = state.ctx;
  const s = first(state, 'state');
  if (!s) return refuse(state, l, 'ERR_LOGIN_STATE_INVALID', 'callback without state');
  const stateHash = b64sha256(`${l.ref}\0${s}`);
  if (l.runtime.wasUsed(stateHash)) return refuse(state, l, 'ERR_LOGIN_CALLBACK_REPLAYED', 'callback state already used');
  const name = pendingName(l, s);
  const sealed = ctx.cookie(name);
  if (!sealed) return refuse(state, l, 'ERR_LOGIN_STATE_INVALID', 'no pending login for this state');
  const p = parsePending(l.keys.open(sealed));
  const now = state.runtime.now();
  if (!p || !same(p.s, s) || p.l !== l.ref) return refuse(state, l, 'ERR_LOGIN_STATE_INVALID', 'pending login does not match the state', name);
  if (now - p.t > l.pendingTtlMs) return refuse(state, l, 'ERR_LOGIN_STATE_INVALID', 'pending login expired', name);
  // One use per state, also across replicas when sessions are in Redis.
  let claimed = l.runtime.claimState(stateHash, l.pendingTtlMs);
  if (claimed && l.store.claimOnce) {
    try {
      claimed = await l.store.claimOnce(`state:${stateHash}`, l.pendingTtlMs);
    } catch (e) {
      return storeUnavailable(state, l, e);
    }
  }
  if (!claimed) return refuse(state, l, 'ERR_LOGIN_CALLBACK_REPLAYED', 'callback state already used', name);

  const error = first(state, 'error');
  if (error !== undefined) return refuse(state, l, 'ERR_LOGIN_IDP_ERROR', `identity provider answered ${error.replace(/[^A-Za-z0-9_.-]/g, '').slice(0, 64)}`, name);
  const code = first(state, 'code');
  if (!code) return refuse(state, l, 'ERR_LOGIN_STATE_INVALID', 'callback without code', name);

  const meta = await l.provider.metadata(state.signal);
  if ('ok' in meta) return idpUnavailable(state, l, meta);
  const tr = await l.provider.token(meta, l.clientAuth, { grant_type: 'authorization_code', code, redirect_uri: l.redirectUri, code_verifier: p.v }, state.signal);
  if (!tr.ok) {
    if (tr.kind === 'refused') return refuse(state, l, 'ERR_LOGIN_CODE_REJECTED', tr.message, name);
    return idpUnavailable(state, l, tr);
  }
  const idToken = tr.body['id_token'];
  const accessToken = tr.body['access_token'];
  const tokenType = tr.body['token_type'];
  if (typeof idToken !== 'string' || typeof accessToken !== 'string' || accessToken === '') return refuse(state, l, 'ERR_LOGIN_ID_TOKEN_INVALID', 'token response lacks id_token or access_token', name);
  if (typeof tokenType !== 'string' || tokenType.toLowerCase() !== 'bearer') return refuse(state, l, 'ERR_LOGIN_ID_TOKEN_INVALID', 'token response is not a Bearer token', name);
  const v = await validateIdToken(state, l, meta, idToken);
  if (!v.ok) return v.deny;
  const nonce = v.payload['nonce'];
  if (typeof nonce !== 'string' || !same(nonce, p.n)) return refuse(state, l, 'ERR_LOGIN_NONCE_MISMATCH', 'id token nonce differs from the pending login', name);

  const refreshToken = tr.body['refresh_token'];
  const accessExp = accessExpiry(tr.body, accessToken, now);
  const rec: SessionRecord = Object.freeze({
    sid: randomToken(24),
    login: l.ref,
    iss: v.payload['iss'] as string,
    sub: v.payload['sub'] as string,
    idToken,
    accessToken,
    ...(accessExp !== undefined ? { accessExp } : {}),
    ...(typeof refreshToken === 'string' && refreshToken !== '' ? { refreshToken } : {}),
    nonce: p.n,
    created: now,
    expires: now + l.absoluteLifetimeMs,
    seen: now,
    ver: 1,
  });
  let lines: string[];
  try {
    lines = await l.store.save(rec, (n) => ctx.cookie(n), now);
  } catch (e) {
    if (e instanceof SessionStoreUnavailable) return storeUnavailable(state, l, e);
    if (e instanceof SessionTooLarge) {
      state.runtime.logger.error({ requestId: ctx.id, login: l.ref }, 'session does not fit into cookies: use the Redis session store');
      return deny('ERR_INTERNAL', `${l.ref}: session too large for the cookie store`, { policy: l.ref });
    }
    throw e;
  }
  const headers: [string, string][] = lines.map((x) => ['set-cookie', x] as [string, string]);
  headers.push(['set-cookie', clearCookie(name, pendingCookie(l, name))], ['location', `${l.appOrigin}${safeReturnPath(l, p.r)}`], NO_STORE);
  state.runtime.logger.info({ requestId: ctx.id, login: l.ref, principal: `${rec.iss}/${rec.sub}` }, 'login completed: session created');
  state.trace?.add('login', `${l.ref}: callback: code exchanged, id token valid, session created`);
  return deny('LOGIN_CALLBACK', `${l.ref}: session created`, { headers, policy: l.ref });
}
