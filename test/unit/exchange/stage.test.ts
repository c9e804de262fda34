/** The exchange stage on its own: a CheckState with state.identity set, exchange() called directly. */
import { REASONS } from '../../../src/core/reasons.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { mustCompile } from '../../helpers/config.js';
import { createTestRuntime, type TestRuntime } from '../../helpers/runtime.js';
import { tempDir } from '../../helpers/tmp.js';
import type { CompiledConfig } from '../../../src/pipeline/compile.js';
import type { CompiledJwtRule } from '../../../src/authn/request-authentication.js';
import type { ExchangeConfig } from '../../../src/exchange/compile.js';
import { exchange } from '../../../src/exchange/index.js';
import { checkRequest, fixture, makeIdp, makeState, sq, userIdentity, type Idp } from './helpers.js';

let agents: Idp;
let rt: TestRuntime;
let cfg: CompiledConfig;
let tokenFile: string;
const claims = { iss: 'https://idp.example', sub: 'alice', scope: ['read'], exp: Math.floor(Date.now() / 1000) + 3600 };

beforeAll(async () => {
  agents = await makeIdp('https://agents.example');
  const dir = tempDir('stage-');
  tokenFile = join(dir, 'agent-token');
  writeFileSync(tokenFile, await agents.sign({ sub: 'agent-self', aud: 'obo' }));
  rt = createTestRuntime();
  cfg = mustCompile(
    `apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: sts, namespace: istio-system}
spec:
  builtin:
    issuer: https://sts.test
    keys: [{kid: k1, file: ${fixture('sts-es256.pem')}, algorithm: ES256}]
---
apiVersion: obo-authz.dev/v1alpha1
kind: DelegationPolicy
metadata: {name: any-agent, namespace: istio-system}
spec:
  rules: [{actors: [{issuer: "https://agents.example", subject: "agent-*"}]}]
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: file-actor, namespace: istio-system}
spec:
  match: {backends: [file]}
  mode: Delegation
  target: {audience: backend}
  sts: sts
  actor:
    file: ${tokenFile}
    jwt: {issuer: "https://agents.example", audiences: [obo], jwks: ${sq(agents.jwks)}}
  delegationPolicy: any-agent
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: passthrough, namespace: istio-system}
spec:
  match: {backends: [passthrough]}
  mode: Delegation
  target: {audience: backend}
  sts: sts
  actor:
    header: x-actor-token
    jwt: {issuer: "https://agents.example", audiences: [obo], jwks: ${sq(agents.jwks)}}
  delegationPolicy: any-agent
  upstream: {forwardActorToken: true}
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: imp, namespace: istio-system}
spec:
  match: {backends: [imp]}
  target: {audience: backend}
  sts: sts
  cache: {enabled: false}
`,
    rt,
  );
});

const keys = () => createLocalJWKSet(cfg.exchange.builtinSts!.sts.jwks as never);

describe('exchange stage', () => {
  it('an identity without a raw token cannot be exchanged: 401 ERR_SUBJECT_MISSING', async () => {
    const s = makeState(rt, cfg, checkRequest({ ext: { backend: 'imp' } }), { ...userIdentity('t', claims), token: undefined });
    const d = await exchange(s, cfg.exchange);
    expect(d).toMatchObject({ reason: 'ERR_SUBJECT_MISSING' });
    expect(d!.body ?? REASONS[d!.reason].body).toBe('Jwt is missing');
  });

  it('the actor can be this workload itself, from a projected token file', async () => {
    const s = makeState(rt, cfg, checkRequest({ ext: { backend: 'file' }, headers: { authorization: 'Bearer user-token' } }), userIdentity('user-token', claims));
    expect(await exchange(s, cfg.exchange)).toBeNull();
    const tok = s.upstream.set.get('authorization')!.slice('Bearer '.length);
    const { payload } = await jwtVerify(tok, keys(), { audience: 'backend' });
    expect(payload.act).toEqual({ sub: 'agent-self', iss: 'https://agents.example' });
    expect(s.actor?.location).toBe(`file:${tokenFile}`);
    expect(s.attribution).toMatchObject({ exchangePolicy: 'istio-system/file-actor', audience: 'backend', exchangeCache: 'miss' });
  });

  it('forwardActorToken (opt-in) sends the validated actor token, never the client copy of other identity headers', async () => {
    const agent = await agents.sign({ sub: 'agent-2', aud: 'obo' });
    const s = makeState(rt, cfg, checkRequest({ ext: { backend: 'passthrough' } }), userIdentity('user-token', claims));
    const ctxHeaders = checkRequest({ ext: { backend: 'passthrough' }, headers: { 'x-actor-token': `Bearer ${agent}` } });
    const s2 = makeState(rt, cfg, ctxHeaders, userIdentity('user-token', claims));
    expect(await exchange(s, cfg.exchange)).toMatchObject({ reason: 'ERR_ACTOR_TOKEN_MISSING' });
    expect(await exchange(s2, cfg.exchange)).toBeNull();
    expect(s2.upstream.set.get('x-actor-token')).toBe(agent);
    expect(s2.upstream.set.get('authorization')).toMatch(/^Bearer /);
    expect(s2.upstream.remove.has('x-actor-token')).toBe(false);
  });

  it('removes every admitted token location: header, query parameter, cookie', async () => {
    const ids = [
      userIdentity('t1', claims, { location: 'header:x-id-token' }),
      userIdentity('t2', claims, { location: 'param:access_token' }),
      userIdentity('t3', claims, { location: 'cookie:session' }),
    ];
    const s = makeState(rt, cfg, checkRequest({ ext: { backend: 'imp' }, headers: { cookie: 'theme=dark; session=t3; lang=en' } }), ids[0]!);
    s.identities = [...s.identities, ids[1]!, ids[2]!];
    s.upstream.setHeader('x-actor-token', 'set-by-someone');
    expect(await exchange(s, cfg.exchange)).toBeNull();
    expect([...s.upstream.remove]).toEqual(expect.arrayContaining(['x-id-token', 'x-actor-token']));
    expect([...s.upstream.removeQuery]).toEqual(['access_token']);
    expect(s.upstream.set.has('x-actor-token')).toBe(false);
    expect(s.upstream.set.get('cookie')).toBe('theme=dark; lang=en');
    expect([...s.upstream.set.keys()].sort()).toEqual(['authorization', 'cookie']);
  });

  it('with the cache disabled every request reaches the STS (fresh jti)', async () => {
    const run = async () => {
      const s = makeState(rt, cfg, checkRequest({ ext: { backend: 'imp' } }), userIdentity('same-token', claims));
      await exchange(s, cfg.exchange);
      return (await jwtVerify(s.upstream.set.get('authorization')!.slice(7), keys())).payload.jti;
    };
    expect(await run()).not.toBe(await run());
  });
  it('the www-authenticate realm escapes quote and backslash (RFC 9110 quoted-string)', async () => {
    const s = makeState(rt, cfg, checkRequest({ ext: { backend: 'imp' }, path: '/a"b\\c' }), null);
    const d = await exchange(s, cfg.exchange);
    expect(d).toMatchObject({ reason: 'ERR_SUBJECT_MISSING' });
    expect(d!.headers).toEqual([['www-authenticate', 'Bearer realm="https://mcp.example.com/a\\"b\\\\c"']]);
  });

  it('removes every token location authn recorded (all applying jwtRules, not only the admitted one); never the output header', async () => {
    // Rule 0 admitted the Authorization token; rule 1 (x-idp2-token, ?idp2_token, cookie idp2)
    // was never looked at, so its raw token would otherwise travel next to the exchanged one.
    const loc = (kind: 'header' | 'param' | 'cookie', name: string) => ({ kind, name, prefix: '', label: `${kind}:${name}` });
    const locations = [loc('header', 'authorization'), loc('header', 'x-idp2-token'), loc('header', 'x-not-sent'), loc('param', 'idp2_token'), loc('param', 'absent'), loc('cookie', 'idp2')];
    const xcfg: ExchangeConfig = cfg.exchange;
    const raw = checkRequest({
      ext: { backend: 'imp' },
      path: '/mcp?idp2_token=raw-idp2-q&page=2',
      headers: { authorization: 'Bearer user-token', 'x-idp2-token': 'raw-idp2-h', cookie: 'theme=dark; idp2=raw-idp2-c; lang=en' },
    });
    const s = makeState(rt, cfg, raw, userIdentity('user-token', claims));
    s.tokenLocations = locations;
    expect(await exchange(s, xcfg)).toBeNull();
    expect([...s.upstream.remove].sort()).toEqual(['x-actor-token', 'x-idp2-token']);
    expect([...s.upstream.removeQuery]).toEqual(['idp2_token']);
    expect(s.upstream.set.get('cookie')).toBe('theme=dark; lang=en');
    expect(s.upstream.set.get('authorization')).toMatch(/^Bearer ey/);
    // Only the cookie token present: the Cookie header goes entirely.
    const s2 = makeState(rt, cfg, checkRequest({ ext: { backend: 'imp' }, headers: { cookie: 'idp2=raw' } }), userIdentity('user-token', claims));
    s2.tokenLocations = locations;
    expect(await exchange(s2, xcfg)).toBeNull();
    expect(s2.upstream.remove.has('cookie')).toBe(true);
    expect(s2.upstream.set.has('cookie')).toBe(false);
  });
});
