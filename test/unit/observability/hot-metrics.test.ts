import client from 'prom-client';
import { describe, expect, it } from 'vitest';
import { HotCounter, HotHistogram } from '../../../src/observability/hot-metrics.js';

/** The same updates through prom-client's own metrics and through ours: same exposition text. */
describe('hot metrics', () => {
  it('a counter exposes exactly what prom-client exposes for the same increments', async () => {
    const ref = new client.Registry();
    const ours = new client.Registry();
    const a = new client.Counter({ name: 'x_total', help: 'help "quoted" \\ text', labelNames: ['decision', 'reason'], registers: [ref] });
    const b = new HotCounter('x_total', 'help "quoted" \\ text', ['decision', 'reason'], [ours]);
    const child = b.labels('allow', 'OK');
    for (let i = 0; i < 5; i++) {
      a.labels('allow', 'OK').inc();
      child.inc();
    }
    a.inc({ decision: 'deny', reason: 'ERR_RBAC_DENIED' }, 3);
    b.inc({ decision: 'deny', reason: 'ERR_RBAC_DENIED' }, 3);
    // children made but never updated: no series, as prom-client
    a.labels('allow', 'unused');
    b.labels('allow', 'unused');
    a.labels({ decision: 'deny', reason: 'with "quote"\nnewline' }).inc(0.5);
    b.labels({ decision: 'deny', reason: 'with "quote"\nnewline' }).inc(0.5);
    expect(await ours.metrics()).toBe(await ref.metrics());
    expect(child.value).toBe(5);
  });

  it('a histogram exposes exactly what prom-client exposes for the same observations', async () => {
    const buckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
    const ref = new client.Registry();
    const ours = new client.Registry();
    const a = new client.Histogram({ name: 'd_seconds', help: 'h', labelNames: ['decision'], buckets, registers: [ref] });
    const b = new HotHistogram('d_seconds', 'h', ['decision'], buckets, [ours]);
    // on bucket bounds, between them, above the last one, zero
    a.labels('unused');
    b.labels('unused');
    const samples = [0, 0.0001, 0.00011, 0.001, 0.0049, 0.5, 1, 1.5, 30, 0.00025];
    for (const v of samples) {
      a.labels('allow').observe(v);
      b.labels('allow').observe(v);
      a.observe({ decision: 'deny' }, v * 2);
      b.observe({ decision: 'deny' }, v * 2);
    }
    expect(await ours.metrics()).toBe(await ref.metrics());
  });

  it('metrics without labels are exported from the start, as prom-client does', async () => {
    const ref = new client.Registry();
    const ours = new client.Registry();
    new client.Counter({ name: 'z_total', help: 'h', registers: [ref] });
    new client.Histogram({ name: 'z_seconds', help: 'h', buckets: [0.1, 1], registers: [ref] });
    new HotCounter('z_total', 'h', [], [ours]);
    const h = new HotHistogram('z_seconds', 'h', [], [0.1, 1], [ours]);
    expect(await ours.metrics()).toBe(await ref.metrics());
    h.observe(0.5);
    expect(await ours.metrics()).toContain('z_seconds_bucket{le="1"} 1');
  });

  it('refuses unknown labels, wrong arity and decrements (programming errors)', () => {
    const r = new client.Registry();
    const c = new HotCounter('y_total', 'h', ['a'], [r]);
    expect(() => c.inc({ b: 'x' } as never)).toThrow(/unknown label b/);
    expect(() => c.labels('1', '2')).toThrow(/expected 1 label values/);
    expect(() => c.inc(-1)).toThrow(/only go up/);
    expect(() => new HotCounter('y_total', 'h', ['a'], [r])).toThrow(/already been registered/);
  });
});
