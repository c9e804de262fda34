/**
 * Which requests a CredentialValidator takes part in (`match`) or requires authentication
 * for (`required: {hosts, paths}`), and which requests are on an MCPServer (`match`): hosts
 * and paths (without the query) in Istio's string forms, compiled once into the shared
 * Istio string matcher (strings.ts).
 */
import { list, obj, str } from '../config/schema.js';
import type { RequestContext } from '../core/context.js';
import { compileString, StringSet } from './strings.js';

export interface RawRoute {
  hosts?: string[];
  paths?: string[];
}

export const routeSchema = obj<RawRoute>({ hosts: list(str({ nonEmpty: true }), { minItems: 1 }), paths: list(str({ nonEmpty: true }), { minItems: 1 }) });

/**
 * Hosts and paths (without query), Istio string forms: exact, `x*`, `*x`, `*` (non-empty).
 * Hosts are compared normalized (normalizeHost) and case-insensitively; paths exactly.
 * null: not constrained.
 */
export interface RouteMatch {
  readonly hosts: StringSet | null;
  readonly paths: StringSet | null;
}

/**
 * The host as `match` / `required` compare it: lower-cased, without a `:port` suffix
 * (`[::1]:8080` -> `::1`; an unbracketed IPv6 address is kept whole) and without one
 * trailing `.`. `MCP.example.com.:443`, `mcp.example.com:8443` and `mcp.example.com` all
 * reach the same Istio virtual host, so they must all meet the same requirement: a miss
 * here means "not required" (fail-open), unlike AuthorizationPolicy `hosts` where a miss
 * of an ALLOW rule fails closed.
 */
export function normalizeHost(host: string): string {
  let h = host.toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    if (end > 0) h = h.slice(1, end);
  } else {
    const colon = h.indexOf(':');
    // Exactly one colon: `host:port` (whatever follows, it is not part of the name). Two or
    // more: an IPv6 address without brackets, kept whole.
    if (colon >= 0 && h.indexOf(':', colon + 1) < 0) h = h.slice(0, colon);
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

/** `x` (a host pattern without its `*`) names a port: `host:…` or `[v6]:…`. */
function namesPort(x: string): boolean {
  if (x.startsWith('[')) return x.includes(']:');
  const colon = x.indexOf(':');
  return colon >= 0 && x.indexOf(':', colon + 1) < 0;
}

/**
 * A host pattern in the normalized form it is compared in. The pattern is lower-cased and
 * normalized like a request host: `mcp.example.com.`, `mcp.example.com:443` and the Istio
 * idiom `mcp.example.com:*` all mean `mcp.example.com`; `*.example.com.` and
 * `*.example.com:443` mean `*.example.com`. A port in a pattern is therefore ignored (never
 * narrows the match).
 */
function hostPattern(raw: string): string {
  const p = raw.toLowerCase();
  if (p === '*') return p;
  if (p.endsWith('*')) {
    const x = p.slice(0, -1);
    if (namesPort(x)) return normalizeHost(x);
    return `${x.startsWith('[') ? x.slice(1) : x}*`;
  }
  if (p.startsWith('*')) {
    const x = normalizeHost(p.slice(1));
    return x === '' ? '*' : `*${x}`;
  }
  return normalizeHost(p);
}

const NON_EMPTY = { star: 'nonEmpty' } as const;

export function compileRoute(r: RawRoute): RouteMatch {
  return Object.freeze({
    hosts: r.hosts ? new StringSet(r.hosts, NON_EMPTY, r.hosts.map((h) => compileString(hostPattern(h), NON_EMPTY))) : null,
    paths: r.paths ? new StringSet(r.paths, NON_EMPTY) : null,
  });
}

/** `host` is the request host already normalized (normalizeHost), computed once per request. */
export function routeMatches(m: RouteMatch, ctx: RequestContext, host: string = normalizeHost(ctx.host)): boolean {
  if (m.hosts && !m.hosts.test(host)) return false;
  if (m.paths && !m.paths.test(ctx.path)) return false;
  return true;
}
