/**
 * ScopedIndex.forWorkload memoises by namespace alone for workloads with no labels, gateway or
 * service, and by the full workload key otherwise: the answers must be those of a fresh index,
 * however the workloads alternate.
 */
import { describe, expect, it } from 'vitest';
import { ScopedIndex, type CompiledScope } from '../../../src/config/scope.js';
import type { Workload } from '../../../src/core/context.js';

interface Item {
  readonly name: string;
  readonly scope: CompiledScope;
}
const item = (name: string, namespace: string, isRoot: boolean, matchLabels: Record<string, string> | null = null, targetRefs: CompiledScope['targetRefs'] = null): Item => ({ name, scope: { namespace, isRoot, matchLabels, targetRefs } });
const items = [
  item('root-all', 'istio-system', true),
  item('root-app', 'istio-system', true, { app: 'a' }),
  item('a-all', 'a', false),
  item('a-app', 'a', false, { app: 'a' }),
  item('a-gw', 'a', false, null, [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw', namespace: 'a' }] as unknown as CompiledScope['targetRefs']),
  item('b-all', 'b', false),
];
const wl = (namespace: string, over: Partial<Workload> = {}): Workload => ({ namespace, labels: {}, hasLabels: false, gateway: '', service: '', backend: '', ...over });
const names = (l: readonly Item[]) => l.map((i) => i.name).join(',');

describe('ScopedIndex.forWorkload', () => {
  it('gives what a fresh index gives, in any order of workloads', () => {
    const workloads = [
      wl('a'),
      wl('b'),
      wl('c'),
      wl('istio-system'),
      wl('a', { hasLabels: true, labels: { app: 'a' } }),
      wl('a', { hasLabels: true, labels: {} }),
      wl('a', { gateway: 'gw' }),
      wl('a', { service: 'svc' }),
      wl('a', { backend: 'mcp-tools' }),
    ];
    const shared = new ScopedIndex<Item, Item>(items, 'istio-system', (i) => [i]);
    for (let round = 0; round < 3; round++) {
      for (const w of round === 1 ? [...workloads].reverse() : workloads) {
        const fresh = new ScopedIndex<Item, Item>(items, 'istio-system', (i) => [i]);
        expect(names(shared.forWorkload({ ...w }))).toBe(names(fresh.forWorkload(w)));
      }
    }
    // without labels the selector policies apply (Istio, when the proxy sends no labels); with labels only the matching ones
    expect(names(shared.forWorkload(wl('a')))).toBe('root-all,root-app,a-all,a-app,a-gw');
    expect(names(shared.forWorkload(wl('a', { hasLabels: true, labels: { app: 'b' } })))).not.toBe(names(shared.forWorkload(wl('a'))));
    expect(names(shared.forWorkload(wl('b')))).not.toBe(names(shared.forWorkload(wl('a'))));
  });
});
