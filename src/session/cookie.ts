/**
 * Set-Cookie lines and chunking. A cookie is limited to about 4096 bytes (RFC 6265 §6.1
 * asks browsers for at least that, name, value and attributes together); a sealed session
 * with an id token, an access token and a refresh token is often larger, so it is split into
 * `<name>_0`, `<name>_1`, ... (as oauth2-proxy does) when its Set-Cookie line would exceed
 * MAX_SET_COOKIE_BYTES, and joined again on read. Session cookies are always HttpOnly.
 */

export type SameSite = 'Lax' | 'Strict' | 'None';

export interface CookieOptions {
  readonly name: string;
  readonly path: string;
  readonly domain?: string;
  readonly secure: boolean;
  readonly sameSite: SameSite;
  /** Max-Age in seconds; undefined = a browser-session cookie. */
  readonly maxAgeS?: number;
}

/** Leeway below the 4096-byte browser limit for the whole Set-Cookie string (oauth2-proxy uses 4000). */
export const MAX_SET_COOKIE_BYTES = 4000;
/** At most this many chunks; a larger session belongs in the Redis store. */
export const MAX_CHUNKS = 8;

function attributes(o: CookieOptions, maxAgeS: number | undefined): string {
  let a = `; Path=${o.path}`;
  if (o.domain) a += `; Domain=${o.domain}`;
  if (maxAgeS !== undefined) a += `; Max-Age=${Math.max(0, Math.floor(maxAgeS))}`;
  if (maxAgeS === 0) a += '; Expires=Thu, 01 Jan 1970 00:00:00 GMT';
  a += '; HttpOnly';
  if (o.secure) a += '; Secure';
  a += `; SameSite=${o.sameSite}`;
  return a;
}

export function setCookie(name: string, value: string, o: CookieOptions, maxAgeS: number | undefined = o.maxAgeS): string {
  return `${name}=${value}${attributes(o, maxAgeS)}`;
}

/** A Set-Cookie line that deletes `name` (same Path/Domain as when it was set). */
export function clearCookie(name: string, o: CookieOptions): string {
  return setCookie(name, '', o, 0);
}

export function chunkName(name: string, i: number): string {
  return `${name}_${i}`;
}

/**
 * The Set-Cookie lines that carry `value` under `name`: one line when it fits, else chunks.
 * `present` reads the request's cookies, so stale chunks (or the unchunked form) the browser
 * still holds are deleted in the same answer. Returns null when even MAX_CHUNKS do not fit.
 */
export function writeChunked(value: string, o: CookieOptions, present: (name: string) => string | undefined, maxAgeS = o.maxAgeS): string[] | null {
  const single = setCookie(o.name, value, o, maxAgeS);
  const out: string[] = [];
  if (single.length <= MAX_SET_COOKIE_BYTES) {
    out.push(single);
    for (let i = 0; i < MAX_CHUNKS; i++) if (present(chunkName(o.name, i)) !== undefined) out.push(clearCookie(chunkName(o.name, i), o));
    return out;
  }
  const overhead = setCookie(chunkName(o.name, MAX_CHUNKS), '', o, maxAgeS).length;
  const size = MAX_SET_COOKIE_BYTES - overhead;
  const n = Math.ceil(value.length / size);
  if (n > MAX_CHUNKS) return null;
  for (let i = 0; i < n; i++) out.push(setCookie(chunkName(o.name, i), value.slice(i * size, (i + 1) * size), o, maxAgeS));
  for (let i = n; i < MAX_CHUNKS; i++) if (present(chunkName(o.name, i)) !== undefined) out.push(clearCookie(chunkName(o.name, i), o));
  if (present(o.name) !== undefined) out.push(clearCookie(o.name, o));
  return out;
}

/** The value written by writeChunked, read back (undefined when absent). */
export function readChunked(name: string, get: (name: string) => string | undefined): string | undefined {
  const whole = get(name);
  if (whole !== undefined && whole !== '') return whole;
  let v = '';
  for (let i = 0; i < MAX_CHUNKS; i++) {
    const c = get(chunkName(name, i));
    if (c === undefined || c === '') break;
    v += c;
  }
  return v === '' ? undefined : v;
}

/** Delete every form of `name` the request carries (whole and chunks). */
export function clearChunked(o: CookieOptions, present: (name: string) => string | undefined): string[] {
  const out: string[] = [];
  if (present(o.name) !== undefined) out.push(clearCookie(o.name, o));
  for (let i = 0; i < MAX_CHUNKS; i++) if (present(chunkName(o.name, i)) !== undefined) out.push(clearCookie(chunkName(o.name, i), o));
  return out;
}

/** Every cookie name a chunked value may use (to strip them from the upstream Cookie header). */
export function chunkedNames(name: string): string[] {
  const out = [name];
  for (let i = 0; i < MAX_CHUNKS; i++) out.push(chunkName(name, i));
  return out;
}
