import { renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createTestRuntime } from '../../helpers/runtime.js';
import { tempDir } from '../../helpers/tmp.js';
import { ExchangeCache } from '../../../src/exchange/cache.js';
import { checkDelegation, compileDelegationRules } from '../../../src/exchange/delegation.js';
import { fail } from '../../../src/exchange/errors.js';
import { readTokenFile, tokenFile } from '../../../src/kubernetes/file-token.js';
import { compileGlob } from '../../../src/match/strings.js';
import { scopesOf, stripBearer } from '../../../src/exchange/oauth.js';

const NOW = 1_900_000_000_000;

describe('exchange cache', () => {
  const opts = { maxEntries: 3, skewMs: 10_000, maxTtlMs: 300_000, negativeTtlMs: 5_000 };

  it('ends entries at min(exchanged, subject, actor exp) minus skew, checked against the injected clock', () => {
    const rt = createTestRuntime({ now: NOW });
    const c = new ExchangeCache(opts, rt);
    const s = NOW / 1000;
    expect(c.storeToken('k', 'tok', [], [s + 3600, s + 60, s + 120])).toBe(NOW + 50_000);
    expect(c.lookup('k').kind).toBe('hit');
    rt.setNow(NOW + 49_999);
    expect(c.lookup('k').kind).toBe('hit');
    rt.setNow(NOW + 50_000);
    expect(c.lookup('k').kind).toBe('miss');
  });

  it('caps entries with no known expiry; does not cache what expires within the skew', () => {
    const rt = createTestRuntime({ now: NOW });
    const c = new ExchangeCache(opts, rt);
    expect(c.storeToken('k', 't', [], [undefined])).toBe(NOW + 300_000);
    expect(c.storeToken('k2', 't', [], [NOW / 1000 + 5])).toBe(0);
    expect(c.lookup('k2').kind).toBe('miss');
  });

  it('is bounded (LRU)', () => {
    const rt = createTestRuntime({ now: NOW });
    const c = new ExchangeCache(opts, rt);
    for (let i = 0; i < 10; i++) c.storeToken(`k${i}`, 't', [], [undefined]);
    expect(c.size).toBe(3);
    expect(c.lookup('k0').kind).toBe('miss');
    expect(c.lookup('k9').kind).toBe('hit');
  });

  it('remembers refusals briefly', () => {
    const rt = createTestRuntime({ now: NOW });
    const c = new ExchangeCache(opts, rt);
    c.storeRefusal('k', fail('ERR_EXCHANGE_REFUSED', 'no'));
    expect(c.lookup('k')).toMatchObject({ kind: 'negative', refusal: { reason: 'ERR_EXCHANGE_REFUSED' } });
    rt.advance(5_000);
    expect(c.lookup('k').kind).toBe('miss');
    const off = new ExchangeCache({ ...opts, negativeTtlMs: 0 }, rt);
    off.storeRefusal('k', fail('ERR_EXCHANGE_REFUSED', 'no'));
    expect(off.lookup('k').kind).toBe('miss');
  });

  it('single-flight: concurrent calls for one key share one run; the next call runs again', async () => {
    const c = new ExchangeCache(opts, createTestRuntime());
    let runs = 0;
    const fn = () => new Promise<number>((r) => setTimeout(() => r(++runs), 20));
    const rs = await Promise.all([c.singleFlight('k', fn), c.singleFlight('k', fn), c.singleFlight('k', fn)]);
    expect(rs).toEqual([1, 1, 1]);
    expect(c.inflightCount).toBe(0);
    expect(await c.singleFlight('k', fn)).toBe(2);
    expect(await c.singleFlight('other', fn)).toBe(3);
  });
});

describe('DelegationPolicy', () => {
  const policy = (mayAct: 'Ignore' | 'IfPresent' | 'Required', rules = [{ actors: [{ issuer: 'https://k8s', subject: 'system:serviceaccount:agents:*' }], subjects: ['*'], audiences: ['mcp-*'] }]) => ({
    ref: 'ns/d',
    rules: compileDelegationRules(rules),
    mayAct,
  });
  const actor = { sub: 'system:serviceaccount:agents:planner', iss: 'https://k8s' };
  const alice = { sub: 'alice', iss: 'https://idp' };

  it('matches issuer exactly (or *), subject globs, and every audience', () => {
    expect(checkDelegation(policy('Ignore'), actor, alice, {}, ['mcp-a'])).toEqual({ ok: true, rule: 0 });
    expect(checkDelegation(policy('Ignore'), { ...actor, iss: 'https://other' }, alice, {}, ['mcp-a']).ok).toBe(false);
    expect(checkDelegation(policy('Ignore'), { ...actor, sub: 'system:serviceaccount:evil:x' }, alice, {}, ['mcp-a']).ok).toBe(false);
    expect(checkDelegation(policy('Ignore'), actor, alice, {}, ['mcp-a', 'payments']).ok).toBe(false);
    const star = policy('Ignore', [{ actors: [{ issuer: '*', subject: '*' }], subjects: ['bob'], audiences: ['*'] }]);
    expect(checkDelegation(star, actor, alice, {}, ['x']).ok).toBe(false);
    expect(checkDelegation(star, actor, { sub: 'bob', iss: '' }, {}, ['x']).ok).toBe(true);
  });

  it('an empty rule list denies delegation', () => {
    expect(checkDelegation(policy('Ignore', []), actor, alice, {}, ['mcp-a'])).toMatchObject({ ok: false, message: 'ns/d: no rules (delegation denied)' });
  });

  it('may_act: Ignore / IfPresent / Required; object or list; iss compared when present', () => {
    const named = { may_act: { sub: actor.sub, iss: 'https://k8s' } };
    const other = { may_act: { sub: 'someone' } };
    expect(checkDelegation(policy('Ignore'), actor, alice, other, ['mcp-a']).ok).toBe(true);
    expect(checkDelegation(policy('IfPresent'), actor, alice, other, ['mcp-a']).ok).toBe(false);
    expect(checkDelegation(policy('IfPresent'), actor, alice, {}, ['mcp-a']).ok).toBe(true);
    expect(checkDelegation(policy('Required'), actor, alice, {}, ['mcp-a']).ok).toBe(false);
    expect(checkDelegation(policy('Required'), actor, alice, named, ['mcp-a']).ok).toBe(true);
    expect(checkDelegation(policy('Required'), actor, alice, { may_act: [{ sub: 'x' }, { sub: actor.sub }] }, ['mcp-a']).ok).toBe(true);
    expect(checkDelegation(policy('Required'), actor, alice, { may_act: { sub: actor.sub, iss: 'https://elsewhere' } }, ['mcp-a']).ok).toBe(false);
  });
});

describe('helpers', () => {
  it('globs, scopes, Bearer prefix', () => {
    expect(compileGlob('system:serviceaccount:agents:*').test('system:serviceaccount:agents:a')).toBe(true);
    expect(compileGlob('a*c').test('abbc')).toBe(true);
    expect(compileGlob('a.c').test('abc')).toBe(false);
    expect(compileGlob('*').test('')).toBe(false);
    // one parser with the Check path (core/scopes.ts): a list element is one scope, never split
    expect([...scopesOf({ scope: 'a b', scp: ['c', 'd e'] })].sort()).toEqual(['a', 'b', 'c', 'd e']);
    expect([...scopesOf({ scope: ['x', 'y'] })]).toEqual(['x', 'y']);
    expect(stripBearer('Bearer abc')).toBe('abc');
    expect(stripBearer('bearer   abc ')).toBe('abc');
    expect(stripBearer('abc')).toBe('abc');
  });

  it('a token file is re-read when it changes (Kubernetes swaps a symlink)', () => {
    const dir = tempDir('tok-');
    writeFileSync(join(dir, 'v1'), 'token-one\n');
    writeFileSync(join(dir, 'v2'), 'token-two-longer\n');
    symlinkSync(join(dir, 'v1'), join(dir, 'link'));
    const rt = createTestRuntime({ now: NOW });
    const src = tokenFile(rt, join(dir, 'link'));
    expect(readTokenFile(src)).toBe('token-one');
    symlinkSync(join(dir, 'v2'), join(dir, 'link.tmp'));
    renameSync(join(dir, 'link.tmp'), join(dir, 'link'));
    expect(readTokenFile(src)).toBe('token-one'); // within the recheck interval
    rt.advance(1001);
    expect(readTokenFile(src)).toBe('token-two-longer');
    expect(readTokenFile(tokenFile(rt, join(dir, 'missing')))).toBeUndefined();
  });
});
