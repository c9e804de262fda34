/**
 * Every Check is answered explicitly before the caller's gRPC deadline, even when an
 * identity provider hangs: Envoy never has to fall back to failure_mode_allow/status_on_error.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
