import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { mustCompile } from '../../helpers/config.js';
import { createTestRuntime } from '../../helpers/runtime.js';
import type { CompiledBuiltinSts } from '../../../src/exchange/sts.js';
import { actDepth } from '../../../src/exchange/sts-builtin.js';
import { fixture } from './helpers.js';

const NOW = 1_900_000_000_000;
const NOW_S = NOW / 1000;

function stsYaml(extra = ''): string {
  return `
apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: builtin, namespace: istio-system}
spec:
  builtin:
    issuer: https://sts.obo-authz.test
    keys:
      - {kid: k1, file: ${fixture('sts-es256.pem')}, algorithm: ES256}
      - {kid: old, file: ${fixture('sts-es256-old.pub.pem')}, algorithm: ES256}
    tokenLifetime: 5m
    maxDelegationDepth: 2
    copyClaims: [email]
${extra}`;
}

function setup(extra = '') {
  const rt = createTestRuntime({ now: NOW });
  const cfg = mustCompile(stsYaml(extra), rt);
  const b = cfg.exchange.builtinSts as CompiledBuiltinSts;
  return { rt, b, jwks: createLocalJWKSet(b.sts.jwks as never) };
}

const user = { iss: 'https://idp.example', sub: 'alice', email: 'alice@example.com', scope: ['mcp:read', 'mcp:write', 'admin'], exp: NOW_S + 3600 };

describe('built-in STS mint', () => {
  it('impersonation: sub = user, aud = target, no act, narrowed scopes, jti, exp = now + lifetime', async () => {
    const { rt, b, jwks } = setup();
    const r = await b.sts.mint({ subjectClaims: user, subjectExp: user.exp, audiences: ['https://mcp.example.com'], resources: [], scopes: ['mcp:read', 'other'] }, rt);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const { payload, protectedHeader } = await jwtVerify(r.accessToken, jwks, { currentDate: new Date(NOW), issuer: 'https://sts.obo-authz.test', audience: 'https://mcp.example.com' });
    expect(protectedHeader).toEqual({ alg: 'ES256', kid: 'k1', typ: 'at+jwt' });
    expect(payload.iss).toBe('https://sts.obo-authz.test');
    expect(payload.sub).toBe('alice');
    expect(payload.aud).toBe('https://mcp.example.com');
    expect(payload.scope).toBe('mcp:read');
    expect(payload.email).toBe('alice@example.com');
    expect(payload.act).toBeUndefined();
    expect(payload.iat).toBe(NOW_S);
    expect(payload.nbf).toBe(NOW_S);
    expect(payload.exp).toBe(NOW_S + 300);
    expect(typeof payload.jti).toBe('string');
    expect(r.expiresIn).toBe(300);
    expect(r.issuedTokenType).toBe('urn:ietf:params:oauth:token-type:access_token');
  });

  it('exp never later than the subject token exp', async () => {
    const { rt, b } = setup();
    const r = await b.sts.mint({ subjectClaims: { ...user, exp: NOW_S + 42 }, subjectExp: NOW_S + 42, audiences: ['a'], resources: [], scopes: [] }, rt);
    expect(r.ok && r.expiresAt).toBe(NOW_S + 42);
  });

  it('refuses an expired subject, scopes the subject does not hold, and no target', async () => {
    const { rt, b } = setup();
    const exp = await b.sts.mint({ subjectClaims: user, subjectExp: NOW_S - 1, audiences: ['a'], resources: [], scopes: [] }, rt);
    expect(exp).toMatchObject({ ok: false, reason: 'ERR_EXCHANGE_REFUSED', oauthError: 'invalid_grant' });
    const sc = await b.sts.mint({ subjectClaims: user, audiences: ['a'], resources: [], scopes: ['root'] }, rt);
    expect(sc).toMatchObject({ ok: false, reason: 'ERR_EXCHANGE_REFUSED', oauthError: 'invalid_scope' });
    const nt = await b.sts.mint({ subjectClaims: user, audiences: [], resources: [], scopes: [] }, rt);
    expect(nt).toMatchObject({ ok: false, oauthError: 'invalid_target' });
  });

  it('delegation adds act; an existing chain nests under the new actor (outermost = current actor)', async () => {
    const { rt, b, jwks } = setup();
    const r1 = await b.sts.mint({ subjectClaims: user, audiences: ['agent-b'], resources: [], scopes: [], actor: { sub: 'system:serviceaccount:agents:a', iss: 'https://k8s' } }, rt);
    if (!r1.ok) throw new Error('mint failed');
    const p1 = (await jwtVerify(r1.accessToken, jwks, { currentDate: new Date(NOW) })).payload;
    expect(p1.act).toEqual({ sub: 'system:serviceaccount:agents:a', iss: 'https://k8s' });
    const r2 = await b.sts.mint({ subjectClaims: p1, audiences: ['mcp'], resources: [], scopes: [], actor: { sub: 'system:serviceaccount:agents:b' } }, rt);
    if (!r2.ok) throw new Error('mint failed');
    const p2 = (await jwtVerify(r2.accessToken, jwks, { currentDate: new Date(NOW) })).payload;
    expect(p2.sub).toBe('alice');
    expect(p2.act).toEqual({ sub: 'system:serviceaccount:agents:b', act: { sub: 'system:serviceaccount:agents:a', iss: 'https://k8s' } });
    // depth cap = 2
    const r3 = await b.sts.mint({ subjectClaims: p2, audiences: ['x'], resources: [], scopes: [], actor: { sub: 'c' } }, rt);
    expect(r3).toMatchObject({ ok: false, reason: 'ERR_DELEGATION_DENIED' });
    expect(actDepth(p2.act)).toBe(2);
  });

  it('no act when the actor is the subject', async () => {
    const { rt, b, jwks } = setup();
    const r = await b.sts.mint({ subjectClaims: user, audiences: ['a'], resources: [], scopes: [], actor: { sub: 'alice', iss: 'https://idp.example' } }, rt);
    if (!r.ok) throw new Error('mint failed');
    const p = (await jwtVerify(r.accessToken, jwks, { currentDate: new Date(NOW) })).payload;
    expect(p.act).toBeUndefined();
    expect(p.sub).toBe('alice');
  });

  it('actor == subject needs the same sub AND exactly the same issuer (no wildcard for a missing issuer)', async () => {
    const { rt, b, jwks } = setup();
    const actOf = async (actor: { sub: string; iss?: string }, claims: Record<string, unknown> = user) => {
      const r = await b.sts.mint({ subjectClaims: claims, audiences: ['a'], resources: [], scopes: [], actor }, rt);
      if (!r.ok) throw new Error('mint failed');
      return (await jwtVerify(r.accessToken, jwks, { currentDate: new Date(NOW) })).payload.act;
    };
    // Same sub, no issuer on the actor: another party, so an act link.
    expect(await actOf({ sub: 'alice' })).toEqual({ sub: 'alice' });
    // Same sub, other issuer.
    expect(await actOf({ sub: 'alice', iss: 'https://kubernetes.default.svc' })).toEqual({ sub: 'alice', iss: 'https://kubernetes.default.svc' });
    // Subject without iss, actor with one.
    const { iss: _iss, ...noIss } = user;
    expect(await actOf({ sub: 'alice', iss: 'https://idp.example' }, noIss)).toEqual({ sub: 'alice', iss: 'https://idp.example' });
    // Both without an issuer: the same party.
    expect(await actOf({ sub: 'alice' }, noIss)).toBeUndefined();
  });

  it('audience plus resources: aud is a list; requestedTokenType jwt sets typ JWT', async () => {
    const { rt, b, jwks } = setup();
    const r = await b.sts.mint(
      { subjectClaims: user, audiences: ['a1'], resources: ['https://r.example/api'], scopes: [], requestedTokenType: 'urn:ietf:params:oauth:token-type:jwt' },
      rt,
    );
    if (!r.ok) throw new Error('mint failed');
    expect(decodeProtectedHeader(r.accessToken).typ).toBe('JWT');
    const p = (await jwtVerify(r.accessToken, jwks, { currentDate: new Date(NOW) })).payload;
    expect(p.aud).toEqual(['a1', 'https://r.example/api']);
    const bad = await b.sts.mint({ subjectClaims: user, audiences: ['a'], resources: [], scopes: [], requestedTokenType: 'urn:x:saml' }, rt);
    expect(bad).toMatchObject({ ok: false, oauthError: 'invalid_request' });
  });

  it('publishes every key (rotation) with kid/alg/use and no private parts', () => {
    const { b } = setup();
    const keys = b.sts.jwks.keys;
    expect(keys.map((k) => k['kid'])).toEqual(['k1', 'old']);
    for (const k of keys) {
      expect(k['alg']).toBe('ES256');
      expect(k['use']).toBe('sig');
      expect(k['d']).toBeUndefined();
    }
    expect(b.sts.discovery()).toMatchObject({
      issuer: 'https://sts.obo-authz.test',
      jwks_uri: 'https://sts.obo-authz.test/.well-known/jwks.json',
      token_endpoint: 'https://sts.obo-authz.test/oauth2/token',
    });
  });

  it('signs with RS256 and with a JWK key file', async () => {
    const rt = createTestRuntime({ now: NOW });
    for (const [file, kid, alg] of [
      [fixture('sts-rs256.pem'), 'r1', 'RS256'],
      [fixture('sts-es256.jwk.json'), 'jwk-1', 'ES256'],
    ] as const) {
      const cfg = mustCompile(
        `apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: s}
spec:
  builtin:
    issuer: https://sts.test
    keys: [{kid: ${kid}, file: ${file}, algorithm: ${alg}}]
`,
        rt,
      );
      const b = cfg.exchange.builtinSts!;
      const r = await b.sts.mint({ subjectClaims: user, audiences: ['a'], resources: [], scopes: [] }, rt);
      if (!r.ok) throw new Error('mint failed');
      expect(decodeProtectedHeader(r.accessToken)).toMatchObject({ alg, kid });
      await expect(jwtVerify(r.accessToken, createLocalJWKSet(b.sts.jwks as never), { currentDate: new Date(NOW) })).resolves.toBeTruthy();
    }
  });

  it('activeKeyId selects the signing key', async () => {
    const rt = createTestRuntime({ now: NOW });
    const cfg = mustCompile(
      `apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: s}
spec:
  builtin:
    issuer: https://sts.test
    activeKeyId: new
    keys:
      - {kid: cur, file: ${fixture('sts-es256.pem')}, algorithm: ES256}
      - {kid: new, file: ${fixture('sts-rs256.pem')}, algorithm: RS256}
`,
      rt,
    );
    const r = await cfg.exchange.builtinSts!.sts.mint({ subjectClaims: user, audiences: ['a'], resources: [], scopes: [] }, rt);
    expect(r.ok && decodeProtectedHeader(r.accessToken).kid).toBe('new');
  });
});
