/**
 * Per-tool tokens: a TokenExchangePolicy's `tools` narrows the token the backend receives
 * to the called tool (audience and scopes), through real gRPC Checks and the built-in STS.
 */
import { fileURLToPath } from 'node:url';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CallToolRequestSchema, JSONRPCMessageSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { checkRequestFor, DEFAULT_BODY, idpYaml, startAuthServer, type AuthServer } from '../helpers/mcp.js';

const RESOURCE = 'https://mcp.example.test/mcp';
const KEY = fileURLToPath(new URL('../fixtures/exchange/sts-es256.pem', import.meta.url));

let as: AuthServer;
let srv: TestServer;
let token: string;

beforeAll(async () => {
  as = await startAuthServer();
  srv = await startTestServer({
    'x.yaml': `${idpYaml(as.issuer)}---
apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: sts, namespace: istio-system}
spec:
  builtin:
    issuer: https://sts.test
    keys: [{kid: k1, file: ${KEY}, algorithm: ES256}]
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: github, namespace: istio-system}
spec:
  target: {audience: github-api, scopes: [repo:read]}
  sts: sts
  tools:
  - names: [delete_repo, "admin_*"]
    audience: github-admin-api
    scopes: [repo:admin]
  - names: [search]
    scopes: [repo:search]
`,
  });
  token = await as.mint({ sub: 'alice', aud: RESOURCE, scope: 'repo:read repo:admin repo:search' });
});

afterAll(async () => {
  await srv?.close();
  await as?.close();
});

async function upstreamToken(body: unknown | undefined, bodySettings = DEFAULT_BODY): Promise<{ reason: string; claims?: Record<string, unknown> }> {
  const cr = checkRequestFor(new URL(RESOURCE), 'POST', { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body === undefined ? undefined : JSON.stringify(body), bodySettings);
  if (cr === 'too-large') throw new Error('unexpected');
  const resp = await srv.check(cr);
  const reason = (resp.dynamic_metadata.fields['reason'] as { stringValue: string }).stringValue;
  const auth = resp.ok_response?.headers.find((h) => h.header.key === 'authorization')?.header.value;
  return { reason, ...(auth ? { claims: decodeJwt(auth.slice('Bearer '.length)) as Record<string, unknown> } : {}) };
}

const call = (name: string, id = 1) => JSONRPCMessageSchema.parse({ jsonrpc: '2.0', id, ...CallToolRequestSchema.parse({ method: 'tools/call', params: { name, arguments: {} } }) });

describe('per-tool tokens', () => {
  const cases: [string, unknown, string, string][] = [
    ['tools/call delete_repo', call('delete_repo'), 'github-admin-api', 'repo:admin'],
    ['tools/call admin_purge (pattern)', call('admin_purge'), 'github-admin-api', 'repo:admin'],
    ['tools/call search (scopes only: the target audience stays)', call('search'), 'github-api', 'repo:search'],
    ['tools/call other (no entry: target)', call('other'), 'github-api', 'repo:read'],
    ['tools/list (not a tool call: target)', JSONRPCMessageSchema.parse({ jsonrpc: '2.0', id: 2, ...ListToolsRequestSchema.parse({ method: 'tools/list' }) }), 'github-api', 'repo:read'],
  ];
  for (const [name, body, aud, scope] of cases) {
    it(`${name} -> aud ${aud}, scope ${scope}`, async () => {
      const r = await upstreamToken(body);
      expect(r.reason).toBe('OK');
      expect(r.claims).toMatchObject({ aud, scope, sub: 'alice' });
    });
  }

  it('a token cached for one tool is never served for another', async () => {
    expect((await upstreamToken(call('delete_repo', 10))).claims!['aud']).toBe('github-admin-api');
    expect((await upstreamToken(call('search', 11))).claims!['scope']).toBe('repo:search');
    expect((await upstreamToken(call('delete_repo', 12))).claims!['scope']).toBe('repo:admin');
  });

  it('the tool cannot be read -> an explicit deny, no token', async () => {
    expect(await upstreamToken(call('delete_repo'), { ...DEFAULT_BODY, enabled: false })).toEqual({ reason: 'ERR_MCP_BODY_MISSING' });
    expect(await upstreamToken(call('delete_repo'), { ...DEFAULT_BODY, maxRequestBytes: 20, allowPartialMessage: true })).toEqual({ reason: 'ERR_MCP_BODY_PARTIAL' });
  });

  it('a batch calling two different tools gets no single narrowed token', async () => {
    expect((await upstreamToken([call('delete_repo', 1), call('search', 2)])).reason).toBe('ERR_MCP_BODY_INVALID');
  });
});
