/**
 * A decision the answer cannot carry: a signed token whose claim holds CR/LF, forwarded by
 * outputClaimToHeaders. The pipeline turns the allow into a 400 ERR_BAD_REQUEST before the
 * Decision is final, so the gRPC response, the checks_total metric and the decision log all
 * say the same thing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metricValue as registryValue } from '../helpers/metrics.js';
import { httpRequest, startTestServer, type TestServer } from '../helpers/server.js';
import { jwks, makeKey, sign, type TestKey } from '../unit/authn/helpers.js';

let key: TestKey;
let t: TestServer;

beforeAll(async () => {
  key = await makeKey('ES256', 'k1');
  t = await startTestServer({
    'ra.yaml': `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: idp, namespace: istio-system }
spec:
  jwtRules:
  - issuer: https://idp.example
    jwks: '${JSON.stringify(jwks(key))}'
    outputClaimToHeaders:
    - { header: x-user-name, claim: name }
`,
  });
});
afterAll(async () => t?.close());

function metricValue(reason: string, decision: string): Promise<number> {
  return registryValue(t.runtime.metrics.registry, `obo_authz_checks_total{decision="${decision}",reason="${reason}",transport="grpc"}`);
}

function decisionLines(): Record<string, unknown>[] {
  return t.runtime.logs
    .filter((l) => l.includes('"decision"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((o) => typeof o['decision'] === 'string');
}

describe('an allow whose upstream header cannot be sent', () => {
  it('is a 400 ERR_BAD_REQUEST in the response, the metric and the decision log alike', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await sign(key, { iss: 'https://idp.example', sub: 'mallory', name: 'Mallory\r\nx-admin: true', exp: now + 300 });
    const resp = await t.check(httpRequest({ id: 'crlf-1', headers: { authorization: `Bearer ${token}` } }));
    expect(resp.status?.code).not.toBe(0);
    expect(resp.ok_response).toBeUndefined();
    expect(resp.denied_response?.status?.code).toBe(400);
    expect(resp.denied_response?.body).toBe('ext_authz: bad request');
    expect(resp.dynamic_metadata?.fields?.['reason']).toEqual(expect.objectContaining({ stringValue: 'ERR_BAD_REQUEST' }));
    expect(resp.dynamic_metadata?.fields?.['decision']).toEqual(expect.objectContaining({ stringValue: 'deny' }));

    expect(await metricValue('ERR_BAD_REQUEST', 'deny')).toBe(1);
    expect(await metricValue('OK', 'allow')).toBe(0);

    const line = decisionLines().find((o) => o['request_id'] === 'crlf-1' || o['requestId'] === 'crlf-1');
    expect(line, JSON.stringify(decisionLines())).toBeDefined();
    expect(line).toMatchObject({ decision: 'deny', reason: 'ERR_BAD_REQUEST' });
  });

  it('the same token with a clean claim is allowed and the claim forwarded', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await sign(key, { iss: 'https://idp.example', sub: 'alice', name: 'Alice', exp: now + 300 });
    const resp = await t.check(httpRequest({ headers: { authorization: `Bearer ${token}` } }));
    expect(resp.status?.code ?? 0).toBe(0);
    expect(resp.ok_response?.headers?.map((h) => [h.header.key, h.header.value])).toContainEqual(['x-user-name', 'Alice']);
  });
});
