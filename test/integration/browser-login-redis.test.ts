/**
 * Browser sessions in a real redis-server (started and stopped by the test): tokens sealed at
 * rest under a hashed key with a TTL, password from a file, TLS; Redis taken away mid-session
 * (an explicit 503, never anonymous) and given back (the session still valid).
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser, locationOf, pathOf } from '../helpers/browser.js';
import { makeTestPki, type TestPki } from '../helpers/certs.js';
import { startTestIdp, type TestIdp } from '../helpers/oidc-idp.js';
import { startTestRedis, type TestRedis } from '../helpers/redis.js';
import { oidcLoginYaml } from '../helpers/login-config.js';
import { rememberSecret } from '../helpers/secrets.js';
import { setHeaders, startTestServer, type TestServer } from '../helpers/server.js';
import { waitUntil } from '../helpers/wait.js';

const APP = 'app.test';
const SECRET = `client-${randomBytes(12).toString('hex')}`;
const REDIS_PASSWORD = `redis-${randomBytes(12).toString('hex')}`;

export function redisLoginConfig(idp: TestIdp, redis: { port: number; tls?: TestPki }, extra = ''): Record<string, string> {
  return {
    'client-secret': SECRET,
    'session.key': randomBytes(32).toString('base64url'),
    'redis-password': `${REDIS_PASSWORD}\n`,
    'login.yaml': `
${oidcLoginYaml(idp.issuer, APP, ['email', 'groups', 'offline_access'], '')}  session:
    store: redis
    keyFiles: [session.key]
    idleTimeout: 30m
    redis:
      address: 127.0.0.1:${redis.port}
      passwordFile: redis-password
      keyPrefix: "obo:test:"
      localCacheTtl: 0s
${redis.tls ? `      tls: {caFile: ${redis.tls.caCert}, serverName: localhost}\n` : ''}${extra}`,
  };
}

const reasonOf = (r: { dynamic_metadata: { fields: Record<string, unknown> } }) => (r.dynamic_metadata.fields['reason'] as { stringValue?: string } | undefined)?.stringValue;

let idp: TestIdp;
let redis: TestRedis;
let srv: TestServer;
let admin: Redis;

beforeAll(async () => {
  idp = await startTestIdp({ clientSecret: SECRET, redirectUris: [`https://${APP}/oauth2/callback`], postLogoutRedirectUris: [] });
  redis = await startTestRedis({ password: REDIS_PASSWORD });
  srv = await startTestServer(redisLoginConfig(idp, redis));
  admin = new Redis({ host: '127.0.0.1', port: redis.port, password: REDIS_PASSWORD, lazyConnect: true, maxRetriesPerRequest: 1 });
  rememberSecret(SECRET);
  rememberSecret(REDIS_PASSWORD);
});
afterAll(async () => {
  admin?.disconnect();
  await srv?.close();
  await redis?.close();
  await idp?.close();
});

async function login(b: Browser, path = '/private/a') {
  const first = await b.app(path);
  expect(reasonOf(first)).toBe('LOGIN_REDIRECT');
  const cb = await b.followToApp(locationOf(first)!);
  const done = await b.app(pathOf(cb));
  expect(reasonOf(done)).toBe('LOGIN_CALLBACK');
  return done;
}

describe('browser sessions in Redis', () => {
  it('keeps only a random id in the cookie and the sealed record in Redis, under a hashed key with a TTL', async () => {
    const b = new Browser(APP, (r) => srv.check(r));
    await login(b);
    const sid = b.jar.get(APP, 'obo_session')!;
    expect(sid).toMatch(/^[A-Za-z0-9_-]{32}$/);
    rememberSecret(sid);
    const ok = await b.app('/private/a');
    expect(ok.status.code).toBe(0);
    const token = setHeaders(ok)['authorization']!.slice(7);
    rememberSecret(token);
    const keys = await admin.keys('obo:test:s:*');
    expect(keys.length).toBeGreaterThan(0);
    for (const k of keys) expect(k).not.toContain(sid);
    const values = await Promise.all(keys.map((k) => admin.get(k)));
    for (const v of values) {
      expect(v).toMatch(/^eyJ[A-Za-z0-9_-]+\.\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
      expect(v).not.toContain(token);
    }
    for (const k of keys) {
      const ttl = await admin.pttl(k);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(30 * 60_000);
    }
  });

  it('answers 503 while Redis is down (never anonymous), and serves the same session once it is back', async () => {
    const b = new Browser(APP, (r) => srv.check(r));
    await login(b, '/private/b');
    expect((await b.app('/private/b')).status.code).toBe(0);
    await redis.stop();
    try {
      const down = await b.app('/private/b');
      expect(down.denied_response?.status.code).toBe(503);
      expect(reasonOf(down)).toBe('ERR_SESSION_STORE_UNAVAILABLE');
      // An API client with a session cookie: 503 as well, not a 401 or an allow.
      expect(reasonOf(await b.app('/private/b', { accept: 'application/json' }))).toBe('ERR_SESSION_STORE_UNAVAILABLE');
    } finally {
      await redis.start();
    }
    await waitUntil(async () => (await b.app('/private/b')).status.code === 0, { what: 'the session to be served again after Redis came back' });
    const back = await b.app('/private/b');
    expect((back.dynamic_metadata.fields['principal'] as { stringValue: string }).stringValue).toBe(`${idp.issuer}/alice`);
  });

  it('logout deletes the record', async () => {
    const b = new Browser(APP, (r) => srv.check(r));
    await login(b, '/private/c');
    const before = (await admin.keys('obo:test:s:*')).length;
    const out = await b.app('/oauth2/logout', { 'sec-fetch-site': 'same-origin' });
    expect(reasonOf(out)).toBe('LOGOUT');
    expect((await admin.keys('obo:test:s:*')).length).toBe(before - 1);
    expect(reasonOf(await b.app('/private/c'))).toBe('LOGIN_REDIRECT');
  });
});

describe('Redis over TLS', () => {
  let pki: TestPki;
  let tlsRedis: TestRedis;
  let tlsSrv: TestServer;
  beforeAll(async () => {
    pki = makeTestPki();
    tlsRedis = await startTestRedis({ password: REDIS_PASSWORD, tls: pki });
    tlsSrv = await startTestServer(redisLoginConfig(idp, { port: tlsRedis.port, tls: pki }));
  });
  afterAll(async () => {
    await tlsSrv?.close();
    await tlsRedis?.close();
  });
  it('logs in and serves the session through a TLS connection checked against the CA', async () => {
    const b = new Browser(APP, (r) => tlsSrv.check(r));
    await waitUntil(async () => {
      const first = await b.app('/private/t');
      return reasonOf(first) === 'LOGIN_REDIRECT';
    });
    await login(b, '/private/t');
    expect((await b.app('/private/t')).status.code).toBe(0);
  });
});

