/**
 * OIDCLogin `caFile` covers the IdP's JWKS too (not only discovery and the token endpoint): the
 * id-token validator fetches the keys through the provider's own client and CA. A real HTTPS
 * JWKS server on loopback with a certificate from a private CA.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OidcProvider } from '../../../src/login/provider.js';
import { makeTestPki } from '../../helpers/certs.js';
import { createTestRuntime } from '../../helpers/runtime.js';

const ISSUER = 'https://idp.private-ca.test';

describe('OIDCLogin caFile and the id token keys', () => {
  const pki = makeTestPki();
  let server: Server;
  let jwksUri = '';
  let sign: () => Promise<string>;
  let requests = 0;
  beforeAll(async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
    sign = () => new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(ISSUER).setAudience('web').setExpirationTime('5m').sign(privateKey);
    server = createServer({ key: readFileSync(pki.serverKey), cert: readFileSync(pki.serverCert) }, (req, res) => {
      requests++;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    jwksUri = `https://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    pki.remove();
  });

  const provider = (ca: string | undefined) => {
    const runtime = createTestRuntime();
    const p = new OidcProvider(runtime, ISSUER, { authorizationEndpoint: `${ISSUER}/auth`, tokenEndpoint: `${ISSUER}/token`, jwksUri }, 2000, ca);
    return { p, runtime, meta: p.metadataNow()! };
  };

  it('verifies an id token with keys fetched over HTTPS signed by the caFile CA', async () => {
    const { p, runtime, meta } = provider(readFileSync(pki.caCert, 'utf8'));
    const before = requests;
    const r = await p.validator(meta, 'web').verify(await sign());
    expect(r).toMatchObject({ ok: true, payload: { sub: 'alice' } });
    expect(requests).toBeGreaterThan(before);
    p.dispose();
    runtime.shared.disposeAll();
  });

  it('without the caFile the private CA is not trusted: the keys are unavailable, the token is refused', async () => {
    const { p, runtime, meta } = provider(undefined);
    const r = await p.validator(meta, 'web').verify(await sign());
    expect(r).toMatchObject({ ok: false, reason: 'ERR_JWKS_UNAVAILABLE' });
    p.dispose();
    runtime.shared.disposeAll();
  });
});
