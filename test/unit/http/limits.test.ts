/** http/limits.ts: the token-endpoint rate limiter (per client, global, in progress). */
import { describe, expect, it } from 'vitest';
import { TokenRateLimiter } from '../../../src/http/limits.js';

function limiter(over: Partial<ConstructorParameters<typeof TokenRateLimiter>[0]> = {}, maxClients?: number) {
  let t = 0;
  const l = new TokenRateLimiter({ tokenRatePerSecond: 2, tokenBurst: 3, tokenGlobalRatePerSecond: 100, tokenConcurrency: 100, ...over }, () => t, maxClients);
  return { l, advance: (ms: number) => (t += ms) };
}

describe('TokenRateLimiter', () => {
  it('a burst, then the sustained rate, per client', () => {
    const { l, advance } = limiter();
    const take = (c: string) => {
      const w = l.take(c);
      if (w === 0) l.done();
      return w;
    };
    expect([take('a'), take('a'), take('a')]).toEqual([0, 0, 0]);
    expect(take('a')).toBeGreaterThanOrEqual(1);
    expect(take('b')).toBe(0); // another client has its own bucket
    advance(500);
    expect(take('a')).toBe(0); // one token refilled at 2/s
    expect(take('a')).toBeGreaterThanOrEqual(1);
  });
  it('all clients together are bounded', () => {
    const { l } = limiter({ tokenGlobalRatePerSecond: 4 });
    const got = Array.from({ length: 10 }, (_, i) => l.take(`c${i}`));
    expect(got.filter((w) => w === 0).length).toBe(4);
  });
  it('requests in progress are bounded until done()', () => {
    const { l } = limiter({ tokenConcurrency: 2 });
    expect(l.take('a')).toBe(0);
    expect(l.take('b')).toBe(0);
    expect(l.take('c')).toBe(1);
    l.done();
    expect(l.take('c')).toBe(0);
  });
  it('remembers a bounded number of clients', () => {
    const { l } = limiter({}, 2);
    for (const c of ['a', 'a', 'a']) if (l.take(c) === 0) l.done();
    expect(l.take('a')).toBeGreaterThanOrEqual(1);
    l.take('b');
    l.take('c'); // evicts a, the least recently seen
    expect(l.take('a')).toBe(0);
  });
});
