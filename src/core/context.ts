/**
 * RequestContext: everything later stages read about one Check, built once from the
 * decoded CheckRequest. Stages never look at the raw protobuf object.
 */
import { parseCookies, parseQuery } from './query.js';

/** The decoded CheckRequest as produced by proto-loader (keepCase, defaults off). */
export interface RawPeer {
  address?: { socket_address?: { address?: string; port_value?: number } } | null;
  service?: string;
  labels?: Record<string, string>;
  principal?: string;
  certificate?: string;
}
export interface RawHeaderValue {
  key?: string;
  value?: string;
  raw_value?: Buffer | Uint8Array;
}
export interface RawCheckRequest {
  attributes?: {
    source?: RawPeer | null;
    destination?: RawPeer | null;
    request?: {
      time?: { seconds?: string | number; nanos?: number } | null;
      http?: {
        id?: string;
        method?: string;
        headers?: Record<string, string>;
        path?: string;
        host?: string;
        scheme?: string;
        query?: string;
        fragment?: string;
        protocol?: string;
        /** with_request_body: the (possibly partial) body as a string, or as bytes with pack_as_bytes. */
        body?: string;
        raw_body?: Buffer | Uint8Array;
        header_map?: { headers?: RawHeaderValue[] } | null;
      } | null;
    } | null;
    context_extensions?: Record<string, string>;
    tls_session?: { sni?: string } | null;
    metadata_context?: unknown;
    route_metadata_context?: unknown;
  } | null;
}

export interface PeerInfo {
  /** IP address (no port), '' when unknown. */
  readonly ip: string;
  readonly port: number;
  /** SPIFFE ID from the peer certificate's URI SAN, '' when none. */
  readonly principal: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface Workload {
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  /** False when no label source (context_extensions, destination.labels, Settings) gave any. */
  readonly hasLabels: boolean;
  /** context_extensions `gateway` / `service` / `backend`, '' when absent. */
  readonly gateway: string;
  readonly service: string;
  readonly backend: string;
}

export interface RequestBody {
  readonly data: string | Uint8Array;
  /** Bytes (raw_body) or UTF-16 length (body). */
  readonly size: number;
  readonly partial: boolean;
}

export interface RequestContext {
  readonly id: string;
  readonly method: string;
  /** `:authority` as sent (case preserved; matchers lower-case it). */
  readonly host: string;
  /** Path without query or fragment, as Envoy normalized it. */
  readonly path: string;
  /** Path including the query (for realms we still strip it, see respond/). */
  readonly rawPath: string;
  readonly query: string;
  readonly queryParams: ReadonlyMap<string, readonly string[]>;
  /**
   * The names of query parameter `name` as the client wrote them (`access_token`,
   * `access%5Ftoken`, `%61ccess_token` all decode to `access_token`). A removal must name
   * these: Envoy removes `query_parameters_to_remove` by the name as sent.
   */
  queryParamNamesAsSent(name: string): readonly string[];
  readonly scheme: string;
  readonly protocol: string;
  /** Lower-case header name -> value (duplicates joined by ','), from `headers` and `header_map`. */
  readonly headers: ReadonlyMap<string, string>;
  readonly source: PeerInfo;
  readonly destination: PeerInfo;
  /** Client IP after `trustedProxyHops` of x-forwarded-for (Istio `remote.ip`). */
  readonly remoteIp: string;
  readonly sni: string;
  readonly contextExtensions: Readonly<Record<string, string>>;
  readonly workload: Workload;
  /** ms since epoch at which the pipeline should answer at the latest (Infinity = none). */
  readonly deadline: number;
  /** Lazily parsed cookies. */
  cookie(name: string): string | undefined;
  /**
   * The request body Envoy buffered for the Check (`with_request_body`): `raw_body` bytes
   * (pack_as_bytes) or the `body` string, and whether Envoy marked it partial
   * (`x-envoy-auth-partial-body: true`, which Envoy sets itself and strips from clients).
   * null when the Check carried no body.
   */
  body(): RequestBody | null;
  header(name: string): string | undefined;
}

export { parseCookies, parseQuery, removeCookie } from './query.js';

const SPIFFE_NS = /^spiffe:\/\/[^/]+\/ns\/([^/]+)\/sa\/[^/]+$/;

/** Namespace from a `spiffe://<td>/ns/<ns>/sa/<sa>` principal, '' when it has none. */
export function namespaceFromPrincipal(principal: string): string {
  const m = SPIFFE_NS.exec(principal);
  return m ? m[1]! : '';
}

function stripIp(addr: string): string {
  // Envoy sends a bare IP in socket_address.address; tolerate "[v6]" forms too.
  if (addr.startsWith('[') && addr.includes(']')) return addr.slice(1, addr.indexOf(']'));
  return addr;
}

function peerInfo(p: RawPeer | null | undefined): PeerInfo {
  const sa = p?.address?.socket_address;
  return {
    ip: sa?.address ? stripIp(sa.address) : '',
    port: sa?.port_value ?? 0,
    principal: p?.principal ?? '',
    labels: p?.labels ?? {},
  };
}

/**
 * Istio `remote.ip` with N = `trustedProxyHops` (Envoy `xff_num_trusted_hops`). Envoy's
 * rule: the trusted client address is the (N+1)-th address from the right of
 * x-forwarded-for *after* the proxy appended its own downstream peer (use_remote_address,
 * as on Istio gateways and our envoy.yaml). ext_authz may receive the header with or
 * without that append, so we normalise: when the last entry is not the peer, the peer is
 * appended here. N = 0 is then the socket peer itself; too few entries fall back to the
 * peer (Envoy falls back to the downstream connection address).
 */
export function remoteIpFrom(xff: string | undefined, hops: number, peerIp: string): string {
  if (hops <= 0 || !xff) return peerIp;
  const parts = xff.split(',').map((s) => s.trim()).filter(Boolean);
  if (peerIp && parts[parts.length - 1] !== peerIp) parts.push(peerIp);
  const i = parts.length - 1 - hops;
  return i >= 0 ? parts[i]! : peerIp;
}

/** The server settings a request context reads (config/settings.ts Settings has them all). */
export interface ContextSettings {
  readonly defaultNamespace: string;
  readonly trustedProxyHops: number;
  readonly workloadLabels?: Readonly<Record<string, string>>;
}

export interface BuildOptions {
  readonly settings: ContextSettings;
  /** Absolute deadline in ms since epoch; Infinity when the caller set none. */
  readonly deadline?: number;
  readonly fallbackId?: string;
  /** The transport made every `headers` name lower case itself (the HTTP listener): no need to look. */
  readonly headersLowerCase?: boolean;
}

const NO_LABELS: Readonly<Record<string, string>> = Object.freeze({});
const NO_NAMES: readonly string[] = Object.freeze([]);
/** The parameters of an empty query: shared, read-only by type (nothing holds it as a Map). */
const NO_PARAMS: ReadonlyMap<string, readonly string[]> = new Map();
const NO_EXTENSIONS: Readonly<Record<string, string>> = Object.freeze({});

/** Object.keys(o).length > 0, without making the array (asked on every Check). */
function hasOwnKeys(o: Readonly<Record<string, string>>): boolean {
  for (const k in o) if (Object.prototype.hasOwnProperty.call(o, k)) return true;
  return false;
}

/** True when a header name has an upper-case ASCII letter (Envoy sends them lower-cased). */
function hasUpper(k: string): boolean {
  for (let i = 0; i < k.length; i++) {
    const c = k.charCodeAt(i);
    if (c >= 65 && c <= 90) return true;
  }
  return false;
}

/**
 * The RequestContext of one Check. Built on every Check, so it does the least up front:
 * method, host, path, query and the workload (every stage needs them); headers are read
 * straight from the decoded `headers` map when Envoy sent it lower-cased and without
 * `header_map` (the usual case), and the header Map, peers, remote IP, query parameters
 * and cookies are made the first time a stage asks.
 */
class CheckRequestContext implements RequestContext {
  readonly id: string;
  readonly method: string;
  readonly host: string;
  readonly path: string;
  readonly rawPath: string;
  readonly query: string;
  readonly scheme: string;
  readonly protocol: string;
  readonly sni: string;
  readonly contextExtensions: Readonly<Record<string, string>>;
  readonly workload: Workload;
  readonly deadline: number;
  /** The decoded `headers` map while it can be read directly; null once `map` is in use. */
  private plain: Record<string, string> | null;
  private map: Map<string, string> | null = null;
  private src: PeerInfo | null = null;
  private dst: PeerInfo | null = null;
  private remote: string | null = null;
  private params: Map<string, string[]> | null = null;
  private rawParamNames: Map<string, string[]> | null = null;
  private cookies: Map<string, string> | null = null;

  constructor(
    private readonly attrs: RawAttributes,
    private readonly http: RawHttp,
    private readonly settings: ContextSettings,
    opts: BuildOptions,
  ) {
    const hdrs = http.headers;
    const hm = http.header_map?.headers;
    this.plain = hdrs ?? NO_LABELS;
    if (hm && hm.length > 0) this.plain = null;
    else if (hdrs && !opts.headersLowerCase) for (const k in hdrs) if (hasUpper(k)) (this.plain = null);
    if (!this.plain) this.map = headerMap(hdrs, hm);

    this.method = http.method || this.header(':method') || '';
    this.host = http.host || this.header(':authority') || this.header('host') || '';
    const rawPath = http.path || this.header(':path') || '';
    let path = rawPath;
    let query = http.query ?? '';
    const qi = rawPath.indexOf('?');
    if (qi >= 0) {
      path = rawPath.slice(0, qi);
      if (!query) query = rawPath.slice(qi + 1);
    }
    const hi = path.indexOf('#');
    if (hi >= 0) path = path.slice(0, hi);
    const hq = query.indexOf('#');
    if (hq >= 0) query = query.slice(0, hq);
    this.rawPath = rawPath;
    this.path = path;
    this.query = query;
    // The x-request-id header is the id Envoy's access log and the upstream see; Envoy fills
    // attributes.request.http.id with its internal stream id, so that is only a fallback.
    this.id = this.header('x-request-id') || http.id || opts.fallbackId || '';
    this.scheme = http.scheme || this.header(':scheme') || 'http';
    this.protocol = http.protocol ?? '';
    this.sni = this.attrs.tls_session?.sni ?? '';
    this.deadline = opts.deadline ?? Infinity;

    const ext = this.attrs.context_extensions ?? NO_EXTENSIONS;
    this.contextExtensions = ext;
    let labels: Record<string, string> | null = null;
    for (const k in ext) {
      if (k.startsWith('label.')) (labels ??= {})[k.slice(6)] = ext[k]!;
    }
    const destLabels = this.attrs.destination?.labels;
    if (destLabels) {
      for (const k in destLabels) {
        labels ??= {};
        if (!(k in labels)) labels[k] = destLabels[k]!;
      }
    }
    let hasLabels = labels !== null;
    if (!hasLabels && settings.workloadLabels && hasOwnKeys(settings.workloadLabels)) {
      labels = { ...settings.workloadLabels };
      hasLabels = true;
    }
    this.workload = {
      namespace: ext['namespace'] || namespaceFromPrincipal(this.attrs.destination?.principal ?? '') || settings.defaultNamespace,
      labels: labels ?? NO_LABELS,
      hasLabels,
      gateway: ext['gateway'] ?? '',
      service: ext['service'] ?? '',
      backend: ext['backend'] ?? '',
    };
  }

  header(name: string): string | undefined {
    const p = this.plain;
    if (p) {
      const v = p[name];
      // own string values only (the decoded map is a plain object: no `constructor` & co.)
      return typeof v === 'string' && Object.prototype.hasOwnProperty.call(p, name) ? v : undefined;
    }
    return this.map!.get(name);
  }

  get headers(): ReadonlyMap<string, string> {
    return (this.map ??= headerMap(this.plain ?? undefined, undefined));
  }

  get source(): PeerInfo {
    return (this.src ??= peerInfo(this.attrs.source));
  }

  get destination(): PeerInfo {
    return (this.dst ??= peerInfo(this.attrs.destination));
  }

  get remoteIp(): string {
    return (this.remote ??= remoteIpFrom(this.header('x-forwarded-for'), this.settings.trustedProxyHops, this.source.ip));
  }

  get queryParams(): ReadonlyMap<string, readonly string[]> {
    // Asked on most Checks (a jwtRule reads access_token by default), and most have no query.
    if (this.query === '') return NO_PARAMS;
    if (this.params === null) {
      this.rawParamNames = new Map();
      this.params = parseQuery(this.query, this.rawParamNames);
    }
    return this.params;
  }

  queryParamNamesAsSent(name: string): readonly string[] {
    if (this.queryParams.size === 0) return NO_NAMES;
    return this.rawParamNames!.get(name) ?? NO_NAMES;
  }

  cookie(name: string): string | undefined {
    return (this.cookies ??= parseCookies(this.header('cookie'))).get(name);
  }

  body(): RequestBody | null {
    const raw = this.http.raw_body;
    const data: string | Uint8Array | undefined = raw && raw.length > 0 ? raw : this.http.body || undefined;
    if (data === undefined) return null;
    return { data, size: data.length, partial: this.header('x-envoy-auth-partial-body') === 'true' };
  }
}

/** Lower-case header name -> value, duplicates (in `headers` and `header_map`) joined by ','. */
function headerMap(hdrs: Record<string, string> | undefined, hm: readonly RawHeaderValue[] | undefined): Map<string, string> {
  const headers = new Map<string, string>();
  if (hdrs) {
    for (const k of Object.keys(hdrs)) {
      const lk = k.toLowerCase();
      const prev = headers.get(lk);
      headers.set(lk, prev === undefined ? hdrs[k]! : `${prev},${hdrs[k]}`);
    }
  }
  // encode_raw_headers: Envoy sends header_map with values in raw_value.
  if (hm) {
    for (const h of hm) {
      if (!h.key) continue;
      const lk = h.key.toLowerCase();
      const v = h.raw_value && h.raw_value.length > 0 ? Buffer.from(h.raw_value).toString('utf8') : (h.value ?? '');
      const prev = headers.get(lk);
      headers.set(lk, prev === undefined ? v : `${prev},${v}`);
    }
  }
  return headers;
}

type RawAttributes = NonNullable<RawCheckRequest['attributes']>;
type RawHttp = NonNullable<NonNullable<RawAttributes['request']>['http']>;
const NO_ATTRIBUTES: RawAttributes = Object.freeze({});
const NO_HTTP: RawHttp = Object.freeze({});

export function buildRequestContext(req: RawCheckRequest, opts: BuildOptions): RequestContext {
  const attrs = req.attributes ?? NO_ATTRIBUTES;
  return new CheckRequestContext(attrs, attrs.request?.http ?? NO_HTTP, opts.settings, opts);
}

/** Envoy bypass_cors_preflight: OPTIONS with Origin and Access-Control-Request-Method. */
export function isCorsPreflight(state: { readonly ctx: RequestContext }): boolean {
  const c = state.ctx;
  return c.method === 'OPTIONS' && !!c.header('origin') && !!c.header('access-control-request-method');
}
