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

/** The scope tokens of a claim value (a string or a list of strings); [] for anything else. */
export function scopeTokens(v: unknown): string[] {
  if (typeof v === 'string') return v.split(' ').filter((s) => s !== '');
  if (Array.isArray(v)) return v.filter((s): s is string => typeof s === 'string' && s !== '');
  return [];
}

/** Scopes a token's claims hold: `scope` and `scp`, each parsed by scopeTokens. */
export function scopesOf(claims: Readonly<Record<string, unknown>>): Set<string> {
  const out = new Set<string>();
  for (const name of ['scope', 'scp']) for (const s of scopeTokens(claims[name])) out.add(s);
  return out;
}
