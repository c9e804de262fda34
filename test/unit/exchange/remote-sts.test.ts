import { createLocalJWKSet, exportJWK, jwtVerify, SignJWT, type JWK } from 'jose';
import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mustCompile } from '../../helpers/config.js';
import { createTestRuntime } from '../../helpers/runtime.js';
import type { CompiledRemoteSts } from '../../../src/exchange/sts-remote.js';
import type { ServerResponse } from 'node:http';
import { fixture, json, startLoopback, type Loopback, type Recorded } from './helpers.js';

let behaviour: (req: Recorded, res: ServerResponse) => void | Promise<void> = (_r, res) => json(res, 500, {});
let srv: Loopback;
beforeAll(async () => {
  srv = await startLoopback((r, res) => behaviour(r, res));
});
afterAll(() => srv.close());

function client(auth: string, extra = '') {
  const rt = createTestRuntime();
  const cfg = mustCompile(
    `apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: remote, namespace: default}
spec:
  remote:
    tokenEndpoint: ${srv.url}/token
    clientAuthentication:
${auth}
    extraParameters: {tenant: t1}
${extra}`,
    rt,
  );
  const s = cfg.exchange.stss.get('default/remote') as CompiledRemoteSts;
  return { rt, c: s.client };
}

const BASIC = `      method: client_secret_basic
      clientId: "obo client"
      clientSecretFile: ${fixture('client-secret.txt')}`;

const req = {
  subjectToken: 'subject.jwt.token',
  subjectTokenType: 'urn:ietf:params:oauth:token-type:access_token',
  actorToken: 'actor.jwt.token',
  actorTokenType: 'urn:ietf:params:oauth:token-type:jwt',
  audiences: ['mcp-a', 'mcp-b'],
  resources: ['https://r1.example', 'https://r2.example'],
  scopes: ['read', 'write'],
};

const ok = (over: Record<string, unknown> = {}) => (_r: Recorded, res: ServerResponse) =>
  json(res, 200, { access_token: 'opaque-exchanged', issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'Bearer', expires_in: 120, ...over });

describe('remote STS client (RFC 8693 over real HTTP)', () => {
  it('builds the form with repeated resource/audience, actor type, extra parameters and Basic auth', async () => {
    behaviour = ok();
    const { c } = client(BASIC);
    srv.calls.length = 0;
    const r = await c.exchange(req);
    expect(r).toMatchObject({ ok: true, accessToken: 'opaque-exchanged', issuedTokenType: 'urn:ietf:params:oauth:token-type:access_token' });
    const call = srv.calls[0]!;
    expect(call.method).toBe('POST');
    expect(call.url).toBe('/token');
    expect(call.headers['content-type']).toBe('application/x-www-form-urlencoded');
    // RFC 6749 §2.3.1: id and secret are form-encoded before Basic.
    expect(call.headers['authorization']).toBe('Basic ' + Buffer.from('obo+client:s3cr3t-client').toString('base64'));
    const f = new URLSearchParams(call.body);
    expect(f.get('grant_type')).toBe('urn:ietf:params:oauth:grant-type:token-exchange');
    expect(f.getAll('resource')).toEqual(['https://r1.example', 'https://r2.example']);
    expect(f.getAll('audience')).toEqual(['mcp-a', 'mcp-b']);
    expect(f.get('scope')).toBe('read write');
    expect(f.get('subject_token')).toBe('subject.jwt.token');
    expect(f.get('subject_token_type')).toBe('urn:ietf:params:oauth:token-type:access_token');
    expect(f.get('actor_token')).toBe('actor.jwt.token');
    expect(f.get('actor_token_type')).toBe('urn:ietf:params:oauth:token-type:jwt');
    expect(f.get('tenant')).toBe('t1');
    expect(f.has('client_secret')).toBe(false);
  });

  it('no actor_token_type without an actor token', async () => {
    behaviour = ok();
    const { c } = client(BASIC);
    srv.calls.length = 0;
    await c.exchange({ ...req, actorToken: undefined, actorTokenType: undefined } as never);
    const f = new URLSearchParams(srv.calls[0]!.body);
    expect(f.has('actor_token')).toBe(false);
    expect(f.has('actor_token_type')).toBe(false);
  });

  it('client_secret_post puts the credentials in the form', async () => {
    behaviour = ok();
    const { c } = client(`      method: client_secret_post
      clientId: cid
      clientSecret: inline-secret`);
    srv.calls.length = 0;
    await c.exchange(req);
    const f = new URLSearchParams(srv.calls[0]!.body);
    expect(f.get('client_id')).toBe('cid');
    expect(f.get('client_secret')).toBe('inline-secret');
    expect(srv.calls[0]!.headers['authorization']).toBeUndefined();
  });

  it('private_key_jwt sends a signed client assertion (RFC 7523) for the token endpoint', async () => {
    behaviour = ok();
    const { c } = client(`      method: private_key_jwt
      clientId: cid
      privateKeyFile: ${fixture('client-assertion.pem')}
      keyId: ca1
      algorithm: ES256`);
    srv.calls.length = 0;
    await c.exchange(req);
    const f = new URLSearchParams(srv.calls[0]!.body);
    expect(f.get('client_assertion_type')).toBe('urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    const pub = createPublicKey(readFileSync(fixture('client-assertion.pem'), 'utf8'));
    const jwk = { ...(await exportJWK(pub)), kid: 'ca1', alg: 'ES256' } as JWK;
    const { payload } = await jwtVerify(f.get('client_assertion')!, createLocalJWKSet({ keys: [jwk] }), { issuer: 'cid', subject: 'cid', audience: `${srv.url}/token` });
    expect(typeof payload.jti).toBe('string');
    expect(payload.exp! - payload.iat!).toBe(60);
  });

  const table: [string, number, unknown, string][] = [
    ['invalid_request', 400, { error: 'invalid_request' }, 'ERR_EXCHANGE_REFUSED'],
    ['invalid_grant', 400, { error: 'invalid_grant' }, 'ERR_EXCHANGE_REFUSED'],
    ['invalid_target', 400, { error: 'invalid_target' }, 'ERR_EXCHANGE_REFUSED'],
    ['invalid_client', 401, { error: 'invalid_client' }, 'ERR_EXCHANGE_MISCONFIGURED'],
    ['unauthorized_client', 400, { error: 'unauthorized_client' }, 'ERR_EXCHANGE_MISCONFIGURED'],
    ['unknown 4xx', 403, 'forbidden', 'ERR_EXCHANGE_MISCONFIGURED'],
    ['500', 500, { error: 'server_error' }, 'ERR_EXCHANGE_UNAVAILABLE'],
    ['503', 503, {}, 'ERR_EXCHANGE_UNAVAILABLE'],
    ['missing access_token', 200, { issued_token_type: 'x', token_type: 'Bearer' }, 'ERR_EXCHANGE_MISCONFIGURED'],
    ['missing issued_token_type', 200, { access_token: 'a', token_type: 'Bearer' }, 'ERR_EXCHANGE_MISCONFIGURED'],
    ['token_type not Bearer', 200, { access_token: 'a', issued_token_type: 'x', token_type: 'mac' }, 'ERR_EXCHANGE_MISCONFIGURED'],
    ['bad expires_in', 200, { access_token: 'a', issued_token_type: 'x', token_type: 'Bearer', expires_in: '60' }, 'ERR_EXCHANGE_MISCONFIGURED'],
    ['CR/LF in token', 200, { access_token: 'a\r\nx-evil: 1', issued_token_type: 'x', token_type: 'Bearer' }, 'ERR_EXCHANGE_MISCONFIGURED'],
    ['not JSON', 200, 'not json', 'ERR_EXCHANGE_MISCONFIGURED'],
  ];
  for (const [name, status, body, reason] of table) {
    it(`maps ${name} -> ${reason}`, async () => {
      behaviour = (_r, res) => {
        if (typeof body === 'string') {
          res.writeHead(status, { 'content-type': 'text/plain' });
          res.end(body);
        } else json(res, status, body);
      };
      const { c } = client(BASIC);
      const r = await c.exchange({ ...req, actorToken: undefined } as never);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.reason).toBe(reason);
    });
  }

  it('sanitizes the STS error text (a token in error_description is redacted)', async () => {
    const leaked = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlc2ln';
    behaviour = (_r, res) => json(res, 400, { error: 'invalid_grant', error_description: `bad token ${leaked}\nsecond line` });
    const { c } = client(BASIC);
    const r = await c.exchange(req);
    if (r.ok) throw new Error('expected failure');
    expect(r.message).not.toContain(leaked);
    expect(r.message).not.toContain('\n');
    expect(r.message).toContain('[REDACTED-JWT]');
  });

  it('times out (default 750 ms, here 100 ms) -> ERR_EXCHANGE_UNAVAILABLE', async () => {
    behaviour = () => undefined; // never answers
    const { c } = client(BASIC, '    timeout: 100ms');
    const t0 = Date.now();
    const r = await c.exchange(req);
    expect(r).toMatchObject({ ok: false, reason: 'ERR_EXCHANGE_UNAVAILABLE', message: 'STS default/remote timed out after 100ms' });
    expect(Date.now() - t0).toBeLessThan(2000);
    // the Check's deadline (the caller's signal) comes first: ERR_DEADLINE, not an STS outage
    const { c: c2 } = client(BASIC, '    timeout: 5s');
    const r2 = await c2.exchange(req, AbortSignal.timeout(50));
    expect(r2).toMatchObject({ ok: false, reason: 'ERR_DEADLINE' });
    expect(c.opts.timeoutMs).toBe(100);
    expect(client(BASIC).c.opts.timeoutMs).toBe(750);
  });

  it('connection refused -> ERR_EXCHANGE_UNAVAILABLE', async () => {
    const dead = await startLoopback(() => undefined);
    await dead.close();
    const rt = createTestRuntime();
    const cfg = mustCompile(`apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: dead}
spec:
  remote: {tokenEndpoint: ${dead.url}/token}
`, rt);
    const c = (cfg.exchange.stss.get('default/dead') as CompiledRemoteSts).client;
    expect(await c.exchange(req)).toMatchObject({ ok: false, reason: 'ERR_EXCHANGE_UNAVAILABLE', message: 'STS default/dead unreachable (ECONNREFUSED)' });
  });

  it('checks the aud of a returned JWT and takes its exp into account', async () => {
    const key = new TextEncoder().encode('0123456789abcdef0123456789abcdef');
    const now = Math.floor(Date.now() / 1000);
    const wrong = await new SignJWT({ aud: 'someone-else' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(now + 30).sign(key);
    behaviour = ok({ access_token: wrong, expires_in: 3600 });
    const { c } = client(BASIC);
    expect(await c.exchange(req)).toMatchObject({ ok: false, reason: 'ERR_EXCHANGE_MISCONFIGURED' });
    const right = await new SignJWT({ aud: ['https://mcp-b'] }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(now + 30).sign(key);
    behaviour = ok({ access_token: right, expires_in: 3600 });
    const r = await c.exchange(req);
    expect(r).toMatchObject({ ok: true, expiresAt: now + 30 });
  });
  it('an oversize body (> 1 MiB) is an unusable response, read with a cap (not buffered whole)', async () => {
    // A well-formed success padded past the cap must not be accepted.
    behaviour = ok({ pad: 'x'.repeat(2 << 20) });
    const { c } = client(BASIC, '    timeout: 5s');
    expect(await c.exchange(req)).toMatchObject({ ok: false, reason: 'ERR_EXCHANGE_MISCONFIGURED', message: expect.stringContaining('body larger than') });
    // An endless body: cut off at the cap, long before the STS timeout.
    behaviour = (_r, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = ' '.repeat(64 << 10);
      const t = setInterval(() => res.write(chunk), 2);
      res.on('close', () => clearInterval(t));
    };
    const t0 = Date.now();
    expect(await c.exchange(req)).toMatchObject({ ok: false, reason: 'ERR_EXCHANGE_MISCONFIGURED' });
    expect(Date.now() - t0).toBeLessThan(4000);
  });
});
