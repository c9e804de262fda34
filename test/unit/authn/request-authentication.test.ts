import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { CompiledConfig } from '../../../src/pipeline/compile.js';
import { evaluate } from '../../../src/pipeline/pipeline.js';
import { mustCompile } from '../../helpers/config.js';
import { createTestRuntime, type TestRuntime } from '../../helpers/runtime.js';
import { checkRequest, NOW_S, signFixture, type FixtureToken, type ReqOpts } from './helpers.js';

interface Case {
  name: string;
  request: ReqOpts;
  expect: {
    allow: boolean;
    status?: number;
    body?: string;
    reason?: string;
    www?: string;
    principal?: string | null;
    audiences?: string[];
    presenter?: string;
    claims?: Record<string, unknown>;
    location?: string;
    admittedBy?: string;
    set?: Record<string, string>;
    removeIncludes?: string[];
    removeExcludes?: string[];
    removeQuery?: string[];
  };
}
interface Fixture {
  config: string;
  tokens: Record<string, FixtureToken>;
  cases: Case[];
}

const fixture = parse(readFileSync(new URL('../../fixtures/authn/request-authentication.yaml', import.meta.url), 'utf8')) as Fixture;
let rt: TestRuntime;
let cfg: CompiledConfig;
const tokens: Record<string, string> = {};

function subst(s: string): string {
  return s.replace(/\{\{(\w+)\}\}/g, (_, n: string) => {
    const t = tokens[n];
    if (t === undefined) throw new Error(`unknown token ${n}`);
    return t;
  });
}

beforeAll(async () => {
  rt = createTestRuntime({ now: NOW_S * 1000 });
  const signed = await signFixture(fixture);
  cfg = mustCompile(signed.config, rt);
  Object.assign(tokens, signed.tokens);
});
afterAll(() => rt.shared.disposeAll());

describe('RequestAuthentication table (test/fixtures/authn/request-authentication.yaml)', () => {
  for (const c of fixture.cases) {
    it(c.name, async () => {
      const r = c.request;
      const req = checkRequest({
        ...r,
        path: r.path ? subst(r.path) : undefined,
        headers: Object.fromEntries(Object.entries(r.headers ?? {}).map(([k, v]) => [k, subst(v)])),
      });
      const d = await evaluate(req, cfg, rt, { explain: true });
      const e = c.expect;
      const trace = d.trace?.entries.map((x) => x.message).join('\n');
      expect(d.allow, `${d.message}\n${trace}`).toBe(e.allow);
      if (e.status !== undefined) expect(d.httpStatus).toBe(e.status);
      if (e.body !== undefined) expect(d.body).toBe(e.body);
      if (e.reason !== undefined) expect(d.reason).toBe(e.reason);
      if (e.www !== undefined) expect(d.denyHeaders).toContainEqual(['www-authenticate', e.www]);
      if (!e.allow) return;
      if (e.principal !== undefined) expect(d.identity?.principal ?? null).toBe(e.principal);
      if (e.audiences) expect(d.identity?.audiences).toEqual(e.audiences);
      if (e.presenter !== undefined) expect(d.identity?.presenter).toBe(e.presenter);
      if (e.claims) expect(d.identity?.claims).toMatchObject(e.claims);
      if (e.location) expect(d.identity?.location).toBe(e.location);
      if (e.admittedBy) expect(d.identity?.admittedBy).toBe(e.admittedBy);
      if (e.set) {
        const got = Object.fromEntries(d.upstream.set);
        const want = Object.fromEntries(Object.entries(e.set).map(([k, v]) => [k, v === '*' ? got[k] : v]));
        expect(got).toEqual(want);
        for (const [k, v] of Object.entries(e.set)) if (v === '*') expect(got[k]).toBeTruthy();
      }
      for (const h of e.removeIncludes ?? []) expect([...d.upstream.remove]).toContain(h);
      for (const h of e.removeExcludes ?? []) expect([...d.upstream.remove]).not.toContain(h);
      if (e.removeQuery) expect([...d.upstream.removeQuery]).toEqual(e.removeQuery);
      if (d.identity) expect(d.identity.token).toBeTruthy();
    });
  }
});
