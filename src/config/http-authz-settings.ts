/**
 * `Settings.httpAuthz`: the HTTP authorization listener (Envoy `http_service`, Istio
 * `envoyExtAuthzHttp`, nginx `auth_request`, Traefik `ForwardAuth`). The block is optional;
 * the listener runs when `address` (or `serve --http-authz-address`) is set.
 */
import { isValidHeaderName } from '../core/headers.js';
import { parseCidr, type Cidr } from '../match/ip.js';
import { bool, list, num, obj, str, type Schema, type ValidationContext } from './schema.js';
import type { Path } from './issues.js';

/** How an authorization request's first path segment picks its proxy convention. */
export type HttpAuthzMode = 'auto' | 'envoy' | 'nginx' | 'traefik';
export type HttpConvention = Exclude<HttpAuthzMode, 'auto'>;

export interface HttpAuthzSettings {
  /** HOST:PORT of the listener; '' = only when `--http-authz-address` is given. Read at start-up. */
  readonly address: string;
  /** `auto`: `/envoy`, `/nginx`, `/traefik` path prefixes; otherwise every path is that convention. */
  readonly mode: HttpAuthzMode;
  /** Peers whose forwarded headers (client address, original host/URI/method) are believed. */
  readonly trustedProxies: readonly Cidr[];
  /**
   * nginx and Traefik replace these request headers with the answer's (absent = removed), so
   * the answer always states their final upstream value (lower case).
   */
  readonly managedHeaders: readonly string[];
  /** Largest request head accepted (Node `maxHeaderSize`); read at start-up. */
  readonly maxHeaderBytes: number;
  /** Largest forwarded request body read (Envoy `with_request_body`, Traefik `forwardBody`). */
  readonly maxBodyBytes: number;
  /** nginx: headers carrying the original request URI and method (`proxy_set_header`). */
  readonly nginx: { readonly uriHeader: string; readonly methodHeader: string };
  /**
   * Derived: the request headers only a trusted proxy may send (FORWARDED_HEADERS, then the
   * nginx ones), in the order a refusal names the first one present.
   */
  readonly forwardedHeaders: ReadonlySet<string>;
  /**
   * HTTP/1.1 connections parse a strict subset of requests themselves (anything outside it goes
   * to node:http for the rest of the connection); false = node:http for every connection. Read
   * when a connection is accepted.
   */
  readonly http1FastPath: boolean;
}

/** Headers that describe the original request or its client: believed only from trusted proxies. */
export const FORWARDED_HEADERS: readonly string[] = Object.freeze([
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-uri',
  'x-forwarded-method',
  'x-forwarded-prefix',
  'x-real-ip',
  'x-original-uri',
  'x-original-url',
  'x-original-method',
]);

function forwardedSet(nginx: HttpAuthzSettings['nginx']): ReadonlySet<string> {
  return new Set([...FORWARDED_HEADERS, nginx.uriHeader, nginx.methodHeader]);
}

const DEFAULT_NGINX = Object.freeze({ uriHeader: 'x-original-uri', methodHeader: 'x-original-method' });

export const DEFAULT_HTTP_AUTHZ: HttpAuthzSettings = Object.freeze({
  address: '',
  mode: 'auto',
  trustedProxies: Object.freeze([]),
  managedHeaders: Object.freeze(['authorization']),
  maxHeaderBytes: 65_536,
  maxBodyBytes: 65_536,
  nginx: DEFAULT_NGINX,
  forwardedHeaders: forwardedSet(DEFAULT_NGINX),
  http1FastPath: true,
}) as HttpAuthzSettings;

interface HttpAuthzSpec {
  address?: string;
  mode?: HttpAuthzMode;
  trustedProxies?: string[];
  managedHeaders?: string[];
  maxHeaderBytes?: number;
  maxBodyBytes?: number;
  nginx?: { uriHeader?: string; methodHeader?: string };
  http1FastPath?: boolean;
}

const HEADER = str({ nonEmpty: true });

export const httpAuthzSchema: Schema<HttpAuthzSpec> = obj<HttpAuthzSpec>({
  address: str({ pattern: /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):\d{1,5}$/, patternHint: 'must be HOST:PORT' }),
  mode: str({ enum: ['auto', 'envoy', 'nginx', 'traefik'] }),
  trustedProxies: list(str({ nonEmpty: true })),
  managedHeaders: list(HEADER),
  maxHeaderBytes: num({ int: true, min: 1024, max: 1_048_576 }),
  maxBodyBytes: num({ int: true, min: 0, max: 16_777_216 }),
  nginx: obj({ uriHeader: HEADER, methodHeader: HEADER }),
  http1FastPath: bool(),
});

function headerName(name: string, path: Path, ctx: ValidationContext): string | undefined {
  const n = name.toLowerCase();
  if (!isValidHeaderName(n) || n.startsWith(':')) {
    ctx.error(path, `invalid header name ${JSON.stringify(name)}`);
    return undefined;
  }
  return n;
}

/** The parsed block with defaults; undefined after reporting an error. */
export function finishHttpAuthz(s: HttpAuthzSpec, path: Path, ctx: ValidationContext): HttpAuthzSettings | undefined {
  const d = DEFAULT_HTTP_AUTHZ;
  let ok = true;
  const proxies: Cidr[] = [];
  (s.trustedProxies ?? []).forEach((t, i) => {
    const c = parseCidr(t);
    if (typeof c === 'string') {
      ctx.error([...path, 'trustedProxies', i], c);
      ok = false;
    } else proxies.push(c);
  });
  const managed: string[] = [];
  (s.managedHeaders ?? d.managedHeaders).forEach((h, i) => {
    const n = headerName(h, [...path, 'managedHeaders', i], ctx);
    if (n === undefined) ok = false;
    else if (!managed.includes(n)) managed.push(n);
  });
  const uriHeader = headerName(s.nginx?.uriHeader ?? d.nginx.uriHeader, [...path, 'nginx', 'uriHeader'], ctx);
  const methodHeader = headerName(s.nginx?.methodHeader ?? d.nginx.methodHeader, [...path, 'nginx', 'methodHeader'], ctx);
  if (!ok || !uriHeader || !methodHeader) return undefined;
  const nginx = Object.freeze({ uriHeader, methodHeader });
  return Object.freeze({
    address: s.address ?? d.address,
    mode: s.mode ?? d.mode,
    trustedProxies: Object.freeze(proxies),
    managedHeaders: Object.freeze(managed),
    maxHeaderBytes: s.maxHeaderBytes ?? d.maxHeaderBytes,
    maxBodyBytes: s.maxBodyBytes ?? d.maxBodyBytes,
    nginx,
    forwardedHeaders: forwardedSet(nginx),
    http1FastPath: s.http1FastPath ?? d.http1FastPath,
  });
}
