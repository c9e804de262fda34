/** observability/redact.ts: configured secrets in every encoding, credential fields in remote text, caps. */
import { describe, expect, it } from 'vitest';
import { capText, redactText, registeredSecret, SecretRedactor } from '../../../src/observability/redact.js';
import { boundLogValue } from '../../../src/observability/logger.js';

const S = 'k3y/with+odd=chars"&\u00e9';

describe('SecretRedactor', () => {
  const r = new SecretRedactor();
  r.register('a', [S]);
  it.each([
    ['as is', `x ${S} y`],
    ['percent-encoded', `x ${encodeURIComponent(S)} y`],
    ['form-encoded', `x ${encodeURIComponent(S).replace(/%20/g, '+')} y`],
    ['lower-case hex', `x ${encodeURIComponent(S).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase())} y`],
    ['base64', `x ${Buffer.from(S).toString('base64')} y`],
    ['base64url', `x ${Buffer.from(S).toString('base64url')} y`],
    ['JSON-escaped', JSON.stringify({ d: `x ${S} y` })],
    ['JSON-escaped twice', JSON.stringify(JSON.stringify({ d: S }))],
  ])('%s', (_n, text) => {
    const out = r.scrub(text);
    expect(out).toContain('[REDACTED]');
    expect(out).not.toContain(S);
    expect(out).not.toContain(encodeURIComponent(S));
  });
  it('text without a secret is returned as is; short secrets are not searched for', () => {
    const t = new SecretRedactor();
    t.register('short', ['abc']);
    expect(t.scrub('abc abc')).toBe('abc abc');
    expect(r.scrub('nothing here')).toBe('nothing here');
  });
  it('a key registered again replaces its secrets; an empty list forgets them', () => {
    const t = new SecretRedactor();
    t.register('k', ['first-secret-1']);
    t.register('k', ['second-secret-2']);
    expect(t.scrub('first-secret-1 second-secret-2')).toBe('first-secret-1 [REDACTED]');
    t.register('k', []);
    expect(t.size).toBe(0);
  });
  it('thousands of secrets: one pass over the text', () => {
    const t = new SecretRedactor();
    t.register('many', Array.from({ length: 5000 }, (_, i) => `api-key-${i.toString().padStart(6, '0')}-xyz`));
    const text = `a ${'filler '.repeat(200)} api-key-004321-xyz b`;
    const start = performance.now();
    for (let i = 0; i < 100; i++) t.scrub(text);
    expect(t.scrub(text)).toContain('[REDACTED]');
    expect(performance.now() - start).toBeLessThan(2000);
  });
  it('registeredSecret keeps the previous value redacted after a rotation', () => {
    const t = new SecretRedactor();
    let v = 'old-secret-value';
    const get = registeredSecret(t, 'file', () => v);
    v = 'new-secret-value';
    expect(get()).toBe('new-secret-value');
    expect(t.scrub('old-secret-value new-secret-value')).toBe('[REDACTED] [REDACTED]');
  });
});

describe('redactText: credential fields as remote parties write them', () => {
  it.each([
    ['client_secret=abc123&x=1', 'client_secret=[REDACTED]&x=1'],
    ['client_secret: abc123 more', 'client_secret: [REDACTED] more'],
    ['{"client_secret":"a b\\"c","x":1}', '{"client_secret":[REDACTED],"x":1}'],
    ['{\\"client_secret\\":\\"abc\\",\\"x\\":1}', '{\\"client_secret\\":[REDACTED],\\"x\\":1}'],
    ["password='p w'", 'password=[REDACTED]'],
    ['api-key=k1 apikey: k2', 'api-key=[REDACTED] apikey: [REDACTED]'],
    ['Authorization: Bearer abc.def', 'Authorization: [REDACTED] [REDACTED]'],
    ['the secret is wrong', 'the secret is wrong'],
  ])('%s', (input, want) => expect(redactText(input)).toBe(want));
});

describe('caps', () => {
  it('capText keeps short text and says how much was cut', () => {
    expect(capText('abc', 5)).toBe('abc');
    expect(capText('abcdefgh', 5)).toBe('abcde...[3 more chars]');
    // never splits a surrogate pair
    expect(capText('abcd\ud83d\ude00xyz', 5)).toBe('abcd...[5 more chars]');
  });
  it('boundLogValue caps strings, lists, keys and depth, and scrubs secrets', () => {
    const r = new SecretRedactor();
    r.register('x', ['super-secret-1']);
    const deep: Record<string, unknown> = {};
    let cur = deep;
    for (let i = 0; i < 10; i++) cur = (cur['n'] = {}) as Record<string, unknown>;
    const v = boundLogValue({ s: 'y'.repeat(5000), l: Array.from({ length: 100 }, (_, i) => i), k: 'has super-secret-1', deep }, r) as Record<string, unknown>;
    expect((v['s'] as string).length).toBeLessThan(1100);
    expect((v['l'] as unknown[]).length).toBe(65);
    expect(v['k']).toBe('has [REDACTED]');
    expect(JSON.stringify(v['deep'])).toContain('[too deep]');
  });
});
