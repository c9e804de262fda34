/**
 * Logout at `logoutPath`: the session is forgotten by the store (Redis: deleted; cookie
 * store: the browser's cookies are cleared), the refresh token is revoked when the provider
 * has a revocation endpoint (RFC 7009, best effort, not waited for), and when the provider
 * publishes `end_session_endpoint` the browser is sent there (OIDC RP-Initiated Logout 1.0,
 * with `id_token_hint`, `client_id` and `post_logout_redirect_uri`) so the IdP session ends
 * too; otherwise straight to `postLogoutRedirectUrl`.
 *
 * Cross-site requests are refused (403): otherwise any site could log a user out with a
 * link or a form. Same-site is read from `Sec-Fetch-Site` (same-origin, or none = typed by
 * the user), else from `Origin`, else from `Referer`; a request with none of them is refused.
 */
import { deny, type CheckState, type Deny } from '../core/state.js';
import type { SessionRecord } from '../session/store.js';
import type { CompiledLogin } from './compile.js';

const NO_STORE: [string, string] = ['cache-control', 'no-store'];

export function sameSite(state: CheckState, l: CompiledLogin): boolean {
  const h = (n: string) => state.ctx.header(n);
  const site = h('sec-fetch-site');
  if (site !== undefined) return site === 'same-origin' || site === 'none';
  const origin = h('origin');
  if (origin !== undefined) return origin === l.appOrigin;
  const referer = h('referer');
  return referer !== undefined && (referer === l.appOrigin || referer.startsWith(`${l.appOrigin}/`));
}

export async function logout(state: CheckState, l: CompiledLogin): Promise<Deny> {
  if (!sameSite(state, l)) {
    state.trace?.add('login', `${l.ref}: logout refused: cross-site request`);
    return deny('ERR_LOGOUT_CROSS_SITE', `${l.ref}: cross-site logout refused`, { headers: [NO_STORE], policy: l.ref });
  }
  const get = (n: string) => state.ctx.cookie(n);
  let rec: SessionRecord | null = null;
  try {
    rec = await l.store.load(get, state.runtime.now());
  } catch {
    // The store is down: the browser's cookies are cleared all the same.
  }
  if (rec && rec.login !== l.ref) rec = null;
  let lines: string[] = [];
  try {
    lines = await l.store.remove(rec, get);
  } catch (e) {
    state.runtime.logger.warn({ requestId: state.ctx.id, login: l.ref, detail: (e as Error).message }, 'logout: session could not be deleted from the store (it expires with its TTL)');
    lines = await Promise.resolve(l.store.remove(null, get)).catch(() => []);
  }
  const meta = l.provider.metadataNow() ?? (await l.provider.metadata(state.signal).then((m) => ('ok' in m ? null : m)));
  if (rec && meta && rec.refreshToken) {
    void l.provider.revoke(meta, l.clientAuth, rec.refreshToken, 'refresh_token').catch(() => false);
  }
  let location = l.postLogoutRedirectUrl;
  if (l.idpLogout && meta?.endSessionEndpoint && rec) {
    const q = new URLSearchParams({ id_token_hint: rec.idToken, client_id: l.clientId, post_logout_redirect_uri: l.postLogoutRedirectUrl });
    location = `${meta.endSessionEndpoint}${meta.endSessionEndpoint.includes('?') ? '&' : '?'}${q.toString()}`;
  }
  const headers: [string, string][] = lines.map((x) => ['set-cookie', x] as [string, string]);
  headers.push(['location', location], NO_STORE);
  if (rec) state.runtime.logger.info({ requestId: state.ctx.id, login: l.ref, principal: `${rec.iss}/${rec.sub}` }, 'logout: session ended');
  state.trace?.add('login', `${l.ref}: logout${location === l.postLogoutRedirectUrl ? '' : ' (RP-initiated at the identity provider)'}`);
  return deny('LOGOUT', `${l.ref}: logged out`, { headers, policy: l.ref });
}
