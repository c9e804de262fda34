/**
 * Cheapness check (not the benchmark): with 1,000 policies spread over 100 namespaces,
 * evaluating a request only touches its own namespace's and the root namespace's policies.
 * The bound is deliberately generous; the measured numbers are printed for the report.
 */
import { describe, expect, it } from 'vitest';
import { authorize } from '../../../src/authz/index.js';
import { createTestRuntime } from '../../helpers/runtime.js';
import { compileDocs, makeState, policy } from './harness.js';

function policies(namespaces: number, perNs: number): unknown[] {
  const docs: unknown[] = [];
  for (let n = 0; n < namespaces; n++) {
    for (let i = 0; i < perNs; i++) {
      const ns = `ns-${n}`;
      docs.push(
        i % 5 === 0
          ? policy(`deny-${i}`, { action: 'DENY', rules: [{ to: [{ operation: { paths: [`/blocked/${i}/*`] } }], when: [{ key: 'request.headers[x-env]', values: ['dev'] }] }] }, { namespace: ns })
          : policy(`allow-${i}`, {
              rules: [
                {
                  from: [{ source: { principals: [`cluster.local/ns/${ns}/sa/client-${i}`], ipBlocks: ['10.0.0.0/8'] } }],
                  to: [{ operation: { methods: ['GET', 'POST'], paths: [`/api/v1/items-${i}/{*}`, `/api/v2/${i}*`] } }],
                  when: [{ key: 'request.auth.claims[scope]', values: [`items.read.${i}`] }],
                },
              ],
            }, { namespace: ns }),
      );
    }
  }
  return docs;
}

function measure(docs: unknown[], ns: string): { perEvalNs: number; allowed: boolean } {
  const runtime = createTestRuntime();
  const cfg = compileDocs(docs, runtime);
  // The last ALLOW policy of the namespace matches: the worst case for a matching request.
  const state = makeState(
    cfg,
    runtime,
    {
      method: 'GET',
      path: '/api/v1/items-9/42',
      headers: { 'x-env': 'prod' },
      source: { ip: '10.1.2.3', principal: `spiffe://cluster.local/ns/${ns}/sa/client-9` },
      contextExtensions: { namespace: ns },
    },
    { iss: 'https://idp', sub: 'u', claims: { scope: 'openid items.read.9' } },
  );
  let allowed = false;
  for (let i = 0; i < 2_000; i++) allowed = authorize(state, cfg.authz) === null;
  const n = 50_000;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    state.attribution.policy = undefined;
    allowed = authorize(state, cfg.authz) === null;
  }
  const perEvalNs = Number(process.hrtime.bigint() - t0) / n;
  return { perEvalNs, allowed };
}

describe('evaluation cost', () => {
  it('does not grow with policies of other namespaces', () => {
    const small = measure(policies(1, 10), 'ns-0');
    const large = measure(policies(100, 10), 'ns-42');
    console.log(`authz eval: 10 policies ${small.perEvalNs.toFixed(0)} ns/check; 1,000 policies (10 in the namespace) ${large.perEvalNs.toFixed(0)} ns/check`);
    expect(small.allowed).toBe(true);
    expect(large.allowed).toBe(true);
    expect(large.perEvalNs).toBeLessThan(50_000);
  });
});
