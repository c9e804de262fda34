/**
 * JSON.stringify(s) for a string, without the call into the JSON serializer when nothing needs
 * escaping (the usual request id, host, path, principal): JSON.stringify escapes only `"`,
 * `\`, control characters below U+0020 and lone surrogates; a string with none of those is
 * itself between quotes. Anything else (any surrogate, paired or not) goes to JSON.stringify,
 * so the result is always exactly JSON.stringify's.
 */
export function jsonString(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return JSON.stringify(s);
  }
  return `"${s}"`;
}
