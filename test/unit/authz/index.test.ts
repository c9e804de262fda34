/**
 * Indexing check (not the benchmark): with 1,000 policies spread over 100 namespaces,
 * evaluating a request only touches its own namespace's and the root namespace's policies.
 */
import { describe, expect, it, vi } from 'vitest';
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

function decide(docs: unknown[], ns: string) {
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
  // Every namespace bucket the evaluation looks up (the root bucket is index.root).
  const lookups = vi.spyOn(cfg.authz.byNamespace as Map<string, unknown>, 'get');
  const allowed = authorize(state, cfg.authz) === null;
  return { cfg, allowed, policy: state.attribution.policy, looked: lookups.mock.calls.map(([ns]) => ns) };
}

// Timing belongs to `npm run bench` (scenario 3); here we check the structure that makes the
// cost independent of other namespaces: a request only ever reads its namespace's bucket
// and the root bucket.
describe('policy index', () => {
  it('reads only the request namespace and the root namespace, whatever the total', () => {
    const small = decide(policies(1, 10), 'ns-0');
    const large = decide(policies(100, 10), 'ns-42');
    expect(small.allowed).toBe(true);
    expect(large.allowed).toBe(true);
    expect(large.policy).toBe('ns-42/allow-9');
    expect(small.looked).toEqual(['ns-0']);
    expect(large.looked).toEqual(['ns-42']); // no other namespace's bucket is read
    expect(large.cfg.authz.byNamespace.size).toBe(100);
    const bucket = large.cfg.authz.byNamespace.get('ns-42')!;
    expect(bucket.all).toHaveLength(10);
    expect(bucket.allow.length + bucket.deny.length).toBe(10);
    expect(large.cfg.authz.root.all).toHaveLength(0);
  });
});
