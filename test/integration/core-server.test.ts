/**
 * The core service end to end: the real gRPC server on a loopback port, called with a
 * real gRPC client, on the quick-start config.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metricValue as registryValue } from '../helpers/metrics.js';
import { httpRequest, setHeaders, startTestServer, type TestServer } from '../helpers/server.js';
import { waitUntil } from '../helpers/wait.js';

const QS = 'examples/quickstart';
const quickstart = (name: string) => readFileSync(join(QS, name), 'utf8');
const token = (file: string) => {
  const j = JSON.parse(readFileSync(join(QS, 'requests', file), 'utf8'));
  return j.attributes.request.http.headers.authorization as string;
};

describe('core server on the quick-start config', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer(
      {
        '00-settings.yaml': quickstart('00-settings.yaml'),
        '10-request-authentication.yaml': quickstart('10-request-authentication.yaml'),
        '20-authorization-policy.yaml': quickstart('20-authorization-policy.yaml'),
        // relative key path resolved against the temp folder: point it at the repo's demo key
        '30-token-exchange.yaml': quickstart('30-token-exchange.yaml').replace(
          'keys/demo-sts.private.jwk.json',
          join(process.cwd(), 'examples/quickstart/keys/demo-sts.private.jwk.json'),
        ),
      },
      { watch: true },
    );
  });
  afterAll(async () => t?.close());

  it('reports SERVING on grpc.health.v1 for the overall server and the Authorization service', async () => {
    expect(await t.healthStatus('')).toBe(1);
    expect(await t.healthStatus('envoy.service.auth.v3.Authorization')).toBe(1);
    await expect(t.healthStatus('no.such.Service')).rejects.toMatchObject({ code: 5 });
  });

  it('allows a valid user token: claim headers set, the user token replaced by an exchanged one', async () => {
    const resp = await t.check(
      httpRequest({ method: 'POST', path: '/mcp', headers: { authorization: token('allowed.json'), 'x-user-sub': 'spoofed', 'x-actor-token': 'spoofed' } }),
    );
    expect(resp.status?.code ?? 0).toBe(0);
    expect(resp.denied_response).toBeUndefined();
    const set = setHeaders(resp);
    expect(set['x-user-sub']).toBe('alice');
    expect(set['x-user-email']).toBe('alice@example.com');
    // never both tokens: authorization carries only the exchanged token (set with overwrite)
    const exchanged = set['authorization']!.replace(/^Bearer /, '');
    expect(exchanged).not.toBe(token('allowed.json').replace(/^Bearer /, ''));
    expect(resp.ok_response?.headers_to_remove).toContain('x-actor-token');
    // a header that is set is never also removed (Envoy removes after setting)
    for (const h of resp.ok_response?.headers_to_remove ?? []) expect(set[h]).toBeUndefined();
    // the exchanged token verifies against the JWKS the server publishes
    const jwks = createRemoteJWKSet(new URL(`http://${t.server.httpAddress}/.well-known/jwks.json`));
    const { payload, protectedHeader } = await jwtVerify(exchanged, jwks, {
      issuer: 'http://localhost:9002',
      audience: 'https://mcp-tools.example.com',
    });
    expect(protectedHeader.kid).toBe('demo-sts-es256-1');
    expect(payload.sub).toBe('alice');
    expect(payload.scope).toBe('mcp:tools');
    expect(payload.act).toBeUndefined();
    expect(payload.exp! - payload.iat!).toBeLessThanOrEqual(300);
    const meta = resp.dynamic_metadata?.fields ?? {};
    expect((meta['exchange_policy'] as { stringValue?: string }).stringValue).toBe('default/mcp-on-behalf-of-user');
  });

  it('a second identical call is served from the exchange cache (same token)', async () => {
    const req = httpRequest({ method: 'POST', path: '/mcp', headers: { authorization: token('allowed.json') } });
    const a = setHeaders(await t.check(req))['authorization'];
    const b = setHeaders(await t.check(req))['authorization'];
    expect(a).toBe(b);
  });

  it('denies a request without a token where a policy requires one: 403 RBAC: access denied', async () => {
    const resp = await t.check(httpRequest({ method: 'POST', path: '/mcp' }));
    expect(resp.status?.code).not.toBe(0);
    expect(resp.denied_response?.status?.code).toBe(403);
    expect(resp.denied_response?.body).toBe('RBAC: access denied');
    const reason = resp.dynamic_metadata?.fields?.['reason'] as { stringValue?: string } | undefined;
    expect(reason?.stringValue).toBe('ERR_RBAC_DENIED');
  });

  it('answers 401 with www-authenticate for an expired token', async () => {
    const resp = await t.check(httpRequest({ method: 'POST', path: '/mcp?x=1', headers: { authorization: token('expired-token.json') } }));
    expect(resp.denied_response?.status?.code).toBe(401);
    expect(resp.denied_response?.body).toBe('Jwt is expired');
    const www = resp.denied_response?.headers.find((h) => h.header.key.toLowerCase() === 'www-authenticate');
    expect(www?.header.value).toBe('Bearer realm="https://mcp.example.com/mcp", error="invalid_token"');
  });

  it('keeps serving the last good config when a reload brings broken YAML, and takes a valid change', async () => {
    const failuresBefore = await metricValue(t, 'obo_authz_config_reloads_total{result="failure"}');
    const hashBefore = t.server.state.config!.hash;
    writeFileSync(join(t.dir, '30-broken.yaml'), 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x\n');
    await waitUntil(async () => (await metricValue(t, 'obo_authz_config_reloads_total{result="failure"}')) > failuresBefore, { what: 'the broken YAML to be rejected' });
    // an alias bomb is rejected like any invalid file (it once escaped as an exception)
    const bomb = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 7 }, (_, i) => `a${i + 1}: &a${i + 1} [${Array(10).fill(`*a${i}`).join(', ')}]`)];
    writeFileSync(join(t.dir, '31-bomb.yaml'), bomb.join('\n') + '\n');
    await waitUntil(async () => (await metricValue(t, 'obo_authz_config_reloads_total{result="failure"}')) > failuresBefore + 1, { what: 'the alias bomb to be rejected' });
    rmSync(join(t.dir, '31-bomb.yaml'));
    expect(t.server.state.config!.hash).toBe(hashBefore);
    expect(await t.healthStatus('')).toBe(1);
    const still = await t.check(httpRequest({ method: 'POST', path: '/mcp' }));
    expect(still.denied_response?.body).toBe('RBAC: access denied');
    expect(t.runtime.logs.join('')).toContain('invalid config rejected');

    // A valid change: a DENY policy for /mcp/admin is now in force.
    writeFileSync(
      join(t.dir, '30-broken.yaml'),
      [
        'apiVersion: security.istio.io/v1',
        'kind: AuthorizationPolicy',
        'metadata: {name: no-admin, namespace: default}',
        'spec:',
        '  action: DENY',
        '  rules: [{to: [{operation: {paths: ["/mcp/admin"]}}]}]',
        '',
      ].join('\n'),
    );
    await waitUntil(() => t.server.state.config!.hash !== hashBefore, { what: 'the valid change to be loaded' });
    const denied = await t.check(httpRequest({ method: 'POST', path: '/mcp/admin', headers: { authorization: token('allowed.json') } }));
    expect(denied.denied_response?.status?.code).toBe(403);
    expect((denied.dynamic_metadata?.fields?.['policy'] as { stringValue?: string })?.stringValue).toBe('default/no-admin');
  });

  it('exposes Prometheus metrics with checks by decision and reason, and a duration histogram', async () => {
    const text = await (await fetch(`http://${t.server.httpAddress}/metrics`)).text();
    expect(text).toMatch(/obo_authz_checks_total\{decision="allow",reason="OK",transport="grpc"\} [1-9]/);
    expect(text).toMatch(/obo_authz_checks_total\{decision="deny",reason="ERR_RBAC_DENIED",transport="grpc"\} [1-9]/);
    expect(text).toContain('obo_authz_check_duration_seconds_bucket');
    // stage metrics after the calls above: verification (then the verified-token cache),
    // one exchange by the built-in STS, then exchange-cache hits
    expect(text).toMatch(/obo_authz_jwt_verifications_total\{issuer="https:\/\/demo-idp\.obo-authz\.example",result="ok"\} [1-9]/);
    expect(text).toMatch(/obo_authz_jwt_verifications_total\{issuer="https:\/\/demo-idp\.obo-authz\.example",result="cached"\} [1-9]/);
    expect(text).toMatch(/obo_authz_jwt_verifications_total\{issuer="https:\/\/demo-idp\.obo-authz\.example",result="expired"\} 1/);
    expect(text).toMatch(/obo_authz_token_exchanges_total\{sts="default\/demo-sts",outcome="success"\} 1\n/);
    expect(text).toMatch(/obo_authz_token_exchange_cache_total\{policy="default\/mcp-on-behalf-of-user",result="hit"\} [1-9]/);
    expect(text).toMatch(/obo_authz_config_reloads_total\{result="failure"\} [1-9]/);
    expect((await fetch(`http://${t.server.httpAddress}/readyz`)).status).toBe(200);
    expect((await fetch(`http://${t.server.httpAddress}/healthz`)).status).toBe(200);
  });

  it('publishes the built-in STS keys and discovery; no token endpoint is advertised when it is disabled', async () => {
    const disc = (await (await fetch(`http://${t.server.httpAddress}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(disc['issuer']).toBe('http://localhost:9002');
    expect(disc['jwks_uri']).toBe('http://localhost:9002/.well-known/jwks.json');
    expect(disc['token_endpoint']).toBeUndefined();
    const jwks = (await (await fetch(`http://${t.server.httpAddress}/.well-known/jwks.json`)).json()) as { keys: { kid: string; d?: string }[] };
    expect(jwks.keys.map((k) => k.kid)).toEqual(['demo-sts-es256-1']);
    expect(jwks.keys[0]!.d).toBeUndefined(); // never the private part
    const token = await fetch(`http://${t.server.httpAddress}/oauth2/token`, { method: 'POST' });
    expect(token.status).toBe(404);
  });

  it('never writes a token into the logs', () => {
    const logs = t.runtime.logs.join('');
    for (const f of ['allowed.json', 'expired-token.json']) {
      const raw = token(f).replace(/^Bearer /, '');
      expect(logs).not.toContain(raw);
      expect(logs).not.toContain(raw.split('.')[2]);
    }
  });
});

function metricValue(t: TestServer, series: string): Promise<number> {
  return registryValue(t.server.runtime.metrics.registry, series);
}
