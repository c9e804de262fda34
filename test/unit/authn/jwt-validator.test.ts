import { afterEach, describe, expect, it } from 'vitest';
import { createJwtValidator } from '../../../src/jwt/jwt-validator.js';
import { createTestRuntime, type TestRuntime } from '../../helpers/runtime.js';
import { jwks, makeKey, NOW_S, seg, sign, startIdp, type IdpServer } from './helpers.js';

const ISS = 'https://idp.example.com';
let rt: TestRuntime;
const servers: IdpServer[] = [];

afterEach(async () => {
  rt?.shared.disposeAll();
  for (const s of servers.splice(0)) await s.close();
});

function runtime(): TestRuntime {
  rt = createTestRuntime({ now: NOW_S * 1000 });
  return rt;
}

describe('createJwtValidator: algorithms', () => {
  const ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'HS256', 'HS384', 'HS512'];
  for (const alg of ALGS) {
    it(`verifies ${alg} and rejects a tampered signature`, async () => {
      const key = await makeKey(alg, `k-${alg}`);
      const v = createJwtValidator(runtime(), { issuer: ISS, jwks: JSON.stringify(jwks(key)), cache: false });
      const tok = await sign(key, { iss: ISS, sub: 'alice', exp: NOW_S + 600 });
      const ok = await v.verify(tok);
      expect(ok).toMatchObject({ ok: true, kid: `k-${alg}`, payload: { sub: 'alice' } });
      // flip one signature character
      const parts = tok.split('.');
      const sig = parts[2]!;
      const flipped = `${parts[0]}.${parts[1]}.${(sig[0] === 'A' ? 'B' : 'A') + sig.slice(1)}`;
      const bad = await v.verify(flipped);
      expect(bad.ok).toBe(false);
      if (!bad.ok) expect(bad.body).toMatch(/^(Jwt verification fails|Jwt ED25519 signature is wrong length)$/);
    });
  }

  it('rejects alg none with Envoy\'s string', async () => {
    const key = await makeKey('RS256', 'k1');
    const v = createJwtValidator(runtime(), { issuer: ISS, jwks: JSON.stringify(jwks(key)) });
    const tok = `${seg({ alg: 'none' })}.${seg({ iss: ISS, sub: 'a' })}.`;
    expect(await v.verify(tok)).toEqual({ ok: false, reason: 'ERR_JWT_SIGNATURE', body: 'Jwt header [alg] is not supported', message: 'Jwt header [alg] is not supported' });
  });

  it('rejects HS256 signed with an RSA public key (key confusion)', async () => {
    const rsa = await makeKey('RS256', 'k1', { publishAlg: false });
    const v = createJwtValidator(runtime(), { issuer: ISS, jwks: JSON.stringify(jwks(rsa)) });
    // the classic attack: use the public key material as an HMAC secret
    const secretKey = { alg: 'HS256', kid: 'k1', privateKey: new TextEncoder().encode(JSON.stringify(rsa.jwk)), jwk: {} };
    const tok = await sign(secretKey, { iss: ISS, sub: 'mallory' });
    const r = await v.verify(tok);
    expect(r).toMatchObject({ ok: false, reason: 'ERR_JWT_SIGNATURE', body: "Jwks doesn't have key to match kid or alg from Jwt" });
  });

  it('rejects an ES256 token against an ES384 key and RS256 against an EC key', async () => {
    const es384 = await makeKey('ES384', 'k1', { publishAlg: false });
    const es256 = await makeKey('ES256', 'k1');
    const rs = await makeKey('RS256', 'k1');
    const v = createJwtValidator(runtime(), { issuer: ISS, jwks: JSON.stringify(jwks(es384)) });
    expect(await v.verify(await sign(es256, { iss: ISS }))).toMatchObject({ ok: false, body: "Jwks doesn't have key to match kid or alg from Jwt" });
    expect(await v.verify(await sign(rs, { iss: ISS }))).toMatchObject({ ok: false, body: "Jwks doesn't have key to match kid or alg from Jwt" });
  });

  it('refuses oct keys from a remote JWKS (HS* only with an inline key)', async () => {
    const hs = await makeKey('HS256', 'h1');
    const rs = await makeKey('RS256', 'r1');
    const idp = await startIdp(jwks(hs, rs));
    servers.push(idp);
    const v = createJwtValidator(runtime(), { issuer: ISS, jwksUri: `${idp.url}/jwks` });
    const r = await v.verify(await sign(hs, { iss: ISS }));
    expect(r).toMatchObject({ ok: false, body: "Jwks doesn't have key to match kid or alg from Jwt" });
    expect(await v.verify(await sign(rs, { iss: ISS }))).toMatchObject({ ok: true });
  });

  it('checks issuer, audiences (normalised), exp/nbf with 60 s skew', async () => {
    const key = await makeKey('ES256', 'k1');
    const v = createJwtValidator(runtime(), { issuer: ISS, audiences: ['https://api.example.com/'], jwks: JSON.stringify(jwks(key)) });
    const t = (p: Record<string, unknown>) => sign(key, { iss: ISS, aud: 'api.example.com', ...p });
    expect(await v.verify(await t({}))).toMatchObject({ ok: true });
    expect(await v.verify(await t({ aud: 'http://api.example.com' }))).toMatchObject({ ok: true });
    expect(await v.verify(await t({ aud: ['x', 'https://api.example.com/'] }))).toMatchObject({ ok: true });
    expect(await v.verify(await t({ aud: 'other' }))).toMatchObject({ ok: false, reason: 'ERR_JWT_AUDIENCE', body: 'Audiences in Jwt are not allowed' });
    expect(await v.verify(await t({ aud: undefined }))).toMatchObject({ ok: false, reason: 'ERR_JWT_AUDIENCE' });
    expect(await v.verify(await t({ iss: 'https://other' }))).toMatchObject({ ok: false, reason: 'ERR_JWT_ISSUER_UNKNOWN', body: 'Jwt issuer is not configured' });
    expect(await v.verify(await t({ exp: NOW_S - 60 }))).toMatchObject({ ok: true });
    expect(await v.verify(await t({ exp: NOW_S - 61 }))).toMatchObject({ ok: false, reason: 'ERR_JWT_EXPIRED', body: 'Jwt is expired' });
    expect(await v.verify(await t({ nbf: NOW_S + 60 }))).toMatchObject({ ok: true });
    expect(await v.verify(await t({ nbf: NOW_S + 61 }))).toMatchObject({ ok: false, reason: 'ERR_JWT_NOT_YET_VALID', body: 'Jwt not yet valid' });
    expect(await v.verify(await t({ exp: 'soon' }))).toMatchObject({ ok: false, reason: 'ERR_JWT_MALFORMED', body: 'Jwt payload [exp] field is not an integer' });
  });

  it('reports malformed tokens with Envoy\'s strings', async () => {
    const key = await makeKey('RS256', 'k1');
    const v = createJwtValidator(runtime(), { issuer: ISS, jwks: JSON.stringify(jwks(key)) });
    const cases: [string, string][] = [
      ['abc', 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections'],
      ['a.b.c.d', 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections'],
      ['!!.e30.e30', 'Jwt header is an invalid Base64url encoded'],
      [`${seg('notjson')}.e30.e30`, 'Jwt header is an invalid JSON'],
      [`${seg({ typ: 'JWT' })}.e30.e30`, 'Jwt header [alg] field is required and must be a string'],
      [`${seg({ alg: 'RS256', kid: 5 })}.e30.e30`, 'Jwt header [kid] field is not a string'],
      [`${seg({ alg: 'RS256' })}.!!.e30`, 'Jwt payload is an invalid Base64url encoded'],
      [`${seg({ alg: 'RS256' })}.${seg('[1]')}.e30`, 'Jwt payload is an invalid JSON'],
      [`${seg({ alg: 'RS256' })}.${seg({ iss: 1 })}.e30`, 'Jwt payload [iss] field is not a string'],
      [`${seg({ alg: 'RS256' })}.${seg({ aud: [1] })}.e30`, 'Jwt payload [aud] field is not a string or string list'],
      [`${seg({ alg: 'RS256' })}.${seg({ iss: ISS })}.!!`, 'Jwt signature is an invalid Base64url encoded'],
    ];
    for (const [tok, body] of cases) {
      const r = await v.verify(tok);
      expect(r, tok).toMatchObject({ ok: false, body });
    }
  });

  it('never throws; an invalid inline jwks fails every verify', async () => {
    const v = createJwtValidator(runtime(), { issuer: ISS, jwks: '{"keys":[{"kty":"RSA"}]}' });
    const key = await makeKey('RS256', 'k1');
    // garbage, and a well-formed token of the right issuer: both refused, neither throws
    for (const tok of ['x.y.z', await sign(key, { iss: ISS, sub: 'alice', exp: NOW_S + 600 })]) {
      expect(await v.verify(tok), tok).toMatchObject({ ok: false, reason: 'ERR_JWKS_UNAVAILABLE' });
    }
  });

  it('uses OIDC discovery when neither jwks nor jwksUri is set', async () => {
    const key = await makeKey('RS256', 'k1');
    const idp = await startIdp(jwks(key), { issuerPath: '/realms/test' });
    servers.push(idp);
    const v = createJwtValidator(runtime(), { issuer: idp.issuer });
    expect(await v.verify(await sign(key, { iss: idp.issuer, sub: 'a' }))).toMatchObject({ ok: true });
    expect(idp.hitCount('/realms/test/.well-known/openid-configuration')).toBe(1);
    expect(idp.hitCount('/jwks')).toBe(1);
  });
});
