/** core/path.ts against the expectations of Istio's own path-normalization integration test. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalPath, isCanonicalPath, PATH_NORMALIZATIONS, type PathNormalization } from '../../../src/core/path.js';

const MERGE: [string, string][] = [
  ['/', '/'], ['/app/', '/app/'], ['/app/../admin', '/admin'], ['/app', '/app'], ['/app//', '/app/'],
  ['/app/%2f', '/app/%2f'], ['/app%2f/', '/app%2f/'], ['/xyz%30..//abc', '/xyz0../abc'], ['/app/%2E./admin', '/admin'],
  ['/app\\admin', '/app/admin'], ['/app/\\/\\/\\admin', '/app/admin'], ['/%2Fapp%5cadmin%5Cabc', '/%2Fapp%5cadmin%5Cabc'],
  ['/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\\abc', '/%5Capp%2f%5c%2F..%2fadmin%5c/abc'], ['/app//../admin', '/app/admin'], ['/app//../../admin', '/admin'],
];
const DECODE: [string, string][] = [
  ['/app/%2f', '/app/'], ['/app%2f/', '/app/'], ['/%2Fapp%5cadmin%5Cabc', '/app/admin/abc'],
  ['/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\\abc', '/app/admin/abc'], ['/%c0%2e%c0%2e/admin', '/%c0.%c0./admin'], ['/%c0%2fadmin', '/%c0/admin'],
  ['/app//../admin', '/app/admin'],
];
const BASE: [string, string][] = [
  ['/xyz%30..//abc', '/xyz0..//abc'], ['/a/./b', '/a/b'], ['/a/b/..', '/a/'], ['/a/.', '/a/'], ['/%252e%252e/x', '/%252e%252e/x'], ['/%7e%5F', '/~_'],
];

describe('canonicalPath', () => {
  it.each(MERGE)('MERGE_SLASHES %s -> %s', (p, want) => expect(canonicalPath(p, 'MERGE_SLASHES')).toBe(want));
  it.each(DECODE)('DECODE_AND_MERGE_SLASHES %s -> %s', (p, want) => expect(canonicalPath(p, 'DECODE_AND_MERGE_SLASHES')).toBe(want));
  it.each(BASE)('BASE %s -> %s', (p, want) => expect(canonicalPath(p, 'BASE')).toBe(want));
  it('%00 has no canonical form; NONE changes nothing', () => {
    expect(canonicalPath('/a%00', 'BASE')).toBeNull();
    expect(canonicalPath('/a/../%00', 'NONE')).toBe('/a/../%00');
  });
  it('is idempotent, and isCanonicalPath agrees with it (property)', () => {
    const chars = fc.constantFrom('/', '.', 'a', 'B', '%', '2', 'e', 'E', 'f', 'F', '5', 'c', '\\', '0', '~');
    fc.assert(
      fc.property(fc.array(chars, { maxLength: 24 }).map((a) => '/' + a.join('')), fc.constantFrom(...PATH_NORMALIZATIONS), (p, m: PathNormalization) => {
        const c = canonicalPath(p, m);
        if (c === null) return !isCanonicalPath(p, m);
        expect(canonicalPath(c, m)).toBe(c);
        expect(isCanonicalPath(c, m)).toBe(true);
        expect(isCanonicalPath(p, m)).toBe(c === p);
        return true;
      }),
      { numRuns: 3000 },
    );
  });
});
