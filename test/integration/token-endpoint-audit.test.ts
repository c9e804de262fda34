/** The built-in token endpoint logs every issuance and refusal: client, subject, audience, outcome; never a token or secret. */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rememberSecret } from '../helpers/secrets.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const SECRET = 'gateway-secret-0123456789';
let t: TestServer;
let subjectToken = '';

beforeAll(async () => {
  rememberSecret(SECRET);
  const kp = await generateKeyPair('ES256');
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(kp.publicKey)), kid: 'u1', alg: 'ES256' }] });
  const now = Math.floor(Date.now() / 1000);
  subjectToken = await new SignJWT({ scope: 'tools' }).setProtectedHeader({ alg: 'ES256', kid: 'u1' }).setIssuer('https://login.audit.test').setSubject('alice').setAudience('gateway').setIssuedAt(now).setExpirationTime(now + 600).sign(kp.privateKey);
  rememberSecret(subjectToken);
  t = await startTestServer({
    'sts.yaml': `apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: obo-sts, namespace: default}
spec:
  builtin:
    issuer: http://sts.audit.test
    keys: [{kid: demo-sts-es256-1, file: ${join(process.cwd(), 'examples/quickstart/keys/demo-sts.private.jwk.json')}, algorithm: ES256}]
    tokenEndpoint:
      clients: [{clientId: agent-gateway, clientSecretFile: client-secret.txt, audiences: ["https://mcp-*.example.com"]}]
      subjectIssuers: [{issuer: https://login.audit.test, jwks: '${jwks}'}]
`,
    'client-secret.txt': `${SECRET}\n`,
  });
});
afterAll(async () => {
  await t?.close();
  if (t) rmSync(t.dir, { recursive: true, force: true });
});

async function post(form: Record<string, string | string[]>, auth?: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(form)) for (const x of Array.isArray(v) ? v : [v]) body.append(k, x);
  const r = await fetch(`http://${t.server.httpAddress}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(auth ? { authorization: auth } : {}) },
    body,
  });
  const json = (await r.json()) as Record<string, unknown>;
  if (typeof json['access_token'] === 'string') rememberSecret(json['access_token']);
  return { status: r.status, body: json };
}

const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
const auditLines = () => t.runtime.logs.filter((l) => l.includes('"component":"token-endpoint"')).map((l) => JSON.parse(l) as Record<string, unknown>);
const EXCHANGE = { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token_type: 'urn:ietf:params:oauth:token-type:access_token' };

describe('token endpoint audit log', () => {
  it('logs an issuance with the client, the subject, the audience and the lifetime', async () => {
    const r = await post({ ...EXCHANGE, subject_token: subjectToken, audience: 'https://mcp-tools.example.com', scope: 'tools' }, basic('agent-gateway', SECRET));
    expect(r.status).toBe(200);
    const line = auditLines().at(-1)!;
    expect(line).toMatchObject({ msg: 'token issued', level: 'info', sts: 'default/obo-sts', outcome: 'success', status: 200, client_id: 'agent-gateway', subject: 'alice', subject_issuer: 'https://login.audit.test', audience: ['https://mcp-tools.example.com'], scope: 'tools' });
    expect(typeof line['expires_in']).toBe('number');
  });

  it('logs refusals: a bad client secret (the presented id, flagged), a target the client may not request, an invalid subject token', async () => {
    expect((await post({ ...EXCHANGE, subject_token: subjectToken, audience: 'https://mcp-tools.example.com' }, basic('agent-gateway', 'wrong-secret-value'))).status).toBe(401);
    expect(auditLines().at(-1)).toMatchObject({ msg: 'token request refused', level: 'warn', outcome: 'invalid_client', status: 401, client_id_presented: 'agent-gateway' });
    expect(auditLines().at(-1)).not.toHaveProperty('client_id');

    expect((await post({ ...EXCHANGE, subject_token: subjectToken, audience: 'https://billing.example.com' }, basic('agent-gateway', SECRET))).status).toBe(400);
    expect(auditLines().at(-1)).toMatchObject({ outcome: 'invalid_target', client_id: 'agent-gateway', audience: ['https://billing.example.com'] });

    expect((await post({ ...EXCHANGE, subject_token: `${subjectToken.slice(0, -4)}AAAA`, audience: 'https://mcp-tools.example.com' }, basic('agent-gateway', SECRET))).status).toBe(400);
    expect(auditLines().at(-1)).toMatchObject({ outcome: 'invalid_grant', client_id: 'agent-gateway' });
    expect(auditLines().at(-1)).not.toHaveProperty('subject');
  });

  it('never logs a token or the client secret', () => {
    const all = auditLines().map((l) => JSON.stringify(l)).join('\n');
    expect(all).not.toContain(SECRET);
    expect(all).not.toContain(subjectToken.split('.')[2]);
    expect(all).not.toMatch(/eyJ[\w-]+\.[\w-]+\./);
  });
});
