/**
 * Browser login at the edge, end to end on loopback: a real OpenID Provider (oidc-provider),
 * the real server answering real gRPC Checks, a cookie jar. Login, the return to the original
 * URL, the authorized request with the exchanged token upstream, refresh (one per session),
 * logout (local + RP-initiated), API clients (401), and every forged-callback case.
 */
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { compactDecrypt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BROWSER_HEADERS, Browser, headerValues, locationOf, pathOf } from '../helpers/browser.js';
import { startTestIdp, type TestIdp } from '../helpers/oidc-idp.js';
import { oidcLoginYaml } from '../helpers/login-config.js';
import { rememberSecret } from '../helpers/secrets.js';
import { setHeaders, startTestServer, type TestServer } from '../helpers/server.js';

const APP = 'app.test';
const SECRET = `client-${randomBytes(12).toString('hex')}`;
const KEY = randomBytes(32);
const fixture = (f: string) => resolve('test/fixtures/exchange', f);

function config(idp: TestIdp, extra = ''): Record<string, string> {
  return {
    'client-secret': `${SECRET}\n`,
    'session.key': KEY.toString('base64'),
    'login.yaml': `
${oidcLoginYaml(idp.issuer, APP, ['email', 'profile', 'groups', 'offline_access'], '')}  postLogoutRedirectUrl: https://${APP}/bye
  upstream: {idTokenHeader: x-id-token}
  session:
    keyFiles: [session.key]
    refreshBefore: 30s
${extra}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: staff-only, namespace: istio-system}
spec:
  action: ALLOW
  rules:
    - to: [{operation: {paths: ["/bye", "/public/*"]}}]
    - when: [{key: "request.auth.claims[groups]", values: [staff]}]
---
apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: builtin, namespace: istio-system}
spec:
  builtin:
    issuer: https://sts.obo-authz.test
    keys: [{kid: k1, file: ${fixture('sts-es256.pem')}, algorithm: ES256}]
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: api, namespace: istio-system}
spec:
  match: {paths: ["/api/*"]}
  target: {audience: "https://api.internal"}
  sts: builtin
`,
  };
}

function fieldOf(r: { dynamic_metadata: { fields: Record<string, unknown> } }, name: string): string | undefined {
  return (r.dynamic_metadata.fields[name] as { stringValue?: string } | undefined)?.stringValue;
}
const reasonOf = (r: { dynamic_metadata: { fields: Record<string, unknown> } }) => fieldOf(r, 'reason');

function payload(jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
}

/** The session record a browser's cookie(s) carry, opened with the key (as any replica would). */
async function openSession(b: Browser): Promise<Record<string, unknown>> {
  let v = b.jar.get(APP, 'obo_session');
  if (!v) {
    v = '';
    for (let i = 0; b.jar.get(APP, `obo_session_${i}`); i++) v += b.jar.get(APP, `obo_session_${i}`);
  }
  const { plaintext } = await compactDecrypt(v, KEY);
  return JSON.parse(new TextDecoder().decode(plaintext)) as Record<string, unknown>;
}

let idp: TestIdp;
let srv: TestServer;

beforeAll(async () => {
  idp = await startTestIdp({ clientSecret: SECRET, redirectUris: [`https://${APP}/oauth2/callback`], postLogoutRedirectUris: [`https://${APP}/bye`] });
  srv = await startTestServer(config(idp));
  rememberSecret(SECRET);
});
afterAll(async () => {
  await srv?.close();
  await idp?.close();
});

const newBrowser = () => new Browser(APP, (r) => srv.check(r));

/** Log in from `path`: returns the browser (jar holds the session) and the callback's answer. */
async function login(path = '/private/report?x=1') {
  const b = newBrowser();
  const first = await b.app(path);
  expect(first.denied_response?.status.code).toBe(302);
  expect(reasonOf(first)).toBe('LOGIN_REDIRECT');
  const toIdp = locationOf(first)!;
  const cb = await b.followToApp(toIdp);
  const answer = await b.app(pathOf(cb));
  return { b, toIdp, cb, answer };
}

describe('browser login (cookie sessions)', () => {
  it('redirects a browser to the IdP with PKCE S256, state and nonce, and sets a bounded pending-login cookie', async () => {
    const b = newBrowser();
    const r = await b.app('/private/report?x=1');
    const loc = new URL(locationOf(r)!);
    expect(loc.origin).toBe(idp.issuer);
    expect(loc.searchParams.get('code_challenge_method')).toBe('S256');
    expect(loc.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(loc.searchParams.get('state')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(loc.searchParams.get('nonce')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(loc.searchParams.get('scope')).toBe('openid email profile groups offline_access');
    expect(loc.searchParams.get('redirect_uri')).toBe(`https://${APP}/oauth2/callback`);
    const setCookie = headerValues(r, 'set-cookie');
    expect(setCookie).toHaveLength(1);
    expect(setCookie[0]).toMatch(/^obo_session-login-[A-Za-z0-9_-]{16}=.*; Path=\/; Max-Age=600; HttpOnly; Secure; SameSite=Lax$/);
    // The pending state is sealed (standard JWE: jose opens it with the key), not readable.
    const sealed = setCookie[0]!.split(';')[0]!.split('=')[1]!;
    const { plaintext, protectedHeader } = await compactDecrypt(sealed, KEY);
    expect(protectedHeader).toMatchObject({ alg: 'dir', enc: 'A256GCM' });
    expect(JSON.parse(new TextDecoder().decode(plaintext))).toMatchObject({ s: loc.searchParams.get('state'), n: loc.searchParams.get('nonce'), r: '/private/report?x=1' });
    // Bounded: seven starts leave at most five pending logins in the browser.
    for (let i = 0; i < 6; i++) await b.app(`/private/${i}`);
    expect(b.jar.names(APP).filter((n) => n.startsWith('obo_session-login-'))).toHaveLength(5);
  });

  it('logs in, returns to the original URL, and serves the session as the identity with the exchanged token upstream', async () => {
    const { b, answer } = await login('/private/report?x=1');
    expect(answer.denied_response?.status.code).toBe(302);
    expect(reasonOf(answer)).toBe('LOGIN_CALLBACK');
    expect(locationOf(answer)).toBe(`https://${APP}/private/report?x=1`);
    const cookies = headerValues(answer, 'set-cookie');
    expect(cookies.some((c) => /^obo_session(_0)?=.*HttpOnly; Secure; SameSite=Lax$/.test(c))).toBe(true);
    expect(b.jar.names(APP).filter((n) => n.startsWith('obo_session-login-'))).toHaveLength(0);

    const page = await b.app('/private/report?x=1');
    expect(page.status.code).toBe(0);
    expect(fieldOf(page, 'principal')).toBe(`${idp.issuer}/alice`);
    const up = setHeaders(page);
    expect(up['authorization']).toMatch(/^Bearer /);
    expect(payload(up['x-id-token']!)).toMatchObject({ sub: 'alice', email: 'alice@example.com', aud: 'web' });
    rememberSecret(up['authorization']!.slice(7));
    rememberSecret(up['x-id-token']);

    // The exchange stage acts for the session: the access token is the subject token.
    const api = await b.app('/api/items', { ...BROWSER_HEADERS, cookie: 'theme=dark' });
    expect(api.status.code).toBe(0);
    const apiUp = setHeaders(api);
    const minted = payload(apiUp['authorization']!.slice(7));
    expect(minted).toMatchObject({ iss: 'https://sts.obo-authz.test', sub: 'alice', aud: 'https://api.internal' });
    rememberSecret(apiUp['authorization']!.slice(7));
    // Session cookies never go upstream; the others stay.
    expect(apiUp['cookie'] ?? '').not.toMatch(/obo_session/);
  });

  it('applies AuthorizationPolicy to the session identity (claims from the id token)', async () => {
    idp.user = 'bob';
    try {
      const { b } = await login('/private/x');
      const r = await b.app('/private/x');
      expect(r.denied_response?.status.code).toBe(403);
      expect(reasonOf(r)).toBe('ERR_RBAC_DENIED');
      expect(fieldOf(r, 'principal')).toBe(`${idp.issuer}/bob`);
    } finally {
      idp.user = 'alice';
    }
  });

  it('answers API clients 401 with a challenge instead of a redirect', async () => {
    const b = newBrowser();
    for (const headers of [{ accept: 'application/json' }, { accept: 'text/html', 'x-requested-with': 'XMLHttpRequest' }, {}] as Record<string, string>[]) {
      const r = await b.app('/private/data', headers);
      expect(r.denied_response?.status.code).toBe(401);
      expect(reasonOf(r)).toBe('ERR_LOGIN_REQUIRED');
      expect(headerValues(r, 'www-authenticate')).toEqual([`Bearer realm="https://${APP}"`]);
      expect(headerValues(r, 'location')).toEqual([]);
    }
    // A bearer token nobody admits (no jwtRules here) is a 401 after authn, never anonymous.
    const r = await b.app('/private/data', { accept: 'text/html', authorization: 'Bearer not-a-token' });
    expect(r.denied_response?.status.code).toBe(401);
    expect(reasonOf(r)).toBe('ERR_LOGIN_REQUIRED');
  });

  it('refreshes the access token before it expires, once per session, and sends the renewed cookie with the allow', async () => {
    // The session's access token lives 20 s: within refreshBefore (30 s) from the start.
    idp.accessTtl = 20;
    const { b } = await login('/private/r');
    idp.accessTtl = 300;
    const refreshesBefore = idp.counts.token['refresh_token'] ?? 0;
    const old = b.jar.snapshot();
    const [r1, r2] = await Promise.all([b.app('/private/r'), b.app('/private/r')]);
    expect(r1.status.code).toBe(0);
    expect(r2.status.code).toBe(0);
    expect((idp.counts.token['refresh_token'] ?? 0) - refreshesBefore).toBe(1);
    const after = setHeaders(r1)['authorization'];
    expect(setHeaders(r2)['authorization']).toBe(after);
    rememberSecret(after!.slice(7));
    // The renewed cookie comes back with the allowed response (append, not overwrite).
    const lines = r1.ok_response!.response_headers_to_add.filter((h) => h.header.key === 'set-cookie');
    expect(lines.length).toBeGreaterThan(0);
    for (const h of lines) expect(h.append).toEqual({ value: true });
    // A request still carrying the old cookie gets the refreshed session: no second refresh.
    const late = newBrowser();
    for (const n of old.names(APP)) late.jar.set(APP, `${n}=${old.get(APP, n)}`);
    expect(setHeaders(await late.app('/private/r'))['authorization']).toBe(after);
    // The new cookie carries a token valid for 300 s: no refresh now.
    expect(setHeaders(await b.app('/private/r'))['authorization']).toBe(after);
    expect((idp.counts.token['refresh_token'] ?? 0) - refreshesBefore).toBe(1);
  });

  it('ends the session when the IdP refuses the refresh: a new login', async () => {
    idp.accessTtl = 20;
    const { b } = await login('/private/e');
    idp.accessTtl = 300;
    // The user's refresh token is revoked at the IdP (RFC 7009): the refresh is refused.
    const rec = await openSession(b);
    const rev = await fetch(`${idp.issuer}/token/revocation`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`web:${SECRET}`).toString('base64')}` },
      body: `token=${encodeURIComponent(rec['refreshToken'] as string)}&token_type_hint=refresh_token`,
    });
    expect(rev.status).toBe(200);
    const r = await b.app('/private/e');
    expect(reasonOf(r)).toBe('LOGIN_REDIRECT');
    expect(b.jar.names(APP).filter((n) => /^obo_session(_\d)?$/.test(n))).toEqual([]);
  });

  it('logs out locally and at the IdP (RP-initiated), and refuses a cross-site logout', async () => {
    const { b } = await login('/private/l');
    const cross = await b.app('/oauth2/logout', { 'sec-fetch-site': 'cross-site' });
    expect(cross.denied_response?.status.code).toBe(403);
    expect(reasonOf(cross)).toBe('ERR_LOGOUT_CROSS_SITE');
    expect((await b.app('/private/l')).status.code).toBe(0);

    const out = await b.app('/oauth2/logout', { 'sec-fetch-site': 'same-origin' });
    expect(reasonOf(out)).toBe('LOGOUT');
    const loc = new URL(locationOf(out)!);
    expect(`${loc.origin}${loc.pathname}`).toBe(`${idp.issuer}/session/end`);
    expect(loc.searchParams.get('post_logout_redirect_uri')).toBe(`https://${APP}/bye`);
    expect(loc.searchParams.get('id_token_hint')).toBeTruthy();
    expect(b.jar.names(APP).filter((n) => n.startsWith('obo_session'))).toEqual([]);
    // The IdP asks to confirm; the browser confirms and lands on the post-logout URL.
    const page = await b.idp(loc.href);
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(page.body)?.[1];
    expect(xsrf).toBeTruthy();
    const confirm = await b.idp(`${idp.issuer}/session/end/confirm`, { method: 'POST', body: `xsrf=${xsrf}&logout=yes` });
    expect(confirm.location).toBe(`https://${APP}/bye`);
    // Locally gone: a new login; at the IdP gone too: it asks for a login again.
    const logins = idp.counts.logins;
    const again = await b.app('/private/l');
    expect(reasonOf(again)).toBe('LOGIN_REDIRECT');
    await b.followToApp(locationOf(again)!);
    expect(idp.counts.logins).toBe(logins + 1);
  });

  it('refuses forged and replayed callbacks, each with its own reason code', async () => {
    const reason = reasonOf;
    // A flow up to the callback (not sent).
    const pendingFlow = async () => {
      const b = newBrowser();
      const start = await b.app('/private/f');
      const cb = new URL(await b.followToApp(locationOf(start)!));
      return { b, cb };
    };
    // Missing and unknown state; a forged pending cookie.
    const { b: b1, cb: cb1 } = await pendingFlow();
    expect(reason(await b1.app(`/oauth2/callback?code=${cb1.searchParams.get('code')}`))).toBe('ERR_LOGIN_STATE_INVALID');
    expect(reason(await b1.app(`/oauth2/callback?code=${cb1.searchParams.get('code')}&state=AAAA${cb1.searchParams.get('state')!.slice(4)}`))).toBe('ERR_LOGIN_STATE_INVALID');
    const forged = newBrowser();
    const st = cb1.searchParams.get('state')!;
    forged.jar.set(APP, `obo_session-login-${st.slice(0, 16)}=eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA; Path=/`);
    expect(reason(await forged.app(pathOf(cb1.href)))).toBe('ERR_LOGIN_STATE_INVALID');

    // Replay: the same callback with the same cookies, a second time.
    const snapshot = b1.jar.snapshot();
    const ok = await b1.app(pathOf(cb1.href));
    expect(reason(ok)).toBe('LOGIN_CALLBACK');
    const replay = new Browser(APP, (r) => srv.check(r));
    for (const n of snapshot.names(APP)) replay.jar.set(APP, `${n}=${snapshot.get(APP, n)}; Path=/`);
    const replayed = await replay.app(pathOf(cb1.href));
    expect(reason(replayed)).toBe('ERR_LOGIN_CALLBACK_REPLAYED');
    expect(replayed.denied_response?.status.code).toBe(400);

    // A code already used, presented with another flow's valid state: the IdP refuses it.
    const { b: b2, cb: cb2 } = await pendingFlow();
    const reused = await b2.app(`/oauth2/callback?code=${cb1.searchParams.get('code')}&state=${cb2.searchParams.get('state')}`);
    expect(reason(reused)).toBe('ERR_LOGIN_CODE_REJECTED');
    // Code injection: another flow's fresh code with this flow's state (PKCE verifier mismatch).
    const { b: b3, cb: cb3 } = await pendingFlow();
    const { cb: cb4 } = await pendingFlow();
    expect(reason(await b3.app(`/oauth2/callback?code=${cb4.searchParams.get('code')}&state=${cb3.searchParams.get('state')}`))).toBe('ERR_LOGIN_CODE_REJECTED');

    // Wrong nonce: a pending login re-sealed with another nonce (someone holding the key).
    const { b: b5, cb: cb5 } = await pendingFlow();
    const name5 = `obo_session-login-${cb5.searchParams.get('state')!.slice(0, 16)}`;
    const { plaintext } = await compactDecrypt(b5.jar.get(APP, name5)!, KEY);
    const pending = { ...JSON.parse(new TextDecoder().decode(plaintext)), n: 'another-nonce' };
    const { CompactEncrypt } = await import('jose');
    const resealed = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(pending))).setProtectedHeader({ alg: 'dir', enc: 'A256GCM' }).encrypt(KEY);
    b5.jar.set(APP, `${name5}=${resealed}; Path=/`);
    expect(reason(await b5.app(pathOf(cb5.href)))).toBe('ERR_LOGIN_NONCE_MISMATCH');

    // The IdP answered with an error.
    const { b: b6, cb: cb6 } = await pendingFlow();
    expect(reason(await b6.app(`/oauth2/callback?error=access_denied&state=${cb6.searchParams.get('state')}`))).toBe('ERR_LOGIN_IDP_ERROR');
  });

  it('keeps tokens, codes, cookies and session ids out of every log line', () => {
    const logs = srv.runtime.logs.join('');
    expect(logs).toContain('login completed');
    expect(logs).not.toMatch(/obo_session[^"]*=/);
    expect(logs).not.toMatch(/code=|refresh_token"|id_token_hint/);
    void join;
  });
});
