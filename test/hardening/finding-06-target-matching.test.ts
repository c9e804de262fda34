/**
 * Finding 6 (issue 17): token-endpoint audience globs crossed URL structure. A client allowed
 * `https://mcp-*.example.com` obtained tokens for `https://mcp-x.evil.test/.example.com`,
 * `https://mcp-@evil.test#.example.com`, and for an audience containing a newline (minted
 * into `aud` as is). Now targets are matched with URL awareness (scheme, host labels, port,
 * path; canonical URLs only, no userinfo/query/fragment), a name glob's `*` stays within
 * unreserved characters, and white space or control characters are refused (invalid_target).
 */
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpRequest, startTestServer, type TestServer } from '../helpers/server.js';
import { rememberSecret } from '../helpers/secrets.js';
import { fixture, makeIdp, sq, type Idp } from '../unit/exchange/helpers.js';
import { builtinSts, tokenForm } from './configs.js';

let idp: Idp;
let s: TestServer;
let subject = '';

beforeAll(async () => {
  idp = await makeIdp('https://idp.f6.test');
  subject = await idp.sign({ sub: 'alice' });
  rememberSecret(subject);
  s = await startTestServer({
    'sts.yaml': builtinSts('https://sts.f6.test', {
      isDefault: true,
      clientAudiences: ['https://mcp-*.example.com', 'https://api.example.com/v1/*', 'mcp-*'],
      subject: idp,
    }),
  });
});
afterAll(async () => s.close());

async function exchange(target: { audience?: string; resource?: string }): Promise<{ status: number; body: Record<string, unknown> }> {
  const form = tokenForm(subject, target as Record<string, string>);
  const r = await fetch(`http://${s.server.httpAddress}/oauth2/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form });
  const body = (await r.json()) as Record<string, unknown>;
  if (typeof body['access_token'] === 'string') rememberSecret(body['access_token']);
  return { status: r.status, body };
}

describe('finding 6: token-endpoint targets are matched as URLs, never as plain strings', () => {
  const ALLOWED = ['https://mcp-x.example.com', 'https://mcp-tools.example.com/', 'https://api.example.com/v1/items', 'https://api.example.com/v1/a/b', 'mcp-tools'];
  const REFUSED = [
    'https://mcp-x.evil.test/.example.com', // the review's: `*` across the host and into the path
    'https://mcp-@evil.test#.example.com', // the review's: userinfo and fragment
    'https://mcp-x.example.com\nx-injected: 1', // the review's: a newline minted into aud
    'https://mcp-x.example.com ', // white space
    'https://mcp-x.example.com\u0000',
    'https://mcp-a.b.example.com', // `*` is one host label
    'https://mcp-x.example.com:8443', // another port
    'http://mcp-x.example.com', // another scheme
    'https://MCP-X.example.com', // not canonical
    'https://mcp-x.example.com/?q=1',
    'https://mcp-x.example.com/path', // the pattern has no path
    'https://api.example.com/v2/items',
    'https://api.example.com/v1/../admin',
    'https://evil.test/https://mcp-x.example.com',
    'mcp-tools/../admin',
    'mcp-x:evil',
    'mcp-x@evil',
  ];

  for (const aud of ALLOWED) {
    it(`allowed: ${JSON.stringify(aud)} (as audience), minted into aud exactly`, async () => {
      const r = await exchange({ audience: aud });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(decodeJwt(r.body['access_token'] as string).aud).toBe(aud);
    });
  }
  for (const t of REFUSED) {
    it(`refused with invalid_target: ${JSON.stringify(t)} (as audience and as resource)`, async () => {
      for (const target of [{ audience: t }, { resource: t }]) {
        const r = await exchange(target);
        expect(r.status).toBe(400);
        expect(r.body['error']).toBe('invalid_target');
      }
    });
  }

  it('a malformed URL pattern is a config error naming the field', async () => {
    const { compileYaml } = await import('../helpers/config.js');
    const { createTestRuntime } = await import('../helpers/runtime.js');
    const r = compileYaml(
      `apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: b, namespace: istio-system}
spec:
  builtin:
    issuer: https://sts.f6.test
    keys: [{kid: k1, file: ${fixture('sts-es256.pem')}, algorithm: ES256}]
    tokenEndpoint:
      clients: [{clientId: agent, clientSecret: 0123456789abcdef, audiences: ["https://user@mcp-*.example.com"]}]
      subjectIssuers: [{issuer: ${idp.issuer}, jwks: ${sq(idp.jwks)}}]
`,
      createTestRuntime(),
    );
    expect(r.ok).toBe(false);
    expect(r.issues.map((i) => i.field)).toContain('spec.builtin.tokenEndpoint.clients[0].audiences[0]');
  });

  it('the Check path is unaffected', async () => {
    expect((await s.check(httpRequest({ path: '/x' }))).status.code).toBe(0);
  });
});
