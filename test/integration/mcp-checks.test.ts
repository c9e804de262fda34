/**
 * Allow/deny tables for MCP requests sent as real gRPC Checks, their JSON-RPC bodies built
 * and validated with the official SDK's message schemas: per method, tool, resource and
 * prompt; batches; missing, partial, oversize and invalid bodies; header mismatches; the
 * RFC 8707 audience check; challenges; dynamic_metadata and the decision log.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CallToolRequestSchema,
  GetPromptRequestSchema,
  InitializeRequestSchema,
  JSONRPCMessageSchema,
  LATEST_PROTOCOL_VERSION,
  ListToolsRequestSchema,
  ReadResourceRequestSchema,
  SubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { extractWWWAuthenticateParams } from '@modelcontextprotocol/sdk/client/auth.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { checkRequestFor, DEFAULT_BODY, mcpServerYaml, startAuthServer, type AuthServer, type BodySettings } from '../helpers/mcp.js';
import type { CheckResponseObject } from '../../src/respond/respond.js';

const ORIGIN = 'https://mcp.example.test';
const RESOURCE = `${ORIGIN}/mcp`;

let as: AuthServer;
let srv: TestServer;
let token: string;

beforeAll(async () => {
  as = await startAuthServer();
  srv = await startTestServer({
    'mcp.yaml': `${mcpServerYaml(as.issuer, RESOURCE)}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mcp-allow, namespace: istio-system}
spec:
  rules:
  - to: [{operation: {methods: [GET, DELETE]}}]
  - when: [{key: request.mcp.method, values: [initialize, notifications/initialized, tools/list, resources/list, prompts/list, ping]}]
  - when: [{key: request.mcp.tool, values: [search, "read_*"]}]
  - when: [{key: request.mcp.resource, values: ["file:///docs/*"]}]
  - when: [{key: request.mcp.prompt, values: [summarize]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mcp-deny, namespace: istio-system}
spec:
  action: DENY
  rules:
  - when: [{key: request.mcp.tool, values: [read_secrets]}]
`,
  });
  token = await as.mint({ sub: 'alice', aud: RESOURCE, scope: 'mcp:read' });
});

afterAll(async () => {
  await srv?.close();
  await as?.close();
});

let nextId = 1;
/** A JSON-RPC request built from the SDK's request schema (validated as an MCP message). */
function rpc(schema: { parse(v: unknown): { method: string; params?: unknown } }, method: string, params?: Record<string, unknown>): Record<string, unknown> {
  const r = schema.parse({ method, ...(params ? { params } : {}) });
  return JSONRPCMessageSchema.parse({ jsonrpc: '2.0', id: nextId++, ...r }) as Record<string, unknown>;
}
const note = (method: string) => JSONRPCMessageSchema.parse({ jsonrpc: '2.0', method }) as Record<string, unknown>;

interface Sent {
  status: number;
  reason: string;
  resp: CheckResponseObject;
  header(name: string): string | undefined;
}

async function send(body: unknown, opts: { method?: string; headers?: Record<string, string>; bodySettings?: BodySettings; raw?: string; auth?: string | null } = {}): Promise<Sent> {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': LATEST_PROTOCOL_VERSION, ...(opts.headers ?? {}) };
  const auth = opts.auth === undefined ? `Bearer ${token}` : opts.auth;
  if (auth !== null) headers['authorization'] = auth;
  const text = opts.raw ?? (body === undefined ? undefined : JSON.stringify(body));
  const cr = checkRequestFor(new URL(RESOURCE), opts.method ?? 'POST', headers, text, opts.bodySettings ?? DEFAULT_BODY);
  if (cr === 'too-large') throw new Error('over Envoy max_request_bytes');
  const resp = await srv.check(cr);
  const hs = resp.denied_response?.headers ?? [];
  return {
    status: resp.denied_response ? resp.denied_response.status.code : 200,
    reason: (resp.dynamic_metadata.fields['reason'] as { stringValue: string }).stringValue,
    resp,
    header: (n) => hs.find((h) => h.header.key === n)?.header.value,
  };
}

const init = () => rpc(InitializeRequestSchema, 'initialize', { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 't', version: '1' } });
const call = (name: string) => rpc(CallToolRequestSchema, 'tools/call', { name, arguments: {} });
const read = (uri: string) => rpc(ReadResourceRequestSchema, 'resources/read', { uri });
const prompt = (name: string) => rpc(GetPromptRequestSchema, 'prompts/get', { name });

describe('allow / deny per method, tool, resource and prompt', () => {
  const cases: [string, () => unknown, boolean][] = [
    ['initialize', init, true],
    ['tools/list', () => rpc(ListToolsRequestSchema, 'tools/list'), true],
    ['notifications/initialized', () => note('notifications/initialized'), true],
    ['tools/call search', () => call('search'), true],
    ['tools/call read_file (prefix)', () => call('read_file'), true],
    ['tools/call read_secrets (DENY)', () => call('read_secrets'), false],
    ['tools/call delete_repo (no rule)', () => call('delete_repo'), false],
    ['resources/read file:///docs/a.md', () => read('file:///docs/a.md'), true],
    ['resources/read file:///secret/key', () => read('file:///secret/key'), false],
    ['resources/subscribe file:///docs/a.md', () => rpc(SubscribeRequestSchema, 'resources/subscribe', { uri: 'file:///docs/a.md' }), true],
    ['prompts/get summarize', () => prompt('summarize'), true],
    ['prompts/get admin_report', () => prompt('admin_report'), false],
    ['completion/complete (no rule)', () => rpc({ parse: (v) => v as { method: string } }, 'completion/complete', { ref: { type: 'ref/prompt', name: 'x' }, argument: { name: 'a', value: 'b' } }), false],
    ['notifications/cancelled (no rule)', () => note('notifications/cancelled'), false],
  ];
  for (const [name, body, allowed] of cases) {
    it(`${name}: ${allowed ? 'allowed' : 'denied'}`, async () => {
      const b = body() as Record<string, unknown>;
      const r = await send(b);
      expect(r.reason).toBe(allowed ? 'OK' : 'ERR_RBAC_DENIED');
      if (allowed) return;
      if ('id' in b) {
        // A refused request: a JSON-RPC error with its id, HTTP 200 (the session goes on).
        expect(r.status).toBe(200);
        const e = JSON.parse(r.resp.denied_response!.body) as { id: unknown; error: { code: number } };
        expect(e.id).toBe(b['id']);
        expect(e.error.code).toBe(-32010);
        expect(r.header('content-type')).toBe('application/json');
      } else {
        expect(r.status).toBe(403); // a refused notification: an HTTP error status
        expect(r.resp.denied_response!.body).toBe('RBAC: access denied');
      }
    });
  }

  it('GET (the event stream) and DELETE carry no body: allowed by their own rule, MCP keys absent', async () => {
    expect((await send(undefined, { method: 'GET' })).reason).toBe('OK');
    expect((await send(undefined, { method: 'DELETE' })).reason).toBe('OK');
  });

  it('dynamic_metadata and the decision log name the method, tool and id; never arguments', async () => {
    const b = rpc(CallToolRequestSchema, 'tools/call', { name: 'search', arguments: { query: 'SECRET-ARGUMENT' } });
    const r = await send(b, { headers: { 'mcp-session-id': 'sess-42' } });
    const f = r.resp.dynamic_metadata.fields;
    expect(f['mcp_method']).toMatchObject({ stringValue: 'tools/call' });
    expect(f['mcp_tool']).toMatchObject({ stringValue: 'search' });
    expect(f['mcp_id']).toMatchObject({ stringValue: String(b['id']) });
    expect(f['mcp_session_id']).toMatchObject({ stringValue: 'sess-42' });
    expect(f['mcp_server']).toMatchObject({ stringValue: 'istio-system/tools' });
    const line = srv.runtime.logs.filter((l) => l.includes('"component":"decision"')).at(-1)!;
    const logged = JSON.parse(line) as Record<string, unknown>;
    // the decision log carries the MCP facts under dynamic_metadata's names
    expect(Object.fromEntries(Object.entries(logged).filter(([k]) => k.startsWith('mcp_')))).toEqual({
      mcp_server: 'istio-system/tools',
      mcp_session_id: 'sess-42',
      mcp_method: 'tools/call',
      mcp_tool: 'search',
      mcp_id: String(b['id']),
    });
    expect(srv.runtime.logs.join('')).not.toContain('SECRET-ARGUMENT');
  });
});

describe('batches (protocol 2025-03-26): allowed only if every element is', () => {
  it('every element allowed -> allowed', async () => {
    expect((await send([rpc(ListToolsRequestSchema, 'tools/list'), call('search'), note('notifications/initialized')])).reason).toBe('OK');
  });
  it('one element refused -> the whole batch refused, one JSON-RPC error per request', async () => {
    const a = call('search');
    const b = call('read_secrets');
    const r = await send([a, b, note('notifications/initialized')]);
    expect(r.reason).toBe('ERR_RBAC_DENIED');
    expect(r.status).toBe(200);
    const errs = JSON.parse(r.resp.denied_response!.body) as { id: unknown }[];
    expect(errs.map((e) => e.id)).toEqual([a['id'], b['id']]);
    expect(r.resp.dynamic_metadata.fields['mcp_batch']).toMatchObject({ numberValue: 3 });
  });
  it('a refused element in the middle is found (every element is evaluated)', async () => {
    expect((await send([call('search'), call('delete_repo'), call('read_x')])).reason).toBe('ERR_RBAC_DENIED');
  });
  it('an empty batch is invalid', async () => {
    const r = await send([]);
    expect(r.reason).toBe('ERR_MCP_BODY_INVALID');
  });
});

describe('bodies a policy needs but cannot read: explicit denies, never a guess', () => {
  const tool = () => call('search');
  const cases: [string, () => Parameters<typeof send>, string, number][] = [
    ['no body (with_request_body not set)', () => [tool(), { bodySettings: { ...DEFAULT_BODY, enabled: false }, headers: { 'content-length': '80' } }], 'ERR_MCP_BODY_MISSING', 400],
    ['partial body (allow_partial_message)', () => [tool(), { bodySettings: { ...DEFAULT_BODY, maxRequestBytes: 32, allowPartialMessage: true } }], 'ERR_MCP_BODY_PARTIAL', 413],
    ['body over MCPServer maxBodyBytes', () => [{ ...tool(), params: { name: 'search', arguments: { pad: 'x'.repeat(5000) } } }, {}], 'ERR_MCP_BODY_TOO_LARGE', 413],
    ['not JSON', () => [undefined, { raw: '{"jsonrpc":"2.0",' }], 'ERR_MCP_BODY_INVALID', 400],
    ['not JSON-RPC 2.0', () => [{ jsonrpc: '1.0', id: 1, method: 'tools/call', params: { name: 'search' } }, {}], 'ERR_MCP_BODY_INVALID', 400],
    ['tools/call without a name', () => [{ jsonrpc: '2.0', id: 1, method: 'tools/call', params: {} }, {}], 'ERR_MCP_BODY_INVALID', 400],
    ['a null id', () => [{ jsonrpc: '2.0', id: null, method: 'tools/call', params: { name: 'search' } }, {}], 'ERR_MCP_BODY_INVALID', 400],
    ['duplicate name keys (parser differential)', () => [undefined, { raw: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"delete_repo"}}' }], 'ERR_MCP_BODY_INVALID', 400],
    ['duplicate key spelled with an escape', () => [undefined, { raw: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","n\\u0061me":"read_secrets"}}' }], 'ERR_MCP_BODY_INVALID', 400],
    ['Mcp-Name header differs from the body', () => [tool(), { headers: { 'mcp-method': 'tools/call', 'mcp-name': 'read_x' } }], 'ERR_MCP_HEADER_MISMATCH', 400],
  ];
  for (const [name, args, reason, status] of cases) {
    it(`${name} -> ${status} ${reason}`, async () => {
      const [b, o] = args();
      const r = await send(b, o);
      expect(r.reason).toBe(reason);
      expect(r.status).toBe(status);
    });
  }

  it('a JSON parse error is answered as a JSON-RPC parse error', async () => {
    const r = await send(undefined, { raw: 'not json' });
    expect(JSON.parse(r.resp.denied_response!.body)).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } });
  });

  it('pack_as_bytes: a UTF-8 raw_body is read; invalid UTF-8 is invalid', async () => {
    const bytes = { ...DEFAULT_BODY, packAsBytes: true };
    expect((await send(call('search'), { bodySettings: bytes })).reason).toBe('OK');
    const cr = checkRequestFor(new URL(RESOURCE), 'POST', { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, '{}', bytes);
    if (cr === 'too-large') throw new Error('unexpected');
    cr.attributes!.request!.http!.raw_body = Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x7d]);
    const resp = await srv.check(cr);
    expect((resp.dynamic_metadata.fields['reason'] as { stringValue: string }).stringValue).toBe('ERR_MCP_BODY_INVALID');
  });

  it('Mcp-Method / Mcp-Name headers that match the body (base64 form too) are fine', async () => {
    expect((await send(call('search'), { headers: { 'mcp-method': 'tools/call', 'mcp-name': 'search' } })).reason).toBe('OK');
    const b64 = `=?base64?${Buffer.from('read_ünïcode').toString('base64')}?=`;
    expect((await send(call('read_ünïcode'), { headers: { 'mcp-method': 'tools/call', 'mcp-name': b64 } })).reason).toBe('OK');
  });
});

describe('tokens on the MCP resource', () => {
  it('no token -> 401 with resource_metadata and no error (RFC 6750 §3.1)', async () => {
    const r = await send(init(), { auth: null });
    expect([r.status, r.reason]).toEqual([401, 'ERR_MCP_TOKEN_REQUIRED']);
    const p = extractWWWAuthenticateParams(new Response(null, { headers: { 'www-authenticate': r.header('www-authenticate')! } }));
    expect(p.resourceMetadataUrl?.href).toBe(`${ORIGIN}/.well-known/oauth-protected-resource/mcp`);
    expect(p.error).toBeUndefined();
  });

  it('a refused token -> 401 error="invalid_token" with resource_metadata', async () => {
    const r = await send(init(), { auth: `Bearer ${token.slice(0, -4)}AAAA` });
    expect(r.status).toBe(401);
    expect(r.reason).toBe('ERR_JWT_SIGNATURE');
    const p = extractWWWAuthenticateParams(new Response(null, { headers: { 'www-authenticate': r.header('www-authenticate')! } }));
    expect(p.error).toBe('invalid_token');
    expect(p.resourceMetadataUrl?.href).toBe(`${ORIGIN}/.well-known/oauth-protected-resource/mcp`);
  });

  const audCases: [string, unknown, string][] = [
    ['the resource', RESOURCE, 'OK'],
    ['the resource with upper-case host and a trailing slash', 'https://MCP.example.test/mcp/', 'OK'],
    ['one of several audiences', ['https://other.example.test', RESOURCE], 'OK'],
    ['another resource (RFC 8707)', 'https://other.example.test/mcp', 'ERR_MCP_AUDIENCE'],
    ['a path prefix of the resource only', ORIGIN, 'ERR_MCP_AUDIENCE'],
    ['no audience', undefined, 'ERR_MCP_AUDIENCE'],
  ];
  for (const [name, aud, reason] of audCases) {
    it(`audience ${name} -> ${reason}`, async () => {
      const t = await as.mint({ sub: 'bob', ...(aud === undefined ? {} : { aud }) });
      const r = await send(init(), { auth: `Bearer ${t}` });
      expect(r.reason).toBe(reason);
      if (reason !== 'OK') {
        expect(r.status).toBe(401);
        expect(r.header('www-authenticate')).toContain('error="invalid_token"');
      }
    });
  }
});
