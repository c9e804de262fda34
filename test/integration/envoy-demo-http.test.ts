/**
 * The demo config (envoy/config) over the HTTP authorization transport, with the exact context
 * each ready-made proxy config sends (envoy-http.yaml path_prefix, the nginx location's context,
 * the Traefik forwardAuth address): every proxy gets the same per-backend exchanged token.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { decodeJwt } from 'jose';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { httpCall } from '../helpers/http-authz.js';
import { createTestRuntime } from '../helpers/runtime.js';
import { rememberSecret } from '../helpers/secrets.js';

type Y = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const envoyHttp = parse(readFileSync('envoy/envoy-http.yaml', 'utf8')) as Y;
const prefixes: string[] = envoyHttp.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters
  .map((f: Y) => f.typed_config?.http_service?.path_prefix)
  .filter(Boolean);
const nginxContexts = [...readFileSync('deploy/nginx/obo-authz.conf', 'utf8').matchAll(/set \$obo_authz_context "([^"]+)"/g)].map((m) => m[1]!);
const traefik = parse(readFileSync('deploy/traefik/dynamic.yaml', 'utf8')) as Y;
const traefikPaths = (Object.values(traefik.http.middlewares) as Y[]).map((m) => new URL(m.forwardAuth.address).pathname);

describe('envoy demo config over the HTTP transport', () => {
  let server: RunningServer;
  let token: string;
  beforeAll(async () => {
    server = await startServer({ configPaths: ['envoy/config'], grpcAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0', httpAuthzAddress: '127.0.0.1:0', runtime: createTestRuntime(), watch: false });
    token = execFileSync(process.execPath, ['examples/demo-keys/mint-demo-token.mjs', '--sub', 'alice', '--scope', 'mcp:tools weather:read'], { encoding: 'utf8' }).trim();
    rememberSecret(token);
  });
  afterAll(async () => server?.close());

  const cases = [
    ['/mcp', 'POST', 'mcp-tools'],
    ['/api/weather', 'GET', 'weather-api'],
  ] as const;
  const ctxFor = (list: string[], backend: string) => list.find((p) => p.includes(`backend=${backend}`))!;

  for (const [path, method, aud] of cases) {
    it(`${method} ${path}: envoy-http, nginx and traefik get the ${aud} token`, async () => {
      const auth = { authorization: `Bearer ${token}`, 'x-actor-token': 'spoofed' };
      const answers = [
        await httpCall(server.httpAuthzAddress, { method, path: `${ctxFor(prefixes, aud)}${path}`, headers: { host: 'localhost:8081', 'x-forwarded-proto': 'http', ...auth } }),
        await httpCall(server.httpAuthzAddress, { path: `/nginx;${ctxFor(nginxContexts, aud)}`, headers: { host: 'obo-authz:9004', 'x-original-uri': path, 'x-original-method': method, 'x-forwarded-host': 'localhost:8082', 'x-forwarded-proto': 'http', 'x-forwarded-for': '172.18.0.1', ...auth } }),
        await httpCall(server.httpAuthzAddress, { path: ctxFor(traefikPaths, aud), headers: { host: 'obo-authz:9004', 'x-forwarded-uri': path, 'x-forwarded-method': method, 'x-forwarded-host': 'localhost:8083', 'x-forwarded-proto': 'http', 'x-forwarded-for': '172.18.0.1', ...auth } }),
      ];
      for (const a of answers) {
        expect(a.status).toBe(200);
        expect(decodeJwt(a.headers['authorization']!.replace(/^Bearer /, ''))).toMatchObject({ sub: 'alice', aud });
        // the actor header is removed: named in x-envoy-auth-headers-to-remove, absent for nginx/Traefik
        expect(a.headers['x-actor-token']).toBeUndefined();
      }
      expect(answers[0]!.headers['x-envoy-auth-headers-to-remove']).toContain('x-actor-token');
    });
  }

  it('denies without a token (401 with the MCP challenge on /mcp); the catch-all route is authorized too', async () => {
    const r = await httpCall(server.httpAuthzAddress, { method: 'POST', path: `${ctxFor(prefixes, 'mcp-tools')}/mcp`, headers: { host: 'localhost:8081' } });
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toContain('resource_metadata="http://localhost:8080/.well-known/oauth-protected-resource/mcp"');
    const n = await httpCall(server.httpAuthzAddress, { path: `/nginx;${nginxContexts.find((c) => !c.includes('backend'))}`, headers: { 'x-original-uri': '/other', 'x-original-method': 'GET' } });
    expect(n.status).toBe(403);
    expect(n.headers['x-obo-authz-reason']).toBe('ERR_RBAC_DENIED');
  });

  it('the protected-resource metadata the challenge points to is served by the admin port the proxies route it to', async () => {
    const m = await httpCall(server.httpAddress, { path: '/.well-known/oauth-protected-resource/mcp', headers: { host: 'localhost:8081' } });
    expect(m.status).toBe(200);
    expect(JSON.parse(m.body)).toMatchObject({ resource: 'http://localhost:8080/mcp' });
  });
});
