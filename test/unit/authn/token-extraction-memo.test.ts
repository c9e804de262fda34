/**
 * extractTokens reuses the tokens it found in the last header value it scanned (same value, same
 * prefix): interleaved values, prefixes and JWT-shape filters must each get their own answer.
 */
import { describe, expect, it } from 'vitest';
import { extractTokens } from '../../../src/authn/token-extraction.js';
import type { CheckState, TokenLocation } from '../../../src/core/state.js';

const at = (name: string, prefix: string): TokenLocation => ({ kind: 'header', name, prefix, label: `header:${name}` });
const stateWith = (headers: Record<string, string>) => ({ ctx: { header: (n: string) => headers[n] } }) as unknown as CheckState;
const tokens = (headers: Record<string, string>, locs: TokenLocation[], nonJwt?: ReadonlySet<string>) => extractTokens(stateWith(headers), locs, nonJwt).map((f) => `${f.location.label}=${f.token}`);

describe('extractTokens (memo of the last header value)', () => {
  const jwtA = 'aaa.bbb.ccc';
  const jwtB = 'ddd.eee.fff';
  it('answers each value and prefix on its own, however they alternate', () => {
    const bearer = at('authorization', 'Bearer ');
    const raw = at('authorization', '');
    const other = at('x-token', 'Token ');
    for (let i = 0; i < 3; i++) {
      expect(tokens({ authorization: `Bearer ${jwtA}` }, [bearer])).toEqual([`header:authorization=${jwtA}`]);
      expect(tokens({ authorization: `Bearer ${jwtB}` }, [bearer])).toEqual([`header:authorization=${jwtB}`]);
      expect(tokens({ authorization: `Bearer ${jwtA}` }, [raw])).toEqual([`header:authorization=Bearer ${jwtA}`]);
      expect(tokens({ authorization: `Bearer ${jwtA}, Bearer ${jwtB}` }, [bearer])).toEqual([`header:authorization=${jwtA}`, `header:authorization=${jwtB}`]);
      expect(tokens({ authorization: `Bearer "${jwtA}"x`, 'x-token': `Token ${jwtB}` }, [bearer, other])).toEqual([`header:authorization=${jwtA}`, `header:x-token=${jwtB}`]);
      expect(tokens({ authorization: 'Basic Zm9vOmJhcg==' }, [bearer])).toEqual([]);
      expect(tokens({ authorization: 'Bearer ' }, [bearer])).toEqual(['header:authorization=Bearer ']);
    }
  });

  it('applies the JWT-shape filter per call, not per memo', () => {
    const l = at('authorization', 'Bearer ');
    const v = { authorization: 'Bearer not-a-jwt' };
    expect(tokens(v, [l])).toEqual(['header:authorization=not-a-jwt']);
    expect(tokens(v, [l], new Set(['authorization']))).toEqual([]);
    expect(tokens(v, [l])).toEqual(['header:authorization=not-a-jwt']);
    const j = { authorization: `Bearer ${jwtA}` };
    expect(tokens(j, [l], new Set(['authorization']))).toEqual([`header:authorization=${jwtA}`]);
  });
});
