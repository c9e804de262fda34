/**
 * Exchange cache hits in Impersonation mode answer synchronously (exchange() returns a value,
 * not a promise) with exactly what the asynchronous path produces; everything else — a miss,
 * an expired entry, a cached refusal, Delegation — still takes the asynchronous path.
 */
import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { mustCompile } from '../../helpers/config.js';
import { createTestRuntime, type TestRuntime } from '../../helpers/runtime.js';
import type { CompiledConfig } from '../../../src/pipeline/compile.js';
import { exchange } from '../../../src/exchange/index.js';
import { exchangeCacheKey, exchangeKeyPrefix } from '../../../src/exchange/cache.js';
import type { Deny } from '../../../src/core/state.js';
import { checkRequest, json, makeIdp, makeState, sq, startLoopback, userIdentity, type Idp, type Loopback, type Recorded } from './helpers.js';

const NOW = 1_900_000_000_000;
const NOW_S = NOW / 1000;

let sts: Loopback;
let behaviour: (r: Recorded, res: ServerResponse) => void;
let issued = 0;
let agents: Idp;
let otherAgents: Idp;

beforeAll(async () => {
  agents = await makeIdp('https://agents.example');
  otherAgents = await makeIdp('https://agents.example', 'idp-1'); // same issuer and kid, another key
  sts = await startLoopback((r, res) => behaviour(r, res));
});
afterAll(() => sts.close());

const okSts = (r: Recorded, res: ServerResponse) => {
  void r;
  json(res, 200, { access_token: `exchanged-${++issued}`, issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'Bearer', expires_in: 3600 });
};

function compile(rt: TestRuntime, agentJwks: string): CompiledConfig {
  return mustCompile(
    `apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: remote, namespace: istio-system}
spec:
  remote:
    tokenEndpoint: ${sts.url}/token
    clientAuthentication: {method: client_secret_post, clientId: c, clientSecret: s}
---
apiVersion: obo-authz.dev/v1alpha1
kind: DelegationPolicy
metadata: {name: any-agent, namespace: istio-system}
spec:
  rules: [{actors: [{issuer: "https://agents.example", subject: "agent-*"}]}]
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: imp, namespace: istio-system}
spec:
  match: {backends: [imp]}
  target: {audience: backend, scopes: [read]}
  sts: remote
  upstream: {removeHeaders: [x-debug, x-actor-token]}
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: del, namespace: istio-system}
spec:
  match: {backends: [del]}
  mode: Delegation
  target: {audience: backend}
  sts: remote
  actor:
    header: x-agent-token
    jwt: {issuer: "https://agents.example", audiences: [obo], jwks: ${sq(agentJwks)}}
  delegationPolicy: any-agent
`,
    rt,
  );
}

const isPromise = (v: unknown): v is Promise<unknown> => typeof (v as { then?: unknown } | null)?.then === 'function';

const claims = (exp: number) => ({ iss: 'https://idp.example', sub: 'alice', exp });
const request = (backend: string, headers: Record<string, string> = {}) =>
  checkRequest({ ext: { backend }, path: '/mcp?access_token=x&page=1', headers: { authorization: 'Bearer user-token', 'x-debug': '1', 'x-actor-token': 'client-copy', ...headers } });

/** A state whose admitted identities sit in a header and in a query parameter. */
function stateFor(rt: TestRuntime, cfg: CompiledConfig, exp: number) {
  const s = makeState(rt, cfg, request('imp'), userIdentity('user-token', claims(exp)));
  s.identities = [...s.identities, userIdentity('x', claims(exp), { location: 'param:access_token' })];
  return s;
}

/** Everything the stage leaves on the state, for comparing two runs. */
function snapshot(s: ReturnType<typeof makeState>) {
  return {
    set: [...s.upstream.set],
    remove: [...s.upstream.remove],
    removeQuery: [...s.upstream.removeQuery],
    attribution: { ...s.attribution },
    actor: s.actor?.principal ?? null,
  };
}

async function metric(rt: TestRuntime, result: string): Promise<number> {
  const text = await rt.metrics.registry.metrics();
  const m = text.match(new RegExp(`obo_authz_token_exchange_cache_total\\{policy="istio-system/imp",result="${result}"\\} (\\d+)`));
  return m ? Number(m[1]) : 0;
}

describe('exchange cache hit (Impersonation) answers synchronously', () => {
  it('a miss is asynchronous; the hit is synchronous with the same upstream headers, attribution and trace', async () => {
    behaviour = okSts;
    const rt = createTestRuntime({ now: NOW });
    const cfg = compile(rt, agents.jwks);
    const before = sts.calls.length;

    const s1 = stateFor(rt, cfg, NOW_S + 3600);
    const r1 = exchange(s1, cfg.exchange);
    expect(isPromise(r1)).toBe(true);
    expect(await r1).toBeNull();
    expect(s1.attribution.exchangeCache).toBe('miss');

    const s2 = stateFor(rt, cfg, NOW_S + 3600);
    const r2 = exchange(s2, cfg.exchange);
    expect(isPromise(r2)).toBe(false);
    expect(r2).toBeNull();
    expect(sts.calls.length - before).toBe(1);

    const a = snapshot(s1);
    const b = snapshot(s2);
    expect(b).toEqual({ ...a, attribution: { ...a.attribution, exchangeCache: 'hit' } });
    expect(new Map(b.set).get('authorization')).toBe(`Bearer exchanged-${issued}`);
    expect(b.remove).toEqual(expect.arrayContaining(['x-debug', 'x-actor-token']));
    expect(b.removeQuery).toEqual(['access_token']);
    expect(b.attribution).toEqual({ exchangePolicy: 'istio-system/imp', audience: 'backend', exchangeCache: 'hit' });
    expect(s2.trace!.entries.map((e) => e.message)).toEqual([
      'istio-system/imp applies (mode Impersonation, STS istio-system/remote)',
      'exchanged token set in authorization (cache hit)',
    ]);
    expect(await metric(rt, 'hit')).toBe(1);
    expect(await metric(rt, 'miss')).toBe(1);
  });

  it('an entry past the subject exp (minus skew) is a miss and goes to the STS again', async () => {
    behaviour = okSts;
    const rt = createTestRuntime({ now: NOW });
    const cfg = compile(rt, agents.jwks);
    const exp = NOW_S + 120; // the exchanged token lives an hour; the subject only 2 minutes
    const run = () => {
      const s = makeState(rt, cfg, request('imp'), userIdentity('user-token', claims(exp)));
      return { s, r: exchange(s, cfg.exchange) };
    };
    expect(await run().r).toBeNull();
    const before = sts.calls.length;
    rt.setNow(exp * 1000 - 30_000 - 1); // default skew: 30 s
    const hit = run();
    expect(isPromise(hit.r)).toBe(false);
    expect(hit.s.attribution.exchangeCache).toBe('hit');
    rt.setNow(exp * 1000 - 30_000);
    const miss = run();
    expect(isPromise(miss.r)).toBe(true);
    expect(miss.s.attribution.exchangeCache).toBe('miss');
    expect(await miss.r).toBeNull();
    expect(sts.calls.length - before).toBe(1);
  });

  it('a cached refusal still denies (asynchronously) with the same reason, body and headers', async () => {
    behaviour = (_r, res) => json(res, 400, { error: 'invalid_grant' });
    const rt = createTestRuntime({ now: NOW });
    const cfg = compile(rt, agents.jwks);
    const before = sts.calls.length;
    const run = () => {
      const s = makeState(rt, cfg, request('imp'), userIdentity('refused-token', claims(NOW_S + 3600)));
      return { s, r: exchange(s, cfg.exchange) };
    };
    const first = run();
    const d1 = (await first.r) as Deny;
    expect(d1).toMatchObject({ reason: 'ERR_EXCHANGE_REFUSED', policy: 'istio-system/imp' });
    const second = run();
    expect(isPromise(second.r)).toBe(true);
    const d2 = (await second.r) as Deny;
    expect(d2).toEqual(d1);
    expect(sts.calls.length - before).toBe(1);
    expect(second.s.attribution).toEqual({ exchangePolicy: 'istio-system/imp', audience: 'backend', exchangeCache: 'hit' });
    expect(second.s.upstream.set.size).toBe(0);
    expect(await metric(rt, 'negative')).toBe(1);
  });
});

describe('Delegation keeps validating the actor', () => {
  it('validates the actor token on every Check, also when the exchange is cached', async () => {
    behaviour = okSts;
    const rt = createTestRuntime();
    const cfg = compile(rt, agents.jwks);
    const p = cfg.exchange.policies.find((x) => x.ref === 'istio-system/del')!;
    const validate = vi.spyOn(p.actor!.validator, 'validate');
    const agent = await agents.sign({ sub: 'agent-1', aud: 'obo' });
    const run = (token: string) => {
      const s = makeState(rt, cfg, request('del', { 'x-agent-token': `Bearer ${token}` }), userIdentity('user-token', claims(Math.floor(Date.now() / 1000) + 3600)));
      return { s, r: exchange(s, cfg.exchange) };
    };
    const before = sts.calls.length;
    const a = run(agent);
    expect(isPromise(a.r)).toBe(true);
    expect(await a.r).toBeNull();
    const b = run(agent);
    expect(isPromise(b.r)).toBe(true);
    expect(await b.r).toBeNull();
    expect(b.s.attribution.exchangeCache).toBe('hit');
    expect(b.s.actor?.principal).toBe('https://agents.example/agent-1');
    expect(sts.calls.length - before).toBe(1);
    expect(validate).toHaveBeenCalledTimes(2);

    // Same issuer and sub (so the same cache key) but a forged signature: denied, not served.
    const forged = await otherAgents.sign({ sub: 'agent-1', aud: 'obo' });
    const c = run(forged);
    expect(await c.r).toMatchObject({ reason: 'ERR_ACTOR_TOKEN_INVALID' });
    expect(validate).toHaveBeenCalledTimes(3);
    expect(c.s.upstream.set.size).toBe(0);
  });
});

describe('exchange cache key', () => {
  const prefix = exchangeKeyPrefix('sts-id', 'Impersonation', ['a'], [], ['read'], undefined, 'urn:t');
  it('covers every field, per-policy constants included', () => {
    const k = exchangeCacheKey(prefix, 'tok', '', '');
    expect(k).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(exchangeCacheKey(prefix, 'tok', '', '')).toBe(k);
    const others = [
      exchangeCacheKey(exchangeKeyPrefix('sts-id2', 'Impersonation', ['a'], [], ['read'], undefined, 'urn:t'), 'tok', '', ''),
      exchangeCacheKey(exchangeKeyPrefix('sts-id', 'Delegation', ['a'], [], ['read'], undefined, 'urn:t'), 'tok', '', ''),
      exchangeCacheKey(exchangeKeyPrefix('sts-id', 'Impersonation', [], ['a'], ['read'], undefined, 'urn:t'), 'tok', '', ''),
      exchangeCacheKey(exchangeKeyPrefix('sts-id', 'Impersonation', ['a'], [], ['read', 'write'], undefined, 'urn:t'), 'tok', '', ''),
      exchangeCacheKey(exchangeKeyPrefix('sts-id', 'Impersonation', ['a'], [], ['read'], 'urn:x', 'urn:t'), 'tok', '', ''),
      exchangeCacheKey(exchangeKeyPrefix('sts-id', 'Impersonation', ['a'], [], ['read'], undefined, 'urn:u'), 'tok', '', ''),
      exchangeCacheKey(prefix, 'tok2', '', ''),
      exchangeCacheKey(prefix, 'tok', 'p', ''),
      exchangeCacheKey(prefix, 'tok', '', 'p'),
    ];
    expect(new Set([k, ...others]).size).toBe(others.length + 1);
  });
  it('is unambiguous where the per-request fields meet', () => {
    expect(exchangeCacheKey(prefix, 'ab', 'c', '')).not.toBe(exchangeCacheKey(prefix, 'a', 'bc', ''));
    expect(exchangeCacheKey(prefix, 'a', 'b', '')).not.toBe(exchangeCacheKey(prefix, 'a', '', 'b'));
    expect(exchangeCacheKey(prefix, 'a\0b', '', '')).not.toBe(exchangeCacheKey(prefix, 'a', 'b', ''));
  });
});
