/**
 * GET /status and `obo-authz status` against the real server while an IdP's JWKS endpoint
 * (a real HTTP server on loopback) goes down and comes back: the keys in use, the last
 * fetch and the last error per issuer, the last exchange per STS, the last reload per
 * credential file, and the config hash and load time.
 */
import { createServer, type Server } from 'node:http';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashApiKey } from '../../src/authn/api-keys.js';
import type { StatusDocument, StatusEntry } from '../../src/http/status.js';
import { cli } from '../helpers/cli.js';
import { exchangeOnApiYaml } from '../helpers/config.js';
import { rememberSecret } from '../helpers/secrets.js';
import { httpRequest, startTestServer, type TestServer } from '../helpers/server.js';
import { waitUntil } from '../helpers/wait.js';

let idp: Server;
let up = true;
let jwksUrl = '';
let key: CryptoKey;
let t: TestServer;
const ISSUER = 'https://idp.status.test';

async function token(kid = 'k1', sub = 'alice'): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const tok = await new SignJWT({ scope: 'read' }).setProtectedHeader({ alg: 'ES256', kid }).setIssuer(ISSUER).setSubject(sub).setAudience('api').setIssuedAt(now).setExpirationTime(now + 600).sign(key);
  rememberSecret(tok);
  return tok;
}

async function status(): Promise<StatusDocument> {
  const r = await fetch(`http://${t.server.httpAddress}/status`);
  expect(r.status).toBe(200);
  return (await r.json()) as StatusDocument;
}

/** /status once `pred` holds (background fetches and reloads finish on their own time). */
async function statusUntil(pred: (s: StatusDocument) => boolean, what: string): Promise<StatusDocument> {
  let last: StatusDocument | undefined;
  await waitUntil(async () => pred((last = await status())), { what, timeoutMs: 10_000 });
  return last!;
}

const issuer = (s: StatusDocument, name = ISSUER): StatusEntry => s.issuers.find((i) => i.name === name)!;

beforeAll(async () => {
  const kp = await generateKeyPair('ES256');
  key = kp.privateKey;
  const jwk = { ...(await exportJWK(kp.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  idp = createServer((req, res) => {
    if (!up) {
      res.writeHead(503).end('down for maintenance');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=3600' }).end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((r) => idp.listen(0, '127.0.0.1', r));
  jwksUrl = `http://127.0.0.1:${(idp.address() as { port: number }).port}/jwks`;
  const apiKey = 'obo_status-test-key-0123456789abcdef';
  rememberSecret(apiKey);
  t = await startTestServer({
    '00-settings.yaml': `apiVersion: obo-authz.dev/v1alpha1
kind: Settings
metadata: {name: s}
spec:
  jwks: {kidMissCooldown: 0s, retryInitial: 10ms}
`,
    '10-authn.yaml': `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: users, namespace: default}
spec:
  jwtRules:
  - issuer: ${ISSUER}
    audiences: [api]
    jwksUri: ${jwksUrl}
  - issuer: https://never-up.status.test
    jwksUri: http://127.0.0.1:1/jwks
---
apiVersion: obo-authz.dev/v1alpha1
kind: CredentialValidator
metadata: {name: keys, namespace: default}
spec:
  type: APIKey
  order: 10
  apiKey: {file: agent-keys.txt, reloadInterval: 100ms, fromHeaders: [{name: x-api-key}]}
`,
    'agent-keys.txt': `keys:\n- {name: agent-1, hash: ${hashApiKey(apiKey)}}\n`,
    '30-exchange.yaml': exchangeOnApiYaml('http://obo-authz.status.test'),
  });
});

afterAll(async () => {
  await t?.close();
  if (t) rmSync(t.dir, { recursive: true, force: true });
  await new Promise((r) => idp?.close(r));
});

describe('GET /status', () => {
  it('shows the config hash and load time, each issuer, STS and credential file', async () => {
    const s = await statusUntil((x) => issuer(x)?.['lastFetchAt'] !== null && issuer(x, 'https://never-up.status.test')?.['lastError'] !== null, 'the first JWKS fetches');
    expect(s.serving, JSON.stringify(s.config)).toBe(true);
    expect(s.config.hash).toBe(t.server.state.config!.hash);
    expect(Date.parse(s.config.loadedAt!)).toBeGreaterThan(Date.now() - 60_000);
    expect(issuer(s)).toMatchObject({ ok: true, keys: 1, kids: ['k1'], lastError: null, source: `jwksUri ${jwksUrl}` });
    // an issuer whose IdP was never reachable: no keys, the error, not healthy
    expect(issuer(s, 'https://never-up.status.test')).toMatchObject({ ok: false, keys: 0, lastFetchAt: null });
    expect(String(issuer(s, 'https://never-up.status.test')['lastError'])).toMatch(/^network_error: /);
    expect(s.healthy).toBe(false);
    expect(s.sts).toEqual([expect.objectContaining({ name: 'default/sts', ok: true, type: 'builtin', lastOutcome: null })]);
    expect(s.files).toEqual([expect.objectContaining({ name: join(t.dir, 'agent-keys.txt'), ok: true, kind: 'api-keys', lastError: null })]);
  });

  it('records the last exchange of an STS', async () => {
    const r = await t.check(httpRequest({ path: '/api', headers: { authorization: `Bearer ${await token()}` } }));
    expect(r.status.code).toBe(0);
    const s = await status();
    expect(s.sts[0]).toMatchObject({ lastOutcome: 'success', ok: true });
    expect(Date.parse(String(s.sts[0]!['lastAt']))).toBeGreaterThan(Date.now() - 60_000);
  });

  it('during a JWKS outage: the last good keys stay in use, the issuer shows its last error; after it, the error clears', async () => {
    const before = issuer(await status());
    up = false;
    // an unknown kid makes the server refetch at once (kidMissCooldown 0s)
    await t.check(httpRequest({ path: '/x', headers: { authorization: `Bearer ${await token('k-rotated')}` } }));
    const s = await statusUntil((x) => issuer(x)['lastError'] !== null, 'the failed refetch');
    expect(issuer(s)).toMatchObject({ ok: false, keys: 1, kids: ['k1'], lastFetchAt: before['lastFetchAt'] });
    expect(issuer(s)['lastError']).toBe('http_error: HTTP 503');
    expect(Number(issuer(s)['failures'])).toBeGreaterThanOrEqual(1);
    expect(s.healthy).toBe(false);
    // still serving with the cached keys
    expect((await t.check(httpRequest({ path: '/x', headers: { authorization: `Bearer ${await token()}` } }))).status.code).toBe(0);

    const cmd = await cli('status', '--server', t.server.httpAddress);
    expect(cmd.code).toBe(1);
    expect(cmd.out).toContain(`FAIL ${ISSUER}  1 key(s) (k1)`);
    expect(cmd.out).toContain('http_error: HTTP 503');
    expect(cmd.out).toContain('ok   default/sts  builtin');
    const json = await cli('status', '--server', t.server.httpAddress, '--json');
    expect(JSON.parse(json.out)).toMatchObject({ serving: true, healthy: false });

    up = true;
    await t.check(httpRequest({ path: '/x', headers: { authorization: `Bearer ${await token('k-rotated-2')}` } }));
    const after = await statusUntil((x) => issuer(x)['lastError'] === null, 'the recovered fetch');
    expect(issuer(after)).toMatchObject({ ok: true, keys: 1, failures: 0 });
    expect(Date.parse(String(issuer(after)['lastFetchAt']))).toBeGreaterThan(Date.parse(String(before['lastFetchAt'])));
  });

  it('shows a credential file whose reload failed, keeping the last good content', async () => {
    writeFileSync(join(t.dir, 'agent-keys.txt'), 'keys: [this is not a key entry]\n');
    const s = await statusUntil((x) => x.files[0]?.['lastError'] !== null, 'the failed reload');
    expect(s.files[0]).toMatchObject({ ok: false, kind: 'api-keys' });
    expect(String(s.files[0]!['lastError'])).toContain('agent-keys.txt');
  });

  it('answers only GET and HEAD', async () => {
    expect((await fetch(`http://${t.server.httpAddress}/status`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`http://${t.server.httpAddress}/status`, { method: 'HEAD' })).status).toBe(200);
  });
});
