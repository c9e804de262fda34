/**
 * Every Check is answered explicitly before the caller's gRPC deadline, even when an
 * identity provider hangs: Envoy never has to fall back to failure_mode_allow/status_on_error.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpCall } from '../helpers/http-authz.js';
import { httpRequest, startTestServer, type TestServer } from '../helpers/server.js';

describe('deadline handling with a hanging JWKS endpoint', () => {
  let idp: Server;
  let t: TestServer;
  beforeAll(async () => {
    // Accepts connections and never answers.
    idp = createServer(() => undefined);
    await new Promise<void>((r) => idp.listen(0, '127.0.0.1', () => r()));
    const port = (idp.address() as AddressInfo).port;
    t = await startTestServer({
      // A generous margin keeps this test stable on a loaded CI machine (event-loop lag).
      's.yaml': 'apiVersion: obo-authz.dev/v1alpha1\nkind: Settings\nmetadata: {name: s}\nspec: {deadlineMargin: 150ms}\n',
      'ra.yaml': `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: hanging, namespace: default}
spec:
  jwtRules:
  - issuer: https://hanging.example
    jwksUri: http://127.0.0.1:${port}/jwks
    timeout: 30s
`,
    });
  });
  afterAll(async () => {
    await t?.close();
    idp?.closeAllConnections();
    await new Promise((r) => idp?.close(r));
  });

  it('answers an explicit 503 before a 600 ms deadline instead of letting the RPC time out', async () => {
    // header.payload.signature for iss https://hanging.example (signature irrelevant: no keys)
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const token = `${b64({ alg: 'RS256', kid: 'k1' })}.${b64({ iss: 'https://hanging.example', sub: 'u', exp: 4102444800 })}.${'A'.repeat(43)}`;
    const start = Date.now();
    const resp = await t.check(httpRequest({ headers: { authorization: `Bearer ${token}` } }), 600);
    const elapsed = Date.now() - start;
    expect(resp.status?.code).not.toBe(0);
    expect(resp.denied_response?.status?.code).toBe(503);
    expect(elapsed).toBeLessThan(600);
    const reason = (resp.dynamic_metadata?.fields?.['reason'] as { stringValue?: string })?.stringValue;
    expect(['ERR_DEADLINE', 'ERR_JWKS_UNAVAILABLE']).toContain(reason);
  });
});

describe('a deadline further away than a timer can wait', () => {
  // The JWKS server holds every request until the test releases its path, so the Check below
  // is still waiting for keys when a 1 ms deadline timer would fire.
  let idp: Server;
  let t: TestServer;
  const held = new Map<string, ServerResponse[]>();
  const released = new Set<string>();
  let jwks = '';
  const keys: Record<string, CryptoKey> = {};
  const release = (path: string): void => {
    released.add(path);
    for (const res of held.get(path) ?? []) res.end(jwks);
    held.delete(path);
  };
  beforeAll(async () => {
    const pair = await generateKeyPair('ES256');
    keys.k = pair.privateKey;
    jwks = JSON.stringify({ keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] });
    idp = createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      const path = req.url ?? '';
      if (released.has(path)) return void res.end(jwks);
      held.set(path, [...(held.get(path) ?? []), res]);
    });
    await new Promise<void>((r) => idp.listen(0, '127.0.0.1', () => r()));
    const port = (idp.address() as AddressInfo).port;
    const rule = (iss: string, path: string, timeout = '30s') => `  - issuer: ${iss}\n    jwksUri: http://127.0.0.1:${port}${path}\n    timeout: ${timeout}\n`;
    t = await startTestServer(
      {
        'ra.yaml': `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: held, namespace: default}
spec:
  jwtRules:
${rule('https://http.example', '/http')}${rule('https://long.example', '/long', '720h')}`,
      },
      { httpAuthz: true },
    );
  });
  afterAll(async () => {
    release('/http');
    release('/long');
    await t?.close();
    idp?.closeAllConnections();
    await new Promise((r) => idp?.close(r));
  });

  const token = (iss: string) => new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(iss).setSubject('u').setExpirationTime('10m').sign(keys.k!);
  // 35 days: over 2^31-1 ms, which Node would turn into a 1 ms timer (TimeoutOverflowWarning).
  // Only the HTTP transport can carry it: grpc-js reads a grpc-timeout that long as a deadline
  // already passed (it truncates the milliseconds to 32 bits), and the Check says ERR_DEADLINE.
  const FAR_MS = 3_000_000_000;

  it('waits for the keys over HTTP (x-envoy-expected-rq-timeout-ms of 35 days)', async () => {
    const pending = httpCall(t.server.httpAuthzAddress, {
      method: 'GET',
      path: '/envoy/api',
      headers: { host: 'api.example', authorization: `Bearer ${await token('https://http.example')}`, 'x-envoy-expected-rq-timeout-ms': String(FAR_MS) },
    });
    await new Promise((r) => setTimeout(r, 100));
    release('/http');
    const reply = await pending;
    expect(reply.status).toBe(200);
  });

  it('waits for a JWKS whose jwtRules timeout is 30 days (720h) instead of timing the fetch out at once', async () => {
    const pending = t.check(httpRequest({ headers: { authorization: `Bearer ${await token('https://long.example')}` } }));
    await new Promise((r) => setTimeout(r, 100));
    release('/long');
    const resp = await pending;
    expect(resp.status?.code).toBe(0);
    expect(resp.ok_response).toBeDefined();
  });
});
