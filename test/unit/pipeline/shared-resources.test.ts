import { describe, expect, it } from 'vitest';
import { SharedResources } from '../../../src/core/runtime.js';

class Res {
  disposed = 0;
  dispose() {
    this.disposed++;
  }
}

describe('SharedResources across reloads', () => {
  it('a rejected config disposes only what it created; a good one sweeps what it no longer uses', () => {
    const s = new SharedResources();
    s.beginGeneration();
    const a = s.get('a', () => new Res());
    const b = s.get('b', () => new Res());
    s.sweep(); // config 1 in force: a, b

    s.beginGeneration(); // config 2 (rejected): reuses a, creates c
    expect(s.get('a', () => new Res())).toBe(a);
    const c = s.get('c', () => new Res());
    s.abortGeneration();
    expect(c.disposed).toBe(1);
    expect(a.disposed + b.disposed).toBe(0);
    expect(s.size).toBe(2);

    const inForce = s.currentGeneration - 1; // config 1's generation
    s.sweepBefore(inForce); // a delayed release for config 1 must not touch what it uses
    expect(a.disposed + b.disposed).toBe(0);

    s.beginGeneration(); // config 3 (accepted): uses b only
    expect(s.get('b', () => new Res())).toBe(b);
    s.sweep();
    expect(a.disposed).toBe(1);
    expect(b.disposed).toBe(0);
    expect(s.size).toBe(1);
  });
});
