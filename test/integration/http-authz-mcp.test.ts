/**
 * MCP over the HTTP transport: Envoy's http_service forwards the JSON-RPC body
 * (with_request_body), and the same tool-level policies decide as over gRPC. Each request goes
 * both ways; statuses, reasons and challenges must agree.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckResponseObject } from '../../src/respond/respond.js';
import { httpCall } from '../helpers/http-authz.js';
import { checkRequestFor, DEFAULT_BODY, mcpServerYaml, startAuthServer, type AuthServer } from '../helpers/mcp.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/** The MCP server's resource, its authorization server, obo-authz, and alice's token for it. */
const RESOURCE = 'https://mcp.example.test/mcp';
const env = {} as { as: AuthServer; srv: TestServer; token: string };

beforeAll(async () => {
  const as = (env.as = await startAuthServer());
  env.srv = await startTestServer(
    {
      'mcp.yaml': `apiVersion: obo-authz.dev/v1alpha1
kind: Settings
metadata: {name: s}
spec:
  reasonHeader: true
  httpAuthz: {trustedProxies: [127.0.0.1/32]}
---
${mcpServerYaml(as.issuer, RESOURCE)}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mcp-allow, namespace: istio-system}
spec:
  rules:
  - when: [{key: request.mcp.tool, values: [search]}]
`,
    },
    { httpAuthz: true },
  );
  env.token = await as.mint({ sub: 'alice', aud: RESOURCE, scope: 'mcp:read' });
});

afterAll(async () => {
  await env.srv?.close();
  await env.as?.close();
});

const call = (name: string) => JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: {} } });

async function both(body: string, auth: boolean): Promise<{ grpc: [number, string, string]; http: [number, string, string] }> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    ...(auth ? { authorization: `Bearer ${env.token}` } : {}),
  };
  const raw = checkRequestFor(new URL(RESOURCE), 'POST', headers, body, DEFAULT_BODY);
  if (raw === 'too-large') throw new Error('unexpected');
  const g: CheckResponseObject = await env.srv.check(raw);
  const reason = (g.dynamic_metadata?.fields?.['reason'] as { stringValue?: string } | undefined)?.stringValue ?? '';
  const www = g.denied_response?.headers.find((h) => h.header.key === 'www-authenticate')?.header.value ?? '';
  const h = await httpCall(env.srv.server.httpAuthzAddress, {
    method: 'POST',
    path: '/envoy/mcp',
    headers: { host: 'mcp.example.test', 'x-forwarded-proto': 'https', ...headers, 'x-envoy-auth-partial-body': 'false' },
    body,
  });
  return {
    grpc: [g.denied_response?.status?.code ?? 200, reason, www],
    http: [h.status, h.status === 200 ? 'OK' : h.headers['x-obo-authz-reason'] ?? '', h.headers['www-authenticate'] ?? ''],
  };
}

describe('MCP over the HTTP transport', () => {
  it.each([
    ['an allowed tool call', call('search'), true, 200],
    ['no token: the resource_metadata challenge', call('search'), false, 401],
    ['a body that is no JSON-RPC', '{"jsonrpc":"2.0",', true, 400],
  ] as const)('%s: the same answer as over gRPC', async (_name, body, auth, status) => {
    const r = await both(body, auth);
    expect(r.http).toEqual(r.grpc);
    expect(r.http[0]).toBe(status);
  });

  it('listed limit: a JSON-RPC refusal (HTTP 200 over gRPC) goes out as 403, every proxy taking a 2xx as an allow', async () => {
    const r = await both(call('delete_all'), true);
    expect(r.grpc).toEqual([200, 'ERR_RBAC_DENIED', '']);
    expect(r.http).toEqual([403, 'ERR_RBAC_DENIED', '']);
  });
});
