/**
 * YAML case tables for token exchange (test/fixtures/exchange/*.yaml): config + request ->
 * decision, reason, deny status/body/challenge, the CheckResponse's upstream rewrite, the
 * exchanged token's claims, the exchange cache and what the STS was sent. Every case runs
 * through the real pipeline (evaluate(): authn -> authz -> exchange, then toCheckResponse):
 * subject and actor JWTs are signed by real keys and verified against inline JWKS, actor
 * service-account tokens are reviewed by a loopback Kubernetes TokenReview API, remote
 * exchanges go to a loopback RFC 8693 STS whose answer each case scripts, and minted tokens
 * are verified against the built-in STS's JWKS.
 *
 * A file has `base` documents (every group gets them) and groups; a group adds `config`
 * documents, is compiled once with its own runtime (own caches and metrics) and runs its cases
 * in order, so a case can count on the cache entries of the ones before it. Placeholders in
 * config: ${IDP_ISSUER} ${IDP_JWKS} ${IDP2_ISSUER} ${IDP2_JWKS} ${AGENTS_ISSUER} ${AGENTS_JWKS}
 * ${STS_URL} ${K8S_URL} ${FIXTURES}. In request headers/paths and expected header values:
 * ${SUBJECT} (the subject token), ${ACTOR} (the actor token), ${ISSUED} (the last token the
 * loopback STS issued) and ${<ref>} (a named token).
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mustCompile } from '../../helpers/config.js';
import { createTestRuntime, type TestRuntime } from '../../helpers/runtime.js';
import { rememberSecret } from '../../helpers/secrets.js';
import { REASONS, type ReasonCode } from '../../../src/core/reasons.js';
import type { CompiledConfig } from '../../../src/pipeline/compile.js';
import { evaluate } from '../../../src/pipeline/pipeline.js';
import { toCheckResponse } from '../../../src/respond/respond.js';
import { checkRequest, FIXTURES, json, makeIdp, sq, startLoopback, type Idp, type Loopback, type Recorded } from './helpers.js';

/** A JWT to sign: `idp` (idp | idp2 | agents, default idp), `ref` (reuse within the group), `expIn` (s), the rest claims. */
type TokenSpec = { idp?: 'idp' | 'idp2' | 'agents'; ref?: string; expIn?: number } & Record<string, unknown>;
/** The actor token: a JWT (default issuer: agents), a service-account token the loopback API server admits (or one it rejects), the subject's own token, or raw text. */
type ActorSpec = { jwt: TokenSpec } | { serviceAccount: string; ref?: string } | { rejectedServiceAccount: string } | { raw: string } | 'subject';

interface CaseRequest {
  backend?: string;
  host?: string;
  path?: string;
  method?: string;
  /** null = no subject token. */
  subject?: TokenSpec | null;
  /** Where the subject token goes: `authorization` (default, with Bearer), `query:<name>`, `header:<name>`, `cookie:<name>`. */
  subjectAt?: string;
  actor?: ActorSpec;
  /** Default x-actor-token. */
  actorHeader?: string;
  /** Send the actor token as `Bearer <token>`. */
  actorBearer?: boolean;
  /** Other named tokens this case uses in headers/path. */
  tokens?: Record<string, TokenSpec>;
  headers?: Record<string, string>;
}
interface StsScript {
  status?: number;
  body?: unknown;
  /** Answer 200 with this access_token shaped as a JWT with these claims (unsigned; the exchange only decodes it). */
  issueJwt?: Record<string, unknown>;
  /** Answer after this many ms. */
  delay?: number;
  /** Close the connection without an answer. */
  close?: boolean;
}
interface Expectation {
  decision: 'allow' | 'deny';
  reason?: ReasonCode;
  status?: number;
  body?: string;
  /** The www-authenticate challenge of a deny (null = none). */
  challenge?: string | null;
  /** attribution.exchangePolicy (null = no policy applied). */
  policy?: string | null;
  /** attribution.exchangeCache (null = no cache lookup). */
  cache?: 'hit' | 'miss' | null;
  /** Calls the loopback STS received during the case. */
  stsCalls?: number;
  /** Form fields of the (one) STS call: a string, a list for repeated fields, null = absent. */
  stsForm?: Record<string, string | string[] | null>;
  /** Claims of the exchanged token (verified with the built-in STS's JWKS); null = claim absent. */
  token?: Record<string, unknown>;
  /** Where the exchanged token is (default authorization) and its prefix (default `Bearer `). */
  tokenHeader?: string;
  tokenPrefix?: string;
  /** The exchanged token expires when the subject token does. */
  tokenExpIsSubjectExp?: boolean;
  /** The exchanged token's lifetime (exp - iat, s). */
  tokenLifetime?: number;
  upstream?: {
    /** Exactly the headers set upstream (names, in any order). */
    setKeys?: string[];
    /** Values of headers set upstream. */
    set?: Record<string, string>;
    remove?: string[];
    notRemove?: string[];
    /** Exactly the query parameters removed (in any order). */
    removeQuery?: string[];
  };
}
interface FixtureCase {
  name: string;
  request: CaseRequest;
  sts?: StsScript;
  expect: Expectation;
}
interface FixtureGroup {
  name: string;
  config?: string;
  cases: FixtureCase[];
}

const STS_ISSUER = 'https://sts.obo-authz.test';
const DIR = join(FIXTURES);
const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml')).sort();

let idps: Record<'idp' | 'idp2' | 'agents', Idp>;
let sts: Loopback;
let k8s: Loopback;
let script: StsScript = {};
let issued = 0;
let lastIssued = '';
/** Service-account tokens the loopback API server admits. */
const admitted = new Set<string>();
const timers = new Set<NodeJS.Timeout>();
let caseCount = 0;

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const fakeJwt = (claims: Record<string, unknown>) => `${b64({ alg: 'RS256', kid: 'k' })}.${b64(claims)}.c2lnbmF0dXJlLW5vdC1jaGVja2Vk`;

function saToken(user: string): string {
  const [ns, name] = user.split('/');
  const t = fakeJwt({ iss: 'https://kubernetes.default.svc', sub: `system:serviceaccount:${ns}:${name}`, aud: ['obo-authz'], exp: Math.floor(Date.now() / 1000) + 3600, jti: `sa-${++issued}` });
  rememberSecret(t);
  return t;
}

function stsHandler(r: Recorded, res: ServerResponse): void {
  const s = script;
  if (s.close) {
    res.socket?.destroy();
    return;
  }
  const answer = () => {
    if (s.status !== undefined && s.status !== 200) return json(res, s.status, s.body ?? {});
    if (s.body !== undefined) return json(res, 200, s.body);
    const tok = s.issueJwt ? fakeJwt(s.issueJwt) : `remote-token-${++issued}`;
    lastIssued = tok;
    rememberSecret(tok);
    json(res, 200, { access_token: tok, issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'Bearer', expires_in: 3600 });
  };
  void r;
  if (s.delay) {
    const t = setTimeout(() => {
      timers.delete(t);
      answer();
    }, s.delay);
    timers.add(t);
  } else answer();
}

function k8sHandler(r: Recorded, res: ServerResponse): void {
  const body = JSON.parse(r.body) as { spec: { token: string; audiences?: string[] } };
  if (!admitted.has(body.spec.token)) return json(res, 201, { status: { authenticated: false, error: 'invalid bearer token' } });
  const sub = String(decodeJwt(body.spec.token).sub);
  json(res, 201, { status: { authenticated: true, user: { username: sub, uid: 'uid', groups: ['system:serviceaccounts'] }, audiences: (body.spec.audiences ?? []).filter((a) => a === 'obo-authz') } });
}

beforeAll(async () => {
  idps = { idp: await makeIdp('https://idp.example'), idp2: await makeIdp('https://idp2.example', 'idp2-1'), agents: await makeIdp('https://agents.example', 'agents-1') };
  sts = await startLoopback(stsHandler);
  k8s = await startLoopback(k8sHandler);
});
afterAll(async () => {
  for (const t of timers) clearTimeout(t);
  await Promise.all([sts.close(), k8s.close()]);
});

function configText(base: string, extra: string | undefined): string {
  const vars: Record<string, string> = {
    IDP_ISSUER: idps.idp.issuer,
    IDP_JWKS: sq(idps.idp.jwks),
    IDP2_ISSUER: idps.idp2.issuer,
    IDP2_JWKS: sq(idps.idp2.jwks),
    AGENTS_ISSUER: idps.agents.issuer,
    AGENTS_JWKS: sq(idps.agents.jwks),
    STS_URL: sts.url,
    K8S_URL: k8s.url,
    FIXTURES,
  };
  const text = [base, extra].filter((x) => x && x.trim()).join('\n---\n');
  return text.replace(/\$\{([A-Z0-9_]+)\}/g, (m, k: string) => {
    if (!(k in vars)) throw new Error(`unknown placeholder ${m}`);
    return vars[k]!;
  });
}

/** Per-group state: named tokens and the config. */
class Group {
  readonly refs = new Map<string, { token: string; exp: number }>();
  constructor(
    readonly rt: TestRuntime,
    readonly cfg: CompiledConfig,
  ) {}

  async sign(spec: TokenSpec): Promise<{ token: string; exp: number }> {
    if (spec.ref && this.refs.has(spec.ref)) return this.refs.get(spec.ref)!;
    const { idp = 'idp', ref, expIn, ...claims } = spec;
    const now = Math.floor(Date.now() / 1000);
    const exp = now + (expIn ?? 3600);
    // A fresh jti: two cases never share a token (and a cache entry) unless they name the same ref.
    const token = await idps[idp].sign({ jti: `case-${++issued}`, ...claims }, { expSec: exp, nowSec: now });
    rememberSecret(token);
    const out = { token, exp };
    if (ref) this.refs.set(ref, out);
    return out;
  }
}

function expand(s: string, vars: Record<string, string>): string {
  return s.replace(/\$\{([A-Za-z0-9_-]+)\}/g, (m, k: string) => {
    if (k === 'ISSUED') return lastIssued;
    if (!(k in vars)) throw new Error(`unknown placeholder ${m}`);
    return vars[k]!;
  });
}

async function runCase(g: Group, c: FixtureCase): Promise<void> {
  const rq = c.request;
  const vars: Record<string, string> = {};
  for (const [name, spec] of Object.entries(rq.tokens ?? {})) vars[name] = (await g.sign({ ref: name, ...spec })).token;
  const headers: Record<string, string> = {};
  let path = rq.path ?? '/mcp';
  let subjectExp: number | undefined;
  if (rq.subject) {
    const s = await g.sign(rq.subject);
    vars['SUBJECT'] = s.token;
    subjectExp = s.exp;
    const at = rq.subjectAt ?? 'authorization';
    if (at === 'authorization') headers['authorization'] = `Bearer ${s.token}`;
    else if (at.startsWith('header:')) headers[at.slice(7)] = s.token;
    else if (at.startsWith('cookie:')) headers['cookie'] = `${at.slice(7)}=${s.token}`;
    else if (at.startsWith('query:')) path += `${path.includes('?') ? '&' : '?'}${at.slice(6)}=${s.token}`;
    else throw new Error(`bad subjectAt ${at}`);
  }
  if (rq.actor !== undefined) {
    const a = rq.actor;
    let token: string;
    if (a === 'subject') token = vars['SUBJECT']!;
    else if ('jwt' in a) token = (await g.sign({ idp: 'agents', ...a.jwt })).token;
    else if ('serviceAccount' in a) {
      const key = a.ref ? `sa:${a.ref}` : undefined;
      token = key && g.refs.has(key) ? g.refs.get(key)!.token : saToken(a.serviceAccount);
      admitted.add(token);
      if (key) g.refs.set(key, { token, exp: 0 });
    } else if ('rejectedServiceAccount' in a) token = saToken(a.rejectedServiceAccount);
    else token = a.raw;
    vars['ACTOR'] = token;
    headers[rq.actorHeader ?? 'x-actor-token'] = rq.actorBearer ? `Bearer ${token}` : token;
  }
  for (const [k, v] of Object.entries(rq.headers ?? {})) headers[k.toLowerCase()] = expand(v, vars);
  path = expand(path, vars);
  const method = rq.method ?? 'GET';
  const raw = checkRequest({ headers: { ':method': method, ...headers }, path, ...(rq.host ? { host: rq.host } : {}), ext: rq.backend ? { backend: rq.backend } : {} });
  (raw.attributes!.request!.http as { method: string }).method = method;

  script = c.sts ?? {};
  const callsBefore = sts.calls.length;
  const d = await evaluate(raw, g.cfg, g.rt);
  const calls = sts.calls.slice(callsBefore);
  const resp = toCheckResponse(d, { reasonHeader: false });
  const e = c.expect;
  const why = `${d.reason}: ${d.message}`;

  expect(d.allow ? 'allow' : 'deny', why).toBe(e.decision);
  if (!d.allow) {
    if (e.reason) expect(d.reason, why).toBe(e.reason);
    expect(resp.denied_response!.status.code).toBe(e.status ?? REASONS[d.reason].http);
    // The body sent: the case's, else the reason table's default for the code.
    expect(resp.denied_response!.body).toBe(e.body ?? REASONS[d.reason].body);
    if ('challenge' in e) {
      const ch = resp.denied_response!.headers.find((h) => h.header.key === 'www-authenticate')?.header.value ?? null;
      expect(ch).toBe(e.challenge === null ? null : expand(e.challenge!, vars));
    }
    // Nothing is rewritten upstream for a deny.
    expect(d.upstream.set.size).toBe(0);
  } else if (e.reason) expect(d.reason).toBe(e.reason);
  if ('policy' in e) expect(d.attribution.exchangePolicy ?? null).toBe(e.policy);
  if ('cache' in e) expect(d.attribution.exchangeCache ?? null).toBe(e.cache);
  if (e.stsCalls !== undefined) expect(calls.length, 'calls to the STS').toBe(e.stsCalls);
  if (e.stsForm) {
    expect(calls.length).toBe(1);
    const f = new URLSearchParams(calls[0]!.body);
    for (const [k, want] of Object.entries(e.stsForm)) {
      const got = f.getAll(k);
      if (want === null) expect(got, k).toEqual([]);
      else expect(Array.isArray(want) ? got : got.join(','), k).toEqual(Array.isArray(want) ? want.map((w) => expand(w, vars)) : expand(want, vars));
    }
  }
  if (e.upstream) {
    const ok = resp.ok_response!;
    const set = new Map(ok.headers.map((h) => [h.header.key, h.header.value]));
    const u = e.upstream;
    if (u.setKeys) expect([...set.keys()].sort()).toEqual([...u.setKeys].sort());
    for (const [k, v] of Object.entries(u.set ?? {})) expect(set.get(k), k).toBe(expand(v, vars));
    for (const h of u.remove ?? []) expect(ok.headers_to_remove, h).toContain(h);
    for (const h of u.notRemove ?? []) expect(ok.headers_to_remove, h).not.toContain(h);
    if (u.removeQuery) expect([...ok.query_parameters_to_remove].sort()).toEqual([...u.removeQuery].sort());
    // Envoy applies headers before headers_to_remove: a header set is never also removed.
    for (const k of set.keys()) expect(ok.headers_to_remove).not.toContain(k);
  }
  if (e.token || e.tokenExpIsSubjectExp || e.tokenLifetime !== undefined) {
    const v = d.upstream.set.get(e.tokenHeader ?? 'authorization');
    const prefix = e.tokenPrefix ?? 'Bearer ';
    expect(v?.startsWith(prefix), `exchanged token in ${e.tokenHeader ?? 'authorization'}`).toBe(true);
    const keys = createLocalJWKSet(g.cfg.exchange.builtinSts!.sts.jwks as never);
    const { payload } = await jwtVerify(v!.slice(prefix.length), keys, { issuer: STS_ISSUER });
    for (const [k, want] of Object.entries(e.token ?? {})) {
      if (want === null) expect(payload[k], k).toBeUndefined();
      else expect(payload[k], k).toEqual(want);
    }
    if (e.tokenExpIsSubjectExp) expect(payload.exp).toBe(subjectExp);
    if (e.tokenLifetime !== undefined) expect(payload.exp! - payload.iat!).toBe(e.tokenLifetime);
  }
}

for (const file of files) {
  const doc = parse(readFileSync(join(DIR, file), 'utf8')) as { base?: string; groups: FixtureGroup[] };
  describe(file, () => {
    for (const grp of doc.groups) {
      describe(grp.name, () => {
        let g: Group;
        beforeAll(() => {
          const rt = createTestRuntime();
          g = new Group(rt, mustCompile(configText(doc.base ?? '', grp.config), rt, `${file}#${grp.name}`));
        });
        afterAll(() => g?.rt.shared.disposeAll());
        for (const c of grp.cases) {
          caseCount++;
          it(c.name, () => runCase(g, c));
        }
      });
    }
  });
}

describe('exchange case tables', () => {
  it('hold at least 60 cases', () => {
    expect(caseCount).toBeGreaterThanOrEqual(60);
  });
});
