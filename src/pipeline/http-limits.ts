/**
 * `validate` warnings for configs that rely on what the HTTP authorization transport
 * (Settings.httpAuthz) cannot do as the gRPC CheckResponse does (docs/http-transport.md):
 *   - a token read from the query string cannot be removed upstream: such requests are refused
 *     over HTTP (ERR_TRANSPORT_UNSUPPORTED);
 *   - nginx and Traefik change a request header only when the proxy copies it from the answer,
 *     so every header the config sets or removes must be in httpAuthz.managedHeaders (and in the
 *     proxy's list);
 *   - an HTTP authorization request carries no client certificate, destination address or SNI;
 *   - a deny cannot be a 2xx answer (every proxy takes a 2xx as an allow): an MCPServer's
 *     JSON-RPC refusals (HTTP 200) go out as 403.
 * Warnings, not errors: the same config also serves gRPC, where all of it works.
 */
import type { KindDocument } from '../config/kinds.js';
import type { Settings } from '../config/settings.js';
import type { ExchangeConfig } from '../exchange/compile.js';

type Y = Record<string, unknown>;

const obj = (v: unknown): Y => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Y) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const names = (v: unknown, key: string): string[] => arr(v).map((x) => (typeof x === 'string' ? x : String(obj(x)[key] ?? ''))).filter(Boolean);

/** Source/destination facts an HTTP authorization request does not have. */
const PEER_FIELDS = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'serviceAccounts', 'notServiceAccounts'];
const PEER_KEYS = new Set(['source.principal', 'source.namespace', 'source.serviceAccount', 'source.trustDomain', 'destination.ip', 'destination.port', 'connection.sni']);

function quoted(list: readonly string[]): string {
  return list.map((n) => JSON.stringify(n)).join(', ');
}

export function checkHttpTransport(settings: Settings, docs: readonly KindDocument[], exchange: ExchangeConfig): void {
  const h = settings.httpAuthz;
  if (!h) return;
  const replacing = h.mode === 'auto' || h.mode === 'nginx' || h.mode === 'traefik';
  const managed = new Set(h.managedHeaders);
  const unmanaged = (k: KindDocument, path: (string | number)[], touched: string[]) => {
    const miss = [...new Set(touched.map((x) => x.toLowerCase()))].filter((x) => !managed.has(x));
    if (!replacing || miss.length === 0) return;
    k.v.warn(path, `over the nginx and Traefik conventions of Settings.httpAuthz a request header changes only when the proxy copies it from the answer: add ${quoted(miss)} to httpAuthz.managedHeaders and to the proxy's list (nginx auth_request_set + proxy_set_header, Traefik authResponseHeaders)`);
  };

  for (const k of docs) {
    if (k.kind === 'RequestAuthentication') {
      arr(obj(k.spec)['jwtRules']).forEach((raw, i) => {
        const r = obj(raw);
        const headers = names(r['fromHeaders'], 'name');
        const params = names(r['fromParams'], '');
        const cookies = names(r['fromCookies'], '');
        const defaults = headers.length + params.length + cookies.length === 0;
        const forward = r['forwardOriginalToken'] === true;
        const query = defaults ? ['access_token'] : params;
        if (query.length > 0 && !forward) {
          k.v.warn(['spec', 'jwtRules', i, ...(defaults ? [] : ['fromParams'])], `over the HTTP authorization transport (Settings.httpAuthz) a token in query parameter ${quoted(query)} cannot be removed upstream: such requests are refused (ERR_TRANSPORT_UNSUPPORTED); list fromHeaders${defaults ? ' (e.g. Authorization with prefix "Bearer ")' : ''} to take tokens from headers only`);
        }
        const touched = [
          ...(forward ? [] : defaults ? ['authorization'] : headers),
          ...(cookies.length && !forward ? ['cookie'] : []),
          ...names(r['outputClaimToHeaders'], 'header'),
          ...(typeof r['outputPayloadToHeader'] === 'string' ? [r['outputPayloadToHeader']] : []),
        ];
        unmanaged(k, ['spec', 'jwtRules', i], touched);
      });
    } else if (k.kind === 'MCPServer' && obj(k.spec)['policyDenial'] !== 'Forbidden') {
      k.v.warn(['spec', 'policyDenial'], 'over the HTTP authorization transport (Settings.httpAuthz) a refusal cannot be a JSON-RPC error with HTTP 200 (every proxy takes a 2xx as an allow): it is sent as 403; set policyDenial: Forbidden for MCP servers behind an HTTP ext_authz proxy');
    } else if (k.kind === 'AuthorizationPolicy') {
      const used = new Set<string>();
      for (const rule of arr(obj(k.spec)['rules'])) {
        for (const f of arr(obj(rule)['from'])) for (const field of PEER_FIELDS) if (obj(obj(f)['source'])[field] !== undefined) used.add(`source.${field}`);
        for (const t of arr(obj(rule)['to'])) for (const field of ['ports', 'notPorts']) if (obj(obj(t)['operation'])[field] !== undefined) used.add(`operation.${field}`);
        for (const w of arr(obj(rule)['when'])) if (PEER_KEYS.has(String(obj(w)['key']))) used.add(`when ${String(obj(w)['key'])}`);
      }
      if (used.size > 0) {
        k.v.warn(['spec', 'rules'], `an HTTP authorization request (Settings.httpAuthz) carries no client certificate, destination address or SNI: ${[...used].join(', ')} never match${used.size === 1 ? 'es' : ''} over HTTP (a not-field always does); use the gRPC transport for these policies`);
      }
    }
  }
  if (!replacing) return;
  for (const p of exchange.policies) {
    const k = docs.find((d) => d.kind === 'TokenExchangePolicy' && d.ref === p.ref);
    if (k) unmanaged(k, ['spec', 'upstream'], [p.upstream.header, ...(p.upstream.forwardActorToken ? [p.upstream.actorHeader, ...p.upstream.stripForwarding] : p.upstream.strip)]);
  }
}
