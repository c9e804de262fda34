/** What may be sent as an HTTP header (Envoy rejects the rest; CR/LF would allow injection). */

/** RFC 9110 token characters, lower case (Envoy lower-cases names); `:` only as a pseudo-header prefix. */
const VALID_HEADER_NAME = /^:?[!#$%&'*+\-.^_`|~0-9a-z]+$/;

/** RFC 9110 field-value: no CR, LF or NUL. */
export function isValidHeaderValue(v: string): boolean {
  // Three single-character searches (memchr speed) rather than a regex scan: values such as
  // exchanged tokens are long and checked on every Check.
  return v.indexOf('\r') < 0 && v.indexOf('\n') < 0 && v.indexOf('\0') < 0;
}

/** RFC 9110 §5.6.2 token (any case): a method, or a header name as HTTP/1.1 writes it. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Strings already found valid: the names and methods checked on every Check are a few that
 * repeat (header names from config, the methods a proxy sends), and a set lookup costs a
 * third of the regular expression. Only valid strings are kept, at most KNOWN_MAX of each
 * kind (a request can bring new ones: the set is emptied when full).
 */
const KNOWN_MAX = 1024;
const knownTokens = new Set<string>();
const knownNames = new Set<string>();

function remember(known: Set<string>, s: string): true {
  if (known.size >= KNOWN_MAX) known.clear();
  known.add(s);
  return true;
}

export function isToken(s: string): boolean {
  return knownTokens.has(s) || (TOKEN.test(s) && remember(knownTokens, s));
}

export function isValidHeaderName(n: string): boolean {
  return knownNames.has(n) || (VALID_HEADER_NAME.test(n) && remember(knownNames, n));
}
