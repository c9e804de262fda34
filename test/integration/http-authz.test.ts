/**
 * The HTTP authorization listener end to end, per proxy convention: the real server on
 * loopback, real HTTP/1.1 clients (node:http keep-alive agents) and an h2c client, on the
 * quick-start config. 127.0.0.1 is the trusted proxy; 127.0.0.2 is another peer.
 */
import { readFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { connect } from 'node:http2';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quickstartFiles } from '../helpers/config.js';
import { httpCall, type HttpCall } from '../helpers/http-authz.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const QS = 'examples/quickstart';
const quickstart = (name: string) => readFileSync(join(QS, name), 'utf8');
const token = (file: string) =>
  JSON.parse(readFileSync(join(QS, 'requests', file), 'utf8')).attributes.request.http.headers.authorization as string;
const USER = token('allowed.json');
const EXPIRED = token('expired-token.json');

// Every test runs with the HTTP/1.1 fast path (the default) and with node:http alone.
const SETTINGS = (fast: boolean) => `${quickstart('00-settings.yaml').trimEnd()}
  httpAuthz:
    trustedProxies: [127.0.0.1/32]
    managedHeaders: [authorization, x-user-sub, x-actor-token]
    maxHeaderBytes: 8192
    http1FastPath: ${fast}
`;

describe.each([
  ['HTTP/1.1 fast path', true],
  ['node:http only', false],
])('HTTP authorization listener (%s)', (_name, fast) => {
  let t: TestServer;
  let at: string;
  const call = (c: HttpCall) => httpCall(at, c);
  beforeAll(async () => {
    t = await startTestServer(quickstartFiles(SETTINGS(fast)), { httpAuthz: true });
    at = t.server.httpAuthzAddress;
  });
  afterAll(async () => t?.close());

  describe('envoy (http_service / envoyExtAuthzHttp, path_prefix /envoy)', () => {
    it('allow: 200, upstream headers as answer headers, removals in x-envoy-auth-headers-to-remove', async () => {
      const r = await call({
        method: 'POST',
        path: '/envoy/mcp',
        headers: { host: 'mcp.example.com', authorization: USER, 'x-user-sub': 'spoofed', 'x-actor-token': 'spoofed', 'x-forwarded-proto': 'https' },
      });
      expect(r.status).toBe(200);
      expect(r.body).toBe('');
      expect(r.headers['x-user-sub']).toBe('alice');
      expect(r.headers['authorization']).toMatch(/^Bearer ey/);
      expect(r.headers['authorization']).not.toBe(USER);
      const removed = r.headers['x-envoy-auth-headers-to-remove']!.split(',');
      expect(removed).toContain('x-actor-token');
      // a header that is set is never also removed
      for (const h of removed) expect(r.headers[h]).toBeUndefined();
    });

    it('deny: status, body and www-authenticate for the client; realm from the trusted x-forwarded-proto', async () => {
      const r = await call({ method: 'POST', path: '/envoy/mcp?x=1', headers: { host: 'mcp.example.com', authorization: EXPIRED, 'x-forwarded-proto': 'https' } });
      expect(r.status).toBe(401);
      expect(r.body).toBe('Jwt is expired');
      expect(r.headers['www-authenticate']).toBe('Bearer realm="https://mcp.example.com/mcp", error="invalid_token"');
      expect(r.headers['x-obo-authz-reason']).toBe('ERR_JWT_EXPIRED');
      const nt = await call({ method: 'POST', path: '/envoy/mcp', headers: { host: 'mcp.example.com' } });
      expect([nt.status, nt.body]).toEqual([403, 'RBAC: access denied']);
    });

    it('normalizes the original path: /envoy/x/../mcp is /mcp, and a DENY-free /healthz stays open', async () => {
      const r = await call({ method: 'POST', path: '/envoy/x/../mcp', headers: { host: 'mcp.example.com' } });
      expect(r.status).toBe(403);
      const h = await call({ path: '/envoy//healthz', headers: { host: 'mcp.example.com' } });
      expect(h.status).toBe(200);
    });

    it('reads context extensions from ;key=value parameters of the prefix segment', async () => {
      // namespace other: the default-namespace ALLOW policy does not apply there -> allowed
      const r = await call({ method: 'POST', path: '/envoy;namespace=other/mcp', headers: { host: 'mcp.example.com' } });
      expect(r.status).toBe(200);
      const bad = await call({ path: '/envoy;namespace/mcp', headers: { host: 'mcp.example.com' } });
      expect(bad.status).toBe(400);
    });

    it('a token in the query cannot be removed over HTTP: refused (ERR_TRANSPORT_UNSUPPORTED)', async () => {
      const raw = USER.replace('Bearer ', '');
      const r = await call({ method: 'POST', path: `/envoy/mcp?access_token=${raw}`, headers: { host: 'mcp.example.com' } });
      expect(r.status).toBe(403);
      expect(r.headers['x-obo-authz-reason']).toBe('ERR_TRANSPORT_UNSUPPORTED');
    });
  });

  describe('nginx (auth_request)', () => {
    const nginx = (extra: Record<string, string>, localAddress?: string) =>
      call({ path: '/nginx', localAddress, headers: { host: 'obo-authz:9004', 'x-forwarded-host': 'mcp.example.com', 'x-original-method': 'POST', ...extra } });

    it('allow: 200 with upstream values for auth_request_set; managed headers state their final value', async () => {
      const r = await nginx({ 'x-original-uri': '/mcp', authorization: USER, 'x-user-sub': 'spoofed', 'x-actor-token': 'spoofed', 'x-forwarded-for': '203.0.113.9' });
      expect(r.status).toBe(200);
      expect(r.headers['x-user-sub']).toBe('alice');
      expect(r.headers['authorization']).toMatch(/^Bearer ey/);
      // removed by the pipeline: absent from the answer, so nginx's proxy_set_header drops it
      expect(r.headers['x-actor-token']).toBeUndefined();
    });

    it('echoes a managed header the pipeline left alone (no RequestAuthentication for /healthz... still the same token)', async () => {
      // namespace other has no RequestAuthentication: authorization is untouched and echoed
      const r = await call({ path: '/nginx;namespace=other', headers: { host: 'x', 'x-original-uri': '/anything', 'x-original-method': 'GET', authorization: 'Basic YTpi' } });
      expect(r.status).toBe(200);
      expect(r.headers['authorization']).toBe('Basic YTpi');
    });

    it('401 keeps WWW-Authenticate; a 400 becomes 403 (nginx would answer 500 for it)', async () => {
      const r = await nginx({ 'x-original-uri': '/mcp', authorization: EXPIRED });
      expect(r.status).toBe(401);
      expect(r.headers['www-authenticate']).toContain('error="invalid_token"');
      const missing = await nginx({});
      expect(missing.status).toBe(403);
      expect(missing.headers['x-obo-authz-reason']).toBe('ERR_BAD_REQUEST');
    });

    it('refuses a request without the original method header', async () => {
      const r = await call({ path: '/nginx', headers: { 'x-original-uri': '/mcp' } });
      expect(r.status).toBe(403);
      expect(r.headers['x-obo-authz-reason']).toBe('ERR_BAD_REQUEST');
    });
  });

  describe('traefik (ForwardAuth)', () => {
    const traefik = (extra: Record<string, string>, localAddress?: string) =>
      call({ path: '/traefik', localAddress, headers: { host: 'obo-authz:9004', 'x-forwarded-method': 'POST', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'mcp.example.com', ...extra } });

    it('allow and deny with status, headers and body as Traefik passes them on', async () => {
      const ok = await traefik({ 'x-forwarded-uri': '/mcp', authorization: USER, 'x-forwarded-for': '198.51.100.4' });
      expect(ok.status).toBe(200);
      expect(ok.headers['x-user-sub']).toBe('alice');
      const denied = await traefik({ 'x-forwarded-uri': '/mcp?x=1', authorization: EXPIRED });
      expect([denied.status, denied.body]).toEqual([401, 'Jwt is expired']);
      expect(denied.headers['www-authenticate']).toBe('Bearer realm="https://mcp.example.com/mcp", error="invalid_token"');
    });

    it('refuses a request without X-Forwarded-Uri (400, the client sees it as is)', async () => {
      const r = await traefik({});
      expect(r.status).toBe(400);
      expect(r.body).toBe('ext_authz: bad request');
    });
  });

  describe('trust in forwarded headers', () => {
    it('refuses forwarded headers from a peer that is not a trusted proxy, in every convention', async () => {
      const spoof = { 'x-forwarded-for': '10.9.9.9', 'x-forwarded-host': 'admin.example.com' };
      for (const path of ['/envoy/mcp', '/nginx', '/traefik']) {
        const r = await call({ path, localAddress: '127.0.0.2', headers: { host: 'mcp.example.com', authorization: USER, 'x-original-uri': '/mcp', 'x-original-method': 'GET', 'x-forwarded-uri': '/mcp', 'x-forwarded-method': 'GET', ...spoof } });
        expect(r.status, path).toBe(403);
        expect(r.headers['x-obo-authz-reason'], path).toBe('ERR_UNTRUSTED_PROXY');
        expect(r.headers['x-user-sub']).toBeUndefined();
      }
      // without forwarded headers the same peer may ask an envoy-convention question
      const plain = await call({ method: 'POST', path: '/envoy/mcp', localAddress: '127.0.0.2', headers: { host: 'mcp.example.com', authorization: USER } });
      expect(plain.status).toBe(200);
      expect(t.runtime.logs.join('')).toMatch(/"reason":"ERR_UNTRUSTED_PROXY".*"transport":"http"|"transport":"http".*"reason":"ERR_UNTRUSTED_PROXY"/);
    });
  });

  describe('the listener', () => {
    it('reuses one keep-alive connection for many Checks', async () => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const ports = new Set<number>();
        for (let i = 0; i < 5; i++) {
          const r = await call({ method: 'POST', path: '/envoy/mcp', agent, headers: { host: 'mcp.example.com', authorization: USER } });
          expect(r.status).toBe(200);
          ports.add(r.localPort);
        }
        expect(ports.size).toBe(1);
      } finally {
        agent.destroy();
      }
    });

    it('answers an oversized request head with 431, counted as a deny with a reason', async () => {
      const r = await call({ path: '/envoy/mcp', headers: { host: 'mcp.example.com', cookie: 'a='.padEnd(9000, 'x') } });
      expect(r.status).toBe(431);
      const text = await t.server.runtime.metrics.registry.metrics();
      expect(text).toMatch(/obo_authz_checks_total\{decision="deny",reason="ERR_BAD_REQUEST",transport="http"\} [1-9]/);
    });

    it('answers a path outside the conventions with 404, and serves readiness', async () => {
      expect((await call({ path: '/other' })).status).toBe(404);
      expect((await call({ path: '/readyz' })).status).toBe(200);
    });

    it('speaks h2c (prior knowledge) on the same port', async () => {
      const s = connect(`http://${at}`);
      try {
        const r = await new Promise<{ status: number; sub: string | undefined }>((resolve, reject) => {
          const q = s.request({ ':method': 'POST', ':path': '/envoy/mcp', ':authority': 'mcp.example.com', authorization: USER });
          q.on('response', (h) => {
            q.resume();
            q.on('end', () => resolve({ status: Number(h[':status']), sub: h['x-user-sub'] as string | undefined }));
          });
          q.on('error', reject);
          q.end();
        });
        expect(r).toEqual({ status: 200, sub: 'alice' });
      } finally {
        s.close();
      }
    });

    it('counts checks by transport next to the gRPC ones', async () => {
      const text = await t.server.runtime.metrics.registry.metrics();
      expect(text).toMatch(/obo_authz_checks_total\{decision="allow",reason="OK",transport="http"\} [1-9]/);
      expect(text).toMatch(/obo_authz_check_duration_seconds_count\{decision="allow",transport="http"\} [1-9]/);
    });

    it('never writes a token into the logs', () => {
      const logs = t.runtime.logs.join('');
      for (const tok of [USER, EXPIRED]) expect(logs).not.toContain(tok.replace(/^Bearer /, '').split('.')[2]);
    });
  });
});

