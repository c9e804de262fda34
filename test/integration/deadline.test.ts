/**
 * Every Check is answered explicitly before the caller's gRPC deadline, even when an
 * identity provider hangs: Envoy never has to fall back to failure_mode_allow/status_on_error.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHeldJwks, type HeldJwks } from '../helpers/held-jwks.js';
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

describe('delays longer than a Node timer can wait (over 2^31-1 ms)', () => {
  // Each JWKS server holds its answer until the test releases it, so the Check is still waiting
  // for keys when a delay turned into 1 ms by Node would fire.
  let t: TestServer;
  let viaHttp: HeldJwks;
  let longTimeout: HeldJwks;
  beforeAll(async () => {
    viaHttp = await startHeldJwks('https://http.example');
    longTimeout = await startHeldJwks('https://long.example');
    const rule = (iss: string, url: string, timeout: string) => `  - issuer: ${iss}\n    jwksUri: ${url}\n    timeout: ${timeout}\n`;
    t = await startTestServer(
      {
        'ra.yaml': `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: held, namespace: default}
spec:
  jwtRules:
${rule('https://http.example', viaHttp.url, '30s')}${rule('https://long.example', longTimeout.url, '720h')}`,
      },
      { httpAuthz: true },
    );
  });
  afterAll(async () => {
    viaHttp?.release();
    longTimeout?.release();
    await t?.close();
    await viaHttp?.close();
    await longTimeout?.close();
  });

  // 35 days: over 2^31-1 ms, which Node would turn into a 1 ms timer (TimeoutOverflowWarning).
  // Only the HTTP transport can carry it: grpc-js reads a grpc-timeout that long as a deadline
  // already passed (it truncates the milliseconds to 32 bits), and the Check says ERR_DEADLINE.
  const FAR_MS = 3_000_000_000;

  it('waits for the keys over HTTP (x-envoy-expected-rq-timeout-ms of 35 days)', async () => {
    const pending = httpCall(t.server.httpAuthzAddress, {
      method: 'GET',
      path: '/envoy/api',
      headers: { host: 'api.example', authorization: `Bearer ${await viaHttp.sign('u')}`, 'x-envoy-expected-rq-timeout-ms': String(FAR_MS) },
    });
    await new Promise((r) => setTimeout(r, 100));
    viaHttp.release();
    const reply = await pending;
    expect(reply.status).toBe(200);
  });

  it('waits for a JWKS whose jwtRules timeout is 30 days (720h) instead of timing the fetch out at once', async () => {
    const pending = t.check(httpRequest({ headers: { authorization: `Bearer ${await longTimeout.sign('u')}` } }));
    await new Promise((r) => setTimeout(r, 100));
    longTimeout.release();
    const resp = await pending;
    expect(resp.status?.code).toBe(0);
    expect(resp.ok_response).toBeDefined();
  });
});
