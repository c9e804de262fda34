/**
 * End to end through evaluate(): RequestAuthentication (inline JWKS) -> exchange against
 * the built-in STS, a separate loopback RFC 8693 server and a loopback TokenReview API.
 */
import { createServer, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mustCompile } from '../helpers/config.js';
import { createTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { tempDir } from '../helpers/tmp.js';
import type { CompiledConfig } from '../../src/pipeline/compile.js';
import { handleStsHttp } from '../../src/http/sts.js';
import { evaluate } from '../../src/pipeline/pipeline.js';
import { toCheckResponse } from '../../src/respond/respond.js';
import { exchange } from '../../src/exchange/index.js';
import { checkRequest, fixture, json, makeIdp, makeState, sq, startLoopback, userIdentity, type Idp, type Loopback, type Recorded } from '../unit/exchange/helpers.js';

const STS_ISSUER = 'https://sts.obo-authz.test';
let idp: Idp;
let idp2: Idp;
let agents: Idp;
let remote: Loopback;
let remoteSlow: Loopback;
let k8s: Loopback;
let rt: TestRuntime;
let cfg: CompiledConfig;
const secrets = new Set<string>();
let remoteCounter = 0;
let remoteMode: 'ok' | 'refuse' | 'delay' = 'ok';

/** A JWT-shaped projected SA token the fake API server recognises. */
function saToken(name: string, ns = 'agents'): string {
  const b = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const t = `${b({ alg: 'RS256', kid: 'k' })}.${b({ iss: 'https://kubernetes.default.svc', sub: `system:serviceaccount:${ns}:${name}`, aud: ['obo-authz'], exp: Math.floor(Date.now() / 1000) + 3600 })}.c2lnbmF0dXJlLXNpZw`;
  secrets.add(t);
  return t;
}

async function userToken(claims: Record<string, unknown> = {}, expSec?: number): Promise<string> {
  const t = await idp.sign({ sub: 'alice', scope: 'mcp:read mcp:write', ...claims }, expSec ? { expSec } : {});
  secrets.add(t);
  return t;
}

function remoteHandler(r: Recorded, res: ServerResponse): void {
  const f = new URLSearchParams(r.body);
  if (f.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:token-exchange' || !f.get('subject_token')) return json(res, 400, { error: 'invalid_request' });
  if (f.has('actor_token') !== f.has('actor_token_type')) return json(res, 400, { error: 'invalid_request' });
  if (remoteMode === 'refuse') return json(res, 400, { error: 'invalid_target', error_description: 'no such audience' });
  const answer = () => {
    const tok = `remote-token-${++remoteCounter}`;
    secrets.add(tok);
    json(res, 200, { access_token: tok, issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'Bearer', expires_in: 3600 });
  };
  if (remoteMode === 'delay') setTimeout(answer, 150);
  else answer();
}

function k8sHandler(r: Recorded, res: ServerResponse): void {
  const body = JSON.parse(r.body) as { spec: { token: string; audiences?: string[] } };
  if (r.headers['authorization'] !== 'Bearer reviewer-token') return json(res, 401, { kind: 'Status' });
  let sub = '';
  try {
    sub = String(decodeJwt(body.spec.token).sub ?? '');
  } catch {
    sub = '';
  }
  if (!sub.startsWith('system:serviceaccount:') || !secrets.has(body.spec.token)) return json(res, 201, { status: { authenticated: false, error: 'invalid bearer token' } });
  json(res, 201, { status: { authenticated: true, user: { username: sub, uid: 'uid', groups: ['system:serviceaccounts'] }, audiences: (body.spec.audiences ?? []).filter((a) => a === 'obo-authz') } });
}

function config(tokenFile: string): string {
  return `
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: idp, namespace: istio-system}
spec:
  jwtRules:
    - issuer: ${idp.issuer}
      jwks: ${sq(idp.jwks)}
    - issuer: ${idp2.issuer}
      jwks: ${sq(idp2.jwks)}
      fromHeaders: [{name: x-idp2-token}]
      fromParams: [idp2_token]
      fromCookies: [idp2]
---
apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: builtin, namespace: istio-system}
spec:
  builtin:
    issuer: ${STS_ISSUER}
    keys: [{kid: k1, file: ${fixture('sts-es256.pem')}, algorithm: ES256}]
    tokenLifetime: 10m
    tokenEndpoint:
      clients:
        - {clientId: agent-gw, clientSecretFile: ${fixture('client-secret.txt')}, audiences: ["https://mcp.example.com", "mcp-*"]}
      subjectIssuers:
        - {issuer: ${idp.issuer}, jwks: ${sq(idp.jwks)}}
      actorIssuers:
        - {issuer: ${agents.issuer}, jwks: ${sq(agents.jwks)}}
        - {issuer: ${idp.issuer}, jwks: ${sq(idp.jwks)}}
      delegationPolicy: agents
---
apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: remote, namespace: istio-system}
spec:
  remote:
    tokenEndpoint: ${remote.url}/token
    clientAuthentication: {method: client_secret_basic, clientId: obo, clientSecret: s3cr3t}
---
apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: slow, namespace: istio-system}
spec:
  remote:
    tokenEndpoint: ${remoteSlow.url}/token
    timeout: 150ms
---
apiVersion: obo-authz.dev/v1alpha1
kind: DelegationPolicy
metadata: {name: agents, namespace: istio-system}
spec:
  rules:
    - actors:
        - {issuer: "*", subject: "system:serviceaccount:agents:*"}
        - {issuer: ${agents.issuer}, subject: "agent-*"}
      subjects: ["*"]
      audiences: ["https://mcp.example.com", "mcp-*"]
---
apiVersion: obo-authz.dev/v1alpha1
kind: DelegationPolicy
metadata: {name: strict, namespace: istio-system}
spec:
  mayAct: Required
  rules:
    - actors: [{subject: "*"}]
---
apiVersion: obo-authz.dev/v1alpha1
kind: DelegationPolicy
metadata: {name: nobody, namespace: istio-system}
spec:
  rules: []
---
apiVersion: obo-authz.dev/v1alpha1
kind: DelegationPolicy
metadata: {name: self, namespace: istio-system}
spec:
  rules:
    - actors: [{issuer: ${idp.issuer}, subject: "batch-*"}]
      subjects: ["batch-*"]
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: m2m, namespace: istio-system}
spec:
  match: {backends: [m2m]}
  mode: Delegation
  target: {audience: mcp-m2m}
  sts: builtin
  actor:
    header: x-actor-token
    jwt: {issuer: ${idp.issuer}, jwks: ${sq(idp.jwks)}}
  delegationPolicy: self
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: self-agents, namespace: istio-system}
spec:
  match: {backends: [self-agents]}
  mode: Delegation
  target: {audience: "https://mcp.example.com"}
  sts: builtin
  actor:
    header: x-actor-token
    jwt: {issuer: ${idp.issuer}, jwks: ${sq(idp.jwks)}}
  delegationPolicy: agents
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: self-strict, namespace: istio-system}
spec:
  match: {backends: [self-strict]}
  mode: Delegation
  target: {audience: mcp-strict}
  sts: builtin
  actor:
    header: x-actor-token
    jwt: {issuer: ${idp.issuer}, jwks: ${sq(idp.jwks)}}
  delegationPolicy: strict
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: imp, namespace: istio-system}
spec:
  match: {backends: [imp]}
  target: {audience: "https://mcp.example.com", scopes: [mcp:read, admin]}
  sts: builtin
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: del, namespace: istio-system}
spec:
  match: {backends: [del]}
  mode: Delegation
  target: {audience: "https://mcp.example.com"}
  sts: builtin
  actor:
    header: x-actor-token
    tokenReview:
      apiServer: ${k8s.url}
      tokenFile: ${tokenFile}
      audiences: [obo-authz]
  delegationPolicy: agents
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: deljwt, namespace: istio-system}
spec:
  match: {backends: [deljwt]}
  mode: Delegation
  target: {audience: mcp-jwt}
  sts: builtin
  actor:
    header: x-agent-token
    jwt: {issuer: ${agents.issuer}, audiences: [obo-authz], jwks: ${sq(agents.jwks)}}
  delegationPolicy: agents
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: strict, namespace: istio-system}
spec:
  match: {backends: [strict]}
  mode: Delegation
  target: {audience: mcp-strict}
  sts: builtin
  actor:
    header: x-actor-token
    tokenReview: {apiServer: ${k8s.url}, tokenFile: ${tokenFile}, audiences: [obo-authz]}
  delegationPolicy: strict
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: nobody, namespace: istio-system}
spec:
  match: {backends: [nobody]}
  mode: Delegation
  target: {audience: mcp-x}
  sts: builtin
  actor:
    header: x-actor-token
    tokenReview: {apiServer: ${k8s.url}, tokenFile: ${tokenFile}, audiences: [obo-authz]}
  delegationPolicy: nobody
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: remote, namespace: istio-system}
spec:
  match: {backends: [remote]}
  target: {audience: mcp-remote, resource: ["https://r.example/a", "https://r.example/b"], scopes: [mcp:read]}
  sts: remote
  cache: {skew: 0s}
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: remote-del, namespace: istio-system}
spec:
  match: {backends: [remote-del]}
  mode: Delegation
  target: {audience: mcp-remote-del}
  sts: remote
  actor:
    header: x-actor-token
    tokenReview: {apiServer: ${k8s.url}, tokenFile: ${tokenFile}, audiences: [obo-authz]}
  delegationPolicy: agents
  upstream: {header: x-backend-token, prefix: "", removeHeaders: [x-user-id]}
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: slow, namespace: istio-system}
spec:
  match: {backends: [slow]}
  target: {audience: mcp-slow}
  sts: slow
`;
}

beforeAll(async () => {
  idp = await makeIdp('https://idp.example');
  idp2 = await makeIdp('https://idp2.example', 'idp2-1');
  agents = await makeIdp('https://agents.example', 'agents-1');
  remote = await startLoopback(remoteHandler);
  remoteSlow = await startLoopback(() => undefined);
  k8s = await startLoopback(k8sHandler);
  const { writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const dir = tempDir('obo-e2e-');
  writeFileSync(join(dir, 'reviewer'), 'reviewer-token\n');
  rt = createTestRuntime();
  cfg = mustCompile(config(join(dir, 'reviewer')), rt);
});
afterAll(async () => {
  await Promise.all([remote.close(), remoteSlow.close(), k8s.close()]);
  rt.shared.disposeAll();
});

const req = (backend: string, headers: Record<string, string>, extra: { path?: string } = {}) => checkRequest({ headers, ext: { backend }, ...extra });
const stsKeys = () => createLocalJWKSet(cfg.exchange.builtinSts!.sts.jwks as never);

function upstreamToken(d: Awaited<ReturnType<typeof evaluate>>, header = 'authorization'): string {
  const v = d.upstream.set.get(header);
  if (!v) throw new Error(`no ${header} set upstream: ${d.reason} ${d.message}`);
  return v.replace(/^Bearer /, '');
}

describe('token exchange end to end', () => {
  it('no policy applies: request passes unchanged', async () => {
    const d = await evaluate(req('unrelated', { authorization: `Bearer ${await userToken()}` }), cfg, rt);
    expect(d.allow).toBe(true);
    expect(d.attribution.exchangePolicy).toBeUndefined();
  });

  it('no authenticated subject -> 401 ERR_SUBJECT_MISSING', async () => {
    const d = await evaluate(req('imp', {}), cfg, rt);
    expect(d).toMatchObject({ allow: false, reason: 'ERR_SUBJECT_MISSING', httpStatus: 401 });
    expect(d.denyHeaders.find(([k]) => k === 'www-authenticate')?.[1]).toBe('Bearer realm="https://mcp.example.com/mcp"');
  });

  it('impersonation via the built-in STS: claims field by field, only the exchanged token upstream', async () => {
    const user = await userToken({ email: 'a@example.com' });
    const d = await evaluate(req('imp', { authorization: `Bearer ${user}`, 'x-actor-token': 'client-sent-garbage' }), cfg, rt);
    expect(d.allow).toBe(true);
    const tok = upstreamToken(d);
    expect(tok).not.toBe(user);
    const { payload, protectedHeader } = await jwtVerify(tok, stsKeys(), { issuer: STS_ISSUER, audience: 'https://mcp.example.com' });
    expect(protectedHeader.kid).toBe('k1');
    expect(payload.iss).toBe(STS_ISSUER);
    expect(payload.sub).toBe('alice');
    expect(payload.aud).toBe('https://mcp.example.com');
    expect(payload.scope).toBe('mcp:read');
    expect(payload.act).toBeUndefined();
    expect(payload.exp! - payload.iat!).toBe(600);
    expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/);
    expect(d.attribution).toMatchObject({ exchangePolicy: 'istio-system/imp', audience: 'https://mcp.example.com', exchangeCache: 'miss' });
    const resp = toCheckResponse(d, { reasonHeader: false });
    const set = resp.ok_response!.headers.map((h) => h.header.key);
    expect(set).toEqual(['authorization']);
    expect(resp.ok_response!.headers_to_remove).toContain('x-actor-token');
    expect(resp.ok_response!.headers_to_remove).not.toContain('authorization');
  });

  it('a query-parameter subject token is removed with query_parameters_to_remove', async () => {
    const user = await userToken();
    const d = await evaluate(req('imp', {}, { path: `/mcp?access_token=${user}` }), cfg, rt);
    expect(d.allow).toBe(true);
    expect([...d.upstream.removeQuery]).toContain('access_token');
    expect(d.upstream.set.get('authorization')).toMatch(/^Bearer /);
  });

  it('delegation with a TokenReview-validated actor: act names the service account', async () => {
    const user = await userToken();
    const d = await evaluate(req('del', { authorization: `Bearer ${user}`, 'x-actor-token': `Bearer ${saToken('planner')}` }), cfg, rt);
    expect(d.allow).toBe(true);
    const { payload } = await jwtVerify(upstreamToken(d), stsKeys(), { issuer: STS_ISSUER, audience: 'https://mcp.example.com' });
    expect(payload.sub).toBe('alice');
    expect(payload.act).toEqual({ sub: 'system:serviceaccount:agents:planner', iss: 'https://kubernetes.default.svc' });
    expect(d.actor?.subject).toBe('system:serviceaccount:agents:planner');
    expect(d.actor?.kind).toBe('kubernetes');
    expect([...d.upstream.remove]).toContain('x-actor-token');
    expect(d.upstream.set.has('x-actor-token')).toBe(false);
  });

  it('delegation with a JWKS-validated actor from a custom header, without Bearer prefix', async () => {
    const user = await userToken();
    const agent = await agents.sign({ sub: 'agent-7', aud: 'obo-authz' });
    secrets.add(agent);
    const d = await evaluate(req('deljwt', { authorization: `Bearer ${user}`, 'x-agent-token': agent }), cfg, rt);
    expect(d.allow).toBe(true);
    const { payload } = await jwtVerify(upstreamToken(d), stsKeys(), { audience: 'mcp-jwt' });
    expect(payload.act).toEqual({ sub: 'agent-7', iss: 'https://agents.example' });
    expect([...d.upstream.remove]).toEqual(expect.arrayContaining(['x-agent-token', 'x-actor-token']));
    // wrong audience on the actor token -> 401 ERR_ACTOR_TOKEN_INVALID
    const bad = await agents.sign({ sub: 'agent-7', aud: 'elsewhere' });
    const d2 = await evaluate(req('deljwt', { authorization: `Bearer ${user}`, 'x-agent-token': bad }), cfg, rt);
    expect(d2).toMatchObject({ allow: false, reason: 'ERR_ACTOR_TOKEN_INVALID', httpStatus: 401 });
  });

  it('nested act: a subject token that already carries act nests under the current actor', async () => {
    const user = await userToken({ act: { sub: 'system:serviceaccount:agents:router' } });
    const d = await evaluate(req('del', { authorization: `Bearer ${user}`, 'x-actor-token': saToken('planner') }), cfg, rt);
    expect(d.allow).toBe(true);
    const { payload } = await jwtVerify(upstreamToken(d), stsKeys());
    expect(payload.act).toEqual({
      sub: 'system:serviceaccount:agents:planner',
      iss: 'https://kubernetes.default.svc',
      act: { sub: 'system:serviceaccount:agents:router' },
    });
  });

  it('same sub but another issuer is not the same party: DelegationPolicy checked, act added', async () => {
    // An IdP user named like a service account, acting through that service account's token.
    const m2m = await userToken({ sub: 'system:serviceaccount:agents:batch' });
    const d = await evaluate(req('del', { authorization: `Bearer ${m2m}`, 'x-actor-token': saToken('batch') }), cfg, rt);
    expect(d.allow).toBe(true);
    const { payload } = await jwtVerify(upstreamToken(d), stsKeys());
    expect(payload.sub).toBe('system:serviceaccount:agents:batch');
    expect(payload.act).toEqual({ sub: 'system:serviceaccount:agents:batch', iss: 'https://kubernetes.default.svc' });
    // ... and a DelegationPolicy that does not list that actor refuses it.
    const d2 = await evaluate(req('nobody', { authorization: `Bearer ${m2m}`, 'x-actor-token': saToken('batch') }), cfg, rt);
    expect(d2).toMatchObject({ allow: false, reason: 'ERR_DELEGATION_DENIED', httpStatus: 403 });
  });

  it('actor == subject (machine-to-machine, same sub and issuer): no act claim, but only when the DelegationPolicy lists the workload as its own actor', async () => {
    const batch = await userToken({ sub: 'batch-nightly' });
    const d = await evaluate(req('m2m', { authorization: `Bearer ${batch}`, 'x-actor-token': batch }), cfg, rt);
    expect(d.allow).toBe(true);
    const { payload } = await jwtVerify(upstreamToken(d), stsKeys(), { audience: 'mcp-m2m' });
    expect(payload.sub).toBe('batch-nightly');
    expect(payload.act).toBeUndefined();
    expect([...d.upstream.remove]).toContain('x-actor-token');
  });

  it('a user sending their own token as the actor token does not bypass DelegationPolicy or may_act', async () => {
    const user = await userToken();
    // `agents` allows only service accounts and agent-* actors: alice is not an allowed actor.
    const d = await evaluate(req('self-agents', { authorization: `Bearer ${user}`, 'x-actor-token': user }), cfg, rt);
    expect(d).toMatchObject({ allow: false, reason: 'ERR_DELEGATION_DENIED', httpStatus: 403, body: 'Delegation is not allowed' });
    expect(d.upstream.set.has('authorization')).toBe(false);
    // `strict` (mayAct: Required) allows any actor named by may_act: no may_act -> denied.
    const d2 = await evaluate(req('self-strict', { authorization: `Bearer ${user}`, 'x-actor-token': user }), cfg, rt);
    expect(d2).toMatchObject({ allow: false, reason: 'ERR_DELEGATION_DENIED' });
    const named = await userToken({ may_act: { sub: 'alice', iss: idp.issuer } });
    const d3 = await evaluate(req('self-strict', { authorization: `Bearer ${named}`, 'x-actor-token': named }), cfg, rt);
    expect(d3.allow).toBe(true);
    expect((await jwtVerify(upstreamToken(d3), stsKeys())).payload.act).toBeUndefined();
  });

  it('a Kubernetes subject and a Kubernetes actor with the same username and issuer are one party; the delegation check still runs', async () => {
    const sa = saToken('batch');
    const subject = userIdentity(sa, { iss: 'https://kubernetes.default.svc', sub: 'system:serviceaccount:agents:batch' }, { kind: 'kubernetes' });
    const s = makeState(rt, cfg, req('del', { 'x-actor-token': sa }), subject);
    expect(await exchange(s, cfg.exchange)).toBeNull();
    const { payload } = await jwtVerify(s.upstream.set.get('authorization')!.slice(7), stsKeys());
    expect(payload.act).toBeUndefined(); // one party: no act link
    // ... yet the DelegationPolicy is still checked: one that lists no actor refuses it
    const s2 = makeState(rt, cfg, req('nobody', { 'x-actor-token': sa }), subject);
    expect(await exchange(s2, cfg.exchange)).toMatchObject({ reason: 'ERR_DELEGATION_DENIED' });
  });

  it('upstream gets no other user token: the locations of every applying jwtRule are stripped, not only the admitted one', async () => {
    const user = await userToken();
    const other = await idp2.sign({ sub: 'mallory' });
    secrets.add(other);
    const d = await evaluate(
      req('imp', { authorization: `Bearer ${user}`, 'x-idp2-token': other, cookie: `theme=dark; idp2=${other}` }, { path: `/mcp?idp2_token=${other}&page=2` }),
      cfg,
      rt,
    );
    expect(d.allow).toBe(true);
    expect(d.identity?.issuer).toBe(idp.issuer);
    const resp = toCheckResponse(d, { reasonHeader: false });
    const ok = resp.ok_response!;
    expect(ok.headers_to_remove).toContain('x-idp2-token');
    expect(ok.headers_to_remove).not.toContain('authorization');
    expect(ok.query_parameters_to_remove).toContain('idp2_token');
    const sent = ok.headers.map((h) => `${h.header.key}: ${h.header.value}`).join('\n');
    expect(sent).not.toContain(other);
    expect(sent).toContain('cookie: theme=dark');
  });

  it('a CORS preflight passes the exchange stage (authn let it through; nothing to exchange)', async () => {
    const raw = req('imp', { origin: 'https://app.example', 'access-control-request-method': 'POST', ':method': 'OPTIONS' });
    (raw.attributes!.request!.http as { method: string }).method = 'OPTIONS';
    const d = await evaluate(raw, cfg, rt);
    expect(d).toMatchObject({ allow: true });
    expect(d.upstream.set.size).toBe(0);
    // A plain OPTIONS (not a preflight) is still refused without a subject.
    const plain = req('imp', { ':method': 'OPTIONS' });
    (plain.attributes!.request!.http as { method: string }).method = 'OPTIONS';
    expect(await evaluate(plain, cfg, rt)).toMatchObject({ allow: false, reason: 'ERR_SUBJECT_MISSING' });
  });

  it('delegation without an actor token -> 401 ERR_ACTOR_TOKEN_MISSING (never impersonation)', async () => {
    const d = await evaluate(req('del', { authorization: `Bearer ${await userToken()}` }), cfg, rt);
    expect(d).toMatchObject({ allow: false, reason: 'ERR_ACTOR_TOKEN_MISSING', httpStatus: 401 });
    expect(d.upstream.set.size).toBe(0);
  });

  it('an actor token the API server rejects -> 401 ERR_ACTOR_TOKEN_INVALID', async () => {
    const forged = saToken('planner').replace(/\.[^.]+$/, '.Zm9yZ2Vk');
    secrets.delete(forged);
    const d = await evaluate(req('del', { authorization: `Bearer ${await userToken()}`, 'x-actor-token': forged }), cfg, rt);
    expect(d).toMatchObject({ allow: false, reason: 'ERR_ACTOR_TOKEN_INVALID', httpStatus: 401 });
  });

  it('delegation denied by the DelegationPolicy (actor outside the rule; empty rule list) -> 403', async () => {
    const user = await userToken();
    const d = await evaluate(req('del', { authorization: `Bearer ${user}`, 'x-actor-token': saToken('intruder', 'other-ns') }), cfg, rt);
    expect(d).toMatchObject({ allow: false, reason: 'ERR_DELEGATION_DENIED', httpStatus: 403, body: 'Delegation is not allowed' });
    const d2 = await evaluate(req('nobody', { authorization: `Bearer ${user}`, 'x-actor-token': saToken('planner') }), cfg, rt);
    expect(d2).toMatchObject({ allow: false, reason: 'ERR_DELEGATION_DENIED' });
  });

  it('may_act enforcement: mismatch and absence deny, a match allows', async () => {
    const actor = saToken('planner');
    const named = await userToken({ may_act: { sub: 'system:serviceaccount:agents:planner' } });
    expect((await evaluate(req('strict', { authorization: `Bearer ${named}`, 'x-actor-token': actor }), cfg, rt)).allow).toBe(true);
    const other = await userToken({ may_act: { sub: 'system:serviceaccount:agents:someone-else' } });
    const d = await evaluate(req('strict', { authorization: `Bearer ${other}`, 'x-actor-token': actor }), cfg, rt);
    expect(d).toMatchObject({ allow: false, reason: 'ERR_DELEGATION_DENIED' });
    const none = await userToken();
    expect((await evaluate(req('strict', { authorization: `Bearer ${none}`, 'x-actor-token': actor }), cfg, rt)).reason).toBe('ERR_DELEGATION_DENIED');
  });

  it('remote STS: exchange, then a cache hit avoids a second STS call', async () => {
    remoteMode = 'ok';
    remote.calls.length = 0;
    const user = await userToken();
    const d1 = await evaluate(req('remote', { authorization: `Bearer ${user}` }), cfg, rt);
    expect(d1.allow).toBe(true);
    const f = new URLSearchParams(remote.calls[0]!.body);
    expect(f.getAll('resource')).toEqual(['https://r.example/a', 'https://r.example/b']);
    expect(f.getAll('audience')).toEqual(['mcp-remote']);
    expect(f.get('subject_token')).toBe(user);
    expect(f.has('actor_token')).toBe(false);
    const t1 = upstreamToken(d1);
    const d2 = await evaluate(req('remote', { authorization: `Bearer ${user}` }), cfg, rt);
    expect(upstreamToken(d2)).toBe(t1);
    expect(d2.attribution.exchangeCache).toBe('hit');
    expect(remote.calls.length).toBe(1);
  });

  it('a cached token is never used past the subject token exp', async () => {
    remoteMode = 'ok';
    remote.calls.length = 0;
    const start = Date.now();
    rt.setNow(start);
    try {
      const exp = Math.floor(start / 1000) + 100;
      const user = await userToken({ jti: 'short-lived' }, exp);
      await evaluate(req('remote', { authorization: `Bearer ${user}` }), cfg, rt);
      rt.setNow(exp * 1000 - 1000);
      const hit = await evaluate(req('remote', { authorization: `Bearer ${user}` }), cfg, rt);
      expect(hit.attribution.exchangeCache).toBe('hit');
      expect(remote.calls.length).toBe(1);
      // Past exp (still inside authn's 60 s leeway): the cached token must not be served.
      rt.setNow(exp * 1000 + 1000);
      const after = await evaluate(req('remote', { authorization: `Bearer ${user}` }), cfg, rt);
      expect(after.attribution.exchangeCache).toBe('miss');
      expect(remote.calls.length).toBe(2);
    } finally {
      rt.setNow(undefined);
    }
  });

  it('concurrent identical requests make one STS call', async () => {
    remoteMode = 'delay';
    remote.calls.length = 0;
    const user = await userToken({ jti: 'concurrent' });
    const ds = await Promise.all(Array.from({ length: 8 }, () => evaluate(req('remote', { authorization: `Bearer ${user}` }), cfg, rt)));
    expect(ds.every((d) => d.allow)).toBe(true);
    expect(new Set(ds.map((d) => upstreamToken(d))).size).toBe(1);
    expect(remote.calls.length).toBe(1);
    remoteMode = 'ok';
  });

  it('remote refusal -> 403 ERR_EXCHANGE_REFUSED with a fixed body, negatively cached', async () => {
    remoteMode = 'refuse';
    remote.calls.length = 0;
    const user = await userToken({ jti: 'refused' });
    const d = await evaluate(req('remote', { authorization: `Bearer ${user}` }), cfg, rt);
    expect(d).toMatchObject({ allow: false, reason: 'ERR_EXCHANGE_REFUSED', httpStatus: 403, body: 'Token exchange refused' });
    expect(d.body).not.toContain('no such audience');
    const d2 = await evaluate(req('remote', { authorization: `Bearer ${user}` }), cfg, rt);
    expect(d2.reason).toBe('ERR_EXCHANGE_REFUSED');
    expect(remote.calls.length).toBe(1);
    remoteMode = 'ok';
  });

  it('remote delegation: actor_token + type sent; custom output header; originals removed', async () => {
    remoteMode = 'ok';
    remote.calls.length = 0;
    const user = await userToken({ jti: 'remote-del' });
    const actor = saToken('planner');
    const d = await evaluate(req('remote-del', { authorization: `Bearer ${user}`, 'x-actor-token': actor, 'x-user-id': 'spoofed' }), cfg, rt);
    expect(d.allow).toBe(true);
    const f = new URLSearchParams(remote.calls[0]!.body);
    expect(f.get('actor_token')).toBe(actor);
    expect(f.get('actor_token_type')).toBe('urn:ietf:params:oauth:token-type:jwt');
    expect(d.upstream.set.get('x-backend-token')).toMatch(/^remote-token-\d+$/);
    expect(d.upstream.set.has('authorization')).toBe(false);
    expect([...d.upstream.remove]).toEqual(expect.arrayContaining(['authorization', 'x-actor-token', 'x-user-id']));
  });

  it('STS timeout -> 503 ERR_EXCHANGE_UNAVAILABLE; a Check deadline before it -> 503 ERR_DEADLINE', async () => {
    const user = await userToken({ jti: 'slow' });
    const t0 = Date.now();
    const d = await evaluate(req('slow', { authorization: `Bearer ${user}` }), cfg, rt);
    expect(d).toMatchObject({ allow: false, reason: 'ERR_EXCHANGE_UNAVAILABLE', httpStatus: 503 });
    expect(Date.now() - t0).toBeLessThan(1500);
    const d2 = await evaluate(req('slow', { authorization: `Bearer ${user}` }), cfg, rt, { deadline: Date.now() + 80 });
    expect(d2).toMatchObject({ allow: false, reason: 'ERR_DEADLINE', httpStatus: 503 });
  });

  it('metrics count exchanges by STS and outcome and cache results', async () => {
    const text = await rt.metrics.registry.metrics();
    expect(text).toMatch(/obo_authz_token_exchanges_total\{sts="istio-system\/remote",outcome="success"\} \d+/);
    expect(text).toMatch(/obo_authz_token_exchanges_total\{sts="istio-system\/slow",outcome="unavailable"\} \d+/);
    expect(text).toMatch(/obo_authz_token_exchange_cache_total\{policy="istio-system\/remote",result="hit"\} \d+/);
  });
});

describe('built-in STS over HTTP', () => {
  let server: ReturnType<typeof createServer>;
  let base = '';
  beforeAll(async () => {
    server = createServer((rq, rs) => {
      void handleStsHttp(rq, rs, cfg, rt).then((handled) => {
        if (!handled) {
          rs.statusCode = 404;
          rs.end();
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const basic = 'Basic ' + Buffer.from('agent-gw:s3cr3t-client').toString('base64');
  const post = (form: Record<string, string | string[]>, auth = basic) => {
    const f = new URLSearchParams();
    for (const [k, v] of Object.entries(form)) for (const x of Array.isArray(v) ? v : [v]) f.append(k, x);
    return fetch(`${base}/oauth2/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: auth }, body: f.toString() });
  };

  it('serves JWKS and discovery; minted pipeline tokens verify against the served JWKS', async () => {
    const disc = (await (await fetch(`${base}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(disc['issuer']).toBe(STS_ISSUER);
    expect(disc['token_endpoint']).toBe(`${STS_ISSUER}/oauth2/token`);
    const d = await evaluate(req('imp', { authorization: `Bearer ${await userToken()}` }), cfg, rt);
    const served = createRemoteJWKSet(new URL(`${base}/.well-known/jwks.json`));
    const { payload } = await jwtVerify(upstreamToken(d), served, { issuer: STS_ISSUER });
    expect(payload.sub).toBe('alice');
    expect((await fetch(`${base}/other`)).status).toBe(404);
  });

  it('wrong methods, wrong content type, and no builtin STS', async () => {
    expect((await fetch(`${base}/oauth2/token`)).status).toBe(405);
    expect((await fetch(`${base}/.well-known/jwks.json`, { method: 'POST' })).status).toBe(405);
    const r = await fetch(`${base}/oauth2/token`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: basic }, body: '{}' });
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ error: 'invalid_request' });
    const fake = { url: '/.well-known/jwks.json', method: 'GET', headers: {} } as never;
    expect(await handleStsHttp(fake, {} as never, null, rt)).toBe(false);
    expect(await handleStsHttp({ ...(fake as object), url: '/metrics' } as never, {} as never, cfg, rt)).toBe(false);
  });

  it('POST /oauth2/token: impersonation and delegation (RFC 8693)', async () => {
    const user = await userToken();
    const r = await post({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: user,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      audience: 'mcp-a',
      scope: 'mcp:write nope',
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('cache-control')).toBe('no-store');
    const body = (await r.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'Bearer', expires_in: 600, scope: 'mcp:write' });
    secrets.add(String(body['access_token']));
    const served = createRemoteJWKSet(new URL(`${base}/.well-known/jwks.json`));
    const p1 = (await jwtVerify(String(body['access_token']), served, { issuer: STS_ISSUER, audience: 'mcp-a' })).payload;
    expect(p1).toMatchObject({ sub: 'alice', client_id: 'agent-gw', scope: 'mcp:write' });
    expect(p1.act).toBeUndefined();

    const agent = await agents.sign({ sub: 'agent-1' });
    secrets.add(agent);
    const r2 = await post({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: user,
      subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
      actor_token: agent,
      actor_token_type: 'urn:ietf:params:oauth:token-type:jwt',
      resource: 'https://mcp.example.com',
    });
    expect(r2.status).toBe(200);
    const b2 = (await r2.json()) as Record<string, unknown>;
    secrets.add(String(b2['access_token']));
    const p2 = (await jwtVerify(String(b2['access_token']), served, { audience: 'https://mcp.example.com' })).payload;
    expect(p2.act).toEqual({ sub: 'agent-1', iss: 'https://agents.example' });
  });

  it('POST /oauth2/token errors: bad client 401, bad grant type, untrusted subject, target not allowed, actor type missing, refused delegation', async () => {
    const user = await userToken();
    const base8693 = { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: user, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', audience: 'mcp-a' };
    const bad = await post(base8693, 'Basic ' + Buffer.from('agent-gw:wrong').toString('base64'));
    expect(bad.status).toBe(401);
    expect(bad.headers.get('www-authenticate')).toBe('Basic realm="obo-authz"');
    expect(await bad.json()).toMatchObject({ error: 'invalid_client' });
    expect(await (await post({ ...base8693, grant_type: 'client_credentials' })).json()).toMatchObject({ error: 'unsupported_grant_type' });
    const foreign = await (await makeIdp('https://evil.example')).sign({ sub: 'alice' });
    expect(await (await post({ ...base8693, subject_token: foreign })).json()).toMatchObject({ error: 'invalid_grant' });
    expect(await (await post({ ...base8693, audience: 'payments' })).json()).toMatchObject({ error: 'invalid_target' });
    expect(await (await post({ ...base8693, actor_token: 'x.y.z' })).json()).toMatchObject({ error: 'invalid_request' });
    const outsider = await agents.sign({ sub: 'robot-9' });
    const r = await post({ ...base8693, actor_token: outsider, actor_token_type: 'urn:ietf:params:oauth:token-type:jwt' });
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ error: 'invalid_grant' });
  });

  it('POST /oauth2/token: the subject token as its own actor token is still checked against the DelegationPolicy', async () => {
    const user = await userToken();
    const form = {
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: user,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      actor_token: user,
      actor_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      audience: 'mcp-a',
    };
    // alice is not an allowed actor under `agents`.
    const r = await post(form);
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ error: 'invalid_grant', error_description: 'delegation is not allowed for this actor' });
  });

  const exchangeForm = async (): Promise<Record<string, string>> => ({
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
    subject_token: await userToken(),
    subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    audience: 'mcp-a',
  });
  const postForm = (form: Record<string, string>, headers: Record<string, string> = {}) =>
    fetch(`${base}/oauth2/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(form).toString() });

  it('POST /oauth2/token: every 401 carries WWW-Authenticate, also for client_secret_post and no credentials', async () => {
    const form = await exchangeForm();
    for (const r of [
      await postForm({ ...form, client_id: 'agent-gw', client_secret: 'wrong' }),
      await postForm({ ...form, client_id: 'nobody', client_secret: 's3cr3t-client' }),
      await postForm(form),
      await postForm(form, { authorization: 'Bearer abc' }),
      await postForm(form, { authorization: 'Basic' }),
    ]) {
      expect(r.status).toBe(401);
      expect(r.headers.get('www-authenticate')).toBe('Basic realm="obo-authz"');
      expect(r.headers.get('cache-control')).toBe('no-store');
      expect(await r.json()).toMatchObject({ error: 'invalid_client' });
    }
    // client_secret_post itself still works.
    const ok = await postForm({ ...form, client_id: 'agent-gw', client_secret: 's3cr3t-client' });
    expect(ok.status).toBe(200);
    secrets.add(String(((await ok.json()) as Record<string, unknown>)['access_token']));
  });

  it('POST /oauth2/token: Basic plus a different body client_id is invalid_request (one method per request); the same id is fine', async () => {
    const form = await exchangeForm();
    const r = await postForm({ ...form, client_id: 'other-client' }, { authorization: basic });
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ error: 'invalid_request' });
    const same = await postForm({ ...form, client_id: 'agent-gw' }, { authorization: basic });
    expect(same.status).toBe(200);
    secrets.add(String(((await same.json()) as Record<string, unknown>)['access_token']));
  });

  it('POST /oauth2/token: malformed base64 in Basic -> 401 invalid_client, even when a lenient decoder would recover the right credentials', async () => {
    const form = await exchangeForm();
    const good = Buffer.from('agent-gw:s3cr3t-client').toString('base64');
    const bad = [
      `${good.slice(0, 4)}*${good.slice(4)}`, // invalid character
      `${good}garbage`, // data after the padding
      good.replace(/=+$/, ''), // padding missing
      `${good.slice(0, 8)} ${good.slice(8)}`, // embedded space
      Buffer.from([0x61, 0x3a, 0xff, 0xfe]).toString('base64'), // not UTF-8
      '!!!!',
    ];
    for (const b64 of bad) {
      const r = await postForm(form, { authorization: `Basic ${b64}` });
      expect(r.status, b64).toBe(401);
      expect(r.headers.get('www-authenticate')).toBe('Basic realm="obo-authz"');
      expect(await r.json()).toMatchObject({ error: 'invalid_client' });
    }
    const ok = await postForm(form, { authorization: `basic  ${good} ` });
    expect(ok.status).toBe(200);
    secrets.add(String(((await ok.json()) as Record<string, unknown>)['access_token']));
  });

  /** A raw HTTP/1.1 client: sends `head`, then `onConnect` may stream a body; resolves with what the server sent once it closed the connection. */
  function rawExchange(port: number, head: string, onConnect: (s: Socket) => void, timeoutMs = 3000): Promise<{ response: string; closedByServer: boolean }> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const s = connect(port, '127.0.0.1', () => {
        s.write(head);
        onConnect(s);
      });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`no close within ${timeoutMs} ms; got: ${Buffer.concat(chunks).toString('latin1').slice(0, 200) || '(nothing)'}`));
      }, timeoutMs);
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('error', () => undefined); // EPIPE / ECONNRESET while still writing the body
      s.on('close', () => {
        clearTimeout(timer);
        resolve({ response: Buffer.concat(chunks).toString('latin1'), closedByServer: true });
      });
    });
  }
  const port = () => Number(new URL(base).port);
  const tokenHead = (extra: string) => `POST /oauth2/token HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/x-www-form-urlencoded\r\nauthorization: ${basic}\r\n${extra}\r\n`;

  it('POST /oauth2/token: an endless body is cut off at 64 KiB with 413 and connection: close, not read to the end', async () => {
    let timer: NodeJS.Timeout | undefined;
    const chunk = `${(64 * 1024).toString(16)}\r\n${'a'.repeat(64 * 1024)}\r\n`;
    const r = await rawExchange(port(), tokenHead('transfer-encoding: chunked\r\n'), (s) => {
      // Never sends the terminating chunk: before the fix the server read forever.
      const pump = () => {
        if (s.destroyed) return;
        s.write(chunk);
        timer = setTimeout(pump, 5);
      };
      pump();
    }).finally(() => clearTimeout(timer));
    expect(r.response).toMatch(/^HTTP\/1\.1 413 /);
    expect(r.response.toLowerCase()).toContain('connection: close');
    expect(r.response).toContain('"error":"invalid_request"');
  });

  it('POST /oauth2/token: a declared content-length over 64 KiB gets 413 without the body being sent', async () => {
    const r = await rawExchange(port(), tokenHead(`content-length: ${64 * 1024 + 1}\r\n`), () => undefined);
    expect(r.response).toMatch(/^HTTP\/1\.1 413 /);
    expect(r.response.toLowerCase()).toContain('connection: close');
  });

  it('POST /oauth2/token: a request stream error destroys the response instead of leaving it open', async () => {
    let settled: { handled: boolean; destroyed: boolean } | undefined;
    const srv = createServer((rq, rs) => {
      void handleStsHttp(rq, rs, cfg, rt).then((handled) => {
        settled = { handled, destroyed: rs.destroyed };
      });
      // The socket stays up: only the request stream fails.
      rq.once('data', () => rq.emit('error', new Error('injected stream error')));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    try {
      const r = await rawExchange((srv.address() as AddressInfo).port, tokenHead('content-length: 100\r\n'), (s) => s.write('grant_type='), 2000);
      expect(r.response).toBe('');
      expect(settled).toEqual({ handled: true, destroyed: true });
    } finally {
      srv.closeAllConnections();
      await new Promise<void>((r) => srv.close(() => r()));
    }
  });
});

describe('redaction', () => {
  it('no token (subject, actor or exchanged) appears in the captured logs', () => {
    expect(rt.logs.length).toBeGreaterThan(0);
    const all = rt.logs.join('\n');
    expect(secrets.size).toBeGreaterThan(10);
    for (const s of secrets) expect(all.includes(s), 'a token leaked into the logs').toBe(false);
    expect(all).not.toContain('s3cr3t');
    expect(all).not.toContain('reviewer-token');
  });
});
