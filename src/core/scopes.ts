/**
 * The one scope parser, shared by the token endpoint (what a subject token holds, what a
 * client asks for) and the Check path (`request.auth.claims[scope]` in AuthorizationPolicy):
 * two parsers that disagreed let a list element `"adm in"` count as the scopes `adm` and `in`
 * at the token endpoint while AuthorizationPolicy matched it whole.
 *
 * A scope value is a string of scope tokens separated by spaces (RFC 6749 §3.3, RFC 8693
 * §4.2, RFC 9068 §2.2.3; Envoy's jwt_authn splits `scope` the same way before Istio matches
 * it), or a JSON list whose elements are scope tokens each (`scp`, some IdPs' `scope`): an
 * element is taken whole, never split, so one with a space in it is a token no request can
 * name (RFC 6749's scope-token has no space).
 */

/**
 * Does `test` hold for some scope token of a claim value? `test(s, start, end)` sees the token
 * as a range of `s`, so the Check path tests a space-separated string without splitting it.
 */
export function someScopeToken(v: unknown, test: (s: string, start: number, end: number) => boolean): boolean {
  if (typeof v === 'string') {
    const n = v.length;
    let i = 0;
    while (i < n) {
      while (i < n && v.charCodeAt(i) === 32) i++;
      if (i >= n) break;
      let j = i;
      while (j < n && v.charCodeAt(j) !== 32) j++;
      if (test(v, i, j)) return true;
      i = j;
    }
    return false;
  }
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const el: unknown = v[i];
      if (typeof el === 'string' && el !== '' && test(el, 0, el.length)) return true;
    }
  }
  return false;
}

/** The scope tokens of a claim value (a string or a list of strings); [] for anything else. */
export function scopeTokens(v: unknown): string[] {
  const out: string[] = [];
  someScopeToken(v, (s, a, b) => {
    out.push(a === 0 && b === s.length ? s : s.slice(a, b));
    return false;
  });
  return out;
}

/** Scopes a token's claims hold: `scope` and `scp`, each parsed by scopeTokens. */
export function scopesOf(claims: Readonly<Record<string, unknown>>): Set<string> {
  const out = new Set<string>();
  for (const name of ['scope', 'scp']) for (const s of scopeTokens(claims[name])) out.add(s);
  return out;
}
