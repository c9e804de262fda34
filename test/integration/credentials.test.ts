/**
 * The credential chain end to end over gRPC (real server on loopback) and the real CLI's
 * `apikey create`: what Envoy receives for allow (claim headers set, credential removed)
 * and deny (explicit 401 with www-authenticate, fixed body), plus a key added to the
 * file while the server runs.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey, hashApiKey } from '../../src/authn/api-keys.js';
import { httpRequest, setHeaders, startTestServer, type TestServer } from '../helpers/server.js';
import { rememberSecret } from '../helpers/secrets.js';
import { waitUntil } from '../helpers/wait.js';

const MAIN = 'dist/src/main.js';
let ts: TestServer;
const key = generateApiKey();
const shared = 'integration-shared-token-0123456789';
rememberSecret(key);
rememberSecret(hashApiKey(key).slice(7));
rememberSecret(shared);

const CONFIG = `apiVersion: obo-authz.dev/v1alpha1
kind: CredentialValidator
metadata: {name: agents, namespace: mcp}
spec:
  type: APIKey
  required: true
  apiKey: {file: agent-keys.txt, reloadInterval: 200ms}
  forwardClaims: {claims: [sub, role]}
---
apiVersion: obo-authz.dev/v1alpha1
kind: CredentialValidator
metadata: {name: ci, namespace: mcp}
spec:
  type: SharedToken
  sharedToken: {file: shared-token.txt, fromHeaders: [{name: X-CI-Token}], role: ci}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: writers, namespace: mcp}
spec:
  action: ALLOW
  rules:
  - from: [{source: {requestPrincipals: ["apikey.obo-authz.dev/mcp/agents/*", "sharedtoken.obo-authz.dev/mcp/ci/*"]}}]
    when: [{key: "request.auth.claims[role]", values: [writer, ci]}]
---
# Edge identity only for /api/*: on other routes it takes no part, yet still sanitizes.
apiVersion: obo-authz.dev/v1alpha1
kind: CredentialValidator
metadata: {name: ingress, namespace: edge}
spec:
  type: EdgeHeaders
  match: {paths: ["/api/*"]}
  edge:
    trustedSources: {principals: [cluster.local/ns/istio-system/sa/ingress]}
    headers: {subject: x-user, role: x-role}
  forwardClaims: {claims: [role]}
`;

beforeAll(async () => {
  ts = await startTestServer({
    'config.yaml': CONFIG,
    'agent-keys.txt': `keys:\n- {name: agent-1, hash: ${hashApiKey(key)}, role: writer}\n`,
    'shared-token.txt': `${shared}\n`,
  });
});
afterAll(async () => {
  await ts?.close();
});

const ext = { namespace: 'mcp' };

describe('credential chain over gRPC', () => {
  it('API key: allowed, claims forwarded, the key removed, spoofed claim headers removed', async () => {
    const r = await ts.check(httpRequest({ contextExtensions: ext, headers: { authorization: `Bearer ${key}`, 'x-authz-claim-role': 'admin' } }));
    expect(r.status.code).toBe(0);
    const set = setHeaders(r);
    expect(set['x-authz-claim-sub']).toBe('agent-1');
    expect(set['x-authz-claim-role']).toBe('writer');
    expect(r.ok_response?.headers_to_remove).toContain('authorization');
    expect(r.ok_response?.headers_to_remove).not.toContain('x-authz-claim-role');
    expect(JSON.stringify(r)).not.toContain(key);
  });
  it('shared token in its own header', async () => {
    const r = await ts.check(httpRequest({ contextExtensions: ext, headers: { 'x-ci-token': shared } }));
    expect(r.status.code).toBe(0);
    expect(r.ok_response?.headers_to_remove).toContain('x-ci-token');
  });
  it('no credential: explicit 401 ERR_NO_VALIDATOR_ADMITTED with challenges', async () => {
    const r = await ts.check(httpRequest({ contextExtensions: ext, path: '/mcp?x=1' }));
    expect(r.denied_response?.status.code).toBe(401);
    expect(r.status.message).toBe('ERR_NO_VALIDATOR_ADMITTED');
    expect(r.denied_response?.body).toBe('Authentication required');
    const www = r.denied_response?.headers.find((h) => h.header.key === 'www-authenticate')?.header.value;
    expect(www).toBe('Bearer realm="https://mcp.example.com/mcp", APIKey realm="https://mcp.example.com/mcp", header="x-ci-token"');
  });
  it('wrong key: 401 ERR_INVALID_CREDENTIAL, body never echoes it', async () => {
    const wrong = generateApiKey();
    rememberSecret(wrong);
    const r = await ts.check(httpRequest({ contextExtensions: ext, headers: { authorization: `Bearer ${wrong}` } }));
    expect(r.denied_response?.status.code).toBe(401);
    expect(r.status.message).toBe('ERR_INVALID_CREDENTIAL');
    expect(JSON.stringify(r)).not.toContain(wrong);
  });
  it('a key added to the file while serving is accepted, with no restart', async () => {
    const k2 = generateApiKey();
    rememberSecret(k2);
    rememberSecret(hashApiKey(k2).slice(7));
    const file = join(ts.dir, 'agent-keys.txt');
    writeFileSync(file, `${readFileSync(file, 'utf8')}- {name: agent-2, hash: ${hashApiKey(k2)}, role: writer}\n`);
    const allowed = async () => (await ts.check(httpRequest({ contextExtensions: ext, headers: { authorization: `Bearer ${k2}` } }))).status.code === 0;
    await waitUntil(allowed, { what: 'the reloaded key file to admit the new key' });
  });
});

describe('a validator whose match excludes the route still sanitizes, over gRPC', () => {
  const spoofed = { 'x-user': 'admin', 'x-role': 'root', 'x-authz-claim-role': 'root' };
  it('untrusted peer on /admin: allowed anonymous, every spoofed identity header removed', async () => {
    const r = await ts.check(
      httpRequest({ contextExtensions: { namespace: 'edge' }, path: '/admin', sourcePrincipal: 'spiffe://cluster.local/ns/evil/sa/attacker', headers: spoofed }),
    );
    expect(r.status.code).toBe(0);
    expect(r.ok_response?.headers_to_remove).toEqual(expect.arrayContaining(['x-user', 'x-role', 'x-authz-claim-role']));
    expect(setHeaders(r)['x-authz-claim-role']).toBeUndefined();
  });
  it('trusted edge on /api/*: admitted, claim header set from its headers', async () => {
    const r = await ts.check(
      httpRequest({ contextExtensions: { namespace: 'edge' }, path: '/api/items', sourcePrincipal: 'spiffe://cluster.local/ns/istio-system/sa/ingress', headers: spoofed }),
    );
    expect(r.status.code).toBe(0);
    expect(setHeaders(r)['x-authz-claim-role']).toBe('root');
    expect(r.ok_response?.headers_to_remove ?? []).not.toContain('x-user');
  });
});

describe('obo-authz apikey create (real CLI)', () => {
  it('prints the key once and the served config accepts it after reload', async () => {
    const file = join(ts.dir, 'agent-keys.txt');
    const p = spawnSync(process.execPath, [MAIN, 'apikey', 'create', '--name', 'cli-agent', '--role', 'writer', '--expires', '1d', '--file', file], { encoding: 'utf8' });
    expect(p.status, p.stderr).toBe(0);
    const k = p.stdout.trim();
    rememberSecret(k);
    expect(k).toMatch(/^obo_/);
    expect(readFileSync(file, 'utf8')).not.toContain(k);
    const allowed = async () => (await ts.check(httpRequest({ contextExtensions: ext, headers: { authorization: `Bearer ${k}` } }))).status.code === 0;
    await waitUntil(allowed, { what: 'the reloaded key file to admit the key the CLI made' });
  });
  it('usage line is in --help', () => {
    const p = spawnSync(process.execPath, [MAIN, '--help'], { encoding: 'utf8' });
    expect(p.stdout).toContain('obo-authz apikey create --name NAME');
  });
});
