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

export function isToken(s: string): boolean {
  return TOKEN.test(s);
}

export function isValidHeaderName(n: string): boolean {
  return VALID_HEADER_NAME.test(n);
}
