import { afterEach, describe, expect, it, vi } from 'vitest';
import { cacheControlMaxAgeMs, redactUrl } from '../../../src/jwt/jwks-fetch.js';
import { DEFAULT_JWKS_TUNING, RemoteKeySource } from '../../../src/jwt/jwks-source.js';
import type { CompiledConfig } from '../../../src/pipeline/compile.js';
import { formatIssue } from '../../../src/config/issues.js';
import { evaluate } from '../../../src/pipeline/pipeline.js';
import { compileYaml, mustCompile } from '../../helpers/config.js';
import { createTestRuntime, type TestRuntime } from '../../helpers/runtime.js';
import { waitUntil } from '../../helpers/wait.js';
import { checkRequest, deadUrl, jwks, makeKey, NOW_S, sign, startIdp, type IdpServer } from './helpers.js';

let rt: TestRuntime;
const servers: IdpServer[] = [];
afterEach(async () => {
  vi.useRealTimers();
  rt?.shared.disposeAll();
  for (const s of servers.splice(0)) await s.close();
});

function ra(name: string, issuer: string, extra: string): string {
  return `---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ${name}, namespace: istio-system}
spec:
  jwtRules:
  - issuer: ${issuer}
${extra}
`;
}

async function check(cfg: CompiledConfig, token: string) {
  return evaluate(checkRequest({ headers: { authorization: `Bearer ${token}` } }), cfg, rt, { explain: true });
}

function metric(name: string): Promise<string> {
  return rt.metrics.registry.getSingleMetricAsString(`obo_authz_${name}`);
}

/** Wait until a background JWKS fetch has ended with `outcome` (it is counted when it ends). */
function fetchEnded(outcome: string): Promise<void> {
  return waitUntil(async () => (await metric('jwks_fetches_total')).includes(`outcome="${outcome}"`), { what: `a JWKS fetch with outcome ${outcome}` });
}

/** The remote key sources the runtime's shared resources handed out, in order (spy made before compiling). */
function remoteSources(get: { mock: { results: { value: unknown }[] } }): RemoteKeySource[] {
  return [...new Set(get.mock.results.map((r) => r.value).filter((v): v is RemoteKeySource => v instanceof RemoteKeySource))];
}

describe('remote JWKS', () => {
  it('refuses a JWKS document over maxDocumentBytes (streamed, not buffered whole) and keeps no keys from it', async () => {
    rt = createTestRuntime({ now: NOW_S * 1000 });
    const k = await makeKey('ES256', 'big');
    const idp = await startIdp({ ...jwks(k), padding: 'x'.repeat(5000) });
    servers.push(idp);
    const tuning = { ...DEFAULT_JWKS_TUNING, maxDocumentBytes: 2000 };
    const big = new RemoteKeySource(rt, { kind: 'uri', uri: `${idp.url}/jwks` }, 'https://idp', 1000, tuning);
    expect(await big.get(undefined, 1000)).toBeNull();
    big.dispose();
    expect(await metric('jwks_fetches_total')).toMatch(/outcome="invalid"\} 1/);
    // the same document under the cap is accepted
    idp.jwks = jwks(k);
    const small = new RemoteKeySource(rt, { kind: 'uri', uri: `${idp.url}/jwks` }, 'https://idp', 1000, tuning);
    expect((await small.get(undefined, 1000))?.keys.length).toBe(1);
    small.dispose();
  });

  it('picks up a key rotation through an unknown-kid refetch with no failed request', async () => {
    rt = createTestRuntime({ now: NOW_S * 1000 });
    const k1 = await makeKey('RS256', 'k1');
    const k2 = await makeKey('ES256', 'k2');
    const idp = await startIdp(jwks(k1));
    servers.push(idp);
    const cfg = mustCompile(ra('r', 'https://idp', `    jwksUri: ${idp.url}/jwks`), rt);
    const t1 = await sign(k1, { iss: 'https://idp', sub: 'u1' });
    expect((await check(cfg, t1)).allow).toBe(true);
    idp.jwks = jwks(k2); // rotate: k1 removed, k2 added
    const t2 = await sign(k2, { iss: 'https://idp', sub: 'u2' });
    const d = await check(cfg, t2);
    expect(d.allow, d.message).toBe(true);
    expect(d.identity?.principal).toBe('https://idp/u2'); // t2 is signed with k2 only: the refetched key verified it
    expect(idp.hitCount('/jwks')).toBe(2);
    // k1 is gone from the JWKS: its tokens are no longer accepted (cache keyed by key-set hash)
    const d1 = await check(cfg, t1);
    expect(d1.allow).toBe(false);
    expect(d1.body).toBe("Jwks doesn't have key to match kid or alg from Jwt");
  });

  it('rate-limits unknown-kid refetches (flood of bad kids) and single-flights concurrent ones', async () => {
    rt = createTestRuntime({ now: NOW_S * 1000 });
    const k1 = await makeKey('RS256', 'k1');
    const idp = await startIdp(jwks(k1));
    servers.push(idp);
    const cfg = mustCompile(ra('r', 'https://idp', `    jwksUri: ${idp.url}/jwks`), rt);
    expect((await check(cfg, await sign(k1, { iss: 'https://idp' }))).allow).toBe(true);
    expect(idp.hitCount('/jwks')).toBe(1);
    const bad = await Promise.all(Array.from({ length: 20 }, (_, i) => sign(k1, { iss: 'https://idp', n: i }, { header: { kid: `nope-${i}` } })));
    idp.delayMs = 50;
    const ds = await Promise.all(bad.map((t) => check(cfg, t)));
    expect(ds.every((d) => !d.allow && d.httpStatus === 401)).toBe(true);
    expect(idp.hitCount('/jwks')).toBe(2); // one refetch for the whole flood
    for (const t of bad.slice(0, 5)) await check(cfg, t);
    expect(idp.hitCount('/jwks')).toBe(2); // within cooldown: none
    rt.advance(16_000);
    await check(cfg, bad[0]!);
    expect(idp.hitCount('/jwks')).toBe(3); // cooldown over: one more
  });

  it('IdP down at start: 503 for that issuer only, other issuers served; recovers without restart', async () => {
    rt = createTestRuntime({ now: NOW_S * 1000 });
    const kd = await makeKey('RS256', 'kd');
    const ki = await makeKey('ES256', 'ki');
    const idp = await startIdp(jwks(kd));
    servers.push(idp);
    idp.mode = 'error';
    const text =
      ra('down', 'https://down', `    jwksUri: ${idp.url}/jwks`) +
      ra('inline', 'https://inline', `    jwks: '${JSON.stringify(jwks(ki))}'`);
    const cfg = mustCompile(text, rt);
    const td = await sign(kd, { iss: 'https://down', sub: 'x' });
    const d = await check(cfg, td);
    expect(d.allow).toBe(false);
    expect(d.httpStatus).toBe(503);
    expect(d.body).toBe('Jwks remote fetch is failed');
    expect(d.reason).toBe('ERR_JWKS_UNAVAILABLE');
    expect(d.denyHeaders).toEqual([]);
    const started = Date.now();
    expect((await check(cfg, await sign(ki, { iss: 'https://inline' }))).allow).toBe(true);
    expect(Date.now() - started).toBeLessThan(500);
    // while backing off, requests fail fast without hitting the IdP
    const hits = idp.hitCount('/jwks');
    expect((await check(cfg, td)).httpStatus).toBe(503);
    expect(idp.hitCount('/jwks')).toBe(hits);
    // IdP comes back; after the back-off the next request fetches and succeeds
    idp.mode = 'up';
    rt.advance(5 * 60_000);
    const ok = await check(cfg, td);
    expect(ok.allow, ok.message).toBe(true);
    expect(await metric('jwks_fetches_total')).toMatch(/issuer="https:\/\/down",outcome="http_error"/);
    expect(await metric('jwks_fetches_total')).toMatch(/issuer="https:\/\/down",outcome="success"/);
  });

  it('Settings.jwksUnavailableStatus: 401 switches back to Envoy behaviour (with www-authenticate)', async () => {
    rt = createTestRuntime({ now: NOW_S * 1000 });
    const k = await makeKey('RS256', 'k');
    const url = await deadUrl();
    const cfg = mustCompile(
      `apiVersion: obo-authz.dev/v1alpha1\nkind: Settings\nmetadata: {name: s}\nspec: {jwksUnavailableStatus: 401}\n` +
        ra('r', 'https://idp', `    jwksUri: ${url}/jwks`),
      rt,
    );
    const d = await check(cfg, await sign(k, { iss: 'https://idp' }));
    expect(d.httpStatus).toBe(401);
    expect(d.body).toBe('Jwks remote fetch is failed');
    expect(d.denyHeaders).toEqual([['www-authenticate', 'Bearer realm="https://example.com/api", error="invalid_token"']]);
  });

  it('IdP down after start: old keys keep working, retries back off, stale maximum enforced', async () => {
    rt = createTestRuntime({ now: NOW_S * 1000 });
    const k = await makeKey('PS256', 'k');
    const idp = await startIdp(jwks(k));
    servers.push(idp);
    const cfg = mustCompile(ra('r', 'https://idp', `    jwksUri: ${idp.url}/jwks\n    timeout: 200ms`), rt);
    expect((await check(cfg, await sign(k, { iss: 'https://idp', n: 0 }))).allow).toBe(true);
    idp.mode = 'hang';
    rt.advance(21 * 60_000); // past the 20 min refresh: background refresh starts and hangs
    const d = await check(cfg, await sign(k, { iss: 'https://idp', n: 1 }));
    expect(d.allow, d.message).toBe(true);
    await fetchEnded('timeout'); // the hanging refresh gives up after 200 ms
    idp.mode = 'error';
    rt.advance(6 * 86_400_000);
    expect((await check(cfg, await sign(k, { iss: 'https://idp', n: 2 }))).allow).toBe(true);
    await fetchEnded('http_error'); // the retry it started failed: the old keys stay
    rt.advance(86_400_000 + 1); // more than 7 days since the last good fetch
    const stale = await check(cfg, await sign(k, { iss: 'https://idp', n: 3 }));
    expect(stale.httpStatus).toBe(503);
    expect(rt.logs.join('')).toContain('exceeded the stale maximum');
  });

  it('a fetched JWKS without usable keys never replaces good keys', async () => {
    rt = createTestRuntime({ now: NOW_S * 1000 });
    const k = await makeKey('ES384', 'k');
    const idp = await startIdp(jwks(k));
    servers.push(idp);
    const cfg = mustCompile(ra('r', 'https://idp', `    jwksUri: ${idp.url}/jwks`), rt);
    const t = await sign(k, { iss: 'https://idp' });
    expect((await check(cfg, t)).allow).toBe(true);
    idp.jwks = { keys: [{ kty: 'RSA', kid: 'broken' }] };
    rt.advance(21 * 60_000);
    await check(cfg, t); // triggers the background refresh
    await fetchEnded('invalid');
    expect((await check(cfg, await sign(k, { iss: 'https://idp', n: 1 }))).allow).toBe(true);
  });

  it('OIDC discovery, Cache-Control max-age within bounds, verified-token cache', async () => {
    rt = createTestRuntime({ now: NOW_S * 1000 });
    const k = await makeKey('RS384', 'k');
    const idp = await startIdp(jwks(k), { issuerPath: '/tenant' });
    servers.push(idp);
    idp.cacheControl = 'public, max-age=5';
    const got = vi.spyOn(rt.shared, 'get');
    const cfg = mustCompile(ra('r', idp.issuer, ''), rt);
    const [source] = remoteSources(got);
    const t = await sign(k, { iss: idp.issuer, sub: 'u', exp: NOW_S + 3600 });
    const d1 = await check(cfg, t);
    expect(d1.allow, d1.message).toBe(true);
    expect(idp.hitCount('/tenant/.well-known/openid-configuration')).toBe(1);
    expect((await check(cfg, t)).allow).toBe(true);
    expect(await metric('jwt_verifications_total')).toMatch(/result="ok"\} 1$/m);
    expect(await metric('jwt_verifications_total')).toMatch(/result="cached"\} 1$/m); // the second check
    // max-age=5 is below the 1 min lower bound: the next refresh is due a minute after the fetch
    expect(source!.status()).toMatchObject({ nextRefreshAt: NOW_S * 1000 + 60_000, inflight: false });
    rt.advance(30_000);
    await check(cfg, t);
    expect(source!.status().inflight).toBe(false); // a refresh would have started in check() itself
    expect(idp.hitCount('/jwks')).toBe(1);
    rt.advance(31_000);
    await check(cfg, t);
    expect(source!.status().inflight).toBe(true);
    await waitUntil(() => !source!.status().inflight, { what: 'the background JWKS refresh' });
    expect(idp.hitCount('/jwks')).toBe(2);
    // a cached token still expires on time
    rt.advance(3600_000);
    expect((await check(cfg, t)).body).toBe('Jwt is expired');
  });

  it('parses Cache-Control', () => {
    expect(cacheControlMaxAgeMs('public, max-age=300')).toBe(300_000);
    expect(cacheControlMaxAgeMs('no-store')).toBe(0);
    expect(cacheControlMaxAgeMs(null)).toBeUndefined();
    expect(cacheControlMaxAgeMs('private')).toBeUndefined();
  });

  it('sources are shared across reloads and disposed when unused (timers cleared)', async () => {
    // Fake setTimeout/clearTimeout only: the refresh timer a source schedules can be counted.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    rt = createTestRuntime({ now: NOW_S * 1000 });
    const got = vi.spyOn(rt.shared, 'get');
    const k = await makeKey('RS256', 'k');
    const idp = await startIdp(jwks(k));
    servers.push(idp);
    const text = ra('r', 'https://idp', `    jwksUri: ${idp.url}/jwks`);
    const cfg1 = mustCompile(text, rt);
    expect((await check(cfg1, await sign(k, { iss: 'https://idp' }))).allow).toBe(true);
    const cfg2 = mustCompile(text, rt);
    rt.shared.sweep();
    expect((await check(cfg2, await sign(k, { iss: 'https://idp', n: 2 }))).allow).toBe(true);
    const [first, ...others] = remoteSources(got);
    expect(others).toEqual([]); // the reload got the same source...
    expect(idp.hitCount('/jwks')).toBe(1); // ...with the keys it had fetched
    expect(first!.status()).toMatchObject({ hasKeys: true, inflight: false, nextRefreshAt: NOW_S * 1000 + 20 * 60_000 });
    const disposed = vi.spyOn(first!, 'dispose');

    // A config with another jwksUri: a new source; sweeping disposes the unused one.
    mustCompile(ra('r', 'https://idp', `    jwksUri: ${idp.url}/jwks?v=2`), rt);
    const second = remoteSources(got)[1]!;
    expect(second).not.toBe(first);
    const timers = vi.getTimerCount();
    const size = rt.shared.size;
    rt.shared.sweep();
    expect(disposed).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(timers - 1); // its refresh timer is gone
    expect(rt.shared.size).toBe(size - 1);
    // Due for a refresh, the disposed source fetches nothing (the one in use still does).
    await waitUntil(() => !second.status().inflight, { what: 'the new source\'s first fetch' });
    const hits = idp.hitCount('/jwks');
    rt.advance(21 * 60_000);
    first!.peek();
    expect(first!.status().inflight).toBe(false);
    second.peek();
    expect(second.status().inflight).toBe(true);
    await waitUntil(() => !second.status().inflight, { what: 'the new source\'s refresh' });
    expect(idp.hitCount('/jwks')).toBe(hits + 1);
  });
});

describe('jwtRule without issuer (Istio allows it with a jwksUri; Envoy then does not check iss)', () => {
  it('any iss is accepted with a valid signature; the signature is still checked', async () => {
    rt = createTestRuntime({ now: NOW_S * 1000 });
    const k = await makeKey('RS256', 'k');
    const idp = await startIdp(jwks(k));
    servers.push(idp);
    for (const issuer of ['""', '']) {
      const text = issuer
        ? ra('r', issuer, `    jwksUri: ${idp.url}/jwks`)
        : `apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r, namespace: istio-system}\nspec:\n  jwtRules:\n  - jwksUri: ${idp.url}/jwks\n`;
      const cfg = mustCompile(text, rt);
      const d = await check(cfg, await sign(k, { iss: 'https://anyone.example', sub: 'u1' }));
      expect(d.allow, `${d.message}\n${d.trace?.entries.map((e) => e.message).join('\n')}`).toBe(true);
      expect(d.identity?.principal).toBe('https://anyone.example/u1');
      const forged = await check(cfg, await sign(await makeKey('RS256', 'k'), { iss: 'https://anyone.example', sub: 'root' }));
      expect(forged.allow).toBe(false);
      expect(forged.httpStatus).toBe(401);
      expect(forged.body).toBe('Jwt verification fails');
    }
  });
  it('next to a rule with an issuer: a token of another issuer is admitted by the issuer-less rule', async () => {
    rt = createTestRuntime({ now: NOW_S * 1000 });
    const k = await makeKey('ES256', 'e');
    const other = await makeKey('RS256', 'o');
    const idp = await startIdp(jwks(k));
    servers.push(idp);
    const cfg = mustCompile(`${ra('a', 'https://a.example', `    jwks: '${JSON.stringify(jwks(other))}'`)}${ra('b', '""', `    jwksUri: ${idp.url}/jwks`)}`, rt);
    const d = await check(cfg, await sign(k, { iss: 'https://b.example', sub: 'bob' }));
    expect(d.allow, d.message).toBe(true);
    expect(d.identity?.admittedBy).toBe('istio-system/b jwtRules[0]');
  });
  it('missing issuer and no jwksUri is a config error at spec.jwtRules[N].issuer', () => {
    rt = createTestRuntime();
    const r = compileYaml(`apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec:\n  jwtRules:\n  - {issuer: a}\n  - {audiences: [x]}\n`, rt);
    expect(r.ok).toBe(false);
    expect(r.issues.map(formatIssue).join('\n')).toMatch(/jwtRules\[1\]\.issuer: issuer or jwksUri must be non-empty string/);
  });
});

describe('config validation', () => {
  const cases: [string, string, RegExp][] = [
    ['empty issuer and no jwksUri', `  jwtRules:\n  - issuer: ""`, /jwtRules\[0\]\.issuer: issuer or jwksUri must be non-empty string/],
    ['bad jwksUri scheme', `  jwtRules:\n  - {issuer: a, jwksUri: "ftp://x/jwks"}`, /jwksUri: URI scheme "ftp" is not supported/],
    ['unknown field', `  jwtRules:\n  - {issuer: a, jwksUrl: "https://x"}`, /jwtRules\[0\]\.jwksUrl: unknown field "jwksUrl"/],
    ['bad claim header', `  jwtRules:\n  - {issuer: a, outputClaimToHeaders: [{header: "x y", claim: sub}]}`, /outputClaimToHeaders\[0\]\.header: invalid header name/],
    ['empty claim', `  jwtRules:\n  - {issuer: a, outputClaimToHeaders: [{header: x-a, claim: ""}]}`, /header and claim value must be non-empty string/],
    ['invalid inline jwks', `  jwtRules:\n  - {issuer: a, jwks: "{}"}`, /jwtRules\[0\]\.jwks: invalid jwks: Jwks does not have \[keys\] field/],
    ['empty header name', `  jwtRules:\n  - {issuer: a, fromHeaders: [{prefix: "x"}]}`, /location header name must be non-empty string/],
    ['empty param', `  jwtRules:\n  - {issuer: a, fromParams: [""]}`, /location query must be non-empty string/],
    ['bad timeout', `  jwtRules:\n  - {issuer: a, timeout: 5}`, /timeout: expected a duration string/],
    ['empty audience', `  jwtRules:\n  - {issuer: a, audiences: [""]}`, /audience must be non-empty string/],
    ['selector with targetRefs', `  selector: {matchLabels: {a: b}}\n  targetRefs: [{kind: Service, name: s}]\n  jwtRules:\n  - {issuer: a}`, /only one of selector or targetRef/],
  ];
  for (const [name, spec, re] of cases) {
    it(name, () => {
      rt = createTestRuntime();
      const r = compileYaml(`apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec:\n${spec}\n`, rt);
      expect(r.ok).toBe(false);
      expect(r.issues.map(formatIssue).join('\n')).toMatch(re);
    });
  }
  it('both jwks and jwksUri is a warning (inline wins)', async () => {
    rt = createTestRuntime();
    const k = await makeKey('RS256', 'k');
    const r = compileYaml(`apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec:\n  jwtRules:\n  - {issuer: a, jwksUri: "https://x/j", jwks: '${JSON.stringify(jwks(k))}'}\n`, rt);
    expect(r.ok).toBe(true);
    expect(r.issues.map(formatIssue).join('\n')).toMatch(/warning: both jwks and jwksUri/);
  });
});

describe('URLs in source descriptions and log lines (userinfo and query redacted)', () => {
  it('redactUrl keeps scheme://host/path only', () => {
    expect(redactUrl('https://user:pa55@idp.example:8443/keys/jwks.json?token=s3cret#frag')).toBe('https://idp.example:8443/keys/jwks.json');
    expect(redactUrl('https://idp.example/jwks')).toBe('https://idp.example/jwks');
    expect(redactUrl('not a url?secret=1')).toBe('(unparseable URL)');
  });
  it('--explain, deny messages and logs never show the jwksUri credentials', async () => {
    rt = createTestRuntime({ now: NOW_S * 1000, level: 'trace' });
    const k = await makeKey('RS256', 'k');
    const idp = await startIdp(jwks(k));
    servers.push(idp);
    const port = new URL(idp.url).port;
    const uri = `http://jwksuser:jwks-pa55word@127.0.0.1:${port}/jwks?api_key=query-s3cret`;
    const source = new RemoteKeySource(rt, { kind: 'uri', uri }, 'https://idp', 1000, DEFAULT_JWKS_TUNING);
    expect(source.description).toBe(`jwksUri http://127.0.0.1:${port}/jwks`);
    source.dispose();
    const cfg = mustCompile(ra('r', 'https://idp', `    jwksUri: "${uri}"`), rt);
    const d = await check(cfg, await sign(k, { iss: 'https://idp', sub: 'u' }));
    // Whatever the outcome (fetch may refuse credentials in the URL), nothing secret is shown.
    const shown = [d.message, d.body, ...(d.trace?.entries.map((e) => e.message) ?? []), ...rt.logs].join('\n');
    expect(shown).toContain(`http://127.0.0.1:${port}/jwks`);
    for (const secret of ['jwksuser', 'jwks-pa55word', 'query-s3cret', 'api_key']) expect(shown).not.toContain(secret);
  });
});

describe('secrets', () => {
  it('no token appears in captured logs, deny bodies or messages', async () => {
    rt = createTestRuntime({ now: NOW_S * 1000, level: 'trace' });
    const k = await makeKey('RS256', 'k');
    const idp = await startIdp(jwks(k));
    servers.push(idp);
    idp.mode = 'error';
    const cfg = mustCompile(ra('r', 'https://idp', `    jwksUri: ${idp.url}/jwks`), rt);
    const good = await sign(k, { iss: 'https://idp', sub: 'secret-sub' });
    const bad = await sign(k, { iss: 'https://other' });
    const ds = [await check(cfg, good), await check(cfg, bad), await check(cfg, 'abc.def.ghi')];
    idp.mode = 'up';
    rt.advance(600_000);
    ds.push(await check(cfg, good));
    expect(ds[3]!.allow).toBe(true);
    const all = rt.logs.join('\n') + ds.map((d) => `${d.body}${d.message}${JSON.stringify(d.denyHeaders)}`).join('\n');
    expect(rt.logs.length).toBeGreaterThan(0);
    for (const t of [good, bad]) {
      expect(all).not.toContain(t);
      expect(all).not.toContain(t.split('.')[2]!);
    }
  });
});
