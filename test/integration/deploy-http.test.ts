/**
 * The ready-made HTTP-transport configs (envoy/envoy-http.yaml, deploy/nginx, deploy/traefik,
 * deploy/istio/*-http.yaml) cannot run here (no Docker, Envoy, nginx, Traefik or cluster), so they
 * are parsed and checked against each other, the compose file, the Kubernetes manifests and the
 * service: the listener port, the convention path and its context (the same as envoy.yaml's
 * context_extensions per route), fail-closed settings, the headers each proxy sends and takes back.
 * Every checker is shown to reject broken copies.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { formatIssue } from '../../src/config/issues.js';
import { DEFAULT_HTTP_AUTHZ } from '../../src/config/http-authz-settings.js';
import { route } from '../../src/http/authz-request.js';
import { loadConfig } from '../../src/pipeline/compile.js';
import { createTestRuntime } from '../helpers/runtime.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Y = any;
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const text = (...p: string[]) => readFileSync(join(ROOT, ...p), 'utf8');
const yaml = (...p: string[]): Y => parseYaml(text(...p));
const docs = (...p: string[]): Y[] => parseAllDocuments(text(...p)).map((d) => d.toJS()).filter(Boolean);
const EXT_AUTHZ = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
const PER_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute';

function expectRejects<T>(good: T, check: (x: T) => string[], cases: [string, (x: T) => void, string][]): void {
  expect(check(good)).toEqual([]);
  for (const [label, mutate, expected] of cases) {
    const copy = structuredClone(good);
    mutate(copy);
    expect(check(copy).join('\n'), `mutation "${label}"`).toContain(expected);
  }
}

/** The context a convention path carries, as the server parses it. */
function contextOf(path: string, convention: string): Record<string, string> | string {
  const r = route(path, DEFAULT_HTTP_AUTHZ);
  if (r === null || typeof r === 'string') return `path ${JSON.stringify(path)} is no obo-authz convention path (${r})`;
  if (r.convention !== convention) return `path ${JSON.stringify(path)} is the ${r.convention} convention, not ${convention}`;
  return r.ext;
}
function sameContext(where: string, got: Record<string, string> | string, want: Record<string, string> | undefined, problems: string[]): void {
  if (typeof got === 'string') problems.push(`${where}: ${got}`);
  else if (JSON.stringify(Object.entries(got).sort()) !== JSON.stringify(Object.entries(want ?? {}).sort())) {
    problems.push(`${where}: context ${JSON.stringify(got)} != envoy.yaml's context_extensions ${JSON.stringify(want)}`);
  }
}

// ------------------------------------------------------------------ the shared facts
const compose: Y = yaml('envoy', 'docker-compose.yaml');
const grpcEnvoy: Y = yaml('envoy', 'envoy.yaml');
const hcmOf = (c: Y) => c.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
const matchKey = (m: Y) => JSON.stringify(m);
/** envoy.yaml's context_extensions by route match: what every HTTP proxy must send for that route. */
const CONTEXTS = new Map<string, Record<string, string> | undefined>(
  hcmOf(grpcEnvoy).route_config.virtual_hosts[0].routes.map((r: Y) => [matchKey(r.match), r.typed_per_filter_config?.['envoy.filters.http.ext_authz']?.check_settings?.context_extensions]),
);
const contextFor = (path: string) => [...CONTEXTS].find(([k]) => {
  const m = JSON.parse(k);
  return m.path === path || m.path_separated_prefix === path || (m.prefix === '/' && path === '/');
})?.[1];

/** The obo-authz compose service: its --http-authz-address and --http-address ports. */
function oboAuthz(c: Y): { port: number | undefined; adminPort: number | undefined; service: string } {
  const name = Object.keys(c.services).find((n) => c.services[n].build !== undefined)!;
  const args: string[] = c.services[name].command.map(String);
  const portOf = (flag: string) => {
    const i = args.indexOf(flag);
    return i < 0 ? undefined : Number(args[i + 1]!.split(':').pop());
  };
  return { service: name, port: portOf('--http-authz-address'), adminPort: portOf('--http-address') };
}
/** MCP protected-resource metadata: an authorization answer cannot carry it; the admin port serves it. */
const METADATA = '/.well-known/oauth-protected-resource';
const toAdmin = (host: string, port: number, c: Y) => host === oboAuthz(c).service && port === oboAuthz(c).adminPort;
const demoConfig = loadConfig([join(ROOT, 'envoy', 'config')], createTestRuntime());
const managed = demoConfig.ok ? demoConfig.config.settings.httpAuthz?.managedHeaders ?? [] : [];

describe('envoy/config serves the HTTP transport', () => {
  it('compiles with trusted proxies and managed headers; its only warning is the MCP refusal limit', () => {
    // The demo MCPServer keeps JSON-RPC refusals (HTTP 200) for its gRPC Envoy; over HTTP they go out as 403.
    expect(demoConfig.issues.map(formatIssue)).toEqual([expect.stringContaining('MCPServer/mcp-tools): spec.policyDenial: warning: over the HTTP authorization transport')]);
    const h = demoConfig.ok ? demoConfig.config.settings.httpAuthz : null;
    expect(h?.trustedProxies.length).toBeGreaterThan(0);
    expect(managed).toEqual(expect.arrayContaining(['authorization', 'x-actor-token']));
  });
});

// ------------------------------------------------------------------ Envoy http_service
function checkEnvoyHttp(cfg: Y, c: Y): string[] {
  const problems: string[] = [];
  const hcm = hcmOf(cfg);
  for (const k of ['normalize_path', 'merge_slashes', 'use_remote_address']) if (hcm[k] !== true) problems.push(`HCM ${k} must be true`);
  const clusters = new Map<string, Y>(cfg.static_resources.clusters.map((x: Y) => [x.name, x]));
  const filters: Y[] = hcm.http_filters;
  const authz = filters.filter((f) => f.typed_config?.['@type'] === EXT_AUTHZ);
  if (authz.length === 0) problems.push('no ext_authz filter');
  if (filters[filters.length - 1]?.name !== 'envoy.filters.http.router') problems.push('the router must be the last filter');
  const { port } = oboAuthz(c);
  for (const f of authz) {
    const t = f.typed_config;
    const w = `filter ${f.name}`;
    if (t.transport_api_version !== 'V3') problems.push(`${w}: transport_api_version must be V3`);
    if (t.failure_mode_allow !== false) problems.push(`${w}: failure_mode_allow must be false (fail closed)`);
    if (t.status_on_error?.code !== 'ServiceUnavailable') problems.push(`${w}: status_on_error must be ServiceUnavailable (obo-authz's 503s arrive as errors)`);
    if (t.grpc_service !== undefined || !t.http_service) problems.push(`${w}: must use http_service`);
    const hs = t.http_service ?? {};
    const cl = clusters.get(hs.server_uri?.cluster);
    if (!cl) problems.push(`${w}: server_uri.cluster ${hs.server_uri?.cluster} is not defined`);
    else {
      const ep = cl.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
      if (ep.address !== oboAuthz(c).service) problems.push(`${w}: cluster address ${ep.address} is not the obo-authz service`);
      if (ep.port_value !== port) problems.push(`${w}: cluster port ${ep.port_value} != --http-authz-address port ${port}`);
      if (cl.health_checks?.[0]?.http_health_check?.path !== '/readyz') problems.push(`${w}: cluster must health-check /readyz`);
    }
    if (hs.server_uri?.timeout !== '1s') problems.push(`${w}: server_uri.timeout must be 1s`);
    const allowed = (t.allowed_headers?.patterns ?? []).map((p: Y) => p.exact);
    for (const h of ['x-actor-token', 'x-forwarded-for', 'x-forwarded-proto']) if (!allowed.includes(h)) problems.push(`${w}: allowed_headers must send ${h}`);
    const up = (hs.authorization_response?.allowed_upstream_headers?.patterns ?? []).map((p: Y) => p.exact);
    for (const h of managed.filter((m) => m === 'authorization')) if (!up.includes(h)) problems.push(`${w}: allowed_upstream_headers must take ${h} from the answer`);
    const client = (hs.authorization_response?.allowed_client_headers?.patterns ?? []).map((p: Y) => p.exact);
    if (!client.includes('www-authenticate')) problems.push(`${w}: allowed_client_headers must pass www-authenticate`);
  }
  // Every route enables exactly one ext_authz filter (none for /healthz), with envoy.yaml's context.
  const names = new Set(filters.map((f) => f.name));
  for (const r of hcm.route_config.virtual_hosts[0].routes) {
    const tp = r.typed_per_filter_config ?? {};
    for (const k of Object.keys(tp)) {
      if (!names.has(k)) problems.push(`route ${matchKey(r.match)}: typed_per_filter_config ${k} names no filter`);
      if (tp[k]?.['@type'] !== PER_ROUTE) problems.push(`route ${matchKey(r.match)}: ${k} @type`);
    }
    const on = authz.filter((f) => tp[f.name]?.disabled !== true);
    if (r.match.prefix === METADATA) {
      const ep = clusters.get(r.route?.cluster)?.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
      if (on.length !== 0) problems.push(`route ${METADATA}: the metadata must not be authorized`);
      if (!ep || !toAdmin(ep.address, ep.port_value, c)) problems.push(`route ${METADATA}: must go to obo-authz's admin port (--http-address)`);
      continue;
    }
    const want = CONTEXTS.get(matchKey(r.match));
    if (!CONTEXTS.has(matchKey(r.match))) problems.push(`route ${matchKey(r.match)} is not in envoy.yaml`);
    if (want === undefined) {
      if (on.length !== 0) problems.push(`route ${matchKey(r.match)}: envoy.yaml does not authorize it, here ${on.length} filter(s) do`);
      continue;
    }
    if (on.length !== 1) {
      problems.push(`route ${matchKey(r.match)}: ${on.length} ext_authz filters enabled, expected exactly one`);
      continue;
    }
    sameContext(`route ${matchKey(r.match)}`, contextOf(`${on[0].typed_config.http_service.path_prefix}/x`, 'envoy'), want, problems);
  }
  const svc = Object.entries(c.services).find(([, s]: [string, Y]) => (s.command ?? []).includes('/etc/envoy/envoy-http.yaml'));
  if (!svc) problems.push('no compose service runs envoy-http.yaml');
  else {
    const s: Y = svc[1];
    if (!(s.volumes ?? []).some((v: string) => v.startsWith('./envoy-http.yaml:/etc/envoy/envoy-http.yaml'))) problems.push(`${svc[0]}: envoy-http.yaml is not mounted`);
    const lp = cfg.static_resources.listeners[0].address.socket_address.port_value;
    if (!(s.ports ?? []).some((p: string) => String(p).endsWith(`:${lp}`))) problems.push(`${svc[0]}: listener port ${lp} is not published`);
    if (s.depends_on?.[oboAuthz(c).service]?.condition !== 'service_healthy') problems.push(`${svc[0]}: must wait for obo-authz to be healthy`);
  }
  return problems;
}

describe('envoy/envoy-http.yaml', () => {
  const cfg = yaml('envoy', 'envoy-http.yaml');
  const f = (x: Y, name: string) => hcmOf(x).http_filters.find((y: Y) => y.name === name).typed_config;
  const check = (x: { cfg: Y; c: Y }) => checkEnvoyHttp(x.cfg, x.c);
  it('agrees with envoy.yaml, the compose file and the service; rejects broken copies', () => {
    expectRejects({ cfg, c: compose }, check, [
      ['fail open', (x) => (f(x.cfg, 'authz-mcp-tools').failure_mode_allow = true), 'failure_mode_allow must be false'],
      ['status on error', (x) => delete f(x.cfg, 'authz-default').status_on_error, 'status_on_error must be ServiceUnavailable'],
      ['grpc', (x) => (f(x.cfg, 'authz-default').grpc_service = {}), 'must use http_service'],
      ['port', (x) => (x.cfg.static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value = 9001), 'cluster port 9001 != --http-authz-address port 9004'],
      ['flag port', (x) => (x.c.services['obo-authz'].command[x.c.services['obo-authz'].command.indexOf('--http-authz-address') + 1] = '0.0.0.0:9005'), '!= --http-authz-address port 9005'],
      ['wrong context', (x) => (f(x.cfg, 'authz-mcp-tools').http_service.path_prefix = '/envoy;namespace=demo;backend=weather-api;label.app=mcp-tools'), "!= envoy.yaml's context_extensions"],
      ['no convention', (x) => (f(x.cfg, 'authz-default').http_service.path_prefix = '/authz'), 'is no obo-authz convention path'],
      ['two filters on a route', (x) => delete hcmOf(x.cfg).route_config.virtual_hosts[0].routes[2].typed_per_filter_config['authz-weather-api'], '2 ext_authz filters enabled'],
      ['health authorized', (x) => delete hcmOf(x.cfg).route_config.virtual_hosts[0].routes[0].typed_per_filter_config['authz-default'], 'envoy.yaml does not authorize it'],
      ['actor token not sent', (x) => (f(x.cfg, 'authz-mcp-tools').allowed_headers.patterns = [{ exact: 'x-forwarded-for' }, { exact: 'x-forwarded-proto' }]), 'allowed_headers must send x-actor-token'],
      ['exchanged token dropped', (x) => (f(x.cfg, 'authz-mcp-tools').http_service.authorization_response.allowed_upstream_headers.patterns = []), 'allowed_upstream_headers must take authorization'],
      ['no normalize', (x) => (hcmOf(x.cfg).normalize_path = false), 'normalize_path must be true'],
      ['not in compose', (x) => (x.c.services['envoy-http'].command = ['envoy']), 'no compose service runs envoy-http.yaml'],
      ['metadata authorized', (x) => delete hcmOf(x.cfg).route_config.virtual_hosts[0].routes[1].typed_per_filter_config['authz-default'], 'the metadata must not be authorized'],
      ['metadata elsewhere', (x) => (hcmOf(x.cfg).route_config.virtual_hosts[0].routes[1].route.cluster = 'mcp_upstream'), "must go to obo-authz's admin port"],
    ]);
  });
});

// ------------------------------------------------------------------ nginx
interface NgDirective {
  name: string;
  args: string[];
  block?: NgDirective[];
}
/** A small nginx config parser: directives, quoted arguments, nested blocks, # comments. */
function parseNginx(src: string): NgDirective[] {
  const tokens: string[] = [];
  const re = /#[^\n]*|"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|([{};])|([^\s{};"'#]+)/g;
  for (const m of src.matchAll(re)) {
    if (m[0].startsWith('#')) continue;
    tokens.push(m[1] ?? m[2] ?? m[3] ?? m[4]!);
  }
  let i = 0;
  const block = (): NgDirective[] => {
    const out: NgDirective[] = [];
    while (i < tokens.length && tokens[i] !== '}') {
      const name = tokens[i++]!;
      const args: string[] = [];
      while (tokens[i] !== ';' && tokens[i] !== '{') args.push(tokens[i++]!);
      if (tokens[i++] === '{') {
        out.push({ name, args, block: block() });
        i++;
      } else out.push({ name, args });
    }
    return out;
  };
  return block();
}
const all = (b: NgDirective[] | undefined, name: string) => (b ?? []).filter((d) => d.name === name);
const one = (b: NgDirective[] | undefined, name: string) => all(b, name)[0];

function checkNginx(conf: NgDirective[], c: Y): string[] {
  const problems: string[] = [];
  const { port, service } = oboAuthz(c);
  const ups = all(conf, 'upstream').find((u) => u.args[0] === 'obo_authz_http');
  const srv = one(ups?.block, 'server')?.args[0];
  if (srv !== `${service}:${port}`) problems.push(`upstream obo_authz_http server ${srv} != ${service}:${port}`);
  if (!one(ups?.block, 'keepalive')) problems.push('upstream obo_authz_http: no keepalive');
  const server = one(conf, 'server');
  const locs = all(server?.block, 'location');
  const authz = locs.find((l) => l.args.join(' ') === '= /_obo_authz');
  const set = (l: NgDirective | undefined, h: string) => all(l?.block, 'proxy_set_header').find((d) => d.args[0]!.toLowerCase() === h)?.args[1];
  if (!authz) problems.push('no `location = /_obo_authz`');
  else {
    if (!one(authz.block, 'internal')) problems.push('/_obo_authz must be internal');
    const pp = one(authz.block, 'proxy_pass')?.args[0] ?? '';
    if (pp !== 'http://obo_authz_http/nginx;$obo_authz_context') problems.push(`/_obo_authz proxy_pass ${pp} is not the nginx convention with the location's context`);
    const want: [string, string][] = [
      [DEFAULT_HTTP_AUTHZ.nginx.uriHeader, '$request_uri'],
      [DEFAULT_HTTP_AUTHZ.nginx.methodHeader, '$request_method'],
      ['x-forwarded-host', '$host'],
      ['x-forwarded-proto', '$scheme'],
      ['x-forwarded-for', '$remote_addr'],
      ['content-length', ''],
      ['connection', ''],
    ];
    for (const [h, v] of want) if (set(authz, h) !== v) problems.push(`/_obo_authz: proxy_set_header ${h} must be ${JSON.stringify(v)}`);
    if (one(authz.block, 'proxy_pass_request_body')?.args[0] !== 'off') problems.push('/_obo_authz: proxy_pass_request_body off');
    if (one(authz.block, 'proxy_http_version')?.args[0] !== '1.1') problems.push('/_obo_authz: proxy_http_version 1.1 (keep-alive)');
  }
  for (const l of locs) {
    if (l === authz) continue;
    const path = l.args[l.args.length - 1]!;
    if (path === METADATA) {
      const up = all(conf, 'upstream').find((u) => `http://${u.args[0]}` === one(l.block, 'proxy_pass')?.args[0]);
      const [host, port] = String(one(up?.block, 'server')?.args[0] ?? ':').split(':');
      if (one(l.block, 'auth_request')) problems.push(`location ${METADATA}: the metadata must not be authorized`);
      if (!toAdmin(host!, Number(port), c)) problems.push(`location ${METADATA}: must go to obo-authz's admin port (--http-address)`);
      continue;
    }
    const ar = one(l.block, 'auth_request')?.args[0];
    const want = contextFor(path);
    if (want === undefined) {
      if (ar) problems.push(`location ${path}: envoy.yaml does not authorize it`);
      continue;
    }
    if (ar !== '/_obo_authz') {
      problems.push(`location ${path}: no auth_request /_obo_authz`);
      continue;
    }
    const ctx = all(l.block, 'set').find((d) => d.args[0] === '$obo_authz_context')?.args[1];
    sameContext(`location ${path}`, contextOf(`/nginx;${ctx ?? ''}`, 'nginx'), want, problems);
    if (one(l.block, 'proxy_pass')) {
      for (const h of managed) {
        const v = set(l, h);
        const from = all(l.block, 'auth_request_set').find((d) => d.args[0] === v)?.args[1];
        if (from !== `$upstream_http_${h.replace(/-/g, '_')}`) problems.push(`location ${path}: managed header ${h} must be set from the answer (auth_request_set + proxy_set_header)`);
      }
    }
  }
  const svc: Y = c.services.nginx;
  if (!(svc?.volumes ?? []).some((v: string) => v.startsWith('../deploy/nginx/obo-authz.conf:'))) problems.push('compose service nginx does not mount deploy/nginx/obo-authz.conf');
  const listen = one(server?.block, 'listen')?.args[0];
  if (!(svc?.ports ?? []).some((p: string) => String(p).endsWith(`:${listen}`))) problems.push(`nginx listen ${listen} is not published`);
  return problems;
}

describe('deploy/nginx/obo-authz.conf', () => {
  const conf = parseNginx(text('deploy', 'nginx', 'obo-authz.conf'));
  const loc = (x: { conf: NgDirective[] }, p: string) => all(one(x.conf, 'server')!.block, 'location').find((l) => l.args[l.args.length - 1] === p)!;
  const check = (x: { conf: NgDirective[]; c: Y }) => checkNginx(x.conf, x.c);
  it('agrees with envoy.yaml, the compose file and the service; rejects broken copies', () => {
    expectRejects({ conf, c: compose }, check, [
      ['port', (x) => (one(all(x.conf, 'upstream')[0]!.block, 'server')!.args[0] = 'obo-authz:9001'), 'server obo-authz:9001 != obo-authz:9004'],
      ['raw uri missing', (x) => (loc(x, '/_obo_authz').block = loc(x, '/_obo_authz').block!.filter((d) => d.args[0] !== 'X-Original-URI')), 'proxy_set_header x-original-uri must be "$request_uri"'],
      ['decoded uri', (x) => (loc(x, '/_obo_authz').block!.find((d) => d.args[0] === 'X-Original-URI')!.args[1] = '$uri'), 'x-original-uri must be "$request_uri"'],
      ['body forwarded', (x) => (loc(x, '/_obo_authz').block = loc(x, '/_obo_authz').block!.filter((d) => d.name !== 'proxy_pass_request_body')), 'proxy_pass_request_body off'],
      ['convention', (x) => (one(loc(x, '/_obo_authz').block, 'proxy_pass')!.args[0] = 'http://obo_authz_http/traefik;$obo_authz_context'), 'is not the nginx convention'],
      ['context', (x) => (all(loc(x, '/mcp').block, 'set')[0]!.args[1] = 'namespace=demo;backend=weather-api;label.app=mcp-tools'), "!= envoy.yaml's context_extensions"],
      ['not authorized', (x) => (loc(x, '/api/weather').block = loc(x, '/api/weather').block!.filter((d) => d.name !== 'auth_request')), 'location /api/weather: no auth_request'],
      ['token not replaced', (x) => (loc(x, '/mcp').block = loc(x, '/mcp').block!.filter((d) => d.args[0] !== 'Authorization')), 'managed header authorization must be set from the answer'],
      ['actor token kept', (x) => (loc(x, '/mcp').block = loc(x, '/mcp').block!.filter((d) => d.args[0] !== '$obo_actor_token')), 'managed header x-actor-token'],
      ['not mounted', (x) => (x.c.services.nginx.volumes = []), 'does not mount'],
      ['metadata port', (x) => (one(all(x.conf, 'upstream').find((u) => u.args[0] === 'obo_authz_admin')!.block, 'server')!.args[0] = 'obo-authz:9004'), "must go to obo-authz's admin port"],
    ]);
  });
});

// ------------------------------------------------------------------ Traefik
function checkTraefik(d: Y, c: Y): string[] {
  const problems: string[] = [];
  const { port, service } = oboAuthz(c);
  const mws: Record<string, Y> = d.http?.middlewares ?? {};
  for (const [name, r] of Object.entries(d.http?.routers ?? {}) as [string, Y][]) {
    const fa = (r.middlewares ?? []).map((m: string) => mws[m]?.forwardAuth).filter(Boolean);
    if (String(r.rule).includes(METADATA)) {
      const url = new URL(d.http?.services?.[r.service]?.loadBalancer?.servers?.[0]?.url ?? 'http://none');
      if (fa.length !== 0) problems.push(`router ${name}: the metadata must not be authorized`);
      if (!toAdmin(url.hostname, Number(url.port), c)) problems.push(`router ${name}: must go to obo-authz's admin port (--http-address)`);
      continue;
    }
    if (fa.length !== 1) {
      problems.push(`router ${name}: ${fa.length} forwardAuth middlewares, expected one`);
      continue;
    }
    const f = fa[0];
    let url: URL | undefined;
    try {
      url = new URL(f.address);
    } catch {
      problems.push(`router ${name}: forwardAuth address ${f.address} is not a URL`);
      continue;
    }
    if (`${url.hostname}:${url.port}` !== `${service}:${port}`) problems.push(`router ${name}: forwardAuth address ${url.host} != ${service}:${port}`);
    const path = /PathPrefix\(`([^`]+?)\/?`\)|Path\(`([^`]+)`\)/.exec(r.rule);
    const p = (path?.[2] ?? path?.[1] ?? '').replace(/\/$/, '');
    sameContext(`router ${name}`, contextOf(url.pathname, 'traefik'), contextFor(p), problems);
    if (f.trustForwardHeader !== false) problems.push(`router ${name}: trustForwardHeader must be set to false (Traefik then sets X-Forwarded-* itself)`);
    const back = (f.authResponseHeaders ?? []).map((h: string) => h.toLowerCase());
    for (const h of managed) if (!back.includes(h)) problems.push(`router ${name}: authResponseHeaders must list managed header ${h}`);
    if (!(f.maxResponseBodySize > 0)) problems.push(`router ${name}: set maxResponseBodySize`);
  }
  const svc: Y = c.services.traefik;
  if (!(svc?.volumes ?? []).some((v: string) => v.startsWith('../deploy/traefik/dynamic.yaml:'))) problems.push('compose service traefik does not mount deploy/traefik/dynamic.yaml');
  return problems;
}

describe('deploy/traefik/dynamic.yaml', () => {
  const d = yaml('deploy', 'traefik', 'dynamic.yaml');
  const check = (x: { d: Y; c: Y }) => checkTraefik(x.d, x.c);
  const mw = (x: { d: Y }, n: string) => x.d.http.middlewares[n].forwardAuth;
  it('agrees with envoy.yaml, the compose file and the service; rejects broken copies', () => {
    expectRejects({ d, c: compose }, check, [
      ['port', (x) => (mw(x, 'obo-authz-mcp-tools').address = 'http://obo-authz:9002/traefik;namespace=demo;backend=mcp-tools;label.app=mcp-tools'), 'address obo-authz:9002 != obo-authz:9004'],
      ['convention', (x) => (mw(x, 'obo-authz-mcp-tools').address = 'http://obo-authz:9004/nginx;namespace=demo;backend=mcp-tools;label.app=mcp-tools'), 'not traefik'],
      ['context', (x) => (mw(x, 'obo-authz-weather-api').address = 'http://obo-authz:9004/traefik;namespace=demo'), "!= envoy.yaml's context_extensions"],
      ['trust', (x) => (mw(x, 'obo-authz-mcp-tools').trustForwardHeader = true), 'trustForwardHeader must be set to false'],
      ['unset trust', (x) => delete mw(x, 'obo-authz-mcp-tools').trustForwardHeader, 'trustForwardHeader must be set to false'],
      ['headers', (x) => (mw(x, 'obo-authz-mcp-tools').authResponseHeaders = ['Authorization']), 'managed header x-actor-token'],
      ['no auth', (x) => (x.d.http.routers.weather.middlewares = []), 'router weather: 0 forwardAuth'],
      ['not mounted', (x) => (x.c.services.traefik.volumes = []), 'does not mount'],
      ['metadata authorized', (x) => (x.d.http.routers['mcp-metadata'].middlewares = ['obo-authz-mcp-tools']), 'the metadata must not be authorized'],
    ]);
  });
});

// ------------------------------------------------------------------ Istio envoyExtAuthzHttp
function checkIstioHttp(x: { mesh: Y; policies: Y[]; shared: Y[] }): string[] {
  const problems: string[] = [];
  const svc = x.shared.find((m) => m.kind === 'Service' && m.metadata.name === 'obo-authz');
  const dep = x.shared.find((m) => m.kind === 'Deployment' && m.metadata.name === 'obo-authz');
  const container = dep?.spec.template.spec.containers.find((c: Y) => c.name === 'obo-authz');
  const args: string[] = container?.args ?? [];
  const i = args.indexOf('--http-authz-address');
  const listen = i < 0 ? undefined : Number(args[i + 1]!.split(':').pop());
  if (listen === undefined) problems.push('the shared Deployment does not start the HTTP authorization listener (--http-authz-address)');
  const cm = x.shared.find((m) => m.kind === 'ConfigMap');
  const settings = parseYaml(cm?.data?.['00-settings.yaml'] ?? '{}');
  if (!(settings?.spec?.httpAuthz?.trustedProxies?.length > 0)) problems.push('the shared Settings need httpAuthz.trustedProxies (the sidecar)');
  const providers: Y[] = x.mesh.spec.meshConfig.extensionProviders;
  for (const ap of x.policies.filter((p) => p.spec?.action === 'CUSTOM')) {
    const p = providers.find((q) => q.name === ap.spec.provider?.name);
    if (!p) {
      problems.push(`provider ${ap.spec.provider?.name} is not in meshConfig.extensionProviders`);
      continue;
    }
    const h = p.envoyExtAuthzHttp;
    if (!h) {
      problems.push(`provider ${p.name} must be envoyExtAuthzHttp`);
      continue;
    }
    if (h.service !== `${svc?.metadata.name}.${svc?.metadata.namespace}.svc.cluster.local`) problems.push(`provider ${p.name}: service ${h.service} is not the shared Service`);
    const sp = (svc?.spec.ports ?? []).find((q: Y) => q.port === h.port);
    const cp = (container?.ports ?? []).find((q: Y) => q.name === sp?.targetPort);
    if (!sp) problems.push(`provider ${p.name}: port ${h.port} is not a port of the Service`);
    else if (cp?.containerPort !== listen) problems.push(`provider ${p.name}: port ${h.port} does not reach the HTTP authorization listener (${listen})`);
    if (h.failOpen !== false) problems.push(`provider ${p.name}: failOpen must be false`);
    if (h.statusOnError !== '503') problems.push(`provider ${p.name}: statusOnError must be "503"`);
    if (!h.timeout) problems.push(`provider ${p.name}: set timeout (Istio's default is 600 s)`);
    if (!(h.includeRequestHeadersInCheck ?? []).includes('x-actor-token')) problems.push(`provider ${p.name}: includeRequestHeadersInCheck must send x-actor-token`);
    if (!(h.headersToUpstreamOnAllow ?? []).includes('authorization')) problems.push(`provider ${p.name}: headersToUpstreamOnAllow must take authorization`);
    if (!(h.headersToDownstreamOnDeny ?? []).includes('www-authenticate')) problems.push(`provider ${p.name}: headersToDownstreamOnDeny must pass www-authenticate`);
    const ctx = contextOf(`${h.pathPrefix ?? ''}/x`, 'envoy');
    if (typeof ctx === 'string') problems.push(`provider ${p.name}: ${ctx}`);
    else {
      if (ctx['namespace'] !== ap.metadata.namespace) problems.push(`provider ${p.name}: pathPrefix namespace ${ctx['namespace']} != the policy's namespace ${ap.metadata.namespace}`);
      for (const [k, v] of Object.entries(ap.spec.selector?.matchLabels ?? {})) if (ctx[`label.${k}`] !== v) problems.push(`provider ${p.name}: pathPrefix lacks label.${k}=${String(v)}`);
    }
  }
  if (x.policies.filter((p) => p.spec?.action === 'CUSTOM').length === 0) problems.push('no CUSTOM AuthorizationPolicy');
  return problems;
}

describe('deploy/istio (envoyExtAuthzHttp)', () => {
  const good = {
    mesh: yaml('deploy', 'istio', 'mesh-config-http.yaml'),
    policies: docs('deploy', 'istio', 'authorization-policy-http.yaml'),
    shared: ['20-configmap.yaml', '30-deployment.yaml', '40-service.yaml'].flatMap((f) => docs('deploy', 'kubernetes', 'shared', f)),
  };
  const prov = (x: Y) => x.mesh.spec.meshConfig.extensionProviders[0].envoyExtAuthzHttp;
  it('the provider reaches the shared Service on the HTTP authorization port; rejects broken copies', () => {
    expectRejects(good, checkIstioHttp, [
      ['provider name', (x) => (x.policies[0].spec.provider.name = 'obo-authz'), 'provider obo-authz is not in meshConfig'],
      ['grpc port', (x) => (prov(x).port = 9001), 'does not reach the HTTP authorization listener'],
      ['unknown port', (x) => (prov(x).port = 8080), 'port 8080 is not a port of the Service'],
      ['fail open', (x) => (prov(x).failOpen = true), 'failOpen must be false'],
      ['status', (x) => (prov(x).statusOnError = '403'), 'statusOnError must be "503"'],
      ['namespace', (x) => (prov(x).pathPrefix = '/envoy;namespace=default;label.app=mcp-server'), "namespace default != the policy's namespace mcp"],
      ['labels', (x) => (prov(x).pathPrefix = '/envoy;namespace=mcp'), 'pathPrefix lacks label.app=mcp-server'],
      ['prefix', (x) => (prov(x).pathPrefix = '/check'), 'is no obo-authz convention path'],
      ['actor token', (x) => (prov(x).includeRequestHeadersInCheck = ['x-forwarded-for']), 'must send x-actor-token'],
      ['listener off', (x) => {
        const c = x.shared.find((m: Y) => m.kind === 'Deployment').spec.template.spec.containers[0];
        c.args = c.args.filter((a: string) => a !== '--http-authz-address' && a !== '0.0.0.0:9004');
      }, 'does not start the HTTP authorization listener'],
      ['no trust', (x) => (x.shared.find((m: Y) => m.kind === 'ConfigMap').data['00-settings.yaml'] = 'spec: {}'), 'httpAuthz.trustedProxies'],
    ]);
  });
});
