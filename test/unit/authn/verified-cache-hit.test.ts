/**
 * The verified-token cache hit path of RequestAuthentication (request-authentication.ts,
 * verifier.ts probe()): the cache is probed with the raw token before any parsing, and the
 * Identity and header values derived from a token are memoised per rule and cache entry.
 * These tests pin down that a hit never outlives what makes it valid: time, key set, rule,
 * location; and that probing changes nothing, so the slow path can start over.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CompiledConfig } from '../../../src/pipeline/compile.js';
import { authenticate } from '../../../src/authn/index.js';
import { buildRequestContext } from '../../../src/core/context.js';
import { evaluate } from '../../../src/pipeline/pipeline.js';
import { UpstreamMutations, type CheckState } from '../../../src/core/state.js';
import { mustCompile } from '../../helpers/config.js';
import { createTestRuntime, type TestRuntime } from '../../helpers/runtime.js';
import { checkRequest, jwks, makeKey, NOW_S, sign, type ReqOpts, type TestKey } from './helpers.js';

let a: TestKey;
let a2: TestKey;
let b: TestKey;
const runtimes: TestRuntime[] = [];

beforeAll(async () => {
  a = await makeKey('ES256', 'a1');
  a2 = await makeKey('ES256', 'a2');
  b = await makeKey('ES256', 'b1');
});
afterEach(() => {
  for (const rt of runtimes.splice(0)) rt.shared.disposeAll();
});

function runtime(): TestRuntime {
  const rt = createTestRuntime({ now: NOW_S * 1000 });
  runtimes.push(rt);
  return rt;
}

function ra(name: string, ns: string, rule: Record<string, unknown>): string {
  return `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ${name}, namespace: ${ns}}
spec:
  jwtRules:
  - ${JSON.stringify(rule)}
`;
}

function configA(rt: TestRuntime, extra: Record<string, unknown> = {}, keys: TestKey[] = [a]): CompiledConfig {
  return mustCompile(
    ra('ra-a', 'istio-system', {
      issuer: 'https://a.example',
      audiences: ['api'],
      jwks: JSON.stringify(jwks(...keys)),
      outputClaimToHeaders: [{ header: 'x-sub', claim: 'sub' }],
      ...extra,
    }),
    rt,
  );
}

async function tokenA(claims: Record<string, unknown> = {}): Promise<string> {
  return sign(a, { iss: 'https://a.example', sub: 'alice', aud: 'api', exp: NOW_S + 3600, scope: 'read write', ...claims });
}

function bearer(t: string, more: ReqOpts = {}): ReqOpts {
  return { ...more, headers: { authorization: `Bearer ${t}`, ...(more.headers ?? {}) } };
}

async function check(rt: TestRuntime, cfg: CompiledConfig, o: ReqOpts) {
  return evaluate(checkRequest(o), cfg, rt, { explain: true });
}

async function verifications(rt: TestRuntime, issuer = 'https://a.example'): Promise<Record<string, number>> {
  const m = await rt.metrics.registry.getSingleMetric('obo_authz_jwt_verifications_total')?.get();
  const out: Record<string, number> = {};
  for (const v of m?.values ?? []) if (v.labels['issuer'] === issuer) out[String(v.labels['result'])] = v.value;
  return out;
}

/** How many verifications `run` answered from the verified-token cache (jwt_verifications_total{result="cached"}). */
async function cachedBy(rt: TestRuntime, run: () => Promise<unknown>, issuer?: string): Promise<number> {
  const before = (await verifications(rt, issuer))['cached'] ?? 0;
  await run();
  return ((await verifications(rt, issuer))['cached'] ?? 0) - before;
}

describe('verified-token cache hit path', () => {
  it('reuses the frozen Identity and header values of a repeated token', async () => {
    const rt = runtime();
    const cfg = configA(rt);
    const t = await tokenA();
    const d1 = await check(rt, cfg, bearer(t));
    expect(await verifications(rt)).toEqual({ ok: 1 });
    const d2 = await check(rt, cfg, bearer(t));
    expect(await verifications(rt)).toEqual({ ok: 1, cached: 1 });
    const d3 = await check(rt, cfg, bearer(t));
    for (const d of [d1, d2, d3]) {
      expect(d.allow).toBe(true);
      expect(d.identity?.principal).toBe('https://a.example/alice');
      expect(d.identity?.claims['scope']).toEqual(['read', 'write']);
      expect(d.identity?.token).toBe(t);
      expect(d.identity?.location).toBe('header:authorization');
      expect(d.identity?.expiresAt).toBe(NOW_S + 3600);
      expect(Object.fromEntries(d.upstream.set)).toEqual({ 'x-sub': 'alice' });
      expect([...d.upstream.remove]).toContain('authorization');
    }
    // The first hit builds the memo; later hits reuse the same frozen object.
    expect(d3.identity).toBe(d2.identity);
    expect(Object.isFrozen(d2.identity)).toBe(true);
    expect(await verifications(rt)).toEqual({ ok: 1, cached: 2 });
  });

  it('answers a cache hit synchronously and a miss with a promise', async () => {
    const rt = runtime();
    const cfg = configA(rt);
    const t = await tokenA();
    const state = (): CheckState => ({
      ctx: buildRequestContext(checkRequest(bearer(t)), { settings: cfg.settings, deadline: rt.now() + 1000 }),
      runtime: rt,
      signal: new AbortController().signal,
      trace: null,
      identity: null,
      identities: [],
      actor: null,
      tokenLocations: [],
      upstream: new UpstreamMutations(),
      attribution: {},
    });
    const s1 = state();
    const miss = authenticate(s1, cfg.authn);
    expect(miss).toBeInstanceOf(Promise);
    expect(await miss).toBeNull();
    expect(s1.identity?.subject).toBe('alice');
    const s2 = state();
    const hit = authenticate(s2, cfg.authn);
    expect(hit).toBeNull();
    expect(s2.identity?.subject).toBe('alice');
    expect(s2.identities).toHaveLength(1);
    expect(s2.upstream.set.get('x-sub')).toBe('alice');
  });

  it('does not reuse a cached identity past exp (+60 s skew)', async () => {
    const rt = runtime();
    const cfg = configA(rt);
    const t = await tokenA({ exp: NOW_S + 120 });
    expect((await check(rt, cfg, bearer(t))).allow).toBe(true);
    rt.setNow((NOW_S + 120 + 60) * 1000); // last second still valid (now <= exp + skew)
    const ok = await check(rt, cfg, bearer(t));
    expect(ok.allow).toBe(true);
    rt.setNow((NOW_S + 120 + 61) * 1000);
    const d = await check(rt, cfg, bearer(t));
    expect(d.allow).toBe(false);
    expect(d.httpStatus).toBe(401);
    expect(d.body).toBe('Jwt is expired');
    expect(d.reason).toBe('ERR_JWT_EXPIRED');
    expect((await verifications(rt))['expired']).toBe(1);
  });

  it('re-checks nbf on a hit (the clock may step back)', async () => {
    const rt = runtime();
    const cfg = configA(rt);
    const t = await tokenA({ nbf: NOW_S });
    expect((await check(rt, cfg, bearer(t))).allow).toBe(true);
    expect((await check(rt, cfg, bearer(t))).allow).toBe(true); // a hit: the probe path
    rt.setNow((NOW_S - 61) * 1000);
    const d = await check(rt, cfg, bearer(t));
    expect(d.allow).toBe(false);
    expect(d.body).toBe('Jwt not yet valid');
    expect(d.reason).toBe('ERR_JWT_NOT_YET_VALID');
    expect(await verifications(rt)).toEqual({ ok: 1, cached: 1, not_yet_valid: 1 });
    rt.setNow(NOW_S * 1000);
    expect((await check(rt, cfg, bearer(t))).allow).toBe(true);
    expect((await verifications(rt))['cached']).toBe(2);
  });

  it('misses when the key set changes (a reload with another JWKS), then hits under the new one', async () => {
    const rt = runtime();
    const t = await tokenA();
    const cfg1 = configA(rt);
    const cfg2 = configA(rt, {}, [a, a2]);
    expect((await check(rt, cfg1, bearer(t))).allow).toBe(true);
    expect((await check(rt, cfg1, bearer(t))).allow).toBe(true);
    expect(await verifications(rt)).toEqual({ ok: 1, cached: 1 });
    const d = await check(rt, cfg2, bearer(t));
    expect(d.allow).toBe(true);
    expect(await verifications(rt)).toEqual({ ok: 2, cached: 1 });
    expect(await cachedBy(rt, () => check(rt, cfg2, bearer(t)))).toBe(1);
    // A key set without the signing key: the old entries must not answer.
    const cfg3 = configA(rt, {}, [a2]);
    const d3 = await check(rt, cfg3, bearer(t));
    expect(d3.allow).toBe(false);
    expect(d3.body).toBe("Jwks doesn't have key to match kid or alg from Jwt");
  });


  it('a forged token ending like a cached one (same signature) never answers from its entry', async () => {
    const rt = runtime();
    const cfg = configA(rt);
    const t = await tokenA();
    expect((await check(rt, cfg, bearer(t))).allow).toBe(true);
    const [h, p, sig] = t.split('.');
    const payload = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...payload, sub: 'mallory' })).toString('base64url')}.${sig}`;
    expect(forged.slice(-64)).toBe(t.slice(-64));
    const d = await check(rt, cfg, bearer(forged));
    expect(d.allow).toBe(false);
    expect(d.body).toBe('Jwt verification fails');
    expect(await verifications(rt)).toEqual({ ok: 1, signature: 1 }); // verified (and refused), not answered from the entry
    // and the real token still hits
    expect(await cachedBy(rt, () => check(rt, cfg, bearer(t)))).toBe(1);
  });

  it('each verifier entry under a token keeps its own lifetime (10 min cap), however often others store theirs', async () => {
    const rt = runtime();
    const t = await tokenA({ aud: ['api', 'other'], exp: undefined });
    const cfgApi = configA(rt);
    const cfgOther = configA(rt, { audiences: ['other'] });
    expect((await check(rt, cfgApi, bearer(t))).allow).toBe(true);
    rt.advance(9 * 60_000);
    expect(await cachedBy(rt, () => check(rt, cfgOther, bearer(t)))).toBe(0);
    expect(await cachedBy(rt, () => check(rt, cfgApi, bearer(t)))).toBe(1);
    rt.advance(9 * 60_000); // 18 min after cfgApi's entry was made, 9 after cfgOther's
    expect(await cachedBy(rt, () => check(rt, cfgOther, bearer(t)))).toBe(1);
    const d = await check(rt, cfgApi, bearer(t));
    expect(d.allow).toBe(true);
    expect(await verifications(rt)).toEqual({ ok: 3, cached: 2 }); // cfgApi's entry had expired: verified again
  });

  it('keeps one entry per verifier under a token: two configs alternating both hit', async () => {
    const rt = runtime();
    const t = await tokenA({ aud: ['api', 'other'] });
    const cfgApi = configA(rt);
    const cfgOther = configA(rt, { audiences: ['other'] });
    const cfgKeys = configA(rt, {}, [a, a2]);
    for (const cfg of [cfgApi, cfgOther, cfgKeys]) expect((await check(rt, cfg, bearer(t))).allow).toBe(true);
    expect(await verifications(rt)).toEqual({ ok: 3 });
    // every verifier finds its own entry; none evicted the others
    for (let i = 0; i < 2; i++) {
      for (const cfg of [cfgApi, cfgOther, cfgKeys]) expect(await cachedBy(rt, () => check(rt, cfg, bearer(t)))).toBe(1);
    }
    expect(await verifications(rt)).toEqual({ ok: 3, cached: 6 });
    // an audience the token lacks never hits another verifier's entry
    const cfgNone = configA(rt, { audiences: ['nope'] });
    const d = await check(rt, cfgNone, bearer(t));
    expect(d.allow).toBe(false);
    expect(d.body).toBe('Audiences in Jwt are not allowed');
  });
  it('a reload with the same keys but other outputs rebuilds the identity and headers', async () => {
    const rt = runtime();
    const t = await tokenA({ roles: 'x y', team: 'blue' });
    const cfg1 = configA(rt);
    const cfg2 = configA(rt, { outputClaimToHeaders: [{ header: 'x-team', claim: 'team' }], outputPayloadToHeader: 'x-payload', spaceDelimitedClaims: ['roles'] });
    for (let i = 0; i < 2; i++) {
      const d1 = await check(rt, cfg1, bearer(t));
      expect(Object.fromEntries(d1.upstream.set)).toEqual({ 'x-sub': 'alice' });
      expect(d1.identity?.claims['roles']).toBe('x y');
      const d2 = await check(rt, cfg2, bearer(t));
      expect(Object.fromEntries(d2.upstream.set)).toEqual({ 'x-team': 'blue', 'x-payload': t.split('.')[1] });
      expect(d2.identity?.claims['roles']).toEqual(['x', 'y']);
    }
    // Same issuer, audiences and keys: one cache entry served both configs.
    expect(await verifications(rt)).toEqual({ ok: 1, cached: 3 });
  });

  it('the same token at another location gets an identity naming that location', async () => {
    const rt = runtime();
    const cfg = configA(rt);
    const t = await tokenA();
    const h = await check(rt, cfg, bearer(t));
    const q = await check(rt, cfg, { path: `/api?access_token=${t}` });
    const h2 = await check(rt, cfg, bearer(t));
    const q2 = await check(rt, cfg, { path: `/api?access_token=${t}` });
    expect(h.identity?.location).toBe('header:authorization');
    expect(q.identity?.location).toBe('param:access_token');
    expect(h2.identity?.location).toBe('header:authorization');
    expect(q2.identity?.location).toBe('param:access_token');
    expect([...q2.upstream.removeQuery]).toEqual(['access_token']);
    expect([...q2.upstream.remove]).not.toContain('authorization');
  });

  it('keeps issuer routing across rules on hits (unknown issuer for the other rule, not counted)', async () => {
    const rt = runtime();
    const cfg = mustCompile(
      `${ra('ra-a', 'istio-system', { issuer: 'https://a.example', jwks: JSON.stringify(jwks(a)) })}---\n${ra('ra-b', 'istio-system', {
        issuer: 'https://b.example',
        jwks: JSON.stringify(jwks(b)),
        outputClaimToHeaders: [{ header: 'x-b', claim: 'sub' }],
      })}`,
      rt,
    );
    const tb = await sign(b, { iss: 'https://b.example', sub: 'bob', exp: NOW_S + 3600 });
    const ta = await sign(a, { iss: 'https://a.example', sub: 'alice', exp: NOW_S + 3600 });
    for (let i = 0; i < 3; i++) {
      const d = await check(rt, cfg, bearer(tb));
      expect(d.allow).toBe(true);
      expect(d.identity?.admittedBy).toBe('istio-system/ra-b jwtRules[0]');
      expect(d.upstream.set.get('x-b')).toBe('bob');
      const da = await check(rt, cfg, bearer(ta));
      expect(da.identity?.admittedBy).toBe('istio-system/ra-a jwtRules[0]');
      expect(da.upstream.set.has('x-b')).toBe(false);
    }
    expect(await verifications(rt, 'https://b.example')).toEqual({ ok: 1, cached: 2 });
    expect(await verifications(rt, 'https://a.example')).toEqual({ ok: 1, cached: 2 });
  });

  it('several tokens for one rule: all must pass, hits and misses mixed', async () => {
    const rt = runtime();
    const cfg = configA(rt, { fromHeaders: [{ name: 'x-t1' }, { name: 'x-t2' }] });
    const t1 = await tokenA({ sub: 'one' });
    const t2 = await tokenA({ sub: 'two' });
    const req = { headers: { 'x-t1': t1, 'x-t2': t2 } };
    for (let i = 0; i < 2; i++) {
      const d = await check(rt, cfg, req);
      expect(d.allow).toBe(true);
      expect(d.identity?.subject).toBe('one');
      // both tokens verified: by signature the first time, from the cache the second
      expect(await verifications(rt)).toEqual(i === 0 ? { ok: 2 } : { ok: 2, cached: 2 });
    }
    // First token a hit, second a miss: the slow path starts over (x-t1 counted once).
    const t4 = await tokenA({ sub: 'four' });
    const mixed = await check(rt, cfg, { headers: { 'x-t1': t1, 'x-t2': t4 } });
    expect(mixed.allow).toBe(true);
    expect(await verifications(rt)).toEqual({ ok: 3, cached: 3 }); // x-t1 from the cache, x-t2 by signature
    const t3 = await tokenA({ sub: 'three', exp: NOW_S - 3600 });
    const d = await check(rt, cfg, { headers: { 'x-t1': t1, 'x-t2': t3 } });
    expect(d.allow).toBe(false);
    expect(d.body).toBe('Jwt is expired');
  });

  it('extracts the token after the prefix from comma-joined and quoted values', async () => {
    const rt = runtime();
    const cfg = configA(rt);
    const t = await tokenA();
    for (const v of [`Bearer ${t}`, `Bearer "${t}"`, `Basic abc, Bearer ${t}`, `Bearer   ${t} trailing`]) {
      const d = await check(rt, cfg, { headers: { authorization: v } });
      expect(d.allow, v).toBe(true);
      expect(d.identity?.token).toBe(t);
    }
    // Two bearer tokens: both must verify; a garbage second one fails the rule.
    const d = await check(rt, cfg, { headers: { authorization: `Bearer ${t}, Bearer x.y.z` } });
    expect(d.allow).toBe(false);
    expect(d.httpStatus).toBe(401);
  });

  it('probe() changes nothing: only accept() or verify() count a cached answer', async () => {
    const rt = runtime();
    const cfg = configA(rt);
    const t = await tokenA({ nbf: NOW_S });
    expect((await check(rt, cfg, bearer(t))).allow).toBe(true);
    const rule = cfg.authn.requestAuthentications.rulesFor(buildRequestContext(checkRequest(bearer(t)), { settings: cfg.settings }).workload)[0]!;
    const before = await verifications(rt);
    const hit = rule.verifier.probe(t);
    if (typeof hit !== 'object') throw new Error(`expected a cache hit, got ${String(hit)}`);
    for (let i = 0; i < 3; i++) expect(rule.verifier.probe(t)).toBe(hit);
    expect(await verifications(rt)).toEqual(before);
    rule.verifier.accept(hit);
    expect(await verifications(rt)).toEqual({ ...before, cached: (before['cached'] ?? 0) + 1 });
    // Out of its time (the clock stepped back): probe() says why, still without counting; verify() counts it.
    rt.setNow((NOW_S - 61) * 1000);
    expect(rule.verifier.probe(t)).toBe('JwtNotYetValid');
    expect(rule.verifier.probe(t)).toBe('JwtNotYetValid');
    expect((await verifications(rt))['not_yet_valid']).toBeUndefined();
    expect(await rule.verifier.verify(t)).toMatchObject({ ok: false, status: 'JwtNotYetValid' });
    expect((await verifications(rt))['not_yet_valid']).toBe(1);
  });

  it('a miss after rules without tokens starts over without repeating a trace line or a count', async () => {
    const rt = runtime();
    const cfg = mustCompile(
      `${ra('ra-x', 'istio-system', { issuer: 'https://x.example', jwks: JSON.stringify(jwks(b)), fromHeaders: [{ name: 'x-other' }] })}---\n${ra('ra-a', 'istio-system', {
        issuer: 'https://a.example',
        jwks: JSON.stringify(jwks(a)),
        fromHeaders: [{ name: 'x-t1' }, { name: 'x-t2' }],
      })}`,
      rt,
    );
    const t1 = await tokenA({ sub: 'one' });
    const t2 = await tokenA({ sub: 'two' });
    expect((await check(rt, cfg, { headers: { 'x-t1': t1, 'x-t2': t1 } })).allow).toBe(true);
    // t1 is a hit, t2 a miss: the fast path gives up at t2 and the slow path starts from ra-x.
    const d = await check(rt, cfg, { headers: { 'x-t1': t1, 'x-t2': t2 } });
    expect(d.allow).toBe(true);
    // The --explain trace is what a restart could repeat: each line once, in rule order.
    const lines = (d.trace?.entries ?? []).map((e) => e.message);
    expect(lines.filter((l) => l.includes('ra-x jwtRules[0]: no token at header:x-other'))).toHaveLength(1);
    expect(lines.filter((l) => l.includes('token at header:x-t1 verified'))).toHaveLength(1);
    expect(lines.filter((l) => l.includes('token at header:x-t2 verified'))).toHaveLength(1);
    // first Check: t1 verified once, then a hit for x-t2; second: t1 a hit, t2 verified
    expect(await verifications(rt)).toEqual({ ok: 2, cached: 2 });
  });
});
