/**
 * A small browser for login tests: a cookie jar (RFC 6265 host-only cookies, Path, Max-Age),
 * requests to the app host answered by real gRPC Checks (what Envoy would do with the
 * answer: follow a 302 from a denied_response, apply Set-Cookie from a deny or an allow),
 * and plain HTTP to the identity provider, following redirects across both.
 */
import type { CheckResponseObject } from '../../src/respond/respond.js';
import { httpRequest } from './server.js';

interface Cookie {
  name: string;
  value: string;
  host: string;
  path: string;
  expires: number;
}

export class CookieJar {
  private readonly cookies = new Map<string, Cookie>();

  set(host: string, line: string, now = Date.now()): void {
    const [pair, ...attrs] = line.split(';');
    const eq = pair!.indexOf('=');
    const name = pair!.slice(0, eq).trim();
    const value = pair!.slice(eq + 1).trim();
    let path = '/';
    let expires = Infinity;
    for (const a of attrs) {
      const [k, v = ''] = a.trim().split('=');
      const key = k!.toLowerCase();
      if (key === 'path') path = v;
      else if (key === 'max-age') expires = now + Number(v) * 1000;
      else if (key === 'expires' && expires === Infinity) expires = Date.parse(v);
    }
    const id = `${host}|${path}|${name}`;
    if (expires <= now) this.cookies.delete(id);
    else this.cookies.set(id, { name, value, host, path, expires });
  }

  header(host: string, path: string): string | undefined {
    const out: string[] = [];
    for (const c of this.cookies.values()) {
      if (c.host !== host || c.expires <= Date.now()) continue;
      if (path === c.path || path.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`)) out.push(`${c.name}=${c.value}`);
    }
    return out.length ? out.join('; ') : undefined;
  }

  names(host: string): string[] {
    return [...this.cookies.values()].filter((c) => c.host === host).map((c) => c.name);
  }

  get(host: string, name: string): string | undefined {
    for (const c of this.cookies.values()) if (c.host === host && c.name === name) return c.value;
    return undefined;
  }

  delete(host: string, name: string): void {
    for (const [k, c] of this.cookies) if (c.host === host && c.name === name) this.cookies.delete(k);
  }

  snapshot(): CookieJar {
    const j = new CookieJar();
    for (const [k, c] of this.cookies) j.cookies.set(k, { ...c });
    return j;
  }
}

export type Checker = (req: ReturnType<typeof httpRequest>) => Promise<CheckResponseObject>;

export interface Step {
  url: string;
  /** A Check answer (app host) or an HTTP status (IdP). */
  check?: CheckResponseObject;
  status?: number;
  body?: string;
}

export const BROWSER_HEADERS = { accept: 'text/html,application/xhtml+xml;q=0.9,*/*;q=0.8', 'sec-fetch-mode': 'navigate', 'sec-fetch-site': 'none' };

export function headerValues(resp: CheckResponseObject, name: string): string[] {
  const hs = (resp.denied_response ? resp.denied_response.headers : resp.ok_response?.response_headers_to_add) ?? [];
  return hs.filter((h) => h.header.key.toLowerCase() === name).map((h) => h.header.value);
}

export class Browser {
  readonly jar = new CookieJar();
  constructor(
    readonly appHost: string,
    private check: Checker,
  ) {}

  /** Send app requests to another server (another replica). */
  useChecker(c: Checker): void {
    this.check = c;
  }

  /** One app request as a Check; Set-Cookie from the answer lands in the jar. */
  async app(pathAndQuery: string, headers: Record<string, string> = BROWSER_HEADERS, method = 'GET'): Promise<CheckResponseObject> {
    const path = pathAndQuery.split('?')[0]!;
    const cookie = this.jar.header(this.appHost, path);
    const resp = await this.check(httpRequest({ method, host: this.appHost, path: pathAndQuery, headers: { ...headers, ...(cookie ? { cookie } : {}) } }));
    for (const line of headerValues(resp, 'set-cookie')) this.jar.set(this.appHost, line);
    return resp;
  }

  /** One IdP request (no redirect following); Set-Cookie lands in the jar. */
  async idp(url: string, init: { method?: string; body?: string } = {}): Promise<{ status: number; location?: string; body: string }> {
    const u = new URL(url);
    const cookie = this.jar.header(u.host, u.pathname);
    const res = await fetch(u, {
      method: init.method ?? 'GET',
      redirect: 'manual',
      headers: { ...(cookie ? { cookie } : {}), ...(init.body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
      ...(init.body ? { body: init.body } : {}),
    });
    for (const line of res.headers.getSetCookie()) this.jar.set(u.host, line);
    const location = res.headers.get('location') ?? undefined;
    return { status: res.status, ...(location ? { location: new URL(location, u).href } : {}), body: await res.text() };
  }

  /**
   * Follow redirects from `url` through the IdP until a URL on the app host, and return it
   * without requesting it (the test sends that Check itself). Throws after 20 hops.
   */
  async followToApp(url: string): Promise<string> {
    let next = url;
    for (let i = 0; i < 20; i++) {
      const u = new URL(next);
      if (u.host === this.appHost) return next;
      const r = await this.idp(next);
      if (!r.location) throw new Error(`IdP answered ${r.status} without a redirect at ${u.pathname}: ${r.body.slice(0, 200)}`);
      next = r.location;
    }
    throw new Error('too many redirects');
  }
}

export function locationOf(resp: CheckResponseObject): string | undefined {
  return headerValues(resp, 'location')[0];
}

export function pathOf(url: string): string {
  const u = new URL(url);
  return `${u.pathname}${u.search}`;
}
