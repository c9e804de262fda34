/**
 * The Envoy demo config (envoy/config) does what envoy/README.md says, over the real gRPC
 * server: a user token minted by the demo script is exchanged per backend, with the
 * context_extensions the envoy.yaml routes send.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { decodeJwt } from 'jose';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { rememberSecret } from '../helpers/secrets.js';
import { createTestRuntime } from '../helpers/runtime.js';
import { httpRequest, setHeaders } from '../helpers/server.js';
import { sendCheck } from '../../src/cli/check.js';

type Y = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function routeExtensions(prefix: string): Record<string, string> {
  const envoy = parse(readFileSync('envoy/envoy.yaml', 'utf8')) as Y;
  const hcm = envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
  const routes = hcm.route_config.virtual_hosts.flatMap((v: Y) => v.routes);
  const r = routes.find((x: Y) => x.match.path_separated_prefix === prefix || x.match.prefix === prefix || x.match.path === prefix);
  return r.typed_per_filter_config['envoy.filters.http.ext_authz'].check_settings.context_extensions;
}

describe('envoy demo config', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer({ configPaths: ['envoy/config'], grpcAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0', runtime: createTestRuntime(), watch: false });
  });
  afterAll(async () => server?.close());

  it('exchanges the user token for a per-backend token on /mcp and /api/weather', async () => {
    const token = execFileSync(process.execPath, ['examples/demo-keys/mint-demo-token.mjs', '--sub', 'alice', '--scope', 'mcp:tools weather:read'], { encoding: 'utf8' }).trim();
    rememberSecret(token);
    for (const [path, method, aud, scope] of [
      ['/mcp', 'POST', 'mcp-tools', 'mcp:tools'],
      ['/api/weather', 'GET', 'weather-api', 'weather:read'],
    ] as const) {
      const req = httpRequest({ method, path, headers: { authorization: `Bearer ${token}` }, contextExtensions: routeExtensions(path) });
      const resp = await sendCheck(server.grpcAddress, req, 3000);
      expect(resp.status?.code ?? 0, path).toBe(0);
      const exchanged = setHeaders(resp)['authorization']!.replace(/^Bearer /, '');
      const claims = decodeJwt(exchanged);
      expect(claims).toMatchObject({ iss: 'http://obo-authz:9002', sub: 'alice', aud, scope });
    }
  });

  it('answers /mcp without a token with the MCP challenge (401, resource_metadata) and 401 for a token signed by another key', async () => {
    const none = await sendCheck(server.grpcAddress, httpRequest({ method: 'POST', path: '/mcp', contextExtensions: routeExtensions('/mcp') }), 3000);
    expect(none.denied_response?.status?.code).toBe(401);
    expect(none.denied_response?.headers.find((h) => h.header.key === 'www-authenticate')?.header.value).toBe(
      'Bearer resource_metadata="http://localhost:8080/.well-known/oauth-protected-resource/mcp", scope="mcp:tools"',
    );
    const forged = Buffer.from('{"alg":"ES256","kid":"x"}').toString('base64url') + '.' + Buffer.from('{"iss":"https://demo-idp.obo-authz.example","aud":"mcp-demo","sub":"mallory"}').toString('base64url') + '.' + 'A'.repeat(86);
    const bad = await sendCheck(server.grpcAddress, httpRequest({ method: 'POST', path: '/mcp', headers: { authorization: `Bearer ${forged}` }, contextExtensions: routeExtensions('/mcp') }), 3000);
    expect(bad.denied_response?.status?.code).toBe(401);
  });

  it('serves the protected-resource metadata of /mcp through the catch-all route (a direct answer of the Check)', async () => {
    const path = '/.well-known/oauth-protected-resource/mcp';
    const resp = await sendCheck(server.grpcAddress, httpRequest({ method: 'GET', path, host: 'localhost:8080', contextExtensions: routeExtensions('/') }), 3000);
    expect(resp.denied_response?.status?.code).toBe(200);
    expect(JSON.parse(resp.denied_response!.body)).toMatchObject({ resource: 'http://localhost:8080/mcp', authorization_servers: ['https://demo-idp.obo-authz.example'] });
  });
});
