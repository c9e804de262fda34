/**
 * An HTTP authorization request -> the RawCheckRequest a gRPC Check decodes, so one pipeline
 * evaluates both transports. Per proxy convention (checked against each proxy's source):
 *   envoy    Envoy ext_authz `http_service` / Istio `envoyExtAuthzHttp`: the authorization
 *            request IS the original request: its method, `:path` after `path_prefix`, Host =
 *            the original `:authority`, the allowed headers and, with `with_request_body`, the body.
 *   nginx    `auth_request` subrequest: always GET, the client's headers inherited; the original
 *            URI and method come in `X-Original-URI` / `X-Original-Method` (configurable).
 *   traefik  `ForwardAuth`: GET (unless preserveRequestMethod) with X-Forwarded-Method, -Proto,
 *            -Host, -Uri and -For set by Traefik.
 * Forwarded headers (client address, original host, scheme, URI, method) are believed only from
 * a peer in `httpAuthz.trustedProxies`; a request from any other peer carrying one is refused.
 */
import type { RawCheckRequest } from '../core/context.js';
import type { ReasonCode } from '../core/reasons.js';
import { isToken } from '../core/headers.js';
import type { HttpAuthzSettings, HttpConvention } from '../config/http-authz-settings.js';
import { cidrContains, parseIp } from '../match/ip.js';

/** What the listener knows about one authorization request. */
export interface InboundRequest {
  readonly method: string;
  /** The request target as received (path and query). */
  readonly url: string;
  /** headersOf(): the end-to-end headers; the raw request's `headers` are made from them in place. */
  readonly headers: Record<string, string>;
  /** headersOf(): the authorization hop's own Host (or `:authority`). */
  readonly host: string;
  /** Socket peer address. */
  /** Socket peer address; read only when a forwarded header makes it matter. */
  peer(): string;
  /** 'HTTP/1.1' or 'HTTP/2' (of the authorization hop). */
  readonly protocol: string;
}

export type Built =
  | { readonly ok: true; readonly convention: HttpConvention; readonly raw: RawCheckRequest; readonly deadline: number | undefined }
  | { readonly ok: false; readonly convention: HttpConvention | null; readonly reason: ReasonCode; readonly status?: number; readonly message: string };

const CONVENTIONS: readonly string[] = ['envoy', 'nginx', 'traefik'];

/** Hop-by-hop headers of the authorization hop (RFC 9110 §7.6.1) and its own framing. */
const NOT_FORWARDED = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'content-length', 'host']);

/** What headersOf() keeps apart from the end-to-end headers. */
export interface HopHeaders {
  host: string;
  contentLength: string | undefined;
  transferEncoding: string | undefined;
}


function refuse(convention: HttpConvention | null, reason: ReasonCode, message: string, status?: number): Built {
  return { ok: false, convention, reason, message, status };
}

type Headers = Record<string, string>;

/**
 * The end-to-end request headers from Node's raw list (Node's req.headers object is never
 * made): lower-case names, repeated fields joined with ',' as Envoy joins them (`; ` for
 * Cookie). The authorization hop's own headers (hop-by-hop, framing, Host, HTTP/2
 * pseudo-headers) go to `hop` instead. A plain object built the same way on every request (a
 * fast-mode object for the stages' lookups); `__proto__` is not a header name it can hold.
 */
export function headersOf(raw: readonly string[], hop: HopHeaders): Headers {
  const h: Headers = {};
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    const v = raw[i + 1]!;
    if (k.charCodeAt(0) === 58 /* : */ || NOT_FORWARDED.has(k)) {
      if (k === 'host' || k === ':authority') hop.host = v;
      else if (k === 'content-length') hop.contentLength = v;
      else if (k === 'transfer-encoding') hop.transferEncoding = v;
      continue;
    }
    if (k === '__proto__') continue;
    const prev = h[k];
    h[k] = typeof prev !== 'string' || !Object.prototype.hasOwnProperty.call(h, k) ? v : `${prev}${k === 'cookie' ? '; ' : ','}${v}`;
  }
  return h;
}

const peerWords = new Uint32Array(4);

/** Is the socket peer one of the trusted proxies? (`::ffff:a.b.c.d` is its IPv4 address.) */
export function isTrustedPeer(peer: string, s: HttpAuthzSettings): boolean {
  if (s.trustedProxies.length === 0 || !peer) return false;
  const ip = peer.startsWith('::ffff:') && peer.includes('.') ? peer.slice(7) : peer;
  const v = parseIp(ip, peerWords);
  if (v === 0) return false;
  for (const c of s.trustedProxies) if (cidrContains(c, v, peerWords)) return true;
  return false;
}

/** The first forwarded header present (settings' forwardedHeaders): what only a trusted peer may send. */
function forwardedHeader(h: Headers, s: HttpAuthzSettings): string | undefined {
  const names = s.forwardedHeaders;
  // Usually none is present: one pass over the request's few headers says so.
  let any = false;
  for (const k in h) {
    if (names.has(k)) {
      any = true;
      break;
    }
  }
  if (!any) return undefined;
  for (const n of names) if (Object.prototype.hasOwnProperty.call(h, n)) return n;
  return undefined;
}

const NEEDS_NORMALIZING = /\/\.|\/\/|%2e/i;

/**
 * RFC 3986 §5.2.4 dot-segment removal and merged slashes on the path (the query is kept
 * as is), as our Envoy config asks of Envoy (`normalize_path`, `merge_slashes`): nginx's
 * `$request_uri` and Traefik's X-Forwarded-Uri are the raw client target.
 */
export function normalizePath(target: string): string {
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  if (!NEEDS_NORMALIZING.test(path)) return target;
  const out: string[] = [];
  const segs = path.split('/');
  for (let i = 1; i < segs.length; i++) {
    const seg = segs[i]!;
    const low = seg.toLowerCase();
    const last = i === segs.length - 1;
    if (low === '.' || low === '%2e') {
      if (last) out.push('');
    } else if (low === '..' || low === '.%2e' || low === '%2e.' || low === '%2e%2e') {
      out.pop();
      if (last) out.push('');
    } else if (seg === '' && !last) {
      // merged slash
    } else out.push(seg);
  }
  return `/${out.join('/')}${q < 0 ? '' : target.slice(q)}`;
}

/** Path and query of an original URI: origin-form, or the path of an absolute URI. */
function originForm(uri: string): string | undefined {
  if (uri.startsWith('/')) return uri;
  if (/^https?:\/\//i.test(uri)) {
    try {
      const u = new URL(uri);
      return `${u.pathname}${u.search}`;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** `name;k=v;k2=v2` parameters of the convention segment -> context_extensions. */
function parseParams(seg: string): Record<string, string> | string {
  const out: Record<string, string> = {};
  for (const p of seg.split(';').slice(1)) {
    const eq = p.indexOf('=');
    if (eq <= 0) return `bad path parameter ${JSON.stringify(p.slice(0, 64))} (expected key=value)`;
    try {
      out[decodeURIComponent(p.slice(0, eq))] = decodeURIComponent(p.slice(eq + 1));
    } catch {
      return `bad percent-encoding in path parameter ${JSON.stringify(p.slice(0, 64))}`;
    }
  }
  return out;
}

const NO_EXTENSIONS: Readonly<Record<string, string>> = Object.freeze({});
interface Route {
  readonly convention: HttpConvention;
  readonly ext: Readonly<Record<string, string>>;
}
const SEGMENTS = new Map<string, Route>();
let lastSegment = '';
let lastRoute: Route | undefined;

/** The convention of a request target, its context extensions and what follows the prefix. */
export function route(url: string, s: HttpAuthzSettings): { convention: HttpConvention; ext: Readonly<Record<string, string>>; rest: string } | string | null {
  if (s.mode !== 'auto') return { convention: s.mode, ext: NO_EXTENSIONS, rest: url };
  if (!url.startsWith('/')) return null;
  let end = url.length;
  for (let i = 1; i < url.length; i++) {
    const c = url.charCodeAt(i);
    if (c === 47 /* / */ || c === 63 /* ? */) {
      end = i;
      break;
    }
  }
  // A proxy sends one prefix over and over: the last one is compared in place, not sliced and hashed.
  let known = end - 1 === lastSegment.length && url.startsWith(lastSegment, 1) ? lastRoute : undefined;
  if (known !== undefined) return { convention: known.convention, ext: known.ext, rest: url.slice(end) };
  const seg = url.slice(1, end);
  known = SEGMENTS.get(seg);
  if (known === undefined) {
    const semi = seg.indexOf(';');
    const name = semi < 0 ? seg : seg.slice(0, semi);
    if (!CONVENTIONS.includes(name)) return null;
    const ext = semi < 0 ? NO_EXTENSIONS : parseParams(seg);
    if (typeof ext === 'string') return ext;
    // A proxy sends a handful of distinct prefixes: remember them (bounded), parse each once.
    if (SEGMENTS.size >= 256) SEGMENTS.clear();
    SEGMENTS.set(seg, (known = { convention: name as HttpConvention, ext: Object.freeze(ext) }));
  }
  lastSegment = seg;
  lastRoute = known;
  return { convention: known.convention, ext: known.ext, rest: url.slice(end) };
}

/** The client address: the last X-Forwarded-For entry (what the proxy appended), else X-Real-IP. */
function clientAddress(h: Headers): string {
  const xff = (h['x-forwarded-for']);
  let ip = '';
  if (xff) {
    const c = xff.lastIndexOf(',');
    ip = (c < 0 ? xff : xff.slice(c + 1)).trim();
  } else ip = (h['x-real-ip'])?.trim() ?? '';
  // `1.2.3.4:5678` and `[v6]:port` forms carry a port
  if (ip.startsWith('[')) return ip.slice(1, ip.indexOf(']') > 0 ? ip.indexOf(']') : undefined);
  const colon = ip.indexOf(':');
  return colon > 0 && ip.indexOf(':', colon + 1) < 0 ? ip.slice(0, colon) : ip;
}

function firstOf(s: string | undefined): string | undefined {
  if (s === undefined) return undefined;
  const c = s.indexOf(',');
  return (c < 0 ? s : s.slice(0, c)).trim();
}

/** The caller's own timeout (Envoy's router sends x-envoy-expected-rq-timeout-ms upstream). */
function deadlineOf(h: Headers, now: number): number | undefined {
  const v = (h['x-envoy-expected-rq-timeout-ms']);
  if (!v) return undefined;
  const ms = Number(v);
  return Number.isFinite(ms) && ms > 0 ? now + ms : undefined;
}

/**
 * Build the RawCheckRequest of one authorization request, or the reason to refuse it.
 * `body` is the forwarded request body, when the proxy sent one: passed as `raw_body` bytes
 * (the stages decode and validate it, e.g. an MCP JSON-RPC message).
 */
export function buildCheckRequest(inb: InboundRequest, s: HttpAuthzSettings, now: number, body?: Uint8Array): Built {
  const r = route(inb.url, s);
  if (r === null) return refuse(null, 'ERR_BAD_REQUEST', `no proxy convention at ${JSON.stringify(inb.url.slice(0, 64))} (expected /envoy, /nginx or /traefik)`, 404);
  if (typeof r === 'string') return refuse(null, 'ERR_BAD_REQUEST', r);
  const { convention } = r;
  const h = inb.headers;
  // Only forwarded headers need a trusted peer: without any, there is nothing to believe.
  const f = forwardedHeader(h, s);
  const peer = f ? inb.peer() : '';
  const trusted = f !== undefined && isTrustedPeer(peer, s);
  if (f && !trusted) return refuse(convention, 'ERR_UNTRUSTED_PROXY', `${f} sent by ${peer || 'an unknown peer'}, which is not in httpAuthz.trustedProxies`);

  let method: string;
  let target: string | undefined;
  let host: string;
  if (convention === 'envoy') {
    method = inb.method;
    target = r.rest === '' ? '/' : r.rest.startsWith('?') ? `/${r.rest}` : r.rest;
    host = inb.host;
  } else {
    const uriHeader = convention === 'nginx' ? s.nginx.uriHeader : 'x-forwarded-uri';
    const methodHeader = convention === 'nginx' ? s.nginx.methodHeader : 'x-forwarded-method';
    const uri = (h[uriHeader]);
    const m = (h[methodHeader]);
    if (uri === undefined) return refuse(convention, 'ERR_BAD_REQUEST', `${convention}: the original URI header ${uriHeader} is missing`);
    if (m === undefined) return refuse(convention, 'ERR_BAD_REQUEST', `${convention}: the original method header ${methodHeader} is missing`);
    method = m.trim();
    target = originForm(uri.trim());
    host = firstOf(h['x-forwarded-host']) ?? inb.host;
  }
  if (!isToken(method)) return refuse(convention, 'ERR_BAD_REQUEST', `${convention}: invalid original method`);
  if (target === undefined || !target.startsWith('/')) return refuse(convention, 'ERR_BAD_REQUEST', `${convention}: the original URI is not a path`);
  const path = normalizePath(target);

  // The raw request's headers: the end-to-end ones, plus the original request's pseudo-headers.
  const headers = h;
  headers[':method'] = method;
  headers[':path'] = path;
  headers[':authority'] = host;
  const scheme = (trusted && firstOf(h['x-forwarded-proto'])) || 'http';
  const source = trusted ? clientAddress(h) : '';
  const http: NonNullable<NonNullable<NonNullable<RawCheckRequest['attributes']>['request']>['http']> = {
    method,
    path,
    host,
    scheme,
    protocol: inb.protocol,
    headers,
  };
  if (body !== undefined && body.length > 0) http.raw_body = body;
  return {
    ok: true,
    convention,
    deadline: deadlineOf(h, now),
    raw: {
      attributes: {
        source: source ? { address: { socket_address: { address: source, port_value: 0 } } } : null,
        request: { http },
        context_extensions: r.ext,
      },
    },
  };
}
