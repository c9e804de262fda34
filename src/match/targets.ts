/**
 * Token-endpoint targets (RFC 8693 `audience`, RFC 8707 `resource`) against the globs a client
 * may request. A plain glob lets `*` cross URL structure: `https://mcp-*.example.com` would
 * match `https://mcp-x.evil.test/.example.com` (the `*` eats `x.evil.test/`) and
 * `https://mcp-@evil.test#.example.com` (userinfo and fragment). So:
 *
 * - A target with white space or a control character is refused outright (invalid_target):
 *   it would be minted into `aud` as is.
 * - A pattern written as an absolute URL (`scheme://host[:port][/path]`) matches only a target
 *   that is an absolute URL in canonical form (as WHATWG URL serializes it: lower-case host,
 *   no default port, no `..`, no `\`) without userinfo, query or fragment; scheme and port
 *   compare equal, the host label by label (`*` stays within one label), the path segment by
 *   segment (`*` within one segment; a trailing `/*` covers any path below).
 * - Any other pattern is a name (`mcp-*`, `urn:example:api`): its `*` matches only unreserved
 *   URI characters (letters, digits, `-`, `.`, `_`, `~`), never `/`, `:`, `@`, `?` or `#`.
 * - `*` alone matches any valid target.
 */

const SCHEME_URL = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#@\s]*)(\/[^?#\s]*)?$/;
const UNSAFE = /[\s\u0000-\u001f\u007f-\u009f]/;
const NAME_STAR = '[A-Za-z0-9._~-]*';

/** A target that may be minted into a token at all: no white space, no control characters. */
export function isValidTarget(t: string): boolean {
  return t.length > 0 && t.length <= 2048 && !UNSAFE.test(t);
}

function globRe(pattern: string, star: string): RegExp {
  return new RegExp(`^${pattern.split('*').map(escapeRe).join(star)}$`);
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

const DEFAULT_PORTS: Record<string, string> = { 'http:': '80', 'https:': '443', 'ws:': '80', 'wss:': '443', 'ftp:': '21' };

interface UrlPattern {
  readonly protocol: string;
  readonly labels: readonly RegExp[];
  readonly port: string;
  /** Segments of the path after the first `/` (none: the root only). */
  readonly segments: readonly RegExp[];
  /** The path ended in `/*`: any path below the segments matches too. */
  readonly below: boolean;
}

function parseUrlPattern(p: string): UrlPattern | string {
  const m = SCHEME_URL.exec(p);
  if (!m) return 'is not scheme://host[:port][/path] (no userinfo, query or fragment)';
  const protocol = `${m[1]!.toLowerCase()}:`;
  let hostPort = m[2]!;
  let port = '';
  const colon = hostPort.lastIndexOf(':');
  if (colon >= 0 && !hostPort.endsWith(']')) {
    port = hostPort.slice(colon + 1);
    hostPort = hostPort.slice(0, colon);
    if (!/^\d{1,5}$/.test(port)) return `has an invalid port ${JSON.stringify(port)}`;
    port = String(Number(port));
    if (DEFAULT_PORTS[protocol] === port) port = '';
  }
  if (hostPort === '') return 'has no host';
  const labels = hostPort.toLowerCase().split('.');
  if (labels.some((l) => l === '')) return 'has an empty host label';
  let path = m[3] ?? '';
  let below = false;
  if (path.endsWith('/*')) {
    below = true;
    path = path.slice(0, -2);
  }
  const segments = path === '' || path === '/' ? [] : path.slice(1).split('/').map((s) => globRe(s, '[^/]*'));
  return { protocol, labels: labels.map((l) => globRe(l, '[a-z0-9_-]*')), port, segments, below };
}

function canonicalUrl(t: string): URL | null {
  let u: URL;
  try {
    u = new URL(t);
  } catch {
    return null;
  }
  if (u.username || u.password || u.search || u.hash || t.includes('#') || t.includes('?')) return null;
  // Canonical form only: what the URL serializer writes (with or without the root `/`).
  if (u.href !== t && !(u.href === `${t}/` && u.pathname === '/')) return null;
  return u;
}

function matchUrl(p: UrlPattern, u: URL): boolean {
  if (u.protocol !== p.protocol || u.port !== p.port) return false;
  const labels = u.hostname.split('.');
  if (labels.length !== p.labels.length) return false;
  for (let i = 0; i < labels.length; i++) if (!p.labels[i]!.test(labels[i]!)) return false;
  const path = u.pathname === '/' ? '' : u.pathname;
  const segs = path === '' ? [] : path.slice(1).split('/');
  if (segs.length < p.segments.length || (!p.below && segs.length !== p.segments.length)) return false;
  for (let i = 0; i < p.segments.length; i++) if (!p.segments[i]!.test(segs[i]!)) return false;
  return true;
}

/** One allowed-target pattern. */
export class TargetPattern {
  private readonly url: UrlPattern | null;
  private readonly name: RegExp | null;
  /** Why the pattern is unusable (a config error), or null. */
  readonly error: string | null;

  constructor(readonly source: string) {
    this.url = null;
    this.name = null;
    this.error = null;
    if (source === '*') return;
    if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(source)) {
      const p = parseUrlPattern(source);
      if (typeof p === 'string') this.error = `the URL pattern ${p}`;
      else this.url = p;
    } else {
      if (UNSAFE.test(source)) this.error = 'has white space or a control character';
      this.name = globRe(source, NAME_STAR);
    }
  }

  test(t: string): boolean {
    if (this.error !== null || !isValidTarget(t)) return false;
    if (this.url) {
      const u = canonicalUrl(t);
      return u !== null && matchUrl(this.url, u);
    }
    if (this.name) return this.name.test(t);
    return true; // `*`
  }
}

/** Patterns OR'ed together. */
export class TargetSet {
  readonly patterns: readonly TargetPattern[];
  constructor(readonly sources: readonly string[]) {
    this.patterns = sources.map((s) => new TargetPattern(s));
  }
  test(t: string): boolean {
    for (const p of this.patterns) if (p.test(t)) return true;
    return false;
  }
}
