/**
 * The official MCP TypeScript SDK as the real client, through real gRPC Checks: its OAuth
 * discovery reads obo-authz's challenges and protected-resource metadata (answered directly
 * by the Check, and on the HTTP port), it signs in at a real authorization server, calls tools,
 * steps up on insufficient_scope, and sees policy refusals as JSON-RPC errors.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { discoverOAuthProtectedResourceMetadata, extractWWWAuthenticateParams, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { envoyFetch, mcpServerYaml, startAuthServer, startMcpBackend, TestOAuthProvider, type AuthServer, type McpBackend } from '../helpers/mcp.js';

const ORIGIN = 'https://mcp.example.test';
const RESOURCE = `${ORIGIN}/mcp`;

let as: AuthServer;
let backend: McpBackend;
let srv: TestServer;

function config(issuer: string): Record<string, string> {
  return {
    'mcp.yaml': `${mcpServerYaml(
      issuer,
      RESOURCE,
      `scopesSupported: [mcp:read, repo:admin, repo:write]
resourceName: Test tools
resourceDocumentation: https://docs.example.test/tools
scopes:
  required: [mcp:read]
  tools:
  - names: [delete_repo]
    scopes: [repo:admin]`,
    )}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-drop, namespace: istio-system}
spec:
  action: DENY
  rules:
  - to: [{operation: {methods: [POST]}}]
    when: [{key: request.mcp.tool, values: [drop_db]}]
`,
  };
}

beforeAll(async () => {
  as = await startAuthServer();
  backend = await startMcpBackend();
  srv = await startTestServer(config(as.issuer));
});

afterAll(async () => {
  await srv?.close();
  await backend?.close();
  await as?.close();
});

function transportFor(provider: TestOAuthProvider): StreamableHTTPClientTransport {
  return new StreamableHTTPClientTransport(new URL(RESOURCE), {
    authProvider: provider,
    fetch: envoyFetch({ origin: ORIGIN, backend: backend.url, check: (r) => srv.check(r) }),
  });
}

/** Connect, following the SDK's OAuth redirect once (the test plays the browser). */
async function connect(provider: TestOAuthProvider): Promise<Client> {
  const client = new Client({ name: 'sdk-test', version: '1.0.0' });
  const t = transportFor(provider);
  try {
    await client.connect(t);
    return client;
  } catch (e) {
    expect(e).toBeInstanceOf(UnauthorizedError);
  }
  await t.finishAuth(await provider.approve());
  const again = new Client({ name: 'sdk-test', version: '1.0.0' });
  await again.connect(transportFor(provider));
  return again;
}

describe('MCP SDK client through obo-authz Checks', () => {
  it('discovers the metadata from the 401 challenge, signs in for the resource with the challenged scope, and calls a tool', async () => {
    const provider = new TestOAuthProvider();
    const client = await connect(provider);
    // What the SDK sent the authorization server came from our challenge and metadata.
    const auth = as.authorizeRequests.at(-1)!;
    expect(auth.get('resource')).toBe(RESOURCE);
    expect(auth.get('scope')).toBe('mcp:read');
    expect(as.tokenRequests.at(-1)!.get('resource')).toBe(RESOURCE);
    const tools = await client.listTools();
    expect(tools.tools.map((t) => t.name).sort()).toEqual(['delete_repo', 'drop_db', 'search']);
    const r = await client.callTool({ name: 'search', arguments: {} });
    expect(r.content).toEqual([{ type: 'text', text: 'search done' }]);
    await client.close();
  });

  it('steps up on 403 insufficient_scope: the SDK reads scope and resource_metadata from our header and asks for every scope the call needs', async () => {
    const provider = new TestOAuthProvider();
    const client = await connect(provider);
    await expect(client.callTool({ name: 'delete_repo', arguments: {} })).rejects.toBeInstanceOf(UnauthorizedError);
    expect(provider.lastAuthorizationUrl!.searchParams.get('scope')).toBe('mcp:read repo:admin');
    expect(provider.lastAuthorizationUrl!.searchParams.get('resource')).toBe(RESOURCE);
    const code = await provider.approve();
    await (client.transport as StreamableHTTPClientTransport).finishAuth(code);
    const r = await client.callTool({ name: 'delete_repo', arguments: {} });
    expect(r.content).toEqual([{ type: 'text', text: 'delete_repo done' }]);
    await client.close();
  });

  it('answers a tool refused by policy with a JSON-RPC error the agent can show, and the session goes on', async () => {
    const provider = new TestOAuthProvider();
    const client = await connect(provider);
    const err = await client.callTool({ name: 'drop_db', arguments: {} }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).code).toBe(-32010);
    expect((err as McpError).message).toContain('tools/call "drop_db" is not allowed by policy');
    const r = await client.callTool({ name: 'search', arguments: {} });
    expect(r.isError).toBeFalsy();
    await client.close();
  });

  it('SDK discovery reads the metadata answered by a Check (path-inserted and root) and by the HTTP port', async () => {
    const viaCheck = envoyFetch({ origin: ORIGIN, backend: backend.url, check: (r) => srv.check(r) });
    const m1 = await discoverOAuthProtectedResourceMetadata(RESOURCE, undefined, viaCheck);
    expect(m1).toMatchObject({ resource: RESOURCE, authorization_servers: [as.issuer], scopes_supported: ["mcp:read", "repo:admin", "repo:write"], bearer_methods_supported: ['header'], resource_name: 'Test tools' });
    const m2 = await discoverOAuthProtectedResourceMetadata(RESOURCE, { resourceMetadataUrl: new URL(`${ORIGIN}/.well-known/oauth-protected-resource`) }, viaCheck);
    expect(m2.resource).toBe(RESOURCE);
    // The HTTP port, found by Host.
    const http = `http://${srv.server.httpAddress}`;
    const viaHttp: typeof fetch = (input, init) => {
      const u = new URL(String(input));
      return u.origin === ORIGIN ? fetchWithHost(`${http}${u.pathname}`, u.host, init) : fetch(input, init);
    };
    const m3 = await discoverOAuthProtectedResourceMetadata(RESOURCE, undefined, viaHttp);
    expect(m3).toEqual(m1);
  });

  it('a 401 challenge parsed back by the SDK names the metadata URL and scope', async () => {
    const f = envoyFetch({ origin: ORIGIN, backend: backend.url, check: (r) => srv.check(r) });
    const r = await f(RESOURCE, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }) });
    expect(r.status).toBe(401);
    const p = extractWWWAuthenticateParams(r);
    expect(p.resourceMetadataUrl?.href).toBe(`${ORIGIN}/.well-known/oauth-protected-resource/mcp`);
    expect(p.scope).toBe('mcp:read');
    expect(p.error).toBeUndefined();
  });
});

/** fetch with a Host header (node's fetch keeps it when set explicitly through undici). */
async function fetchWithHost(url: string, host: string, init?: RequestInit): Promise<Response> {
  const { request } = await import('node:http');
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host };
    new Headers(init?.headers ?? {}).forEach((v, k) => (headers[k] = v));
    const req = request(url, { method: init?.method ?? 'GET', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const hs = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') hs.set(k, v);
        resolve(new Response(res.statusCode === 204 ? null : Buffer.concat(chunks), { status: res.statusCode, headers: hs }));
      });
    });
    req.on('error', reject);
    req.end();
  });
}
