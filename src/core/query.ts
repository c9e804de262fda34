/** Query strings and Cookie headers as a Check sees them (decoded names, Envoy's joins). */

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

export function parseQuery(query: string, rawNames?: Map<string, string[]>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  if (!query) return out;
  for (const part of query.split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const raw = eq < 0 ? part : part.slice(0, eq);
    const k = decodeURIComponentSafe(raw);
    if (rawNames) {
      const r = rawNames.get(k);
      if (!r) rawNames.set(k, [raw]);
      else if (!r.includes(raw)) r.push(raw);
    }
    const v = eq < 0 ? '' : decodeURIComponentSafe(part.slice(eq + 1));
    const list = out.get(k);
    if (list) list.push(v);
    else out.set(k, [v]);
  }
  return out;
}

/**
 * Cookies are separated by `;`, and by `,` where several Cookie headers were joined into one
 * value (Envoy's `headers` map joins duplicates with `,`; RFC 6265's cookie-value has no
 * comma), so a cookie in a second Cookie header is seen as the upstream will see it.
 */
const COOKIE_SEPARATOR = /[;,]/;

export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!header) return out;
  for (const part of header.split(COOKIE_SEPARATOR)) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const k = part.slice(0, eq).trim();
    let v = part.slice(eq + 1).trim();
    if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
    if (k && !out.has(k)) out.set(k, v);
  }
  return out;
}

/** Remove one cookie (every one of that name) from a Cookie header value; '' when none is left. */
export function removeCookie(header: string, name: string): string {
  return header
    .split(COOKIE_SEPARATOR)
    .map((s) => s.trim())
    .filter((s) => s !== '' && s.slice(0, s.indexOf('=') < 0 ? s.length : s.indexOf('=')).trim() !== name)
    .join('; ');
}
