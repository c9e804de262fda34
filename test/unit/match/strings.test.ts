/**
 * The glob form of src/match/strings.ts (compileGlob, globSet): `*` anywhere and more than
 * once, checked against a regex built from the pattern (`*` -> `.*`, `*` alone -> `.+`), and
 * the Istio forms it reduces to for one `*`.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileGlob, compileString, globSet, Kind } from '../../../src/match/strings.js';

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

function referenceGlob(pattern: string, input: string): boolean {
  if (pattern === '*') return input.length > 0;
  return new RegExp(`^${pattern.split('*').map(esc).join('.*')}$`, 's').test(input);
}

const alpha = fc.constantFrom('a', 'b', 'ab', '*', ':', '.', '\n');
const text = (max: number) => fc.array(alpha, { maxLength: max }).map((a) => a.join(''));
const input = fc.array(fc.constantFrom('a', 'b', ':', '.', '\n', '*'), { maxLength: 10 }).map((a) => a.join(''));

describe('compileGlob', () => {
  it('equals the anchored regex for any pattern and value', () => {
    fc.assert(
      fc.property(text(7), input, (p, v) => {
        expect(compileGlob(p).test(v)).toBe(referenceGlob(p, v));
      }),
      { numRuns: 5000 },
    );
  });

  it('testRange equals test on the substring', () => {
    fc.assert(
      fc.property(text(6), input, fc.nat(12), fc.nat(12), (p, v, x, y) => {
        const start = Math.min(x, y, v.length);
        const end = Math.min(Math.max(x, y), v.length);
        expect(compileGlob(p).testRange(v, start, end)).toBe(referenceGlob(p, v.slice(start, end)));
      }),
      { numRuns: 3000 },
    );
  });

  it('one star compiles to the Istio forms; more stars to a glob', () => {
    expect(compileGlob('*').kind).toBe(Kind.NonEmpty);
    expect(compileGlob('abc').kind).toBe(Kind.Exact);
    expect(compileGlob('abc*').kind).toBe(Kind.Prefix);
    expect(compileGlob('*abc').kind).toBe(Kind.Suffix);
    expect(compileGlob('a*c').kind).toBe(Kind.PrefixSuffix);
    expect(compileGlob('a*b*c').kind).toBe(Kind.Glob);
    for (const p of ['*', 'abc', 'abc*', '*abc']) {
      for (const v of ['', 'abc', 'abcd', 'xabc', 'ab']) expect(compileGlob(p).test(v), `${p} ${v}`).toBe(compileString(p, { star: 'nonEmpty' }).test(v));
    }
  });

  it('the forms DelegationPolicy and the token endpoint rely on', () => {
    expect(compileGlob('system:serviceaccount:agents:*').test('system:serviceaccount:agents:a')).toBe(true);
    expect(compileGlob('system:serviceaccount:*:planner').test('system:serviceaccount:agents:planner')).toBe(true);
    expect(compileGlob('system:serviceaccount:*:planner').test('system:serviceaccount:agents:planner2')).toBe(false);
    expect(compileGlob('a*c').test('abbc')).toBe(true);
    expect(compileGlob('a.c').test('abc')).toBe(false);
    expect(compileGlob('*').test('')).toBe(false);
    expect(compileGlob('**').test('')).toBe(true);
    // The middle literal must fit between prefix and suffix, without overlapping them.
    expect(compileGlob('ab*b*ba').test('abba')).toBe(false);
    expect(compileGlob('ab*b*ba').test('abbba')).toBe(true);
    expect(compileGlob('a*').test(undefined)).toBe(false);
  });

  it('globSet ORs its globs; exact values go through the set', () => {
    const s = globSet(['https://mcp.example.com', 'mcp-*', 'x', 'svc-*-read']);
    expect(s.sources).toEqual(['https://mcp.example.com', 'mcp-*', 'x', 'svc-*-read']);
    for (const v of ['https://mcp.example.com', 'mcp-a', 'x', 'svc-a-read']) expect(s.test(v), v).toBe(true);
    for (const v of ['https://mcp.example.com/', 'mcp', 'y', 'svc-a-write', undefined]) expect(s.test(v), String(v)).toBe(false);
  });
});
