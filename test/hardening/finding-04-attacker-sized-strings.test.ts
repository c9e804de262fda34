/**
 * Finding 4 (issue 17): attacker-sized strings reached log lines whole — a rejected token's
 * `kid` of 500,000 characters made a 500 KB decision line. Every attacker-controlled string
 * that reaches a log line or dynamic_metadata is now capped (request id, detail, principals,
 * any main-log field).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpRequest, startTestServer, type TestServer } from '../helpers/server.js';
import { makeKey, seg, startIdp, type IdpServer } from '../unit/authn/helpers.js';

const BIG = 500_000;
const MAX_LINE = 8 * 1024;

describe('finding 4: attacker-sized strings never make huge log lines or metadata', () => {
  let idp: IdpServer;
  let s: TestServer;
  beforeAll(async () => {
    const key = await makeKey('RS256', 'k1');
    idp = await startIdp({ keys: [key.jwk] });
    s = await startTestServer({
      'ra.yaml': `
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ra, namespace: istio-system}
spec:
  jwtRules: [{issuer: "${idp.issuer}", jwksUri: "${idp.url}/jwks"}]
`,
    });
  });
  afterAll(async () => {
    await s.close();
    await idp.close();
  });

  const lines = () => s.runtime.logs.filter((l) => l.length > 0);

  it('a 500,000-character kid in a rejected token', async () => {
    const token = `${seg({ alg: 'RS256', kid: 'k'.repeat(BIG) })}.${seg({ iss: idp.issuer, sub: 'u' })}.${'A'.repeat(342)}`;
    const r = await s.check(httpRequest({ path: '/api/x', id: 'kid-1', headers: { authorization: `Bearer ${token}` } }));
    expect(r.denied_response?.status.code).toBe(401);
    const line = lines().find((l) => l.includes('"request_id":"kid-1"'));
    expect(line, 'decision line').toBeDefined();
    for (const l of lines()) expect(l.length).toBeLessThan(MAX_LINE);
  });

  it('a 500,000-character request id', async () => {
    const id = 'r'.repeat(BIG);
    const r = await s.check(httpRequest({ path: '/api/x', id }));
    const rid = (r.dynamic_metadata.fields['request_id'] as { stringValue?: string } | undefined)?.stringValue ?? '';
    expect(rid.length).toBeGreaterThan(100);
    expect(rid.length).toBeLessThan(1024);
    for (const l of lines()) expect(l.length).toBeLessThan(MAX_LINE);
  });

  it('main-log fields are capped too', async () => {
    s.runtime.logger.warn({ detail: 'd'.repeat(BIG), nested: { list: Array.from({ length: 10_000 }, (_, i) => `item-${i}`) } }, 'from outside');
    await new Promise((r) => setImmediate(r));
    const l = lines().find((x) => x.includes('from outside'));
    expect(l).toBeDefined();
    expect(l!.length).toBeLessThan(MAX_LINE);
  });
});
