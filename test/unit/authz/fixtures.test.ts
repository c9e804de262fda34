/**
 * YAML fixture tables: policies + request -> allow/deny with the deciding policy/rule.
 * Each file in test/fixtures/authz holds groups; a group's policies are compiled once
 * through the real config loader, each case is evaluated with authorize().
 */
import { REASONS } from '../../../src/core/reasons.js';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { authorize } from '../../../src/authz/index.js';
import { createTestRuntime } from '../../helpers/runtime.js';
import { compileDocs, makeState, policy, type IdentitySpec, type RequestSpec } from './harness.js';

interface FixtureCase {
  name: string;
  request?: RequestSpec;
  identity?: IdentitySpec | null;
  expect: 'allow' | 'deny';
  policy?: string | null;
  rule?: number;
  audit?: string[];
  shadow?: { policy: string; rule?: number; wouldDeny: boolean }[];
}
interface FixtureGroup {
  name: string;
  settings?: Record<string, unknown>;
  policies: { name: string; namespace?: string; apiVersion?: string; annotations?: Record<string, string>; spec?: unknown }[];
  defaults?: { request?: RequestSpec; identity?: IdentitySpec | null };
  cases: FixtureCase[];
}

const DIR = join(import.meta.dirname, '../../fixtures/authz');
const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml')).sort();

export let caseCount = 0;

for (const file of files) {
  const doc = parse(readFileSync(join(DIR, file), 'utf8')) as { groups: FixtureGroup[] };
  describe(file, () => {
    for (const g of doc.groups) {
      describe(g.name, () => {
        const runtime = createTestRuntime();
        const docs: unknown[] = [];
        if (g.settings) docs.push({ apiVersion: 'obo-authz.dev/v1alpha1', kind: 'Settings', metadata: { name: 'settings' }, spec: g.settings });
        for (const p of g.policies) docs.push(policy(p.name, p.spec ?? {}, p));
        const cfg = compileDocs(docs, runtime);
        for (const c of g.cases) {
          caseCount++;
          it(c.name, () => {
            const d = g.defaults?.request ?? {};
            const r = c.request ?? {};
            const req: RequestSpec = {
              ...d,
              ...r,
              headers: { ...(d.headers ?? {}), ...(r.headers ?? {}) },
              contextExtensions: r.contextExtensions ?? d.contextExtensions ?? { namespace: 'foo' },
            };
            const identity = 'identity' in c ? c.identity : g.defaults?.identity;
            const state = makeState(cfg, runtime, req, identity);
            const res = authorize(state, cfg.authz);
            expect(res === null ? 'allow' : 'deny', res?.message ?? `allowed by ${state.attribution.policy ?? '(no policy)'}`).toBe(c.expect);
            if (res) {
              expect(res.reason).toBe('ERR_RBAC_DENIED');
              // The body sent: the Deny's own, else the reason table's default for its code.
              expect(res.body ?? REASONS[res.reason].body).toBe('RBAC: access denied');
            }
            if ('policy' in c) {
              const got = res ? res.policy : state.attribution.policy;
              expect(got ?? null).toBe(c.policy ?? null);
            }
            if ('rule' in c) expect(res ? res.rule : state.attribution.rule).toBe(c.rule);
            if ('audit' in c) expect(state.attribution.audit ?? []).toEqual(c.audit);
            if ('shadow' in c) expect(state.attribution.shadow ?? []).toEqual(c.shadow);
          });
        }
      });
    }
  });
}

describe('fixture tables', () => {
  it('hold at least 150 cases', () => {
    expect(caseCount).toBeGreaterThanOrEqual(150);
  });
});
