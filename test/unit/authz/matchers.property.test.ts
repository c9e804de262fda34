/**
 * Property-based tests: the compiled string/path/IP matchers against straightforward
 * reference implementations of Istio's / Envoy's semantics (regexes built the way Istio
 * generates Envoy config; BigInt arithmetic for CIDRs).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cidrContains, parseCidr, parseIp } from '../../../src/match/ip.js';
import { splitRequestPrincipal } from '../../../src/authz/auth-fields.js';
import { compileString, PathSet, PathTemplate, StringSet } from '../../../src/match/strings.js';

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** Istio StringMatcherWithPrefix / HeaderMatcher as an anchored regex (Envoy full match). */
function referenceRegex(v: string, star: 'nonEmpty' | 'present', prefix = '', ignoreCase = false): RegExp | 'present' {
  const flags = `s${ignoreCase ? 'i' : ''}`;
  if (v === '*') return star === 'present' ? 'present' : new RegExp('^.+$', flags);
  if (v.startsWith('*')) return new RegExp(`^${esc(prefix)}.*${esc(v.slice(1))}$`, flags);
  if (v.endsWith('*')) return new RegExp(`^${esc(prefix + v.slice(0, -1))}.*$`, flags);
  return new RegExp(`^${esc(prefix + v)}$`, flags);
}

function referenceTest(v: string, input: string | undefined, star: 'nonEmpty' | 'present', prefix = '', ignoreCase = false): boolean {
  if (input === undefined) return false;
  const re = referenceRegex(v, star, prefix, ignoreCase);
  return re === 'present' ? true : re.test(input);
}

const alpha = fc.constantFrom('a', 'b', 'A', '/', '.', '*', ':', '-', ' ', '%');
const str = (max: number) => fc.array(alpha, { maxLength: max }).map((a) => a.join(''));
const policyValue = fc.oneof(
  fc.constant('*'),
  str(5).map((s) => `*${s}`),
  str(5).map((s) => `${s}*`),
  str(6).filter((s) => s.length > 0),
);

describe('string matchers vs reference', () => {
  it('compileString(star=nonEmpty) equals the Envoy regex', () => {
    fc.assert(
      fc.property(policyValue, fc.option(str(8), { nil: undefined }), (v, input) => {
        expect(compileString(v, { star: 'nonEmpty' }).test(input)).toBe(referenceTest(v, input, 'nonEmpty'));
      }),
      { numRuns: 3000 },
    );
  });

  it('header semantics: "*" is present-match', () => {
    fc.assert(
      fc.property(policyValue, fc.option(str(8), { nil: undefined }), (v, input) => {
        expect(compileString(v, { star: 'present' }).test(input)).toBe(referenceTest(v, input, 'present'));
      }),
      { numRuns: 2000 },
    );
  });

  it('principals: spiffe:// prefix (ignored for "*")', () => {
    const principal = fc.oneof(str(10), str(8).map((s) => `spiffe://${s}`));
    fc.assert(
      fc.property(policyValue, principal, (v, input) => {
        expect(compileString(v, { star: 'nonEmpty', prefix: 'spiffe://' }).test(input)).toBe(referenceTest(v, input, 'nonEmpty', 'spiffe://'));
      }),
      { numRuns: 3000 },
    );
  });

  it('hosts: case-insensitive (request lower-cased by the view)', () => {
    fc.assert(
      fc.property(policyValue, str(8), (v, input) => {
        expect(compileString(v, { star: 'present', ignoreCase: true }).test(input.toLowerCase())).toBe(referenceTest(v, input, 'present', '', true));
      }),
      { numRuns: 2000 },
    );
  });

  it('StringSet is the OR of its values, and testRange equals test on the slice', () => {
    fc.assert(
      fc.property(fc.array(policyValue, { minLength: 1, maxLength: 5 }), str(10), fc.nat(), fc.nat(), (vals, s, a, b) => {
        const set = new StringSet(vals, { star: 'nonEmpty' });
        expect(set.test(s)).toBe(vals.some((v) => referenceTest(v, s, 'nonEmpty')));
        const start = Math.min(a, b) % (s.length + 1);
        const end = Math.max(start, Math.max(a, b) % (s.length + 1));
        expect(set.testRange(s, start, end)).toBe(set.test(s.slice(start, end)));
      }),
      { numRuns: 2000 },
    );
  });
});

// ----- paths -------------------------------------------------------------------------------

const LIT = "a-zA-Z0-9\\-._~%!$&'()+,;:@=";

/** Envoy uri_template (after Istio's {*}->*, {**}->**) as a regex, full match. */
function referenceTemplate(t: string): RegExp {
  const body = t
    .slice(1)
    .split('/')
    .map((seg) => (seg === '{*}' ? `[${LIT}]+` : seg === '{**}' ? `[${LIT}/]*` : esc(seg)))
    .join('/');
  return new RegExp(`^/${body}$`);
}

const literalSeg = fc.constantFrom('a', 'b', 'ab', 'x.y', '%2F', 'v1', '=');
const template = fc
  .tuple(
    fc.array(fc.oneof(literalSeg, fc.constant('{*}')), { maxLength: 3 }),
    fc.boolean(),
    fc.array(literalSeg, { maxLength: 2 }),
    fc.boolean(),
  )
  .map(([head, any, tail, trailing]) => {
    const segs = [...head, ...(any ? ['{**}', ...tail] : [])];
    if (!segs.some((s) => s === '{*}' || s === '{**}')) segs.push('{*}');
    return `/${segs.join('/')}${trailing && !any ? '/' : ''}`;
  });
const pathChar = fc.constantFrom('/', 'a', 'b', 'x', '.', 'y', '%', '2', 'F', 'v', '1', '=', '*', ' ', '"');
const pathStr = fc.array(pathChar, { maxLength: 14 }).map((a) => `/${a.join('')}`);

/** Paths built from the template's own pieces, so matches are frequent. */
const nearPath = (t: string) =>
  fc
    .array(fc.constantFrom('a', 'b', 'ab', 'x.y', '%2F', 'v1', '=', 'q*', ''), { minLength: 1, maxLength: 6 })
    .map((segs) => `/${segs.join('/')}`)
    .map((p) => (t.endsWith('/') && Math.random() < 0.5 ? `${p}/` : p));

describe('path templates vs reference', () => {
  it('random paths', () => {
    fc.assert(
      fc.property(template, pathStr, (t, p) => {
        expect(new PathTemplate(t).test(p)).toBe(referenceTemplate(t).test(p));
      }),
      { numRuns: 4000 },
    );
  });

  it('paths made of the template pieces (many matches)', () => {
    fc.assert(
      fc.property(template.chain((t) => fc.tuple(fc.constant(t), nearPath(t))), ([t, p]) => {
        expect(new PathTemplate(t).test(p)).toBe(referenceTemplate(t).test(p));
      }),
      { numRuns: 4000 },
    );
  });

  it('PathSet mixes plain values and templates', () => {
    fc.assert(
      fc.property(template, policyValue.map((v) => `/${v}`), pathStr, (t, plain, p) => {
        const set = new PathSet([t, plain]);
        expect(set.test(p)).toBe(referenceTemplate(t).test(p) || referenceTest(plain, p, 'nonEmpty'));
      }),
      { numRuns: 2000 },
    );
  });
});

// ----- request principals ---------------------------------------------------------------------

/** Reference: Istio requestPrincipalGenerator.extendedPrincipal as (issRegex, subRegex). */
function referenceRequestPrincipal(value: string, iss: string, sub: string): boolean {
  const any = /^.+$/s;
  const idx = value.lastIndexOf('/');
  const found = idx >= 0;
  const vi = found ? value.slice(0, idx) : value;
  const vs = found ? value.slice(idx + 1) : '';
  let mi: RegExp;
  let ms: RegExp;
  if (value === '*') [mi, ms] = [any, any];
  else if (value.startsWith('*')) {
    if (found) [mi, ms] = [vi === '*' ? any : new RegExp(`^.*${esc(vi.slice(1))}$`, 's'), new RegExp(`^${esc(vs)}$`, 's')];
    else [mi, ms] = [any, new RegExp(`^.*${esc(value.slice(1))}$`, 's')];
  } else if (value.endsWith('*')) {
    if (found) [mi, ms] = [new RegExp(`^${esc(vi)}$`, 's'), vs === '*' ? any : new RegExp(`^${esc(vs.slice(0, -1))}.*$`, 's')];
    else [mi, ms] = [new RegExp(`^${esc(value.slice(0, -1))}.*$`, 's'), any];
  } else [mi, ms] = [new RegExp(`^${esc(vi)}$`, 's'), new RegExp(`^${esc(vs)}$`, 's')];
  // A missing claim never matches (the metadata lookup fails).
  return iss !== '' && sub !== '' && mi.test(iss) && ms.test(sub);
}

describe('requestPrincipals split vs reference', () => {
  it('matches Istio for every wildcard form', () => {
    const part = fc.array(fc.constantFrom('a', 'b', '/', '*', ':', '.'), { maxLength: 6 }).map((a) => a.join(''));
    const claim = fc.array(fc.constantFrom('a', 'b', '/', ':', '.'), { maxLength: 6 }).map((a) => a.join(''));
    fc.assert(
      fc.property(part.filter((v) => v.length > 0), claim, claim, (v, iss, sub) => {
        const { iss: mi, sub: ms } = splitRequestPrincipal(v);
        const got = mi.test(iss === '' ? undefined : iss) && ms.test(sub === '' ? undefined : sub);
        expect(got).toBe(referenceRequestPrincipal(v, iss, sub));
      }),
      { numRuns: 4000 },
    );
  });
});

// ----- IPs ---------------------------------------------------------------------------------------

function v4(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}
function v6(groups: number[], compress: boolean): string {
  const hex = groups.map((g) => g.toString(16));
  if (!compress) return hex.join(':');
  // compress the longest run of zeros (RFC 5952)
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (bestLen < 2) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}
const toBig = (groups: number[]) => groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);

describe('IP / CIDR vs BigInt reference', () => {
  it('IPv4 CIDR containment', () => {
    fc.assert(
      fc.property(fc.nat({ max: 0xffffffff }), fc.nat({ max: 0xffffffff }), fc.integer({ min: 0, max: 32 }), (ip, net, bits) => {
        const c = parseCidr(`${v4(net)}/${bits}`);
        if (typeof c === 'string') throw new Error(c);
        const words = new Uint32Array(4);
        expect(parseIp(v4(ip), words)).toBe(4);
        const mask = bits === 0 ? 0n : ((1n << BigInt(bits)) - 1n) << BigInt(32 - bits);
        expect(cidrContains(c, 4, words)).toBe((BigInt(ip) & mask) === (BigInt(net) & mask));
      }),
      { numRuns: 3000 },
    );
  });

  it('IPv6 parse (full and compressed text) and CIDR containment', () => {
    const groups = fc.array(fc.oneof(fc.constant(0), fc.nat({ max: 0xffff })), { minLength: 8, maxLength: 8 });
    fc.assert(
      fc.property(groups, groups, fc.integer({ min: 0, max: 128 }), fc.boolean(), (ip, net, bits, compress) => {
        const c = parseCidr(`${v6(net, compress)}/${bits}`);
        if (typeof c === 'string') throw new Error(`${v6(net, compress)}: ${c}`);
        const words = new Uint32Array(4);
        expect(parseIp(v6(ip, compress), words)).toBe(6);
        const asBig = (BigInt(words[0]!) << 96n) | (BigInt(words[1]!) << 64n) | (BigInt(words[2]!) << 32n) | BigInt(words[3]!);
        expect(asBig).toBe(toBig(ip));
        const all = (1n << 128n) - 1n;
        const mask = bits === 0 ? 0n : (all << BigInt(128 - bits)) & all;
        expect(cidrContains(c, 6, words)).toBe((toBig(ip) & mask) === (toBig(net) & mask));
      }),
      { numRuns: 3000 },
    );
  });

  it('rejects what Go netip rejects', () => {
    for (const bad of ['1.2.3', '1.2.3.4.5', '01.2.3.4', '256.1.1.1', '1.2.3.4/33', '::1/129', ':::1', '1::2::3', 'fe80::1%eth0', '12345::', 'g::1', '1.2.3.4/08', '']) {
      expect(typeof parseCidr(bad), bad).toBe('string');
    }
    for (const good of ['0.0.0.0/0', '::/0', '::', '::1', '::ffff:1.2.3.4', '2001:db8::', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:1.2.3.4', '10.0.0.1/8']) {
      expect(typeof parseCidr(good), good).toBe('object');
    }
  });
});
