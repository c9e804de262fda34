/**
 * A request that carries a session: the session becomes the identity the later stages
 * see (`request.auth.principal` = iss/sub of the id token, `request.auth.claims` = its
 * claims, the access token as the token a TokenExchangePolicy exchanges), its tokens go
 * upstream in the configured headers, and the session cookies are taken out of the Cookie
 * header upstream. An access token that expires within `refreshBefore` is refreshed first,
 * one refresh per session at a time; a refreshed cookie goes back with the allowed response.
 */
import { isValidHeaderValue } from '../core/headers.js';
import type { Identity } from '../core/identity.js';
import { deny, type CheckState, type Deny } from '../core/state.js';
import { chunkedNames } from '../session/cookie.js';
import { SessionStoreUnavailable, type SessionRecord } from '../session/store.js';
import type { CompiledLogin } from './compile.js';
import { accessExpiry, idpUnavailable, pendingPrefix, storeUnavailable, validateIdToken } from './flow.js';

/** Identity per session record (records are frozen and reused by the stores' memos). */
const IDENTITIES = new WeakMap<SessionRecord, Identity>();

function decodePayload(jwt: string): Record<string, unknown> {
  const p = jwt.split('.')[1];
  if (!p) return {};
  try {
    const o = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as unknown;
    return o && typeof o === 'object' && !Array.isArray(o) ? (o as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

export function identityOf(rec: SessionRecord, l: CompiledLogin): Identity {
  let id = IDENTITIES.get(rec);
  if (id) return id;
  const claims: Record<string, unknown> = { ...decodePayload(rec.idToken) };
  // Istio splits these claims on spaces for request.auth.claims.
  for (const c of ['scope', 'permission']) if (typeof claims[c] === 'string') claims[c] = (claims[c] as string).split(' ').filter(Boolean);
  const aud = claims['aud'];
  id = Object.freeze({
    kind: 'session' as const,
    principal: `${rec.iss}/${rec.sub}`,
    issuer: rec.iss,
    subject: rec.sub,
    audiences: Object.freeze(Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : typeof aud === 'string' ? [aud] : []),
    presenter: typeof claims['azp'] === 'string' ? (claims['azp'] as string) : '',
    claims: Object.freeze(claims),
    token: rec.accessToken,
    ...(rec.accessExp !== undefined ? { expiresAt: rec.accessExp } : {}),
    admittedBy: `OIDCLogin ${l.ref}`,
  });
  IDENTITIES.set(rec, id);
  return id;
}

/** Is the session usable right now (right login, not past its absolute end or idle time)? */
export function usable(rec: SessionRecord, l: CompiledLogin, now: number): boolean {
  if (rec.login !== l.ref || now >= rec.expires) return false;
  if (l.idleTimeoutMs > 0 && now - rec.seen > l.idleTimeoutMs) return false;
  return true;
}

/** The Cookie header upstream without this login's cookies ('' when none is left). */
function stripCookies(header: string, l: CompiledLogin): string {
  const names = new Set(chunkedNames(l.cookie.name));
  const pending = pendingPrefix(l);
  const out: string[] = [];
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    const name = (eq < 0 ? part : part.slice(0, eq)).trim();
    if (name === '' || names.has(name) || name.startsWith(pending)) continue;
    out.push(part.trim());
  }
  return out.join('; ');
}

/** Take this login's cookies (session, chunks, pending logins) out of the Cookie header upstream. */
function stripUpstream(state: CheckState, l: CompiledLogin): void {
  const up = state.upstream;
  const header = up.set.get('cookie') ?? state.ctx.header('cookie');
  if (header === undefined || !header.includes(l.cookie.name)) return;
  const rest = stripCookies(header, l);
  if (rest === header) return;
  if (rest) up.setHeader('cookie', rest);
  else {
    up.set.delete('cookie');
    up.removeHeader('cookie');
  }
}

/** Let the request through as this session: identity, upstream headers, response cookies. */
export function admit(state: CheckState, l: CompiledLogin, rec: SessionRecord, lines: readonly string[]): Deny | null {
  const up = state.upstream;
  const u = l.upstream;
  if (u.accessTokenHeader) {
    const value = u.accessTokenPrefix + rec.accessToken;
    if (!isValidHeaderValue(value)) return deny('ERR_LOGIN_ID_TOKEN_INVALID', `${l.ref}: access token is not a valid header value`, { policy: l.ref });
    up.setHeader(u.accessTokenHeader, value);
  }
  if (u.idTokenHeader) {
    const value = u.idTokenPrefix + rec.idToken;
    if (isValidHeaderValue(value)) up.setHeader(u.idTokenHeader, value);
  }
  if (!u.keepSessionCookie) stripUpstream(state, l);
  for (const line of lines) up.responseAppend.push(['set-cookie', line]);
  const id = identityOf(rec, l);
  state.identity = id;
  state.identities = [id];
  state.attribution.policy ??= l.ref;
  state.trace?.add('login', `${l.ref}: session of ${id.principal}${lines.length ? ' (cookie renewed)' : ''}`);
  return null;
}

/** Remove inbound copies of the headers a session would set (a request without a session must not forge them). */
export function sanitize(state: CheckState, l: CompiledLogin): void {
  if (l.upstream.idTokenHeader && state.ctx.header(l.upstream.idTokenHeader) !== undefined) state.upstream.removeHeader(l.upstream.idTokenHeader);
  if (!l.upstream.keepSessionCookie) stripUpstream(state, l);
}

function needsRefresh(rec: SessionRecord, l: CompiledLogin, now: number): boolean {
  return rec.accessExp !== undefined && rec.refreshToken !== undefined && rec.accessExp * 1000 - now <= l.refreshBeforeMs;
}

function touchDue(rec: SessionRecord, l: CompiledLogin, now: number): boolean {
  return l.idleTimeoutMs > 0 && now - rec.seen > l.idleTimeoutMs / 4;
}

type Refresh = { kind: 'ok'; rec: SessionRecord; lines: readonly string[] } | { kind: 'ended' } | { kind: 'deny'; deny: Deny };

/**
 * Refresh (RFC 6749 §6) once per session at a time: concurrent Checks of the same session
 * share the promise, and Checks that arrive a moment later with the previous cookie get the
 * refreshed session (runtime.ts). A refused refresh ends the session (a new login); an
 * unreachable provider keeps the current token while it is still valid.
 */
function refresh(state: CheckState, l: CompiledLogin, rec: SessionRecord): Promise<Refresh> {
  const get = (n: string) => state.ctx.cookie(n);
  return l.runtime.singleFlight(`${rec.sid}\0${rec.ver}`, async (): Promise<Refresh> => {
    const now = state.runtime.now();
    const stillValid = rec.accessExp !== undefined && rec.accessExp * 1000 > now;
    const keep = (why: string): Refresh => {
      state.runtime.logger.warn({ requestId: state.ctx.id, login: l.ref, detail: why }, 'session refresh failed; the current access token is still valid');
      return { kind: 'ok', rec, lines: [] };
    };
    // Shared store: another replica may have refreshed it already, or be refreshing it now.
    if (l.store.reload && l.store.claimOnce) {
      const other = await otherReplica(state, l, rec);
      if (other) return other;
    }
    const meta = await l.provider.metadata(state.signal);
    if ('ok' in meta) return stillValid ? keep(meta.message) : { kind: 'deny', deny: idpUnavailable(state, l, meta) };
    const tr = await l.provider.token(meta, l.clientAuth, { grant_type: 'refresh_token', refresh_token: rec.refreshToken! }, state.signal);
    if (!tr.ok) {
      if (tr.kind === 'refused') {
        state.runtime.logger.info({ requestId: state.ctx.id, login: l.ref, detail: tr.message }, 'session refresh refused: the session ends');
        return { kind: 'ended' };
      }
      return stillValid ? keep(tr.message) : { kind: 'deny', deny: idpUnavailable(state, l, tr) };
    }
    const accessToken = tr.body['access_token'];
    if (typeof accessToken !== 'string' || accessToken === '') return { kind: 'ended' };
    let idToken = rec.idToken;
    const newId = tr.body['id_token'];
    if (typeof newId === 'string' && newId !== '') {
      // OIDC Core 12.2: same iss, sub, aud (and azp); a nonce, if any, equal to the original.
      const v = await validateIdToken(state, l, meta, newId);
      if (!v.ok) return { kind: 'ended' };
      const p = v.payload;
      if (p['iss'] !== rec.iss || p['sub'] !== rec.sub || (p['nonce'] !== undefined && p['nonce'] !== rec.nonce)) return { kind: 'ended' };
      idToken = newId;
    }
    const rt = tr.body['refresh_token'];
    const accessExp = accessExpiry(tr.body, accessToken, now);
    const next: SessionRecord = Object.freeze({
      ...rec,
      idToken,
      accessToken,
      ...(accessExp !== undefined ? { accessExp } : { accessExp: undefined }),
      refreshToken: typeof rt === 'string' && rt !== '' ? rt : rec.refreshToken,
      seen: now,
      ver: rec.ver + 1,
    });
    let lines: string[];
    try {
      lines = await l.store.save(next, get, now);
    } catch (e) {
      return { kind: 'deny', deny: e instanceof SessionStoreUnavailable ? storeUnavailable(state, l, e) : deny('ERR_INTERNAL', `${l.ref}: cannot save the refreshed session`, { policy: l.ref }) };
    }
    l.runtime.rememberRefresh(rec.sid, { fromVer: rec.ver, rec: next, lines });
    state.trace?.add('login', `${l.ref}: access token refreshed`);
    return { kind: 'ok', rec: next, lines };
  });
}

/**
 * With a shared store, one refresh per session across replicas: the record as stored now
 * (a newer version is used as is); then a short lock per version (SET NX) — a replica that
 * does not get it waits for the new version (bounded), and keeps the current token while it is
 * valid. Undefined: this replica refreshes.
 */
async function otherReplica(state: CheckState, l: CompiledLogin, rec: SessionRecord): Promise<Refresh | undefined> {
  const store = l.store;
  const now = state.runtime.now();
  const newer = (r: SessionRecord | null): Refresh | undefined => {
    if (r === null) return { kind: 'ended' };
    return r.ver > rec.ver && !needsRefresh(r, l, now) ? { kind: 'ok', rec: r, lines: [] } : undefined;
  };
  try {
    const found = newer(await store.reload!(rec.sid, now));
    if (found) return found;
    if (await store.claimOnce!(`refresh:${rec.sid}:${rec.ver}`, Math.max(2_000, l.timeoutMs * 2))) return undefined;
    const until = Math.min(now + l.timeoutMs, state.ctx.deadline - 50);
    while (state.runtime.now() < until) {
      await new Promise((r) => setTimeout(r, 25));
      const w = newer(await store.reload!(rec.sid, state.runtime.now()));
      if (w) return w;
    }
  } catch (e) {
    return { kind: 'deny', deny: storeUnavailable(state, l, e) };
  }
  const stillValid = rec.accessExp !== undefined && rec.accessExp * 1000 > state.runtime.now();
  return stillValid ? { kind: 'ok', rec, lines: [] } : { kind: 'deny', deny: idpUnavailable(state, l, { message: 'session refresh in progress on another replica did not finish in time' }) };
}

/**
 * Serve a loaded, usable session: refresh or touch it when due, then admit. `ended` means the
 * session is over (refused refresh): the caller starts a new login.
 */
export function serve(state: CheckState, l: CompiledLogin, rec: SessionRecord): Deny | null | 'ended' | Promise<Deny | null | 'ended'> {
  const now = state.runtime.now();
  const recent = l.runtime.refreshedFrom(rec.sid, rec.ver);
  if (recent) return admit(state, l, recent.rec, recent.lines);
  if (needsRefresh(rec, l, now)) {
    return refresh(state, l, rec).then((r) => {
      if (r.kind === 'ended') return 'ended' as const;
      if (r.kind === 'deny') return r.deny;
      return admit(state, l, r.rec, r.lines);
    });
  }
  if (touchDue(rec, l, now)) {
    const next: SessionRecord = Object.freeze({ ...rec, seen: now, ver: rec.ver + 1 });
    const saved = l.store.save(next, (n) => state.ctx.cookie(n), now);
    if (Array.isArray(saved)) return admit(state, l, next, saved);
    return saved.then(
      (lines) => admit(state, l, next, lines),
      // A touch that cannot be written does not stop a valid session.
      () => admit(state, l, rec, []),
    );
  }
  return admit(state, l, rec, []);
}

