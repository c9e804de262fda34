import { describe, expect, it } from 'vitest';
import { VerifiedCache } from '../../../src/jwt/verifier.js';

type Entry = Parameters<VerifiedCache['set']>[0];

function entry(n: number, key = `k${n}`): Entry {
  return { key, token: `t${n}`, base: 'b', jwt: {} as never, keyId: 'k', nbf: 0, exp: 0, next: undefined, expiresAt: 0, seq: 0 };
}

describe('VerifiedCache', () => {
  it('stays within its bound, dropping the oldest entries first', () => {
    const c = new VerifiedCache(100, 60_000, () => 0);
    for (let i = 0; i < 1000; i++) c.set(entry(i), 60_000);
    expect(c.size).toBe(100);
    expect(c.get('k899')).toBeUndefined();
    expect(c.get('k900')?.token).toBe('t900');
    expect(c.get('k999')?.token).toBe('t999');
  });

  it('keeps a token that keeps being used while others churn through', () => {
    const c = new VerifiedCache(100, 60_000, () => 0);
    c.set(entry(-1, 'hot'), 60_000);
    for (let i = 0; i < 10_000; i++) {
      c.set(entry(i), 60_000);
      if (i % 10 === 0) expect(c.get('hot')?.token).toBe('t-1');
    }
    expect(c.size).toBe(100);
  });

  it('answers until the entry ttl (capped by the cache ttl), then forgets it', () => {
    let now = 1_000;
    const c = new VerifiedCache(10, 5_000, () => now);
    c.set(entry(1, 'short'), 2_000);
    c.set(entry(2, 'long'), 60_000); // capped at 5 s
    now = 2_999;
    expect(c.get('short')).toBeDefined();
    now = 3_000;
    expect(c.get('short')).toBeUndefined();
    expect(c.get('long')).toBeDefined();
    now = 6_000;
    expect(c.get('long')).toBeUndefined();
    expect(c.size).toBe(0);
  });

  it('replaces an entry set again under the same key', () => {
    const c = new VerifiedCache(10, 5_000, () => 0);
    c.set(entry(1, 'k'), 1_000);
    c.set(entry(2, 'k'), 1_000);
    expect(c.size).toBe(1);
    expect(c.get('k')?.token).toBe('t2');
    expect(c.peek('k')?.token).toBe('t2');
    c.clear();
    expect(c.get('k')).toBeUndefined();
  });

  it('find() is a read: it neither keeps a hit recent nor drops an expired entry; touch() keeps it recent as get() does', () => {
    let now = 0;
    const found = new VerifiedCache(100, 60_000, () => now);
    const touched = new VerifiedCache(100, 60_000, () => now);
    for (const c of [found, touched]) c.set(entry(-1, 'hot'), 60_000);
    for (let i = 0; i < 1000; i++) {
      for (const c of [found, touched]) c.set(entry(i), 60_000);
      if (i % 10 === 0) {
        found.find('hot', now);
        const hit = touched.find('hot', now);
        if (hit) touched.touch(hit);
      }
    }
    expect(found.peek('hot')).toBeUndefined();
    expect(touched.find('hot', now)?.token).toBe('t-1');
    now = 60_000;
    expect(touched.find('hot', now)).toBeUndefined();
    expect(touched.size).toBe(100);
    expect(touched.get('hot')).toBeUndefined();
    expect(touched.size).toBe(99);
  });
});
