/**
 * Where a jwtRule's tokens are read from (Envoy jwt_authn's extractor): headers with or
 * without a prefix, query parameters, cookies. Pure functions of the request: nothing is
 * consumed or recorded here (the member removes what it admitted).
 */
import type { CheckState, TokenLocation } from '../core/state.js';
import { isJwtShaped } from '../jwt/jwt-format.js';

/**
 * A run of JWT characters from lastIndex (matches empty: test() always succeeds). Its
 * lastIndex is set before every use, so nothing is carried from one call to the next.
 */
const JWT_RUN = /[A-Za-z0-9_.-]*/y;

/** A base64url character or a dot: what a JWT is made of (Envoy's token run after a prefix). */
function isJwtChar(c: number): boolean {
  // 0-9, A-Z, a-z, '_', '.', '-'
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 46 || c === 45;
}

export interface FoundToken {
  readonly token: string;
  readonly location: TokenLocation;
}

/**
 * Envoy JwtHeaderLocation: with a prefix, the value must contain it; the token is the run
 * of base64url characters and dots after it (so `Bearer <jwt>, ...` and quoted forms work).
 * Without a prefix the whole value is the token. Appends to `out`; `nonJwt`: skip values
 * that are not JWT-shaped (see extractTokens).
 */
function extractFromHeader(value: string, l: TokenLocation, nonJwt: boolean, out: FoundToken[]): void {
  const prefix = l.prefix;
  const m = tokensAfter(value, prefix ?? '');
  for (let i = 0; i < m.tokens.length; i++) {
    // with API-key / shared-token validators reading this header, a value
    // that is not JWT-shaped belongs to them, not to the jwtRules.
    if (!nonJwt || m.jwtShaped(i)) out.push({ token: m.tokens[i]!, location: l });
  }
}

/** The tokens of one header value after one prefix (a pure function of the two strings). */
class PrefixedTokens {
  private shaped: boolean[] | null = null;
  constructor(
    readonly value: string,
    readonly prefix: string,
    readonly tokens: readonly string[],
  ) {}
  jwtShaped(i: number): boolean {
    const s = (this.shaped ??= this.tokens.map(isJwtShaped));
    return s[i]!;
  }
}

/**
 * The last header value looked at: a client sends the same Authorization header on request
 * after request, and every rule reading it asks again. Reusing the token strings found last
 * time (when the value and prefix are equal, compared in full) spares the scan and gives the
 * verified-token cache the same string object, whose hash V8 has already computed.
 */
let last: PrefixedTokens = new PrefixedTokens('', '', []);

function tokensAfter(value: string, prefix: string): PrefixedTokens {
  const m = last;
  if (m.value === value && m.prefix === prefix) return m;
  const tokens: string[] = [];
  if (!prefix) {
    tokens.push(value);
    return (last = new PrefixedTokens(value, prefix, tokens));
  }
  // Envoy sees repeated headers as separate values; here they arrive joined by ','. Each
  // comma-separated part is looked at on its own (a prefix never spans a comma).
  const len = value.length;
  let partStart = 0;
  for (;;) {
    let partEnd = value.indexOf(',', partStart);
    if (partEnd < 0) partEnd = len;
    const pos = value.indexOf(prefix, partStart);
    if (pos >= 0 && pos + prefix.length <= partEnd) {
      let start = pos + prefix.length;
      while (start < partEnd && !isJwtChar(value.charCodeAt(start))) start++;
      // The run of token characters (a sticky regex: ~3x faster than a char loop on a long
      // token). It stops at the first other character, so never past the comma at partEnd.
      JWT_RUN.lastIndex = start;
      JWT_RUN.test(value);
      const end = JWT_RUN.lastIndex;
      tokens.push(start >= partEnd ? value.slice(partStart, partEnd) : value.slice(start, end));
    }
    if (partEnd >= len) break;
    partStart = partEnd + 1;
  }
  return (last = new PrefixedTokens(value, prefix, tokens));
}

/**
 * Every token at `locations`, in their order. `nonJwtElsewhere`: header names (lower-case)
 * where values that are not JWT-shaped belong to API-key / shared-token validators.
 */
export function extractTokens(state: CheckState, locations: readonly TokenLocation[], nonJwtElsewhere?: ReadonlySet<string>): FoundToken[] {
  const ctx = state.ctx;
  const out: FoundToken[] = [];
  for (let i = 0; i < locations.length; i++) {
    const l = locations[i]!;
    if (l.kind === 'header') {
      const v = ctx.header(l.name);
      if (v === undefined) continue;
      extractFromHeader(v, l, nonJwtElsewhere !== undefined && nonJwtElsewhere.has(l.name), out);
    } else if (l.kind === 'param') {
      const v = ctx.queryParams.get(l.name);
      if (v && v.length > 0) out.push({ token: v[0]!, location: l });
    } else {
      const v = ctx.cookie(l.name);
      if (v !== undefined) out.push({ token: v, location: l });
    }
  }
  return out;
}
