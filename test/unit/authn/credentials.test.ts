/**
 * The credential chain (issue 6): table tests per validator, chain order and outcomes,
 * file reloads, config validation and the no-secret-anywhere rule. Real files on disk, a
 * real loopback JWKS/OIDC server (Kubernetes JWKS mode) and a real loopback TokenReview API.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey, hashApiKey } from '../../../src/authn/api-keys.js';
import { normalizeHost } from '../../../src/match/route.js';
import type { CompiledConfig } from '../../../src/pipeline/compile.js';
import { formatIssue } from '../../../src/config/issues.js';
import type { RawCheckRequest } from '../../../src/core/context.js';
import type { Decision } from '../../../src/core/decision.js';
import { evaluate } from '../../../src/pipeline/pipeline.js';
import { compileYaml, mustCompile } from '../../helpers/config.js';
import { metricValue } from '../../helpers/metrics.js';
import { createTestRuntime, type TestRuntime } from '../../helpers/runtime.js';
import { rememberSecret } from '../../helpers/secrets.js';
import { waitUntil } from '../../helpers/wait.js';
import { jwks, makeKey, NOW_S, seg, sign, startIdp, type IdpServer, type TestKey } from './helpers.js';

const K8S_TR_ISSUER = 'https://kubernetes.default.svc.cluster.local';

let rt: TestRuntime;
let dir: string;
let cfg: CompiledConfig;
let idp: IdpServer;
let apiServer: Server;
let apiServerUrl: string;
const reviewed: string[] = [];
/** TokenReview answers by token. */
const reviews = new Map<string, Record<string, unknown>>();

const S: Record<string, string> = {};
/** Everything secret the tests use; checked against logs and deny bodies. */
const allSecrets: string[] = [];
function secret(name: string, v: string): string {
  S[name] = v;
  rememberSecret(v);
  allSecrets.push(v);
  return v;
}
const denyBodies: string[] = [];

function keyEntry(name: string, key: string, extra: Record<string, unknown> = {}): string {
  const hash = hashApiKey(key);
  rememberSecret(hash);
  rememberSecret(hash.slice(7));
  allSecrets.push(hash.slice(7));
  return JSON.stringify({ name, hash, ...extra });
}

function writeKeys(entries: string[]): void {
  writeFileSync(join(dir, 'keys.yaml'), `keys:\n${entries.map((e) => `- ${e}`).join('\n')}\n`);
}

interface Req {
  path?: string;
  host?: string;
  method?: string;
  headers?: Record<string, string>;
  ns?: string;
  sourceIp?: string;
  sourcePrincipal?: string;
}

function req(r: Req): RawCheckRequest {
  return {
    attributes: {
      source: { address: { socket_address: { address: r.sourceIp ?? '192.168.7.7', port_value: 5000 } }, principal: r.sourcePrincipal ?? '' },
      request: {
        http: { id: 'r1', method: r.method ?? 'GET', path: r.path ?? '/api/items', host: r.host ?? 'shop.example.com', scheme: 'https', headers: { ...(r.headers ?? {}) } },
      },
      context_extensions: { namespace: r.ns ?? 'shop' },
    },
  };
}

async function run(r: Req, c: CompiledConfig = cfg, runtime: TestRuntime = rt): Promise<Decision> {
  const d = await evaluate(req(r), c, runtime, { explain: true });
  if (!d.allow) denyBodies.push(d.body, ...d.denyHeaders.map(([, v]) => v));
  return d;
}

function explain(d: Decision): string {
  return `${d.reason} ${d.message}\n${d.trace?.entries.map((e) => `  ${e.stage}: ${e.message}`).join('\n')}`;
}

let userKey: TestKey;
let saKey: TestKey;

beforeAll(async () => {
  rt = createTestRuntime({ now: NOW_S * 1000 });
  dir = mkdtempSync(join(tmpdir(), 'obo-cred-'));
  userKey = await makeKey('ES256', 'u1');
  saKey = await makeKey('RS256', 'sa1');
  idp = await startIdp(jwks(saKey));

  apiServer = createServer((q, s) => {
    let body = '';
    q.on('data', (c: Buffer) => (body += c.toString('utf8')));
    q.on('end', () => {
      const token = (JSON.parse(body) as { spec: { token: string } }).spec.token;
      reviewed.push(q.url ?? '');
      const st = reviews.get(token) ?? { authenticated: false, error: 'invalid bearer token' };
      s.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'TokenReview', status: st }));
    });
  });
  await new Promise<void>((r) => apiServer.listen(0, '127.0.0.1', () => r()));
  apiServerUrl = `http://127.0.0.1:${(apiServer.address() as AddressInfo).port}`;

  secret('key', generateApiKey());
  secret('adminKey', generateApiKey());
  secret('expiredKey', generateApiKey());
  secret('unknownKey', generateApiKey());
  secret('dirKey', generateApiKey());
  secret('shared', 'shared-token-0123456789abcdef');
  secret('shared2', 'shared-token-rotated-fedcba9876543210');
  writeKeys([
    keyEntry('agent-1', S['key']!, { role: 'reader', groups: ['agents', 'beta'], scopes: ['read', 'list'] }),
    keyEntry('admin-1', S['adminKey']!, { role: 'admin' }),
    keyEntry('old-1', S['expiredKey']!, { role: 'reader', expires: new Date((NOW_S - 60) * 1000).toISOString() }),
  ]);
  mkdirSync(join(dir, 'keydir'));
  writeFileSync(join(dir, 'keydir', 'svc-a'), `${keyEntry('svc-a', S['dirKey']!, { role: 'svc' }).replace(/"name":"svc-a",/, '')}\n`);
  writeFileSync(join(dir, 'shared.token'), `${S['shared']}\n`);

  // Kubernetes tokens (JWKS mode: signed by the loopback "API server" issuer).
  const sa = (extra: Record<string, unknown> = {}) =>
    sign(saKey, {
      iss: idp.issuer,
      sub: 'system:serviceaccount:payments:billing',
      aud: ['obo-authz'],
      exp: NOW_S + 3600,
      iat: NOW_S - 10,
      'kubernetes.io': { namespace: 'payments', serviceaccount: { name: 'billing', uid: 'u-1' }, pod: { name: 'billing-0', uid: 'p-1' } },
      ...extra,
    });
  secret('sa', await sa());
  secret('saExpired', await sa({ exp: NOW_S - 3600 }));
  secret('saWrongAud', await sa({ aud: ['someone-else'] }));
  secret('saNotSa', await sa({ sub: 'alice' }));
  secret('saForged', await sign(await makeKey('RS256', 'sa1'), { iss: idp.issuer, sub: 'system:serviceaccount:payments:billing', aud: ['obo-authz'], exp: NOW_S + 3600 }));
  secret('user', await sign(userKey, { iss: 'https://idp.example.com', sub: 'alice', exp: NOW_S + 3600, role: 'admin' }));
  secret('userExpired', await sign(userKey, { iss: 'https://idp.example.com', sub: 'alice', exp: NOW_S - 3600 }));
  secret('otherIssuer', await sign(userKey, { iss: 'https://other.example.com', sub: 'mallory', exp: NOW_S + 3600 }));

  // TokenReview-mode tokens: JWT-shaped; only the loopback API server decides.
  const trToken = (p: Record<string, unknown>) => `${seg({ alg: 'RS256', kid: 'k' })}.${seg(p)}.${'c2lnbmF0dXJlLW5vdC1jaGVja2VkLWxvY2FsbHk'}`;
  secret('trValid', trToken({ iss: K8S_TR_ISSUER, sub: 'system:serviceaccount:ci:deployer', exp: NOW_S + 600, jti: 'a' }));
  secret('trRevoked', trToken({ iss: K8S_TR_ISSUER, sub: 'system:serviceaccount:ci:deployer', exp: NOW_S + 600, jti: 'b' }));
  secret('trOtherIssuer', trToken({ iss: 'https://elsewhere.example.com', sub: 'x', exp: NOW_S + 600 }));
  secret('trExpired', trToken({ iss: K8S_TR_ISSUER, sub: 'system:serviceaccount:ci:deployer', exp: NOW_S - 600, jti: 'c' }));
  // What kube-apiserver answers for an expired token: not authenticated, the reason only as text.
  reviews.set(S['trExpired']!, { authenticated: false, error: '[invalid bearer token, service account token has expired]' });
  reviews.set(S['trValid']!, {
    authenticated: true,
    user: { username: 'system:serviceaccount:ci:deployer', uid: 'uid-1', groups: ['system:serviceaccounts', 'system:serviceaccounts:ci'] },
    audiences: ['obo-authz'],
  });

  let text = readFileSync(new URL('../../fixtures/authn/credentials.yaml', import.meta.url), 'utf8');
  text = text.replaceAll('__USER_JWKS__', JSON.stringify(jwks(userKey))).replaceAll('__K8S_ISSUER__', idp.issuer).replaceAll('__APISERVER__', apiServerUrl);
  writeFileSync(join(dir, 'config.yaml'), text);
  cfg = mustCompile(text, rt, join(dir, 'config.yaml'));
});

afterAll(async () => {
  rt.shared.disposeAll();
  await idp.close();
  await new Promise<void>((r) => apiServer.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

interface Case {
  name: string;
  req: () => Req;
  allow: boolean;
  status?: number;
  reason?: string;
  body?: string;
  www?: RegExp;
  principal?: string;
  kind?: string;
  claims?: Record<string, unknown>;
  set?: Record<string, string>;
  removed?: string[];
  notRemoved?: string[];
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

const apiKeyCases: Case[] = [
  {
    name: 'valid key in Authorization: Bearer',
    req: () => ({ headers: bearer(S['key']!) }),
    allow: true,
    kind: 'api-key',
    principal: 'apikey.obo-authz.dev/shop/keys/agent-1',
    claims: { iss: 'apikey.obo-authz.dev/shop/keys', sub: 'agent-1', role: 'reader', groups: ['agents', 'beta'], scope: ['read', 'list'] },
    set: { 'x-authz-claim-role': 'reader', 'x-authz-claim-groups': 'agents,beta', 'x-authz-claim-scope': 'read,list' },
    removed: ['authorization'],
  },
  { name: 'scheme is case-insensitive', req: () => ({ headers: { authorization: `bearer  ${S['key']}` } }), allow: true, principal: 'apikey.obo-authz.dev/shop/keys/agent-1' },
  {
    name: 'wrong key',
    req: () => ({ headers: bearer(S['unknownKey']!) }),
    allow: false,
    status: 401,
    reason: 'ERR_INVALID_CREDENTIAL',
    body: 'Invalid credential',
    www: /^Bearer realm="https:\/\/shop\.example\.com\/api\/items", error="invalid_token"$/,
  },
  { name: 'wrong key on a route that does not require authentication', req: () => ({ path: '/public', headers: bearer(S['unknownKey']!) }), allow: false, reason: 'ERR_INVALID_CREDENTIAL' },
  { name: 'expired key', req: () => ({ headers: bearer(S['expiredKey']!) }), allow: false, status: 401, reason: 'ERR_CREDENTIAL_EXPIRED', body: 'Credential is expired', www: /error="invalid_token"/ },
  { name: 'missing: required route', req: () => ({}), allow: false, status: 401, reason: 'ERR_NO_VALIDATOR_ADMITTED', body: 'Authentication required', www: /^Bearer realm="https:\/\/shop\.example\.com\/api\/items"/ },
  { name: 'missing: route without requirement is anonymous', req: () => ({ path: '/public' }), allow: true, principal: undefined },
  { name: 'malformed: Authorization without the Bearer scheme', req: () => ({ headers: { authorization: S['key']! } }), allow: false, reason: 'ERR_NO_VALIDATOR_ADMITTED' },
  { name: 'malformed: empty bearer value', req: () => ({ headers: { authorization: 'Bearer ' } }), allow: false, reason: 'ERR_NO_VALIDATOR_ADMITTED' },
  { name: 'key with extra characters appended', req: () => ({ headers: bearer(`${S['key']}x`) }), allow: false, reason: 'ERR_INVALID_CREDENTIAL' },
  {
    name: 'key from a folder (one file per key) in a configured header',
    req: () => ({ headers: { 'x-api-key': S['dirKey']! } }),
    allow: true,
    principal: 'apikey.obo-authz.dev/shop/header-keys/svc-a',
    claims: { role: 'svc' },
    removed: ['x-api-key'],
  },
  {
    name: 'wrong key in the configured header',
    req: () => ({ headers: { 'x-api-key': S['unknownKey']! } }),
    allow: false,
    reason: 'ERR_INVALID_CREDENTIAL',
    www: /^APIKey realm="https:\/\/shop\.example\.com\/api\/items", header="x-api-key", error="invalid_token"$/,
  },
  { name: 'a bearer-key validator does not read the configured header', req: () => ({ headers: { 'x-api-key': S['key']! } }), allow: false, reason: 'ERR_INVALID_CREDENTIAL' },
  {
    name: 'spoofed claim headers are removed',
    req: () => ({ path: '/public', headers: { 'x-authz-claim-role': 'admin', 'x-authz-claim-anything': 'x' } }),
    allow: true,
    removed: ['x-authz-claim-role', 'x-authz-claim-anything'],
  },
];

const sharedCases: Case[] = [
  {
    name: 'valid shared token',
    req: () => ({ headers: bearer(S['shared']!) }),
    allow: true,
    kind: 'shared-token',
    principal: 'sharedtoken.obo-authz.dev/shop/ci/ci-runner',
    claims: { sub: 'ci-runner', role: 'ci', groups: ['builders'], scope: ['build'] },
    removed: ['authorization'],
  },
  { name: 'wrong shared token', req: () => ({ headers: bearer('shared-token-0123456789abcdeX') }), allow: false, status: 401, reason: 'ERR_INVALID_CREDENTIAL' },
  { name: 'prefix of the shared token', req: () => ({ headers: bearer(S['shared']!.slice(0, -1)) }), allow: false, reason: 'ERR_INVALID_CREDENTIAL' },
  { name: 'missing', req: () => ({ headers: { 'x-other': 'y' } }), allow: false, reason: 'ERR_NO_VALIDATOR_ADMITTED' },
];

const k8sCases: Case[] = [
  {
    name: 'valid projected token (JWKS via OIDC discovery)',
    req: () => ({ headers: bearer(S['sa']!) }),
    allow: true,
    kind: 'kubernetes',
    principal: '__K8S__/system:serviceaccount:payments:billing',
    claims: { sub: 'system:serviceaccount:payments:billing', 'kubernetes.io': { namespace: 'payments', serviceaccount: { name: 'billing', uid: 'u-1' } } },
    set: { 'x-sa-kubernetes-io-namespace': 'payments' },
    removed: ['authorization'],
  },
  { name: 'expired token', req: () => ({ headers: bearer(S['saExpired']!) }), allow: false, status: 401, reason: 'ERR_CREDENTIAL_EXPIRED' },
  { name: 'wrong audience', req: () => ({ headers: bearer(S['saWrongAud']!) }), allow: false, status: 401, reason: 'ERR_INVALID_CREDENTIAL' },
  { name: 'forged signature (same kid, other key)', req: () => ({ headers: bearer(S['saForged']!) }), allow: false, status: 401, reason: 'ERR_INVALID_CREDENTIAL' },
  { name: 'subject is not a service account', req: () => ({ headers: bearer(S['saNotSa']!) }), allow: false, reason: 'ERR_INVALID_CREDENTIAL' },
  { name: 'malformed JWT-shaped token is the jwtRules business (Istio semantics)', req: () => ({ headers: bearer('aaaa.bbbb.cccc') }), allow: false, status: 401, reason: 'ERR_JWT_MALFORMED' },
];

const edgeCases: Case[] = [
  {
    name: 'trusted by peer principal',
    req: () => ({
      sourcePrincipal: 'spiffe://cluster.local/ns/istio-system/sa/ingress',
      headers: { 'x-edge-sub': 'bob', 'x-edge-role': 'editor', 'x-edge-groups': 'a, b', 'x-edge-email': 'bob@example.com', 'x-edge-tenant': 't1' },
    }),
    allow: true,
    kind: 'edge',
    principal: 'https://idp.example.com/bob',
    claims: { iss: 'https://idp.example.com', sub: 'bob', role: 'editor', groups: ['a', 'b'], email: 'bob@example.com', tenant: 't1' },
    notRemoved: ['x-edge-sub', 'x-edge-role'],
  },
  { name: 'trusted by source CIDR', req: () => ({ sourceIp: '10.1.2.3', headers: { 'x-edge-sub': 'carol' } }), allow: true, principal: 'https://idp.example.com/carol' },
  {
    name: 'spoofed headers from an untrusted source: removed and ignored',
    req: () => ({ sourceIp: '10.2.0.1', sourcePrincipal: 'spiffe://cluster.local/ns/shop/sa/web', headers: { 'x-edge-sub': 'admin', 'x-edge-role': 'admin', 'x-edge-tenant': 't1' } }),
    allow: false,
    reason: 'ERR_NO_VALIDATOR_ADMITTED',
  },
  {
    name: 'spoofed headers on an open route: anonymous, headers removed upstream',
    req: () => ({ path: '/public', sourceIp: '10.2.0.1', headers: { 'x-edge-sub': 'admin', 'x-edge-role': 'admin', 'x-edge-groups': 'root', 'x-edge-email': 'e', 'x-edge-tenant': 't' } }),
    allow: true,
    principal: undefined,
    removed: ['x-edge-sub', 'x-edge-role', 'x-edge-groups', 'x-edge-email', 'x-edge-tenant'],
  },
  { name: 'trusted source without a subject header', req: () => ({ sourceIp: '10.1.2.3', headers: { 'x-edge-role': 'admin' } }), allow: false, reason: 'ERR_NO_VALIDATOR_ADMITTED' },
  { name: 'principal prefix is not enough', req: () => ({ sourcePrincipal: 'spiffe://cluster.local/ns/istio-system/sa/ingress-evil', headers: { 'x-edge-sub': 'x' } }), allow: false, reason: 'ERR_NO_VALIDATOR_ADMITTED' },
];

const jwtCases: Case[] = [
  { name: 'valid user JWT (jwtRules member)', req: () => ({ headers: bearer(S['user']!) }), allow: true, kind: 'jwt', principal: 'https://idp.example.com/alice' },
  { name: 'expired user JWT keeps Envoy semantics', req: () => ({ headers: bearer(S['userExpired']!) }), allow: false, status: 401, reason: 'ERR_JWT_EXPIRED', body: 'Jwt is expired' },
  {
    name: 'JWT of an unknown issuer: left to the service-account validator, which abstains; reported as issuer unknown',
    req: () => ({ headers: bearer(S['otherIssuer']!) }),
    allow: false,
    status: 401,
    reason: 'ERR_JWT_ISSUER_UNKNOWN',
  },
];

function runTable(title: string, cases: Case[]): void {
  describe(title, () => {
    for (const c of cases) {
      it(c.name, async () => {
        const d = await run(c.req());
        expect(d.allow, explain(d)).toBe(c.allow);
        if (c.status !== undefined) expect(d.httpStatus).toBe(c.status);
        if (c.reason) expect(d.reason, explain(d)).toBe(c.reason);
        if (c.body) expect(d.body).toBe(c.body);
        if (c.www) {
          const www = d.denyHeaders.find(([k]) => k === 'www-authenticate')?.[1];
          expect(www).toMatch(c.www);
        }
        if (!c.allow) return;
        if ('principal' in c) expect(d.identity?.principal, explain(d)).toBe(c.principal?.replace('__K8S__', idp.issuer));
        if (c.kind) expect(d.identity?.kind).toBe(c.kind);
        if (c.claims) expect(d.identity?.claims).toMatchObject(c.claims);
        if (c.set) for (const [k, v] of Object.entries(c.set)) expect(d.upstream.set.get(k)).toBe(v);
        for (const h of c.removed ?? []) expect([...d.upstream.remove]).toContain(h);
        for (const h of c.notRemoved ?? []) expect([...d.upstream.remove]).not.toContain(h);
      });
    }
  });
}

runTable('APIKey validator', apiKeyCases);
runTable('SharedToken validator', sharedCases);
runTable('KubernetesServiceAccount validator (JWKS)', k8sCases);
runTable('EdgeHeaders validator', edgeCases);
runTable('jwtRules as a chain member', jwtCases);

describe('KubernetesServiceAccount validator (TokenReview)', () => {
  it('admits a token the API server authenticates, with namespace and service account as claims', async () => {
    const d = await run({ ns: 'tr', headers: bearer(S['trValid']!) });
    expect(d.allow, explain(d)).toBe(true);
    expect(d.identity?.principal).toBe(`${K8S_TR_ISSUER}/system:serviceaccount:ci:deployer`);
    expect(d.identity?.claims).toMatchObject({
      sub: 'system:serviceaccount:ci:deployer',
      groups: ['system:serviceaccounts', 'system:serviceaccounts:ci'],
      'kubernetes.io': { namespace: 'ci', serviceaccount: { name: 'deployer' } },
    });
    expect(reviewed).toContain('/apis/authentication.k8s.io/v1/tokenreviews');
  });
  it('rejects a token the API server does not authenticate', async () => {
    const d = await run({ ns: 'tr', headers: bearer(S['trRevoked']!) });
    expect(d.allow).toBe(false);
    expect(d.reason).toBe('ERR_INVALID_CREDENTIAL');
    expect(d.httpStatus).toBe(401);
  });
  it('an expired token is ERR_INVALID_CREDENTIAL, not ERR_CREDENTIAL_EXPIRED (TokenReview does not say why), as the docs say', async () => {
    const d = await run({ ns: 'tr', headers: bearer(S['trExpired']!) });
    expect(d.allow).toBe(false);
    expect(d.httpStatus).toBe(401);
    expect(d.reason).toBe('ERR_INVALID_CREDENTIAL');
    // docs/configuration/credentials.md must not promise ERR_CREDENTIAL_EXPIRED for TokenReview (review finding 4).
    const doc = readFileSync(new URL('../../../docs/configuration/credentials.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('### `type: KubernetesServiceAccount`'), doc.indexOf('### `type: EdgeHeaders`'));
    const expiredLines = section.split('\n').filter((l) => l.includes('ERR_CREDENTIAL_EXPIRED'));
    expect(expiredLines.length).toBeGreaterThan(0);
    for (const l of expiredLines) expect(l).toMatch(/JWKS mode/);
    expect(section).toMatch(/TokenReview mode[^.]*expired token is `ERR_INVALID_CREDENTIAL`/);
  });
  it('a token of another issuer is not sent to the API server', async () => {
    const before = reviewed.length;
    const d = await run({ ns: 'tr', headers: bearer(S['trOtherIssuer']!) });
    expect(d.reason).toBe('ERR_NO_VALIDATOR_ADMITTED');
    expect(reviewed.length).toBe(before);
  });
  it('missing token on a required workload', async () => {
    const d = await run({ ns: 'tr' });
    expect(d.reason).toBe('ERR_NO_VALIDATOR_ADMITTED');
    expect(d.denyHeaders).toContainEqual(['www-authenticate', 'Bearer realm="https://shop.example.com/api/items"']);
  });
  it('API server down -> 503, never an allow', async () => {
    const c = mustCompile(
      `apiVersion: obo-authz.dev/v1alpha1\nkind: CredentialValidator\nmetadata: {name: r, namespace: tr}\nspec:\n  type: KubernetesServiceAccount\n  kubernetes:\n    mode: TokenReview\n    tokenReview: {apiServer: "http://127.0.0.1:1", timeout: 500ms}\n`,
      rt,
    );
    const d = await run({ ns: 'tr', headers: bearer(S['trValid']!) }, c);
    expect(d.allow).toBe(false);
    expect(d.httpStatus).toBe(503);
  });
});

describe('chain', () => {
  it('order: a value that is not an API key is tried as the shared token next', async () => {
    const outcome = (validator: string, result: string) =>
      metricValue(rt.metrics.registry, `obo_authz_credential_validations_total{validator="${validator}",result="${result}"}`);
    const [unrecognized, admitted] = [await outcome('APIKey shop/keys', 'unrecognized'), await outcome('SharedToken shop/ci', 'admit')];
    const d = await run({ headers: bearer(S['shared']!) });
    expect(d.allow, explain(d)).toBe(true);
    expect(d.identity?.admittedBy).toBe('shop/ci');
    expect(await outcome('APIKey shop/keys', 'unrecognized')).toBe(unrecognized + 1);
    expect(await outcome('SharedToken shop/ci', 'admit')).toBe(admitted + 1);
  });
  it('first admit wins: API key (order 10) over trusted edge headers (order 40)', async () => {
    const d = await run({ sourceIp: '10.1.0.9', headers: { ...bearer(S['key']!), 'x-edge-sub': 'bob' } });
    expect(d.identity?.admittedBy).toBe('shop/keys');
  });
  it('first admit wins, and a lower order puts a validator first', async () => {
    const text = readFileSync(join(dir, 'config.yaml'), 'utf8').replace('  type: EdgeHeaders\n  order: 40', '  type: EdgeHeaders\n  order: 5');
    const c = mustCompile(text, rt, join(dir, 'config.yaml'));
    const d = await run({ sourceIp: '10.1.0.9', headers: { ...bearer(S['key']!), 'x-edge-sub': 'bob' } }, c);
    expect(d.identity?.admittedBy).toBe('shop/gateway');
    expect(d.identity?.principal).toBe('https://idp.example.com/bob');
  });
  it('the trace lists the chain in order', async () => {
    const d = await run({ path: '/public' });
    const line = d.trace?.entries.find((e) => e.message.startsWith('credential chain:'))?.message;
    expect(line).toBe(
      'credential chain: jwtRules -> APIKey shop/keys -> APIKey shop/header-keys -> SharedToken shop/ci -> KubernetesServiceAccount shop/cluster -> EdgeHeaders shop/gateway',
    );
  });
  it('all reject -> 401 ERR_INVALID_CREDENTIAL with the first rejection', async () => {
    const d = await run({ path: '/public', headers: { ...bearer(S['unknownKey']!), 'x-api-key': 'nope-nope-nope' } });
    expect(d.reason).toBe('ERR_INVALID_CREDENTIAL');
    expect(d.attribution.policy).toBe('shop/keys');
  });
  it('a hard reject stops the chain even when a later validator would admit', async () => {
    const d = await run({ sourceIp: '10.1.0.9', headers: { ...bearer(S['expiredKey']!), 'x-edge-sub': 'bob' } });
    expect(d.reason).toBe('ERR_CREDENTIAL_EXPIRED');
  });
  it('required and nobody admitted -> 401 ERR_NO_VALIDATOR_ADMITTED naming every scheme', async () => {
    const d = await run({});
    expect(d.reason).toBe('ERR_NO_VALIDATOR_ADMITTED');
    expect(d.attribution.policy).toBe('shop/require-api');
    const www = d.denyHeaders.find(([k]) => k === 'www-authenticate')?.[1] ?? '';
    expect(www.startsWith('Bearer realm="https://shop.example.com/api/items"')).toBe(true);
    expect(www).toContain('APIKey realm="https://shop.example.com/api/items", header="x-api-key"');
  });
  it('required with no validator for the route: no way in', async () => {
    const d = await run({ ns: 'locked', headers: bearer(S['key']!) });
    expect(d.allow).toBe(false);
    expect(d.reason).toBe('ERR_NO_VALIDATOR_ADMITTED');
    expect(d.httpStatus).toBe(401);
  });
  it('CORS preflight passes a requirement (as Envoy jwt_authn)', async () => {
    const d = await run({ method: 'OPTIONS', headers: { origin: 'https://a.example', 'access-control-request-method': 'GET' } });
    expect(d.allow, explain(d)).toBe(true);
  });
  it('without CredentialValidators the jwtRules keep Istio semantics: a non-JWT bearer is malformed', async () => {
    const c = mustCompile(
      `apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: u, namespace: shop}\nspec:\n  jwtRules:\n  - issuer: https://idp.example.com\n    jwks: '${JSON.stringify(jwks(userKey))}'\n`,
      rt,
    );
    const d = await run({ headers: bearer(S['key']!) }, c);
    expect(d.reason).toBe('ERR_JWT_MALFORMED');
    const d2 = await run({ headers: bearer(S['key']!) });
    expect(d2.allow).toBe(true);
  });
});

describe('AuthorizationPolicy sees every credential type the same way', () => {
  it('requestPrincipals + request.auth.claims[role] admit an admin API key', async () => {
    expect((await run({ ns: 'pol', headers: bearer(S['adminKey']!) })).allow).toBe(true);
  });
  it('the same policy denies a reader key (403)', async () => {
    const d = await run({ ns: 'pol', headers: bearer(S['key']!) });
    expect(d.allow).toBe(false);
    expect(d.reason).toBe('ERR_RBAC_DENIED');
  });
  it('edge identity from a trusted source matches its requestPrincipals', async () => {
    expect((await run({ ns: 'pol', sourceIp: '10.1.0.1', headers: { 'x-edge-sub': 'root', 'x-edge-role': 'admin' } })).allow).toBe(true);
  });
  it('the same headers from an untrusted source do not', async () => {
    const d = await run({ ns: 'pol', sourceIp: '10.9.0.1', headers: { 'x-edge-sub': 'root', 'x-edge-role': 'admin' } });
    expect(d.reason).toBe('ERR_RBAC_DENIED');
  });
});

describe('reload', () => {
  it('a key added to the file is accepted without restart; a removed key is rejected', async () => {
    const newKey = secret('newKey', generateApiKey());
    expect((await run({ headers: bearer(newKey) })).reason).toBe('ERR_INVALID_CREDENTIAL');
    const base = [
      keyEntry('agent-1', S['key']!, { role: 'reader', groups: ['agents', 'beta'], scopes: ['read', 'list'] }),
      keyEntry('admin-1', S['adminKey']!, { role: 'admin' }),
      keyEntry('old-1', S['expiredKey']!, { role: 'reader', expires: new Date((NOW_S - 60) * 1000).toISOString() }),
    ];
    writeKeys([...base, keyEntry('new-1', newKey, { role: 'reader' })]);
    await waitUntil(async () => (await run({ headers: bearer(newKey) })).allow);
    expect((await run({ headers: bearer(newKey) })).identity?.subject).toBe('new-1');
    writeKeys(base.slice(1).concat(keyEntry('new-1', newKey, { role: 'reader' })));
    await waitUntil(async () => (await run({ headers: bearer(S['key']!) })).reason === 'ERR_INVALID_CREDENTIAL');
    expect((await run({ headers: bearer(newKey) })).allow).toBe(true);
    writeKeys(base);
    await waitUntil(async () => (await run({ headers: bearer(S['key']!) })).allow);
  });
  it('a key file added to / removed from the folder takes effect without restart', async () => {
    const k = secret('dirKey2', generateApiKey());
    writeFileSync(join(dir, 'keydir', 'svc-b.yaml'), `hash: ${hashApiKey(k)}\nrole: svc\n`);
    await waitUntil(async () => (await run({ headers: { 'x-api-key': k } })).identity?.subject === 'svc-b');
    rmSync(join(dir, 'keydir', 'svc-b.yaml'));
    await waitUntil(async () => (await run({ headers: { 'x-api-key': k } })).reason === 'ERR_INVALID_CREDENTIAL');
  });
  it('a broken key file is logged (without content) and the last good set stays', async () => {
    const good = readFileSync(join(dir, 'keys.yaml'), 'utf8');
    writeFileSync(join(dir, 'keys.yaml'), `keys:\n- name: bad\n  hash: ${hashApiKey(S['key']!).slice(0, 20)}\n`);
    await waitUntil(async () => rt.logs.some((l) => l.includes('credential file reload failed')));
    expect((await run({ headers: bearer(S['key']!) })).allow).toBe(true);
    const line = rt.logs.find((l) => l.includes('credential file reload failed'))!;
    expect(line).toContain('keys[0].hash');
    writeFileSync(join(dir, 'keys.yaml'), good);
  });
  it('shared token rotation takes effect within 30 s (default interval, runtime clock)', async () => {
    const r2 = createTestRuntime({ now: NOW_S * 1000 });
    const d2 = mkdtempSync(join(tmpdir(), 'obo-cred-rot-'));
    writeFileSync(join(d2, 'token'), S['shared']!);
    const c = mustCompile(
      `apiVersion: obo-authz.dev/v1alpha1\nkind: CredentialValidator\nmetadata: {name: t, namespace: shop}\nspec:\n  type: SharedToken\n  required: true\n  sharedToken: {file: token}\n`,
      r2,
      join(d2, 'config.yaml'),
    );
    expect((await run({ headers: bearer(S['shared']!) }, c, r2)).allow).toBe(true);
    writeFileSync(join(d2, 'token'), `${S['shared2']}\n`);
    r2.advance(30_000);
    expect((await run({ headers: bearer(S['shared2']!) }, c, r2)).allow).toBe(true);
    expect((await run({ headers: bearer(S['shared']!) }, c, r2)).reason).toBe('ERR_INVALID_CREDENTIAL');
    // An emptied file is an error at reload: logged, the last good token stays.
    writeFileSync(join(d2, 'token'), '');
    r2.advance(30_000);
    expect((await run({ headers: bearer(S['shared2']!) }, c, r2)).allow).toBe(true);
    expect(r2.logs.some((l) => l.includes('the token file is empty'))).toBe(true);
    r2.shared.disposeAll();
    rmSync(d2, { recursive: true, force: true });
  });
  it('shared token rotation is picked up by the background poll too', async () => {
    writeFileSync(join(dir, 'shared.token'), S['shared2']!);
    const c = mustCompile(
      `apiVersion: obo-authz.dev/v1alpha1\nkind: CredentialValidator\nmetadata: {name: t2, namespace: shop}\nspec:\n  type: SharedToken\n  sharedToken: {file: shared.token, reloadInterval: 200ms}\n`,
      rt,
      join(dir, 'config2.yaml'),
    );
    writeFileSync(join(dir, 'shared.token'), S['shared']!);
    await waitUntil(async () => (await run({ headers: bearer(S['shared']!) }, c)).allow);
  });
});

describe('a validator whose match excludes the route still sanitizes (review finding 1)', () => {
  const ATTACKER = 'spiffe://cluster.local/ns/evil/sa/attacker';
  const INGRESS = 'spiffe://cluster.local/ns/istio-system/sa/ingress';
  const spoofed = { 'x-user': 'admin', 'x-role': 'root', 'x-authz-claim-role': 'root' };
  const edge = (ns: string, extra = '') => `apiVersion: obo-authz.dev/v1alpha1
kind: CredentialValidator
metadata: {name: gw, namespace: ${ns}}
spec:
  type: EdgeHeaders
  match: {paths: ["/api/*"]}
${extra}  edge:
    trustedSources: {principals: [cluster.local/ns/istio-system/sa/ingress]}
    headers: {subject: x-user, role: x-role}
  forwardClaims: {claims: [role]}
`;
  let c: CompiledConfig;
  beforeAll(() => {
    c = mustCompile(
      [
        // Only the edge validator: nothing takes part on /admin (the early return).
        edge('m1'),
        // Edge validator excluded by match, next to members that do take part (the chain runs).
        edge('m2'),
        `apiVersion: obo-authz.dev/v1alpha1
kind: CredentialValidator
metadata: {name: keys, namespace: m2}
spec:
  type: APIKey
  apiKey: {file: keys.yaml, reloadInterval: 200ms}
`,
        `apiVersion: obo-authz.dev/v1alpha1
kind: CredentialValidator
metadata: {name: other-keys, namespace: m2}
spec:
  type: APIKey
  match: {hosts: [other.example.com]}
  apiKey: {file: keys.yaml, reloadInterval: 200ms}
  forwardClaims: {prefix: x-key-, claims: [role]}
`,
        // jwtRules with output headers next to an excluded validator.
        edge('m3'),
        `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: users, namespace: m3}
spec:
  jwtRules:
  - issuer: https://idp.example.com
    jwks: '${JSON.stringify(jwks(userKey))}'
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders: [{header: x-jwt-role, claim: role}]
`,
        // Required (by route) although the validator's match excludes the route.
        edge('m4', '  required: {paths: ["/admin"]}\n'),
      ].join('---\n'),
      rt,
      join(dir, 'match.yaml'),
    );
  });
  const removed = (d: Decision) => [...d.upstream.remove];

  it('nothing takes part (the reproduction): spoofed edge and claim headers are removed', async () => {
    const d = await run({ ns: 'm1', path: '/admin', sourcePrincipal: ATTACKER, headers: spoofed }, c);
    expect(d.allow, explain(d)).toBe(true);
    expect(d.identity ?? null).toBeNull();
    expect(removed(d)).toEqual(expect.arrayContaining(['x-user', 'x-role', 'x-authz-claim-role']));
  });
  it('other members take part: the excluded validators still sanitize', async () => {
    const d = await run({ ns: 'm2', path: '/admin', sourcePrincipal: ATTACKER, headers: { ...spoofed, 'x-key-role': 'root', authorization: `Bearer ${S['key']}` } }, c);
    expect(d.allow, explain(d)).toBe(true);
    expect(d.identity?.principal).toBe('apikey.obo-authz.dev/m2/keys/agent-1');
    expect(removed(d)).toEqual(expect.arrayContaining(['x-user', 'x-role', 'x-authz-claim-role', 'x-key-role', 'authorization']));
  });
  it('jwtRules output headers and an excluded validator\'s headers are removed together', async () => {
    const d = await run({ ns: 'm3', path: '/admin', sourcePrincipal: ATTACKER, headers: { ...spoofed, 'x-jwt-role': 'root', 'x-jwt-payload': 'e30' } }, c);
    expect(d.allow, explain(d)).toBe(true);
    expect(removed(d)).toEqual(expect.arrayContaining(['x-user', 'x-role', 'x-authz-claim-role', 'x-jwt-role', 'x-jwt-payload']));
  });
  it('required for the route although the validator\'s match excludes it: 401', async () => {
    const d = await run({ ns: 'm4', path: '/admin', sourcePrincipal: ATTACKER, headers: spoofed }, c);
    expect(d.allow).toBe(false);
    expect(d.reason).toBe('ERR_NO_VALIDATOR_ADMITTED');
  });
  it('a trusted edge on an excluded route: its headers pass untouched, forwarded-claim headers are still removed, no identity', async () => {
    const d = await run({ ns: 'm1', path: '/admin', sourcePrincipal: INGRESS, headers: spoofed }, c);
    expect(d.allow, explain(d)).toBe(true);
    expect(d.identity ?? null).toBeNull();
    expect(removed(d)).toContain('x-authz-claim-role');
    expect(removed(d)).not.toContain('x-user');
    expect(removed(d)).not.toContain('x-role');
  });
  it('on a route the match covers, the validator still admits a trusted edge', async () => {
    const d = await run({ ns: 'm1', path: '/api/x', sourcePrincipal: INGRESS, headers: spoofed }, c);
    expect(d.allow, explain(d)).toBe(true);
    expect(d.identity?.principal).toBe('edge.obo-authz.dev/m1/gw/admin');
    expect(d.upstream.set.get('x-authz-claim-role')).toBe('root');
  });
  it('--explain says the excluded validator only sanitized', async () => {
    const d = await run({ ns: 'm1', path: '/admin', sourcePrincipal: ATTACKER, headers: spoofed }, c);
    expect(explain(d)).toMatch(/EdgeHeaders m1\/gw: match does not hold/);
  });
});

describe('match / required hosts are compared normalized: port, trailing dot, case (review finding: host bypass)', () => {
  // Istio routes every one of these spellings to the mcp.example.com virtual host.
  const spellings = ['mcp.example.com', 'mcp.example.com:443', 'MCP.example.com.', 'Mcp.Example.Com.:8443', 'mcp.example.com.:443'];
  let c: CompiledConfig;
  beforeAll(() => {
    c = mustCompile(
      [
        `apiVersion: obo-authz.dev/v1alpha1
kind: CredentialValidator
metadata: {name: keys, namespace: h1}
spec:
  type: APIKey
  required: {hosts: ["mcp.example.com"]}
  apiKey: {file: keys.yaml}
`,
        // match by host: the validator takes part (and so `required: true` holds) for every spelling.
        `apiVersion: obo-authz.dev/v1alpha1
kind: CredentialValidator
metadata: {name: keys, namespace: h2}
spec:
  type: APIKey
  match: {hosts: ["*.EXAMPLE.com"]}
  required: true
  apiKey: {file: keys.yaml}
`,
        // Patterns are normalized too: a port / trailing dot in the pattern, and Istio's host:* idiom.
        `apiVersion: obo-authz.dev/v1alpha1
kind: CredentialValidator
metadata: {name: keys, namespace: h3}
spec:
  type: APIKey
  required: {hosts: ["mcp.example.com:*", "api.example.com.", "svc.example.com:8080", "::1", "[fe80::1]:*"]}
  apiKey: {file: keys.yaml}
`,
      ].join('---\n'),
      rt,
      join(dir, 'hosts.yaml'),
    );
  });
  for (const host of spellings) {
    it(`required {hosts: [mcp.example.com]} holds for Host: ${host}`, async () => {
      const d = await run({ ns: 'h1', host }, c);
      expect(d.allow, explain(d)).toBe(false);
      expect(d.reason).toBe('ERR_NO_VALIDATOR_ADMITTED');
      expect((await run({ ns: 'h1', host, headers: bearer(S['key']!) }, c)).allow).toBe(true);
    });
    it(`match {hosts: ["*.EXAMPLE.com"]} holds for Host: ${host}`, async () => {
      const d = await run({ ns: 'h2', host }, c);
      expect(d.reason, explain(d)).toBe('ERR_NO_VALIDATOR_ADMITTED');
    });
  }
  it('other hosts stay outside (no over-match)', async () => {
    for (const host of ['mcp.example.com.evil', 'xmcp.example.com', 'mcp.example.co', 'mcp.example.com..']) {
      const d = await run({ ns: 'h1', host }, c);
      expect(d.allow, `${host}: ${explain(d)}`).toBe(true);
    }
    expect((await run({ ns: 'h2', host: 'example.org:443' }, c)).allow).toBe(true);
  });
  it('patterns with a port, a trailing dot or host:* mean the bare host; IPv6 literals with and without brackets', async () => {
    for (const host of ['mcp.example.com', 'mcp.example.com:1', 'api.example.com', 'API.example.com:443', 'svc.example.com', 'svc.example.com:9090', '[::1]:8080', '[::1]', '::1', '[FE80::1]:443', 'fe80::1']) {
      const d = await run({ ns: 'h3', host }, c);
      expect(d.reason, `${host}: ${explain(d)}`).toBe('ERR_NO_VALIDATOR_ADMITTED');
    }
    for (const host of ['other.example.com', '[::2]:8080', 'fe80::1:1']) {
      expect((await run({ ns: 'h3', host }, c)).allow, host).toBe(true);
    }
  });
  it('normalizeHost', () => {
    const cases: [string, string][] = [
      ['MCP.Example.COM', 'mcp.example.com'],
      ['mcp.example.com:443', 'mcp.example.com'],
      ['mcp.example.com.', 'mcp.example.com'],
      ['mcp.example.com.:443', 'mcp.example.com'],
      ['mcp.example.com..', 'mcp.example.com.'],
      ['[::1]:8080', '::1'],
      ['[::1]', '::1'],
      ['::1', '::1'],
      ['[2001:DB8::1]:443', '2001:db8::1'],
      ['10.0.0.1:80', '10.0.0.1'],
      ['', ''],
    ];
    for (const [i, o] of cases) expect(normalizeHost(i), i).toBe(o);
  });
});

describe('config validation', () => {
  const base = (spec: string, file = join(tmpdir(), 'nowhere', 'c.yaml')) =>
    compileYaml(`apiVersion: obo-authz.dev/v1alpha1\nkind: CredentialValidator\nmetadata: {name: v, namespace: shop}\nspec:\n${spec}`, rt, file);
  const errs = (r: ReturnType<typeof base>) => r.issues.filter((i) => i.severity === 'error').map(formatIssue).join('\n');
  const cases: [string, string, RegExp][] = [
    ['unknown field', '  type: APIKey\n  apiKey: {file: k.yaml}\n  bogus: 1\n', /spec\.bogus: unknown field "bogus"/],
    ['unknown field in a block', '  type: APIKey\n  apiKey: {file: k.yaml, hdr: x}\n', /spec\.apiKey\.hdr: unknown field/],
    ['type is required', '  apiKey: {file: k.yaml}\n', /spec\.type: required field is missing/],
    ['unknown type', '  type: Password\n', /spec\.type: must be one of/],
    ['block missing', '  type: SharedToken\n', /spec\.type: type: SharedToken needs a spec\.sharedToken block/],
    ['block of another type', '  type: APIKey\n  apiKey: {file: k.yaml}\n  edge: {trustedSources: {ipBlocks: [10.0.0.0/8]}, headers: {subject: x}}\n', /spec\.edge: edge is only allowed with type: EdgeHeaders/],
    ['missing key file', '  type: APIKey\n  apiKey: {file: k.yaml}\n', /spec\.apiKey\.file: cannot read .*k\.yaml: ENOENT/],
    ['missing token file', '  type: SharedToken\n  sharedToken: {file: t}\n', /spec\.sharedToken\.file: cannot read .*: ENOENT/],
    ['reload interval above 30 s', '  type: SharedToken\n  sharedToken: {file: t, reloadInterval: 1m}\n', /spec\.sharedToken\.reloadInterval: must be at most 30000ms/],
    ['bad CIDR', '  type: EdgeHeaders\n  edge: {trustedSources: {ipBlocks: [10.0.0.0/33]}, headers: {subject: x-sub}}\n', /spec\.edge\.trustedSources\.ipBlocks\[0\]: invalid prefix length/],
    ['edge without trusted sources', '  type: EdgeHeaders\n  edge: {trustedSources: {}, headers: {subject: x-sub}}\n', /spec\.edge\.trustedSources: name at least one/],
    ['edge without subject header', '  type: EdgeHeaders\n  edge: {trustedSources: {ipBlocks: [10.0.0.0/8]}, headers: {role: x-role}}\n', /spec\.edge\.headers\.subject: required field is missing/],
    ['JWKS mode needs an issuer', '  type: KubernetesServiceAccount\n  kubernetes: {audiences: [a]}\n', /spec\.kubernetes\.issuer: required with mode: JWKS/],
    ['bad required', '  type: JWT\n  required: yes-please\n', /spec\.required: expected true, false or a mapping/],
    ['empty required mapping', '  type: JWT\n  required: {}\n', /spec\.required: must name hosts and\/or paths/],
    ['JWT takes no match', '  type: JWT\n  match: {paths: [/x]}\n', /spec\.match: type: JWT takes no match/],
    ['bad header name', '  type: APIKey\n  apiKey: {file: k.yaml, fromHeaders: [{name: "x api"}]}\n', /spec\.apiKey\.fromHeaders\[0\]\.name: invalid value/],
    ['order out of range', '  type: JWT\n  order: 5000\n', /spec\.order: must be <= 1000/],
  ];
  for (const [name, spec, re] of cases) {
    it(name, () => {
      const r = base(spec);
      expect(r.ok).toBe(false);
      expect(errs(r)).toMatch(re);
    });
  }
  const warnings = (r: ReturnType<typeof base>) => r.issues.filter((i) => i.severity === 'warning').map(formatIssue).join('\n');
  it('KubernetesServiceAccount JWKS mode without audiences: a warning (any projected token of the cluster would do)', () => {
    const r = base(`  type: KubernetesServiceAccount\n  kubernetes: {issuer: "${idp.issuer}"}\n`);
    expect(r.ok, errs(r)).toBe(true);
    expect(warnings(r)).toMatch(/spec\.kubernetes\.audiences: .*without audiences any service-account token of the cluster is admitted, whatever its audience/);
    const withAud = base(`  type: KubernetesServiceAccount\n  kubernetes: {issuer: "${idp.issuer}", audiences: [obo-authz]}\n`);
    expect(withAud.ok).toBe(true);
    expect(warnings(withAud)).not.toMatch(/audiences/);
    const empty = base(`  type: KubernetesServiceAccount\n  kubernetes: {issuer: "${idp.issuer}", audiences: []}\n`);
    expect(warnings(empty)).toMatch(/spec\.kubernetes\.audiences: /);
  });
  it('KubernetesServiceAccount TokenReview mode without audiences keeps its warning', () => {
    const r = base(`  type: KubernetesServiceAccount\n  kubernetes: {mode: TokenReview, issuer: https://k8s.example, tokenReview: {apiServer: "${apiServerUrl}"}}\n`);
    expect(r.ok, errs(r)).toBe(true);
    expect(warnings(r)).toMatch(/spec\.kubernetes\.audiences: .*default audience/);
  });
  it('paths resolve relative to the config file; key-file errors name the entry, never a value', () => {
    const d = mkdtempSync(join(tmpdir(), 'obo-cred-cfg-'));
    const h = hashApiKey(S['key']!);
    writeFileSync(join(d, 'k.yaml'), `keys:\n- {name: a, hash: ${h}}\n- {name: a, hash: ${hashApiKey(S['adminKey']!)}}\n`);
    const r = base('  type: APIKey\n  apiKey: {file: k.yaml}\n', join(d, 'c.yaml'));
    expect(errs(r)).toMatch(/key name "a" is used twice/);
    expect(errs(r)).not.toContain(h.slice(7));
    writeFileSync(join(d, 'k.yaml'), `keys:\n- {name: a, hash: ${h}, expires: soon}\n`);
    expect(errs(base('  type: APIKey\n  apiKey: {file: k.yaml}\n', join(d, 'c.yaml')))).toMatch(/keys\[0\]\.expires: expected an RFC 3339 date-time/);
    writeFileSync(join(d, 'k.yaml'), `keys:\n- {name: a, hash: ${h}}\n`);
    expect(base('  type: APIKey\n  apiKey: {file: k.yaml}\n', join(d, 'c.yaml')).ok).toBe(true);
    rmSync(d, { recursive: true, force: true });
  });
});

describe('metrics', () => {
  it('counts outcomes per validator (labels from config only)', async () => {
    const text = await rt.metrics.registry.metrics();
    expect(text).toContain('obo_authz_credential_validations_total{validator="APIKey shop/keys",result="admit"}');
    expect(text).toContain('obo_authz_credential_validations_total{validator="APIKey shop/keys",result="unrecognized"}');
    expect(text).toContain('obo_authz_credential_validations_total{validator="APIKey shop/keys",result="reject"}');
    expect(text).toContain('obo_authz_credential_validations_total{validator="EdgeHeaders shop/gateway",result="abstain"}');
    for (const s of allSecrets) expect(text.includes(s)).toBe(false);
  });
});

describe('no key, token or hash in logs or deny bodies', () => {
  it('deny bodies and challenge headers are fixed strings', () => {
    expect(denyBodies.length).toBeGreaterThan(20);
    for (const b of denyBodies) for (const s of allSecrets) expect(b.includes(s), `deny text contains a secret: ${b.slice(0, 40)}`).toBe(false);
  });
  it('captured log lines contain none of them', () => {
    expect(rt.logs.length).toBeGreaterThan(0);
    for (const l of rt.logs) for (const s of allSecrets) expect(l.includes(s)).toBe(false);
  });
});
