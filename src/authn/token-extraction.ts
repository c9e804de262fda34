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
  if (!prefix) {
    if (!nonJwt || isJwtShaped(value)) out.push({ token: value, location: l });
    return;
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
      const t = start >= partEnd ? value.slice(partStart, partEnd) : value.slice(start, end);
      // with API-key / shared-token validators reading this header, a value
      // that is not JWT-shaped belongs to them, not to the jwtRules.
      if (!nonJwt || isJwtShaped(t)) out.push({ token: t, location: l });
    }
    if (partEnd >= len) return;
    partStart = partEnd + 1;
  }
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
