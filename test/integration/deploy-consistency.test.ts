/**
 * The deployment files cannot be run here (no Docker engine, no Envoy, no cluster), so this test
 * parses them and checks that they agree with each other and with the service: cluster names and
 * ports, filter names and @type URLs, the V3 transport, fail-closed settings, the compose services
 * Envoy's clusters resolve to, the config folders mounted at /etc/obo-authz, the Dockerfile's
 * entry point, Kubernetes selectors/probes/RBAC, and the Istio provider wiring.
 *
 * Every checker returns a list of problems; each check is shown to fail on a deliberately broken
 * copy (the "rejects" tables), so a checker that silently accepts everything cannot pass.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLocalJWKSet, importJWK, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { loadConfig } from '../../src/pipeline/compile.js';
import { formatIssue } from '../../src/config/issues.js';
import { DEFAULT_SETTINGS } from '../../src/config/settings.js';
import { listConfigFiles } from '../../src/config/loader.js';
import { createTestRuntime } from '../helpers/runtime.js';
import { execForm, imageEnv, parseDockerfile, type Stage } from '../helpers/dockerfile.js';

// Parsed YAML is untyped by nature; the checkers below test every field they rely on.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Y = any;

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const rel = (...p: string[]) => join(ROOT, ...p);
const readText = (...p: string[]) => readFileSync(rel(...p), 'utf8');
const readYaml = (...p: string[]): Y => parseYaml(readText(...p));
function readYamlDocs(file: string): Y[] {
  return parseAllDocuments(readFileSync(file, 'utf8'))
    .map((d) => {
      if (d.errors.length) throw new Error(`${file}: ${d.errors[0]!.message}`);
      return d.toJS();
    })
    .filter((d) => d !== null && d !== undefined);
}

/** The service's contract that every deployment file must agree with. */
const SERVICE = {
  grpcPort: 9001,
  httpPort: 9002,
  configDir: '/etc/obo-authz',
  entry: 'dist/src/main.js',
  grpcHealthPaths: ['/readyz', '/healthz'],
} as const;
const CONTEXT_EXTENSION_KEYS = new Set(['namespace', 'gateway', 'service', 'backend']);
const FILTER = {
  hcm: 'envoy.filters.network.http_connection_manager',
  extAuthz: 'envoy.filters.http.ext_authz',
  router: 'envoy.filters.http.router',
};
const TYPE = {
  hcm: 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  extAuthz: 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
  extAuthzPerRoute: 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute',
  router: 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
  httpOptions: 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
};
const HTTP_OPTIONS_KEY = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const PACKAGE_VERSION: string = JSON.parse(readText('package.json')).version;
/** The environment the image gives every container (Dockerfile ENV). */
const IMAGE_ENV: Record<string, string> = imageEnv(readText('Dockerfile'));

// ------------------------------------------------------------------------------------------
// Shared helpers
// ------------------------------------------------------------------------------------------

function splitHostPort(addr: string): { host: string; port: number } | undefined {
  const i = addr.lastIndexOf(':');
  if (i <= 0) return undefined;
  const port = Number(addr.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) return undefined;
  return { host: addr.slice(0, i).replace(/^\[|\]$/g, ''), port };
}

function flagValues(args: readonly string[], flag: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === flag && i + 1 < args.length) out.push(args[++i]!);
    else if (a.startsWith(`${flag}=`)) out.push(a.slice(flag.length + 1));
  }
  return out;
}

interface ServeArgs {
  configs: string[];
  grpc: { host: string; port: number };
  http: { host: string; port: number };
}

/** Interpret `serve` arguments exactly as the CLI does, with the documented defaults. */
function serveArgs(args: readonly string[], problems: string[], where: string): ServeArgs | undefined {
  if (args[0] !== 'serve') {
    problems.push(`${where}: first argument must be "serve", got ${JSON.stringify(args[0])}`);
    return undefined;
  }
  const configs = flagValues(args, '--config');
  if (configs.length === 0) problems.push(`${where}: no --config (serve exits 2 without one)`);
  const addr = (flag: string, def: number) => {
    const v = flagValues(args, flag);
    if (v.length === 0) return { host: '0.0.0.0', port: def };
    const hp = splitHostPort(v[v.length - 1]!);
    if (!hp) problems.push(`${where}: ${flag} ${JSON.stringify(v[v.length - 1])} is not HOST:PORT`);
    return hp ?? { host: '0.0.0.0', port: def };
  };
  return { configs, grpc: addr('--grpc-address', SERVICE.grpcPort), http: addr('--http-address', SERVICE.httpPort) };
}

const isLoopback = (host: string) => host === '127.0.0.1' || host === 'localhost' || host === '::1';

/**
 * A health check that runs `obo-authz health` (exec form: node <entry> health ...) must probe
 * the plain-HTTP listener `serve` opens: --server (or OBO_AUTHZ_HEALTH_ADDRESS) equal to
 * --health-address (or the same variable), on loopback.
 */
function checkHealthProbe(probe: readonly string[], serve: readonly string[], env: Record<string, string>, where: string): string[] {
  if (probe[0] !== 'node' || !String(probe[1] ?? '').endsWith(SERVICE.entry) || probe[2] !== 'health') {
    return [`${where} must run \`node .../${SERVICE.entry} health\`, got ${JSON.stringify(probe)}`];
  }
  const probed = flagValues(probe, '--server').at(-1) ?? env['OBO_AUTHZ_HEALTH_ADDRESS'];
  const listened = flagValues(serve, '--health-address').at(-1) ?? env['OBO_AUTHZ_HEALTH_ADDRESS'];
  if (!probed) return [`${where}: probes no address (set OBO_AUTHZ_HEALTH_ADDRESS or --server)`];
  const hp = splitHostPort(probed);
  if (!hp || !isLoopback(hp.host)) return [`${where}: probes ${probed}, not a loopback HOST:PORT`];
  if (probed !== listened) return [`${where}: probes ${probed} but serve's health listener is ${listened ?? 'off'}`];
  return [];
}

function labelsMatch(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

/** Does an Envoy StringMatcher list allow a header name? (Only when such a list is configured.) */
function stringMatcherAllows(patterns: Y[], name: string): boolean {
  return patterns.some((p: Y) => {
    const ci = p?.ignore_case === true;
    const n = ci ? name.toLowerCase() : name;
    const v = (x: unknown) => (typeof x === 'string' ? (ci ? x.toLowerCase() : x) : undefined);
    if (v(p?.exact) !== undefined) return n === v(p.exact);
    if (v(p?.prefix) !== undefined) return n.startsWith(v(p.prefix)!);
    if (v(p?.suffix) !== undefined) return n.endsWith(v(p.suffix)!);
    if (v(p?.contains) !== undefined) return n.includes(v(p.contains)!);
    if (typeof p?.safe_regex?.regex === 'string') return new RegExp(`^(?:${p.safe_regex.regex})$`).test(name);
    return false;
  });
}

function compileConfigFolder(dir: string) {
  const runtime = createTestRuntime({
    fetch: async () => {
      throw new Error('deploy-consistency: loading a config must not touch the network');
    },
  });
  return loadConfig([dir], runtime);
}

/** Write a ConfigMap's data to a temporary folder, as the kubelet mounts it, and compile it. */
/** Pod paths of mounted Secrets that a config names (`/var/run/secrets/obo-authz/<volume dir>/<key>`). */
const POD_SECRET = /\/var\/run\/secrets\/obo-authz\/([a-z0-9-]+)\/([A-Za-z0-9._-]+)/g;

/**
 * A config that names files of mounted Secrets, made compilable outside the pod: each such
 * path becomes a file of the right kind (a 32-byte key for `*.key`, any text otherwise) in `dir`.
 */
function withPodSecrets(text: string, dir: string): string {
  return text.replace(POD_SECRET, (_m, vol: string, key: string) => {
    const f = join(dir, 'pod-secrets', vol, key);
    mkdirSync(dirname(f), { recursive: true });
    if (!existsSync(f)) writeFileSync(f, key.endsWith('.key') ? randomBytes(32).toString('base64') : `placeholder-${randomBytes(8).toString('hex')}`);
    return f;
  });
}

function compileConfigMap(cm: Y) {
  const dir = mkdtempSync(join(tmpdir(), 'obo-authz-cm-'));
  try {
    for (const [k, v] of Object.entries(cm?.data ?? {})) writeFileSync(join(dir, k), withPodSecrets(String(v), dir));
    return compileConfigFolder(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------------
// Envoy bootstrap
// ------------------------------------------------------------------------------------------

interface EnvoyExpect {
  /** Where the ext_authz cluster must point (host optional: DNS names are checked by compose). */
  obo: { host?: string; port: number };
  /** Every authorized route's context_extensions.namespace must equal this, when given. */
  namespace?: string;
}

interface EnvoyFacts {
  listenerPorts: number[];
  clusters: Map<string, Y>;
  extAuthzCluster?: string;
  /** context_extensions of each route that is authorized. */
  contextExtensions: Record<string, string>[];
  /** Paths of exact-match routes with ext_authz disabled. */
  unauthenticatedPaths: string[];
}

function clusterEndpoints(c: Y): { host: string; port: number }[] {
  const out: { host: string; port: number }[] = [];
  for (const e of c?.load_assignment?.endpoints ?? []) {
    for (const lb of e?.lb_endpoints ?? []) {
      const sa = lb?.endpoint?.address?.socket_address;
      if (sa) out.push({ host: String(sa.address), port: Number(sa.port_value) });
    }
  }
  return out;
}

function checkEnvoy(cfg: Y, expect: EnvoyExpect): { problems: string[]; facts: EnvoyFacts } {
  const problems: string[] = [];
  const facts: EnvoyFacts = { listenerPorts: [], clusters: new Map(), contextExtensions: [], unauthenticatedPaths: [] };

  const clusters: Y[] = cfg?.static_resources?.clusters ?? [];
  for (const c of clusters) {
    if (facts.clusters.has(c?.name)) problems.push(`cluster ${c?.name} is defined twice`);
    facts.clusters.set(c?.name, c);
    if (c?.load_assignment?.cluster_name !== c?.name) {
      problems.push(`cluster ${c?.name}: load_assignment.cluster_name is ${JSON.stringify(c?.load_assignment?.cluster_name)}`);
    }
    if (clusterEndpoints(c).length === 0) problems.push(`cluster ${c?.name} has no endpoints`);
  }

  const listeners: Y[] = cfg?.static_resources?.listeners ?? [];
  if (listeners.length === 0) problems.push('no listeners');
  let hcmCount = 0;
  for (const l of listeners) {
    const port = l?.address?.socket_address?.port_value;
    if (typeof port === 'number') facts.listenerPorts.push(port);
    for (const fc of l?.filter_chains ?? []) {
      for (const f of fc?.filters ?? []) {
        if (f?.name !== FILTER.hcm) continue;
        hcmCount++;
        const hcm = f.typed_config;
        if (hcm?.['@type'] !== TYPE.hcm) problems.push(`listener ${l?.name}: HCM @type is ${JSON.stringify(hcm?.['@type'])}`);
        // policies match normalized paths; plain Envoy does not normalize by default.
        if (hcm?.normalize_path !== true) problems.push(`listener ${l?.name}: normalize_path must be true`);
        if (hcm?.merge_slashes !== true) problems.push(`listener ${l?.name}: merge_slashes must be true`);
        // obo-authz refuses paths not in its Settings' canonical form: the proxy must produce it.
        if (DEFAULT_SETTINGS.pathNormalization === 'DECODE_AND_MERGE_SLASHES' && hcm?.path_with_escaped_slashes_action !== 'UNESCAPE_AND_FORWARD') {
          problems.push(`listener ${l?.name}: path_with_escaped_slashes_action must be UNESCAPE_AND_FORWARD (pathNormalization DECODE_AND_MERGE_SLASHES)`);
        }
        checkHttpFilters(hcm, l?.name, facts, problems, expect);
      }
    }
  }
  if (listeners.length > 0 && hcmCount === 0) problems.push(`no ${FILTER.hcm} filter in any listener`);
  return { problems, facts };
}

function checkHttpFilters(hcm: Y, lname: string, facts: EnvoyFacts, problems: string[], expect: EnvoyExpect): void {
  const filters: Y[] = hcm?.http_filters ?? [];
  const names = filters.map((f) => f?.name);
  const ai = names.indexOf(FILTER.extAuthz);
  const ri = names.indexOf(FILTER.router);
  if (ai < 0) problems.push(`listener ${lname}: no ${FILTER.extAuthz} http filter`);
  if (ri < 0) problems.push(`listener ${lname}: no ${FILTER.router} http filter`);
  else if (ri !== filters.length - 1) problems.push(`listener ${lname}: ${FILTER.router} must be the last http filter`);
  if (ai >= 0 && ri >= 0 && ai > ri) problems.push(`listener ${lname}: ext_authz must come before the router`);
  if (ri >= 0 && filters[ri]?.typed_config?.['@type'] !== TYPE.router) {
    problems.push(`listener ${lname}: router @type is ${JSON.stringify(filters[ri]?.typed_config?.['@type'])}`);
  }

  if (ai >= 0) {
    const ea = filters[ai]?.typed_config;
    if (ea?.['@type'] !== TYPE.extAuthz) problems.push(`ext_authz @type is ${JSON.stringify(ea?.['@type'])}`);
    if (ea?.transport_api_version !== 'V3') {
      problems.push(`ext_authz transport_api_version must be V3, got ${JSON.stringify(ea?.transport_api_version)}`);
    }
    if (ea?.failure_mode_allow !== false) problems.push('ext_authz failure_mode_allow must be explicitly false (fail closed)');
    if (ea?.status_on_error?.code === undefined) problems.push('ext_authz status_on_error.code must be set');
    if (ea?.http_service !== undefined) problems.push('ext_authz must use grpc_service, not http_service');
    if (ea?.with_request_body !== undefined) problems.push('ext_authz with_request_body is not needed (buffers every body)');
    // Newer Envoy lets allowed_headers restrict what the gRPC service sees: if it is ever set,
    // it must still let the credentials through.
    for (const list of [ea?.allowed_headers?.patterns, ea?.http_service?.authorization_request?.allowed_headers?.patterns]) {
      if (!Array.isArray(list)) continue;
      for (const h of ['authorization', 'x-actor-token']) {
        if (!stringMatcherAllows(list, h)) problems.push(`ext_authz allowed_headers would drop ${h}`);
      }
    }
    const gs = ea?.grpc_service;
    const cname = gs?.envoy_grpc?.cluster_name;
    facts.extAuthzCluster = cname;
    if (typeof cname !== 'string') problems.push('ext_authz grpc_service.envoy_grpc.cluster_name is missing');
    else if (!facts.clusters.has(cname)) problems.push(`ext_authz cluster ${cname} is not defined in clusters`);
    if (gs?.timeout !== '1s') problems.push(`ext_authz grpc_service.timeout must be 1s, got ${JSON.stringify(gs?.timeout)}`);
    const c = facts.clusters.get(cname);
    if (c) {
      const opts = c.typed_extension_protocol_options?.[HTTP_OPTIONS_KEY];
      if (opts?.['@type'] !== TYPE.httpOptions || opts?.explicit_http_config?.http2_protocol_options === undefined) {
        problems.push(`cluster ${cname} must speak HTTP/2 (typed_extension_protocol_options ${HTTP_OPTIONS_KEY} explicit_http_config.http2_protocol_options)`);
      }
      for (const ep of clusterEndpoints(c)) {
        if (ep.port !== expect.obo.port) problems.push(`cluster ${cname} port ${ep.port} != obo-authz gRPC port ${expect.obo.port}`);
        if (expect.obo.host !== undefined && ep.host !== expect.obo.host) {
          problems.push(`cluster ${cname} address ${ep.host} != ${expect.obo.host}`);
        }
      }
    }
  }

  const filterNames = new Set(names);
  for (const vh of hcm?.route_config?.virtual_hosts ?? []) {
    for (const r of vh?.routes ?? []) {
      const m = r?.match ?? {};
      const where = `route ${JSON.stringify(m)}`;
      if (r?.route?.cluster !== undefined && !facts.clusters.has(r.route.cluster)) {
        problems.push(`${where}: cluster ${r.route.cluster} is not defined`);
      }
      const tpfc = r?.typed_per_filter_config ?? {};
      for (const key of Object.keys(tpfc)) {
        if (!filterNames.has(key)) problems.push(`${where}: typed_per_filter_config key ${key} names no http filter`);
      }
      const per = tpfc[FILTER.extAuthz];
      if (per === undefined) {
        problems.push(`${where}: no ${FILTER.extAuthz} per-route config (disabled, or context_extensions with a namespace)`);
        continue;
      }
      if (per?.['@type'] !== TYPE.extAuthzPerRoute) problems.push(`${where}: per-route @type is ${JSON.stringify(per?.['@type'])}`);
      if (per?.disabled !== undefined && per?.check_settings !== undefined) problems.push(`${where}: disabled and check_settings are a oneof`);
      if (per?.disabled === true) {
        if (typeof m.path === 'string') facts.unauthenticatedPaths.push(m.path);
        else problems.push(`${where}: ext_authz may only be disabled on an exact path`);
        continue;
      }
      const ce = per?.check_settings?.context_extensions;
      if (!ce || typeof ce !== 'object') {
        problems.push(`${where}: check_settings.context_extensions missing`);
        continue;
      }
      for (const [k, v] of Object.entries(ce)) {
        if (!CONTEXT_EXTENSION_KEYS.has(k) && !/^label\.[A-Za-z0-9._/-]+$/.test(k)) {
          problems.push(`${where}: context_extensions key ${k} is not one the service reads`);
        }
        if (typeof v !== 'string' || v === '') problems.push(`${where}: context_extensions.${k} must be a non-empty string`);
      }
      if (typeof ce.namespace !== 'string') problems.push(`${where}: context_extensions.namespace missing`);
      else if (expect.namespace !== undefined && ce.namespace !== expect.namespace) {
        problems.push(`${where}: context_extensions.namespace ${ce.namespace} != ${expect.namespace}`);
      }
      facts.contextExtensions.push(ce as Record<string, string>);
    }
  }
  if (!facts.unauthenticatedPaths.includes('/healthz')) problems.push('no /healthz route with ext_authz disabled');
}

// ------------------------------------------------------------------------------------------
// docker-compose
// ------------------------------------------------------------------------------------------

function composeArgs(v: Y): string[] {
  if (Array.isArray(v)) return v.map(String);
  if (typeof v === 'string') return v.split(/\s+/).filter(Boolean);
  return [];
}

function volumeMounts(svc: Y): { src: string; dst: string }[] {
  return (svc?.volumes ?? []).map((v: Y) => {
    if (typeof v === 'string') {
      const [src, dst] = v.split(':');
      return { src: src ?? '', dst: dst ?? '' };
    }
    return { src: String(v?.source ?? ''), dst: String(v?.target ?? '') };
  });
}

/** Container ports a compose service publishes (`[ip:]host:container`). */
function publishedContainerPorts(svc: Y): number[] {
  return (svc?.ports ?? []).map((p: Y) => {
    if (typeof p === 'object') return Number(p.target);
    const parts = String(p).split(':');
    return Number(parts[parts.length - 1]!.split('/')[0]);
  });
}

/**
 * @param dir folder of the compose file (relative paths resolve against it)
 * @param envoyFile absolute path of the Envoy bootstrap that was checked with checkEnvoy
 */
function checkCompose(compose: Y, envoy: EnvoyFacts, dir: string, envoyFile: string): string[] {
  const problems: string[] = [];
  const services: Record<string, Y> = compose?.services ?? {};

  // The obo-authz service: the one built from the repository's Dockerfile.
  const oboName = Object.keys(services).find((n) => services[n]?.build !== undefined);
  let obo: ServeArgs | undefined;
  if (!oboName) problems.push('no service is built from the Dockerfile');
  else {
    const s = services[oboName];
    const ctx = resolve(dir, String(s.build?.context ?? '.'));
    const df = join(ctx, String(s.build?.dockerfile ?? 'Dockerfile'));
    if (!existsSync(df)) problems.push(`${oboName}: build Dockerfile ${df} does not exist`);
    if (resolve(ctx) !== ROOT) problems.push(`${oboName}: build context must be the repository root, got ${ctx}`);
    obo = serveArgs(composeArgs(s.command), problems, `${oboName} command`);
    const mounts = volumeMounts(s);
    for (const cfgPath of obo?.configs ?? []) {
      const m = mounts.find((x) => x.dst === cfgPath);
      if (!m) {
        problems.push(`${oboName}: --config ${cfgPath} is not a mounted volume`);
        continue;
      }
      const src = resolve(dir, m.src);
      if (!existsSync(src)) problems.push(`${oboName}: mounted config ${m.src} does not exist`);
      else if (listConfigFiles([src]).files.length === 0) problems.push(`${oboName}: mounted config ${m.src} has no *.yaml`);
    }
    if (obo && !(obo.configs as string[]).includes(SERVICE.configDir)) {
      problems.push(`${oboName}: config must be mounted at the documented ${SERVICE.configDir}`);
    }
    const test: string[] = Array.isArray(s.healthcheck?.test) ? s.healthcheck.test.map(String) : [];
    const env = { ...IMAGE_ENV, ...(s.environment ?? {}) };
    problems.push(...checkHealthProbe(test[0] === 'CMD' ? test.slice(1) : test, composeArgs(s.command), env, `${oboName}: healthcheck`));
  }

  // The Envoy service: the one whose command loads a bootstrap with -c.
  const envoyName = Object.keys(services).find((n) => composeArgs(services[n]?.command).includes('-c'));
  if (!envoyName) problems.push('no Envoy service (command with -c)');
  else {
    const s = services[envoyName];
    const args = composeArgs(s.command);
    const cPath = args[args.indexOf('-c') + 1];
    const m = volumeMounts(s).find((x) => x.dst === cPath);
    if (!m) problems.push(`${envoyName}: -c ${cPath} is not a mounted file`);
    else if (resolve(dir, m.src) !== envoyFile) problems.push(`${envoyName}: mounts ${m.src}, not the checked ${envoyFile}`);
    const published = publishedContainerPorts(s);
    for (const p of envoy.listenerPorts.slice(0, 1)) {
      if (!published.includes(p)) problems.push(`${envoyName}: listener port ${p} is not published`);
    }
    const deps = Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on ?? {});
    if (oboName && !deps.includes(oboName)) problems.push(`${envoyName}: must depend on ${oboName}`);
    if (oboName && !Array.isArray(s.depends_on) && s.depends_on?.[oboName]?.condition !== 'service_healthy') {
      problems.push(`${envoyName}: should wait for ${oboName} to be service_healthy`);
    }
  }

  // Every DNS cluster must resolve to a compose service, on a port that service listens on.
  for (const [name, c] of envoy.clusters) {
    if (c?.type !== 'STRICT_DNS' && c?.type !== 'LOGICAL_DNS') continue;
    for (const ep of clusterEndpoints(c)) {
      const svc = services[ep.host];
      if (!svc) {
        problems.push(`cluster ${name}: address ${ep.host} is not a compose service`);
        continue;
      }
      let ports: number[];
      if (ep.host === oboName && obo) ports = [obo.grpc.port];
      else {
        ports = [
          ...Object.entries(svc.environment ?? {})
            .filter(([k]) => /PORT$/.test(k))
            .map(([, v]) => Number(v)),
          ...(svc.expose ?? []).map(Number),
        ];
      }
      if (!ports.includes(ep.port)) problems.push(`cluster ${name}: ${ep.host}:${ep.port} but the service listens on ${ports.join(', ') || 'no known port'}`);
      if (name === envoy.extAuthzCluster && ep.host !== oboName) problems.push(`ext_authz cluster ${name} points at ${ep.host}, not ${oboName}`);
    }
  }
  return problems;
}

// ------------------------------------------------------------------------------------------
// Dockerfile
// ------------------------------------------------------------------------------------------

interface Copy {
  from?: string;
  srcs: string[];
  dest: string;
}

function copies(stage: Stage): Copy[] {
  const out: Copy[] = [];
  let workdir = '/';
  for (const i of stage.instrs) {
    if (i.cmd === 'WORKDIR') workdir = posix.resolve(workdir, i.args);
    if (i.cmd !== 'COPY' && i.cmd !== 'ADD') continue;
    const toks = i.args.split(/\s+/);
    const from = toks.find((t) => t.startsWith('--from='))?.slice('--from='.length);
    const rest = toks.filter((t) => !t.startsWith('--'));
    const dest = posix.resolve(workdir, rest[rest.length - 1]!);
    out.push({ from, srcs: rest.slice(0, -1), dest });
  }
  return out;
}

function checkDockerfile(text: string, dockerignore: string, root: string): string[] {
  const problems: string[] = [];
  const stages = parseDockerfile(text);
  if (stages.length < 2) problems.push('Dockerfile must be multi-stage');
  const final = stages[stages.length - 1];
  if (!final) return [...problems, 'no FROM'];
  const byName = new Map(stages.map((s) => [s.name, s]));
  const runs = (s: Stage) => s.instrs.filter((i) => i.cmd === 'RUN').map((i) => i.args);

  for (const s of stages) {
    for (const c of copies(s)) {
      if (c.from !== undefined && !byName.has(c.from)) problems.push(`COPY --from=${c.from}: no such stage`);
    }
  }
  // Dev dependencies must not reach the runtime image.
  for (const r of runs(final)) {
    if (/\bnpm (ci|install)\b/.test(r) && !/--omit=dev/.test(r)) problems.push(`final stage installs dev dependencies: ${r}`);
  }
  const finalCopies = copies(final);
  const nm = finalCopies.find((c) => c.srcs.some((s) => /node_modules\/?$/.test(s)));
  if (!nm) problems.push('final stage does not copy node_modules');
  else {
    const src = nm.from !== undefined ? byName.get(nm.from) : undefined;
    const npmCi = src ? runs(src).filter((r) => /\bnpm (ci|install)\b/.test(r)) : [];
    if (npmCi.length === 0 || npmCi.some((r) => !/--omit=dev/.test(r))) {
      problems.push(`node_modules must come from a stage that runs only \`npm ci --omit=dev\` (got --from=${nm.from})`);
    }
  }
  const dist = finalCopies.find((c) => c.srcs.some((s) => /\/dist\/?$|^dist\/?$/.test(s)));
  if (!dist) problems.push('final stage does not copy dist/');
  else if (!(dist.from !== undefined && runs(byName.get(dist.from) ?? { name: '', instrs: [] }).some((r) => /npm run build/.test(r)))) {
    problems.push('dist/ must come from the stage that runs `npm run build`');
  }
  const proto = finalCopies.find((c) => c.srcs.some((s) => /(^|\/)proto\/?$/.test(s)));
  if (!proto) problems.push('final stage does not copy proto/ (loaded at runtime)');
  if (!finalCopies.some((c) => c.srcs.some((s) => /(^|\/)package\.json$/.test(s)))) {
    problems.push('final stage does not copy package.json ("type": "module")');
  }
  // proto/ is found by walking up from dist/src/grpc: it must be dist's sibling.
  if (dist && proto && posix.dirname(dist.dest) !== posix.dirname(proto.dest)) {
    problems.push(`proto/ (${proto.dest}) must be a sibling of dist/ (${dist.dest})`);
  }

  const last = (cmd: string) => [...final.instrs].reverse().find((i) => i.cmd === cmd);
  const user = last('USER')?.args.split(':')[0];
  if (!user) problems.push('final stage has no USER (would run as root)');
  else if (user === 'root' || user === '0') problems.push(`final stage runs as ${user}`);
  else if (!/^\d+$/.test(user)) problems.push(`USER ${user} must be numeric so Kubernetes runAsNonRoot can verify it`);

  const entry = execForm(last('ENTRYPOINT')?.args ?? '');
  const cmd = execForm(last('CMD')?.args ?? '');
  if (!entry) problems.push('ENTRYPOINT must be in exec (JSON) form');
  if (!cmd) problems.push('CMD must be in exec (JSON) form');
  if (entry) {
    const main = entry.find((a) => a.endsWith(SERVICE.entry));
    if (entry[0] !== 'node' || !main) problems.push(`ENTRYPOINT must run node ${SERVICE.entry}, got ${JSON.stringify(entry)}`);
    else if (dist && main !== posix.join(dist.dest, 'src', 'main.js')) {
      problems.push(`ENTRYPOINT ${main} is not where dist/ was copied (${dist.dest})`);
    }
  }
  if (cmd) {
    const p: string[] = [];
    const a = serveArgs(cmd, p, 'CMD');
    problems.push(...p);
    if (a && !a.configs.includes(SERVICE.configDir)) problems.push(`CMD must use --config ${SERVICE.configDir}`);
  }
  const exposed = final.instrs.filter((i) => i.cmd === 'EXPOSE').flatMap((i) => i.args.split(/\s+/).map((x) => Number(x.split('/')[0])));
  for (const p of [SERVICE.grpcPort, SERVICE.httpPort]) if (!exposed.includes(p)) problems.push(`EXPOSE ${p} missing`);
  const hc = last('HEALTHCHECK')?.args;
  if (!hc || /^NONE\b/i.test(hc)) problems.push('final stage has no HEALTHCHECK');
  else {
    const probe = execForm(hc.replace(/^(--\S+\s+)*CMD\s+/, ''));
    if (!probe) problems.push('HEALTHCHECK CMD must be in exec (JSON) form');
    else problems.push(...checkHealthProbe(probe, cmd ?? [], imageEnv(text), 'HEALTHCHECK'));
  }

  // Build-context sources must exist and must not be excluded by .dockerignore.
  const ignored = dockerignore
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  for (const must of ['node_modules', 'dist', '.git']) if (!ignored.includes(must)) problems.push(`.dockerignore must exclude ${must}`);
  for (const s of stages) {
    for (const c of copies(s)) {
      if (c.from !== undefined) continue;
      for (const src of c.srcs) {
        if (!existsSync(join(root, src))) problems.push(`COPY ${src}: not in the repository`);
        const top = src.replace(/^\.\//, '').split('/')[0]!;
        if (ignored.includes(top)) problems.push(`COPY ${src}: excluded by .dockerignore`);
      }
    }
  }
  return problems;
}

// ------------------------------------------------------------------------------------------
// Kubernetes
// ------------------------------------------------------------------------------------------

interface Manifest {
  file: string;
  doc: Y;
}

const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding']);

function loadManifests(dir: string): Manifest[] {
  const out: Manifest[] = [];
  for (const f of readdirSync(dir).sort()) {
    if (!/\.ya?ml$/.test(f) || f === 'kustomization.yaml') continue;
    for (const doc of readYamlDocs(join(dir, f))) out.push({ file: f, doc });
  }
  return out;
}

const ofKind = (ms: Manifest[], kind: string) => ms.filter((m) => m.doc?.kind === kind).map((m) => m.doc);
const find = (ms: Manifest[], kind: string, ns: string | undefined, name: string) =>
  ofKind(ms, kind).find((d) => d?.metadata?.name === name && (ns === undefined || d?.metadata?.namespace === ns));

function podSpecs(ms: Manifest[]): { wl: Y; pod: Y }[] {
  return ofKind(ms, 'Deployment').map((d) => ({ wl: d, pod: d?.spec?.template?.spec }));
}

/** Is this container obo-authz? (Its image name.) */
const isOboContainer = (c: Y) => /(^|\/)obo-authz(:|@|$)/.test(String(c?.image ?? ''));

function probePort(p: Y, c: Y): { kind: 'grpc' | 'http'; port: number; path?: string } | undefined {
  const named = (port: Y) =>
    typeof port === 'number' ? port : (c?.ports ?? []).find((x: Y) => x?.name === port)?.containerPort;
  if (p?.grpc) return { kind: 'grpc', port: named(p.grpc.port) };
  if (p?.httpGet) return { kind: 'http', port: named(p.httpGet.port), path: p.httpGet.path };
  return undefined;
}

interface KubeFacts {
  oboConfigMaps: Y[];
  envoyConfigs: { wl: Y; cfg: Y; listenerPorts: number[] }[];
}

/** Checks shared by the sidecar and shared layouts. */
function checkKubernetes(ms: Manifest[], dir: string): { problems: string[]; facts: KubeFacts } {
  const problems: string[] = [];
  const facts: KubeFacts = { oboConfigMaps: [], envoyConfigs: [] };
  const namespaces = new Set(ofKind(ms, 'Namespace').map((n) => n?.metadata?.name));

  for (const { file, doc } of ms) {
    const id = `${file}: ${doc?.kind}/${doc?.metadata?.name}`;
    if (!doc?.apiVersion || !doc?.kind || !doc?.metadata?.name) problems.push(`${file}: document without apiVersion/kind/metadata.name`);
    if (!CLUSTER_SCOPED.has(doc?.kind)) {
      if (!doc?.metadata?.namespace) problems.push(`${id}: metadata.namespace missing`);
      else if (!namespaces.has(doc.metadata.namespace)) problems.push(`${id}: namespace ${doc.metadata.namespace} is not created here`);
    }
  }

  // kustomization.yaml lists exactly the manifests of the folder.
  const kfile = join(dir, 'kustomization.yaml');
  if (!existsSync(kfile)) problems.push('kustomization.yaml missing');
  else {
    const listed: string[] = parseYaml(readFileSync(kfile, 'utf8'))?.resources ?? [];
    const files = [...new Set(ms.map((m) => m.file))];
    for (const f of files) if (!listed.includes(f)) problems.push(`kustomization.yaml does not list ${f}`);
    for (const f of listed) {
      if (!existsSync(join(dir, f))) problems.push(`kustomization.yaml lists missing ${f}`);
      else if (!files.includes(f)) problems.push(`kustomization.yaml lists ${f}, which holds no manifest`);
    }
  }

  for (const { wl, pod } of podSpecs(ms)) {
    const ns = wl?.metadata?.namespace;
    const wid = `Deployment ${ns}/${wl?.metadata?.name}`;
    const labels = wl?.spec?.template?.metadata?.labels;
    if (!labelsMatch(wl?.spec?.selector?.matchLabels, labels)) problems.push(`${wid}: selector does not match the pod template labels`);
    const sa = pod?.serviceAccountName;
    if (sa && !find(ms, 'ServiceAccount', ns, sa)) problems.push(`${wid}: ServiceAccount ${sa} not defined`);
    const volumes = new Map<string, Y>((pod?.volumes ?? []).map((v: Y) => [v?.name, v]));
    for (const c of [...(pod?.containers ?? []), ...(pod?.initContainers ?? [])]) {
      for (const vm of c?.volumeMounts ?? []) {
        const v = volumes.get(vm?.name);
        if (!v) problems.push(`${wid}/${c?.name}: volumeMount ${vm?.name} has no volume`);
        else if (v.configMap && !find(ms, 'ConfigMap', ns, v.configMap.name)) problems.push(`${wid}: ConfigMap ${v.configMap.name} not defined`);
      }
      if (!c?.resources?.requests?.cpu || !c?.resources?.requests?.memory) problems.push(`${wid}/${c?.name}: resource requests missing`);
      const uid = c?.securityContext?.runAsUser ?? pod?.securityContext?.runAsUser;
      if ((c?.securityContext?.runAsNonRoot ?? pod?.securityContext?.runAsNonRoot) !== true || uid === 0) {
        problems.push(`${wid}/${c?.name}: must run as non-root (runAsNonRoot: true)`);
      }
      if (c?.securityContext?.allowPrivilegeEscalation !== false) problems.push(`${wid}/${c?.name}: allowPrivilegeEscalation must be false`);
    }

    for (const c of (pod?.containers ?? []).filter(isOboContainer)) {
      const cid = `${wid}/${c?.name}`;
      const tag = String(c.image).split(':')[1];
      if (tag !== PACKAGE_VERSION) problems.push(`${cid}: image tag ${tag} != package.json version ${PACKAGE_VERSION}`);
      const a = serveArgs((c?.args ?? []).map(String), problems, cid);
      if (!a) continue;
      if (c?.command !== undefined) problems.push(`${cid}: do not override the image ENTRYPOINT (command)`);
      for (const cfgPath of a.configs) {
        const vm = (c?.volumeMounts ?? []).find((x: Y) => x?.mountPath === cfgPath);
        const cmName = volumes.get(vm?.name)?.configMap?.name;
        const cm = cmName ? find(ms, 'ConfigMap', ns, cmName) : undefined;
        if (!cm) problems.push(`${cid}: --config ${cfgPath} is not a mounted ConfigMap`);
        else if (!Object.keys(cm.data ?? {}).some((k) => /\.ya?ml$/.test(k))) problems.push(`${cid}: ConfigMap ${cmName} has no *.yaml key`);
        else facts.oboConfigMaps.push(cm);
      }
      if (!a.configs.includes(SERVICE.configDir)) problems.push(`${cid}: config must be at ${SERVICE.configDir}`);
      const grpcPort = (c?.ports ?? []).find((p: Y) => p?.name === 'grpc');
      if (grpcPort?.containerPort !== a.grpc.port) problems.push(`${cid}: port "grpc" ${grpcPort?.containerPort} != --grpc-address port ${a.grpc.port}`);
      const probes = [c?.readinessProbe, c?.livenessProbe, c?.startupProbe].filter(Boolean);
      if (!c?.readinessProbe?.grpc) problems.push(`${cid}: readinessProbe must be a gRPC probe (grpc.health.v1)`);
      for (const p of probes) {
        const pp = probePort(p, c);
        if (!pp) problems.push(`${cid}: probe is neither grpc nor httpGet`);
        else if (pp.kind === 'grpc') {
          if (pp.port !== a.grpc.port) problems.push(`${cid}: gRPC probe port ${pp.port} != gRPC port ${a.grpc.port}`);
          if (isLoopback(a.grpc.host)) problems.push(`${cid}: gRPC listens on loopback, the kubelet cannot probe it`);
        } else {
          if (pp.port !== a.http.port) problems.push(`${cid}: HTTP probe port ${pp.port} != HTTP port ${a.http.port}`);
          if (!(SERVICE.grpcHealthPaths as readonly string[]).includes(pp.path ?? '')) problems.push(`${cid}: HTTP probe path ${pp.path} is not a health endpoint`);
          if (isLoopback(a.http.host)) problems.push(`${cid}: HTTP listens on loopback, the kubelet cannot probe it`);
        }
      }
      if (c?.securityContext?.readOnlyRootFilesystem !== true) problems.push(`${cid}: readOnlyRootFilesystem must be true`);
    }

    // Envoy containers: the bootstrap they load comes from a ConfigMap in the same namespace.
    for (const c of (pod?.containers ?? []).filter((x: Y) => /(^|\/)envoy(:|$)/.test(String(x?.image ?? '').split('/').pop() ?? ''))) {
      const args = [...(c?.command ?? []), ...(c?.args ?? [])].map(String);
      const cPath = args[args.indexOf('-c') + 1];
      if (args.indexOf('-c') < 0 || !cPath) {
        problems.push(`${wid}/${c?.name}: Envoy without -c`);
        continue;
      }
      const vm = (c?.volumeMounts ?? []).find((x: Y) => cPath.startsWith(`${x?.mountPath}/`));
      const cmName = volumes.get(vm?.name)?.configMap?.name;
      const text = cmName ? find(ms, 'ConfigMap', ns, cmName)?.data?.[cPath.slice(vm.mountPath.length + 1)] : undefined;
      if (typeof text !== 'string') {
        problems.push(`${wid}/${c?.name}: -c ${cPath} is not a key of a mounted ConfigMap`);
        continue;
      }
      const cfg = parseYaml(text);
      const listenerPorts = (cfg?.static_resources?.listeners ?? []).map((l: Y) => l?.address?.socket_address?.port_value);
      facts.envoyConfigs.push({ wl, cfg, listenerPorts });
      for (const p of [c?.readinessProbe, c?.livenessProbe].filter(Boolean)) {
        const pp = probePort(p, c);
        if (pp?.kind === 'http' && !listenerPorts.includes(pp.port)) problems.push(`${wid}/${c?.name}: probe port ${pp.port} is no Envoy listener`);
      }
    }
  }

  for (const svc of ofKind(ms, 'Service')) {
    const ns = svc?.metadata?.namespace;
    const sid = `Service ${ns}/${svc?.metadata?.name}`;
    const target = podSpecs(ms).find(({ wl }) => wl?.metadata?.namespace === ns && labelsMatch(svc?.spec?.selector, wl?.spec?.template?.metadata?.labels));
    if (!target) {
      problems.push(`${sid}: selector matches no Deployment's pod labels`);
      continue;
    }
    const cports = (target.pod?.containers ?? []).flatMap((c: Y) => c?.ports ?? []);
    for (const p of svc?.spec?.ports ?? []) {
      const tp = p?.targetPort ?? p?.port;
      const ok = typeof tp === 'number' ? cports.some((c: Y) => c?.containerPort === tp) : cports.some((c: Y) => c?.name === tp);
      if (!ok) problems.push(`${sid}: targetPort ${tp} is no container port of ${target.wl?.metadata?.name}`);
    }
  }
  for (const kind of ['PodDisruptionBudget', 'NetworkPolicy']) {
    for (const d of ofKind(ms, kind)) {
      const sel = kind === 'NetworkPolicy' ? d?.spec?.podSelector?.matchLabels : d?.spec?.selector?.matchLabels;
      const ns = d?.metadata?.namespace;
      if (!podSpecs(ms).some(({ wl }) => wl?.metadata?.namespace === ns && labelsMatch(sel, wl?.spec?.template?.metadata?.labels))) {
        problems.push(`${kind} ${ns}/${d?.metadata?.name}: selector matches no Deployment`);
      }
    }
  }
  for (const kind of ['ClusterRoleBinding', 'RoleBinding']) {
    for (const b of ofKind(ms, kind)) {
      const bid = `${kind} ${b?.metadata?.name}`;
      const rk = b?.roleRef?.kind;
      if (!find(ms, rk, rk === 'Role' ? b?.metadata?.namespace : undefined, b?.roleRef?.name)) problems.push(`${bid}: roleRef ${rk} ${b?.roleRef?.name} not defined`);
      for (const s of b?.subjects ?? []) {
        if (s?.kind === 'ServiceAccount' && !find(ms, 'ServiceAccount', s?.namespace, s?.name)) {
          problems.push(`${bid}: subject ServiceAccount ${s?.namespace}/${s?.name} not defined`);
        }
      }
    }
  }
  return { problems, facts };
}

/** The shared Deployment's least-privilege RBAC: exactly `create` on tokenreviews, bound to its SA. */
function checkSharedRbac(ms: Manifest[]): string[] {
  const problems: string[] = [];
  const obo = podSpecs(ms).find(({ pod }) => (pod?.containers ?? []).some(isOboContainer));
  if (!obo) return ['no obo-authz Deployment'];
  const ns = obo.wl?.metadata?.namespace;
  const sa = obo.pod?.serviceAccountName;
  if (!sa || sa === 'default') problems.push('obo-authz must run with its own ServiceAccount');
  if (obo.pod?.automountServiceAccountToken === false) problems.push('obo-authz needs its API token for TokenReview (automountServiceAccountToken)');
  const bindings = ofKind(ms, 'ClusterRoleBinding').filter((b) =>
    (b?.subjects ?? []).some((s: Y) => s?.kind === 'ServiceAccount' && s?.name === sa && s?.namespace === ns),
  );
  const roles = bindings.map((b) => find(ms, 'ClusterRole', undefined, b?.roleRef?.name)).filter(Boolean);
  const rules = roles.flatMap((r) => r?.rules ?? []);
  const canReview = rules.some(
    (r: Y) => r?.apiGroups?.includes('authentication.k8s.io') && r?.resources?.includes('tokenreviews') && r?.verbs?.includes('create'),
  );
  if (!canReview) problems.push(`ServiceAccount ${ns}/${sa} cannot create tokenreviews`);
  for (const r of rules) {
    const exact =
      JSON.stringify(r?.apiGroups) === '["authentication.k8s.io"]' &&
      JSON.stringify(r?.resources) === '["tokenreviews"]' &&
      JSON.stringify(r?.verbs) === '["create"]';
    if (!exact) problems.push(`RBAC rule grants more than create on tokenreviews: ${JSON.stringify(r)}`);
  }
  if (ofKind(ms, 'RoleBinding').some((b) => (b?.subjects ?? []).some((s: Y) => s?.name === sa))) problems.push('unexpected RoleBinding for obo-authz');
  return problems;
}

/** Projected service-account tokens with a custom audience, used as actor tokens. */
function checkActorTokens(ms: Manifest[], expectedAudience: string): string[] {
  const problems: string[] = [];
  let found = 0;
  for (const { wl, pod } of podSpecs(ms)) {
    for (const v of pod?.volumes ?? []) {
      for (const src of v?.projected?.sources ?? []) {
        const t = src?.serviceAccountToken;
        if (!t) continue;
        found++;
        const id = `Deployment ${wl?.metadata?.name} volume ${v?.name}`;
        if (t.audience !== expectedAudience) problems.push(`${id}: audience ${t.audience} != ${expectedAudience}`);
        if (typeof t.expirationSeconds !== 'number' || t.expirationSeconds < 600) problems.push(`${id}: expirationSeconds must be >= 600`);
        const mounts = (pod?.containers ?? []).flatMap((c: Y) =>
          (c?.volumeMounts ?? []).filter((m: Y) => m?.name === v?.name).map((m: Y) => ({ c, file: posix.join(m.mountPath, t.path) })),
        );
        if (mounts.length === 0) problems.push(`${id}: not mounted`);
        for (const { c, file } of mounts) {
          if (!(c?.env ?? []).some((e: Y) => e?.value === file)) problems.push(`${id}: no env var points the agent at ${file}`);
        }
      }
    }
  }
  if (found === 0) problems.push('no projected serviceAccountToken volume for actor tokens');
  return problems;
}

/**
 * Scale-out of the shared Deployment: the HorizontalPodAutoscaler scales it (CPU, with CPU
 * requests to measure against, above the PodDisruptionBudget), and every Secret file the
 * config names (Redis password and CA, OIDC client secret, session key) is a key of a Secret
 * volume mounted at that path in the obo-authz container. A config with several replicas keeps
 * browser sessions in Redis over TLS with a password (docs/operations.md).
 */
function checkScaleOut(ms: Manifest[]): string[] {
  const problems: string[] = [];
  const obo = podSpecs(ms).find(({ pod }) => (pod?.containers ?? []).some(isOboContainer));
  if (!obo) return ['no obo-authz Deployment'];
  const name = obo.wl?.metadata?.name;
  const ns = obo.wl?.metadata?.namespace;
  const c = obo.pod.containers.find(isOboContainer);
  const hpa = ofKind(ms, 'HorizontalPodAutoscaler').find((h) => h?.metadata?.namespace === ns);
  if (!hpa) problems.push('no HorizontalPodAutoscaler for the obo-authz Deployment');
  else {
    const t = hpa.spec?.scaleTargetRef ?? {};
    if (t.kind !== 'Deployment' || t.name !== name || t.apiVersion !== 'apps/v1') problems.push(`HorizontalPodAutoscaler targets ${t.kind}/${t.name}, not Deployment/${name}`);
    const min = hpa.spec?.minReplicas ?? 1;
    if (min < 2) problems.push('HorizontalPodAutoscaler minReplicas must be >= 2 (one replica is a single point of failure)');
    if (!(hpa.spec?.maxReplicas >= min)) problems.push('HorizontalPodAutoscaler maxReplicas must be >= minReplicas');
    const cpu = (hpa.spec?.metrics ?? []).find((m: Y) => m?.type === 'Resource' && m?.resource?.name === 'cpu');
    if (!cpu) problems.push('HorizontalPodAutoscaler has no CPU metric');
    else if (cpu.resource.target?.type === 'Utilization' && !c?.resources?.requests?.cpu) problems.push('CPU utilization needs a CPU request on the obo-authz container');
    const pdb = ofKind(ms, 'PodDisruptionBudget').find((d) => d?.metadata?.namespace === ns);
    if (pdb && typeof pdb.spec?.minAvailable === 'number' && pdb.spec.minAvailable >= min) problems.push(`PodDisruptionBudget minAvailable ${pdb.spec.minAvailable} must stay below minReplicas ${min}`);
    if (typeof obo.wl.spec?.replicas === 'number' && obo.wl.spec.replicas < min) problems.push(`Deployment replicas ${obo.wl.spec.replicas} below the HPA's minReplicas ${min}`);
  }
  // Secret files named by the config -> Secret volumes mounted there.
  const volumes = new Map<string, Y>((obo.pod.volumes ?? []).map((v: Y) => [v?.name, v]));
  const cms = ofKind(ms, 'ConfigMap');
  let logins = 0;
  for (const cm of cms) {
    for (const [k, text] of Object.entries(cm?.data ?? {})) {
      for (const m of String(text).matchAll(POD_SECRET)) {
        const dir = `/var/run/secrets/obo-authz/${m[1]}`;
        const mount = (c?.volumeMounts ?? []).find((x: Y) => x?.mountPath === dir);
        const vol = mount ? volumes.get(mount.name) : undefined;
        if (!vol?.secret) {
          problems.push(`ConfigMap ${cm.metadata?.name} ${k}: ${m[0]} is not in a Secret volume mounted at ${dir}`);
          continue;
        }
        const items: Y[] | undefined = vol.secret.items;
        if (items && !items.some((i) => i?.path === m[2])) problems.push(`ConfigMap ${cm.metadata?.name} ${k}: Secret ${vol.secret.secretName} mounted at ${dir} has no item ${m[2]}`);
      }
      for (const d of parseAllDocuments(String(text))) {
        const doc = d.toJS() as Y;
        if (doc?.kind !== 'OIDCLogin') continue;
        logins++;
        const r = doc.spec?.session?.redis;
        const where = `OIDCLogin ${doc.metadata?.name}`;
        if (!r) problems.push(`${where}: several replicas need the Redis session store (spec.session.redis)`);
        else {
          if (!r.passwordFile) problems.push(`${where}: Redis without a password (spec.session.redis.passwordFile)`);
          if (!r.tls || r.tls.enabled === false) problems.push(`${where}: Redis without TLS (spec.session.redis.tls)`);
        }
      }
    }
  }
  if (logins === 0) problems.push('no OIDCLogin example in the ConfigMaps');
  return problems;
}

/** Sidecar pod: Envoy -> obo-authz on loopback, namespace/labels agree with the obo-authz Settings. */
function checkSidecar(ms: Manifest[], facts: KubeFacts): string[] {
  const problems: string[] = [];
  const pods = podSpecs(ms).filter(({ pod }) => (pod?.containers ?? []).some(isOboContainer));
  if (pods.length === 0) return ['no pod with an obo-authz container'];
  for (const { wl, pod } of pods) {
    const ns = wl?.metadata?.namespace;
    const labels = wl?.spec?.template?.metadata?.labels ?? {};
    const obo = (pod?.containers ?? []).find(isOboContainer);
    const a = serveArgs((obo?.args ?? []).map(String), [], 'obo-authz');
    const env = facts.envoyConfigs.find((e) => e.wl === wl);
    if (!env || !a) {
      problems.push(`Deployment ${wl?.metadata?.name}: needs an Envoy container next to obo-authz`);
      continue;
    }
    const r = checkEnvoy(env.cfg, { obo: { host: '127.0.0.1', port: a.grpc.port }, namespace: ns });
    problems.push(...r.problems.map((p) => `sidecar envoy.yaml: ${p}`));
    for (const [name, c] of r.facts.clusters) {
      if (name === r.facts.extAuthzCluster) continue;
      const appPorts = (pod?.containers ?? []).filter((x: Y) => x !== obo).flatMap((x: Y) => (x?.ports ?? []).map((p: Y) => p?.containerPort));
      for (const ep of clusterEndpoints(c)) {
        if (!isLoopback(ep.host)) problems.push(`sidecar cluster ${name}: ${ep.host} is not loopback`);
        if (!appPorts.includes(ep.port)) problems.push(`sidecar cluster ${name}: port ${ep.port} is no container port in the pod`);
      }
    }
    for (const cm of facts.oboConfigMaps.filter((x) => x?.metadata?.namespace === ns)) {
      for (const text of Object.values(cm?.data ?? {})) {
        for (const d of parseAllDocuments(String(text)).map((x) => x.toJS())) {
          if (d?.kind !== 'Settings') continue;
          if (d?.spec?.defaultNamespace !== ns) problems.push(`Settings.defaultNamespace ${d?.spec?.defaultNamespace} != pod namespace ${ns}`);
          if (!labelsMatch(d?.spec?.workloadLabels, labels)) problems.push(`Settings.workloadLabels ${JSON.stringify(d?.spec?.workloadLabels)} are not the pod's labels`);
        }
      }
    }
    // Clients reach the pod through Envoy only.
    for (const svc of ofKind(ms, 'Service').filter((x) => x?.metadata?.namespace === ns && labelsMatch(x?.spec?.selector, labels))) {
      for (const p of svc?.spec?.ports ?? []) {
        const tp = p?.targetPort ?? p?.port;
        const cport =
          typeof tp === 'number' ? tp : (pod?.containers ?? []).flatMap((x: Y) => x?.ports ?? []).find((x: Y) => x?.name === tp)?.containerPort;
        if (!env.listenerPorts.includes(cport)) problems.push(`Service ${svc?.metadata?.name}: port ${p?.name} targets ${cport}, not an Envoy listener`);
      }
    }
    // Only Envoy's port may be reachable from other pods.
    for (const np of ofKind(ms, 'NetworkPolicy').filter((n) => labelsMatch(n?.spec?.podSelector?.matchLabels, labels))) {
      for (const rule of np?.spec?.ingress ?? []) {
        const ports = (rule?.ports ?? []).map((p: Y) => p?.port);
        if (ports.length === 0) problems.push(`NetworkPolicy ${np?.metadata?.name}: an ingress rule without ports opens every port`);
        for (const p of ports) if (!env.listenerPorts.includes(p)) problems.push(`NetworkPolicy ${np?.metadata?.name}: port ${p} is not Envoy's`);
      }
    }
    if (!ofKind(ms, 'NetworkPolicy').some((n) => labelsMatch(n?.spec?.podSelector?.matchLabels, labels))) {
      problems.push(`Deployment ${wl?.metadata?.name}: no NetworkPolicy keeps other pods away from the app and obo-authz ports`);
    }
  }
  return problems;
}

// ------------------------------------------------------------------------------------------
// Istio
// ------------------------------------------------------------------------------------------

function checkIstio(mesh: Y, policies: Y[], shared: Manifest[]): string[] {
  const problems: string[] = [];
  const providers: Y[] = mesh?.spec?.meshConfig?.extensionProviders ?? [];
  if (mesh?.kind !== 'IstioOperator' || !mesh?.apiVersion?.startsWith('install.istio.io/')) problems.push('mesh config must be an IstioOperator');
  const custom = policies.filter((p) => p?.kind === 'AuthorizationPolicy' && p?.spec?.action === 'CUSTOM');
  if (custom.length === 0) problems.push('no AuthorizationPolicy with action: CUSTOM');
  const pn = mesh?.spec?.meshConfig?.pathNormalization?.normalization;
  if (pn !== DEFAULT_SETTINGS.pathNormalization) problems.push(`meshConfig.pathNormalization.normalization ${pn} != obo-authz's ${DEFAULT_SETTINGS.pathNormalization}`);
  for (const p of custom) {
    const id = `AuthorizationPolicy ${p?.metadata?.namespace}/${p?.metadata?.name}`;
    if (!['security.istio.io/v1', 'security.istio.io/v1beta1'].includes(p?.apiVersion)) problems.push(`${id}: apiVersion ${p?.apiVersion}`);
    if (!p?.metadata?.namespace) problems.push(`${id}: namespace missing`);
    if (!Array.isArray(p?.spec?.rules) || p.spec.rules.length === 0) problems.push(`${id}: CUSTOM needs rules (without them it matches nothing)`);
    const name = p?.spec?.provider?.name;
    const prov = providers.find((x) => x?.name === name);
    if (!prov) {
      problems.push(`${id}: provider ${name} is not in meshConfig.extensionProviders`);
      continue;
    }
    const g = prov.envoyExtAuthzGrpc;
    if (!g) {
      problems.push(`provider ${name}: must be envoyExtAuthzGrpc`);
      continue;
    }
    if (g.failOpen !== false) problems.push(`provider ${name}: failOpen must be false`);
    if (typeof g.timeout !== 'string') problems.push(`provider ${name}: set timeout (Istio's default is 600s)`);
    const m = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local$/.exec(String(g.service));
    if (!m) {
      problems.push(`provider ${name}: service ${g.service} is not <service>.<namespace>.svc.cluster.local`);
      continue;
    }
    const svc = find(shared, 'Service', m[2], m[1]!);
    if (!svc) {
      problems.push(`provider ${name}: Service ${m[2]}/${m[1]} is not in deploy/kubernetes/shared`);
      continue;
    }
    const sp = (svc.spec?.ports ?? []).find((x: Y) => x?.port === Number(g.port));
    if (!sp) {
      problems.push(`provider ${name}: port ${g.port} is not a port of Service ${m[1]}`);
      continue;
    }
    if (sp.appProtocol !== 'grpc' && !String(sp.name).startsWith('grpc')) problems.push(`provider ${name}: Service port ${g.port} is not the gRPC port`);
    // ... and that Service port really lands on obo-authz's --grpc-address.
    const wl = podSpecs(shared).find(({ wl }) => labelsMatch(svc.spec?.selector, wl?.spec?.template?.metadata?.labels));
    const c = (wl?.pod?.containers ?? []).find(isOboContainer);
    const a = c ? serveArgs((c.args ?? []).map(String), [], 'obo-authz') : undefined;
    const cport = (c?.ports ?? []).find((x: Y) => x?.name === sp.targetPort || x?.containerPort === sp.targetPort)?.containerPort;
    if (!a || cport !== a.grpc.port) problems.push(`provider ${name}: Service targetPort ${sp.targetPort} does not reach obo-authz's gRPC port`);
  }
  return problems;
}

// ------------------------------------------------------------------------------------------
// The tests
// ------------------------------------------------------------------------------------------

const clone = <T>(v: T): T => structuredClone(v);
type Mutation<T> = [string, (x: T) => void, string];

function expectRejects<T>(good: T, check: (x: T) => string[], cases: Mutation<T>[]): void {
  for (const [label, mutate, expected] of cases) {
    const bad = clone(good);
    mutate(bad);
    const problems = check(bad);
    expect(problems.join('\n'), `mutation "${label}" should be reported`).toContain(expected);
  }
}

const ENVOY_FILE = rel('envoy', 'envoy.yaml');
const envoyDemo: Y = readYaml('envoy', 'envoy.yaml');
const composeDemo: Y = readYaml('envoy', 'docker-compose.yaml');
const hcmOf = (cfg: Y) => cfg.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
const extAuthzOf = (cfg: Y) => hcmOf(cfg).http_filters.find((f: Y) => f.name === FILTER.extAuthz);
const routesOf = (cfg: Y) => hcmOf(cfg).route_config.virtual_hosts[0].routes;
const routeFor = (cfg: Y, prefix: string) =>
  routesOf(cfg).find((r: Y) => r.match.path_separated_prefix === prefix || r.match.prefix === prefix || r.match.path === prefix);
const oboClusterOf = (cfg: Y) => cfg.static_resources.clusters.find((c: Y) => c.name === extAuthzOf(cfg).typed_config.grpc_service.envoy_grpc.cluster_name);

describe('envoy/envoy.yaml', () => {
  const checkDemo = (cfg: Y) => checkEnvoy(cfg, { obo: { port: SERVICE.grpcPort }, namespace: 'demo' }).problems;

  it('is a consistent ext_authz v3 bootstrap', () => {
    expect(checkDemo(envoyDemo)).toEqual([]);
  });

  it('has the health route unauthenticated and context_extensions with backends', () => {
    const { facts } = checkEnvoy(envoyDemo, { obo: { port: SERVICE.grpcPort } });
    expect(facts.unauthenticatedPaths).toEqual(['/healthz']);
    expect(facts.contextExtensions.map((c) => c.backend).filter(Boolean).sort()).toEqual(['mcp-tools', 'weather-api']);
  });

  it('rejects broken copies', () => {
    expectRejects<Y>(envoyDemo, checkDemo, [
      ['renamed ext_authz cluster', (c) => (oboClusterOf(c).name = 'authz'), 'is not defined in clusters'],
      ['filter renamed', (c) => (extAuthzOf(c).name = 'envoy.ext_authz'), `no ${FILTER.extAuthz} http filter`],
      ['v2 @type', (c) => (extAuthzOf(c).typed_config['@type'] = TYPE.extAuthz.replace('.v3.', '.v2.')), 'ext_authz @type'],
      ['transport V2', (c) => (extAuthzOf(c).typed_config.transport_api_version = 'V2'), 'must be V3'],
      ['fail open', (c) => (extAuthzOf(c).typed_config.failure_mode_allow = true), 'failure_mode_allow'],
      ['failure_mode_allow unset', (c) => delete extAuthzOf(c).typed_config.failure_mode_allow, 'failure_mode_allow'],
      ['no status_on_error', (c) => delete extAuthzOf(c).typed_config.status_on_error, 'status_on_error'],
      ['timeout default', (c) => delete extAuthzOf(c).typed_config.grpc_service.timeout, 'timeout must be 1s'],
      ['body buffering', (c) => (extAuthzOf(c).typed_config.with_request_body = { max_request_bytes: 8192 }), 'with_request_body'],
      [
        'allowed_headers without x-actor-token',
        (c) => (extAuthzOf(c).typed_config.allowed_headers = { patterns: [{ exact: 'authorization' }] }),
        'would drop x-actor-token',
      ],
      ['wrong port', (c) => (oboClusterOf(c).load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value = 9000), 'port 9000 != obo-authz gRPC port 9001'],
      ['HTTP/1 cluster', (c) => delete oboClusterOf(c).typed_extension_protocol_options, 'must speak HTTP/2'],
      ['router not last', (c) => hcmOf(c).http_filters.reverse(), 'must be the last http filter'],
      ['router @type', (c) => (hcmOf(c).http_filters[1].typed_config['@type'] = 'type.googleapis.com/envoy.config.filter.http.router.v2.Router'), 'router @type'],
      ['no router', (c) => hcmOf(c).http_filters.pop(), `no ${FILTER.router}`],
      ['no normalize_path', (c) => (hcmOf(c).normalize_path = false), 'normalize_path'],
      ['no merge_slashes', (c) => delete hcmOf(c).merge_slashes, 'merge_slashes'],
      ['escaped slashes kept', (c) => delete hcmOf(c).path_with_escaped_slashes_action, 'path_with_escaped_slashes_action'],
      ['route to missing cluster', (c) => (routeFor(c, '/mcp').route.cluster = 'mcp'), 'cluster mcp is not defined'],
      ['per-route key typo', (c) => {
        const r = routeFor(c, '/mcp');
        r.typed_per_filter_config['envoy.filters.http.extauthz'] = r.typed_per_filter_config[FILTER.extAuthz];
      }, 'names no http filter'],
      ['per-route @type', (c) => (routeFor(c, '/mcp').typed_per_filter_config[FILTER.extAuthz]['@type'] = TYPE.extAuthz), 'per-route @type'],
      ['unknown context key', (c) => (routeFor(c, '/mcp').typed_per_filter_config[FILTER.extAuthz].check_settings.context_extensions.ns = 'x'), 'key ns is not one the service reads'],
      ['wrong namespace', (c) => (routeFor(c, '/mcp').typed_per_filter_config[FILTER.extAuthz].check_settings.context_extensions.namespace = 'prod'), 'namespace prod != demo'],
      ['no namespace', (c) => delete routeFor(c, '/api/weather').typed_per_filter_config[FILTER.extAuthz].check_settings.context_extensions.namespace, 'namespace missing'],
      ['no per-route config', (c) => delete routeFor(c, '/').typed_per_filter_config, 'no envoy.filters.http.ext_authz per-route config'],
      ['health route authorized', (c) => (routeFor(c, '/healthz').typed_per_filter_config[FILTER.extAuthz] = { '@type': TYPE.extAuthzPerRoute, check_settings: { context_extensions: { namespace: 'demo' } } }), 'no /healthz route'],
      ['ext_authz disabled on a prefix', (c) => (routeFor(c, '/mcp').typed_per_filter_config[FILTER.extAuthz] = { '@type': TYPE.extAuthzPerRoute, disabled: true }), 'only be disabled on an exact path'],
      ['cluster_name mismatch', (c) => (oboClusterOf(c).load_assignment.cluster_name = 'x'), 'load_assignment.cluster_name'],
    ]);
  });

  it('speaks the gRPC API our proto/ defines (the Check path and the health service)', () => {
    const ext = readText('proto', 'envoy', 'service', 'auth', 'v3', 'external_auth.proto');
    expect(ext).toMatch(/^package envoy\.service\.auth\.v3;/m);
    expect(ext).toMatch(/service Authorization\s*\{[^}]*rpc Check\s*\(\s*CheckRequest\s*\)\s*returns\s*\(\s*CheckResponse\s*\)/s);
    const health = readText('proto', 'grpc', 'health', 'v1', 'health.proto');
    expect(health).toMatch(/^package grpc\.health\.v1;/m);
    expect(health).toMatch(/service Health\s*\{[^}]*rpc Check/s);
  });
});

describe('envoy/docker-compose.yaml', () => {
  const facts = checkEnvoy(envoyDemo, { obo: { port: SERVICE.grpcPort } }).facts;
  const check = (c: Y) => checkCompose(c, facts, rel('envoy'), ENVOY_FILE);

  it('matches envoy.yaml and the service', () => {
    expect(check(composeDemo)).toEqual([]);
  });

  it('rejects broken copies', () => {
    expectRejects<Y>(composeDemo, check, [
      ['service renamed', (c) => {
        c.services.authz = c.services['obo-authz'];
        delete c.services['obo-authz'];
        c.services.envoy.depends_on = { authz: { condition: 'service_healthy' }, echo: { condition: 'service_started' } };
      }, 'address obo-authz is not a compose service'],
      ['gRPC port changed', (c) => (c.services['obo-authz'].command[c.services['obo-authz'].command.indexOf('--grpc-address') + 1] = '0.0.0.0:9101'), 'obo-authz:9001 but the service listens on 9101'],
      ['echo port changed', (c) => (c.services.echo.environment.HTTP_PORT = '80'), 'echo:8080 but the service listens on 80'],
      ['config not mounted', (c) => (c.services['obo-authz'].volumes = []), '--config /etc/obo-authz is not a mounted volume'],
      ['config folder missing', (c) => (c.services['obo-authz'].volumes = ['./no-such-config:/etc/obo-authz:ro']), 'does not exist'],
      ['config elsewhere', (c) => {
        const cmd = c.services['obo-authz'].command;
        cmd[cmd.indexOf('--config') + 1] = '/config';
        c.services['obo-authz'].volumes = ['./config:/config:ro'];
      }, 'documented /etc/obo-authz'],
      ['no command', (c) => delete c.services['obo-authz'].command, 'first argument must be "serve"'],
      ['wrong Dockerfile', (c) => (c.services['obo-authz'].build.dockerfile = 'Containerfile'), 'does not exist'],
      ['envoy mounts another file', (c) => (c.services.envoy.volumes = ['./other.yaml:/etc/envoy/envoy.yaml:ro']), 'not the checked'],
      ['envoy -c path', (c) => (c.services.envoy.command = ['envoy', '-c', '/envoy.yaml']), '-c /envoy.yaml is not a mounted file'],
      ['listener not published', (c) => (c.services.envoy.ports = ['127.0.0.1:9901:9901']), 'listener port 8080 is not published'],
      ['no depends_on', (c) => delete c.services.envoy.depends_on, 'must depend on obo-authz'],
      ['healthcheck address', (c) => (c.services['obo-authz'].healthcheck.test = ['CMD', 'node', '/app/dist/src/main.js', 'health', '--server', '127.0.0.1:9001']), "probes 127.0.0.1:9001 but serve's health listener is 127.0.0.1:9003"],
      ['healthcheck not the CLI', (c) => (c.services['obo-authz'].healthcheck.test = ['CMD', 'node', '-e', "fetch('http://127.0.0.1:9002/readyz')"]), 'must run `node'],
      ['health listener moved', (c) => (c.services['obo-authz'].environment = { OBO_AUTHZ_HEALTH_ADDRESS: '0.0.0.0:9003' }), 'not a loopback HOST:PORT'],
    ]);
  });

  it('mounts a config folder that obo-authz loads, token exchange included', () => {
    const dir = rel('envoy', 'config');
    const listed = listConfigFiles([dir]).files.map((f) => f.slice(dir.length + 1));
    expect(listed).toEqual(['00-settings.yaml', '10-request-authentication.yaml', '20-authorization-policy.yaml', '30-token-exchange.yaml', '40-mcp-server.yaml']);
    const r = compileConfigFolder(dir);
    expect(r.issues.filter((i) => i.severity === 'error').map(formatIssue)).toEqual([]);
    expect(r.ok).toBe(true);
  });

  it('routes carry the namespace and labels the demo policies select, and backends the exchange example covers', () => {
    const docs = listConfigFiles([rel('envoy', 'config')]).files.flatMap((f) => readYamlDocs(f));
    const settings = docs.find((d) => d.kind === 'Settings');
    const labelsOf = (ce: Record<string, string>) =>
      Object.fromEntries(Object.entries(ce).filter(([k]) => k.startsWith('label.')).map(([k, v]) => [k.slice('label.'.length), v]));
    for (const ce of facts.contextExtensions) expect(ce.namespace).toBe(settings.spec.defaultNamespace);
    for (const p of docs.filter((d) => d.kind === 'AuthorizationPolicy' && d.spec?.selector)) {
      const reached = facts.contextExtensions.some((ce) => ce.namespace === p.metadata.namespace && labelsMatch(p.spec.selector.matchLabels, labelsOf(ce)));
      expect(reached, `policy ${p.metadata.name} is selected by some route`).toBe(true);
    }
    const exchanges = readYamlDocs(rel('envoy', 'config', '30-token-exchange.yaml')).filter((d) => d.kind === 'TokenExchangePolicy');
    for (const ce of facts.contextExtensions) {
      if (ce.backend) expect(exchanges.some((x) => (x.spec.match?.backends ?? []).includes(ce.backend)), `backend ${ce.backend}`).toBe(true);
    }
  });

  it('the one demo identity (examples/demo-keys/mint-demo-token.mjs) signs tokens the demo RequestAuthentication and AuthorizationPolicy accept', async () => {
    const token = execFileSync(process.execPath, [rel('examples', 'demo-keys', 'mint-demo-token.mjs'), '--sub', 'alice', '--scope', 'mcp:tools weather:read'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const ra = readYaml('envoy', 'config', '10-request-authentication.yaml');
    const rule = ra.spec.jwtRules[0];
    const { payload } = await jwtVerify(token, createLocalJWKSet(JSON.parse(rule.jwks)), { issuer: rule.issuer, audience: rule.audiences });
    expect(payload.sub).toBe('alice');
    const aps = readYamlDocs(rel('envoy', 'config', '20-authorization-policy.yaml'));
    for (const ap of aps) {
      const principals: string[] = ap.spec.rules.flatMap((r: Y) => r.from.flatMap((f: Y) => f.source.requestPrincipals));
      expect(principals.some((p) => p.endsWith('*') && `${payload.iss}/${payload.sub}`.startsWith(p.slice(0, -1)))).toBe(true);
    }
    expect(String(payload.scope).split(' ')).toContain('weather:read');
    // the quick start trusts the same identity provider (issuer and keys)
    const quick = readYaml('examples', 'quickstart', '10-request-authentication.yaml').spec.jwtRules[0];
    expect(quick.issuer).toBe(rule.issuer);
    expect(JSON.parse(quick.jwks)).toEqual(JSON.parse(rule.jwks));
  });

  it('ships usable demo STS key material (the quick start\'s) that differs from the IdP key', async () => {
    const sts = JSON.parse(readText('envoy', 'config', 'keys', 'demo-sts.private.jwk.json'));
    expect(sts).toEqual(JSON.parse(readText('examples', 'quickstart', 'keys', 'demo-sts.private.jwk.json')));
    const idp = JSON.parse(readText('examples', 'demo-keys', 'demo-idp.private.jwk.json'));
    await importJWK(sts, sts.alg);
    expect(sts.kid).not.toBe(idp.kid);
    expect(sts.d).not.toBe(idp.d);
    expect(readText('envoy', 'config', '30-token-exchange.yaml')).toContain(sts.kid);
  });

  it('README curl examples use published ports and existing routes', () => {
    const readme = readText('envoy', 'README.md');
    const published = Object.values(composeDemo.services).flatMap((s: Y) =>
      (s.ports ?? []).map((p: string) => Number(String(p).split(':').slice(-2)[0])),
    );
    // URLs of the curl commands (a URL quoted in a sample answer, such as resource_metadata, is no request)
    const curlLines = readme.split('\n').filter((l) => /\bcurl\b/.test(l)).join('\n');
    const urls = [...curlLines.matchAll(/https?:\/\/(?:localhost|127\.0\.0\.1):(\d+)(\/[^\s"'`)]*)?/g)];
    expect(urls.length).toBeGreaterThan(3);
    for (const u of urls) expect(published, u[0]).toContain(Number(u[1]));
    // URLs through Envoy must hit a real route, not the catch-all 404.
    const envoyPort = facts.listenerPorts[0]!;
    const routes = routesOf(envoyDemo).map((r: Y) => r.match);
    for (const u of urls.filter((x) => Number(x[1]) === envoyPort)) {
      const path = (u[2] ?? '/').split('?')[0]!;
      const hit = routes.some(
        (m: Y) => m.path === path || (m.path_separated_prefix && (path === m.path_separated_prefix || path.startsWith(`${m.path_separated_prefix}/`))),
      );
      expect(hit, `${u[0]} matches a route in envoy.yaml`).toBe(true);
    }
    for (const step of ['401', '403', '200']) expect(readme).toContain(step);
  });
});

describe('Dockerfile', () => {
  const text = readText('Dockerfile');
  const ignore = readText('.dockerignore');
  const check = (t: string) => checkDockerfile(t, ignore, ROOT);

  it('is multi-stage, production-only, non-root, with health check and the documented config path', () => {
    expect(check(text)).toEqual([]);
    expect(JSON.parse(readText('package.json')).bin['obo-authz']).toBe(SERVICE.entry);
  });

  it('rejects broken copies', () => {
    const cases: [string, string, string][] = [
      ['root user', text.replace('USER 1000:1000', 'USER root'), 'runs as root'],
      ['named user', text.replace('USER 1000:1000', 'USER node'), 'must be numeric'],
      ['no user', text.replace('USER 1000:1000\n', ''), 'no USER'],
      ['dev deps', text.replace('npm ci --omit=dev', 'npm ci'), 'npm ci --omit=dev'],
      ['node_modules from build', text.replace('--from=deps --chown=0:0 /src/node_modules', '--from=build --chown=0:0 /src/node_modules'), '--from=build'],
      ['missing stage', text.replace('--from=build --chown=0:0 /src/dist', '--from=compile --chown=0:0 /src/dist'), 'no such stage'],
      ['shell-form entrypoint', text.replace('ENTRYPOINT ["node", "/app/dist/src/main.js"]', 'ENTRYPOINT node /app/dist/src/main.js'), 'exec (JSON) form'],
      ['wrong entry', text.replace('ENTRYPOINT ["node", "/app/dist/src/main.js"]', 'ENTRYPOINT ["node", "/app/dist/main.js"]'), 'ENTRYPOINT must run node'],
      ['entry outside dist', text.replace('ENTRYPOINT ["node", "/app/dist/src/main.js"]', 'ENTRYPOINT ["node", "/srv/dist/src/main.js"]'), 'is not where dist/ was copied'],
      ['config path', text.replace('CMD ["serve", "--config", "/etc/obo-authz"]', 'CMD ["serve", "--config", "/config"]'), '--config /etc/obo-authz'],
      ['no healthcheck', text.replace(/HEALTHCHECK[^\n]*\\\n[^\n]*\n/, ''), 'no HEALTHCHECK'],
      ['healthcheck not the CLI', text.replace('"/app/dist/src/main.js", "health"]', '"/app/dist/src/main.js", "status"]'), 'HEALTHCHECK must run'],
      ['no health listener', text.replace(' \\\n    OBO_AUTHZ_HEALTH_ADDRESS=127.0.0.1:9003', ''), 'probes no address'],
      ['healthcheck elsewhere', text.replace('"health"]', '"health", "--server", "127.0.0.1:9002"]'), "serve's health listener is 127.0.0.1:9003"],
      ['no proto', text.replace('COPY --chown=0:0 proto ./proto\n', ''), 'does not copy proto/'],
      ['proto elsewhere', text.replace('COPY --chown=0:0 proto ./proto', 'COPY --chown=0:0 proto /proto'), 'must be a sibling of dist/'],
      ['no EXPOSE', text.replace('EXPOSE 9001 9002', 'EXPOSE 9002'), 'EXPOSE 9001 missing'],
      ['single stage', 'FROM node:20\nCOPY . .\nCMD ["node"]\n', 'multi-stage'],
      ['copy missing source', text.replace('COPY tsconfig.json tsconfig.build.json ./', 'COPY tsconfig.json tsconfig.prod.json ./'), 'COPY tsconfig.prod.json: not in the repository'],
    ];
    for (const [label, broken, expected] of cases) {
      expect(broken, `mutation "${label}" must change the text`).not.toBe(text);
      expect(check(broken).join('\n'), `mutation "${label}"`).toContain(expected);
    }
    expect(checkDockerfile(text, ignore.replace(/^src$/m, '') + '\nsrc\n', ROOT).join('\n')).toContain('excluded by .dockerignore');
    expect(checkDockerfile(text, ignore.replace(/^node_modules$/m, ''), ROOT).join('\n')).toContain('must exclude node_modules');
  });
});

describe('deploy/kubernetes', () => {
  const sharedDir = rel('deploy', 'kubernetes', 'shared');
  const sidecarDir = rel('deploy', 'kubernetes', 'sidecar');
  const shared = loadManifests(sharedDir);
  const sidecar = loadManifests(sidecarDir);
  const checkShared = (ms: Manifest[]) => [
    ...checkKubernetes(ms, sharedDir).problems,
    ...checkSharedRbac(ms),
    ...checkActorTokens(ms, 'obo-authz'),
  ];
  const checkSide = (ms: Manifest[]) => {
    const r = checkKubernetes(ms, sidecarDir);
    return [...r.problems, ...checkSidecar(ms, r.facts)];
  };
  const get = (ms: Manifest[], kind: string, name: string): Y => ms.find((m) => m.doc?.kind === kind && m.doc?.metadata?.name === name)!.doc;
  const container = (ms: Manifest[], dep: string, name: string): Y =>
    get(ms, 'Deployment', dep).spec.template.spec.containers.find((c: Y) => c.name === name);
  const setArg = (c: Y, flag: string, value: string) => (c.args[c.args.indexOf(flag) + 1] = value);

  it('shared: Deployment, Service, probes, ConfigMap, RBAC and actor tokens line up', () => {
    expect(checkShared(shared)).toEqual([]);
  });

  it('shared: the policies ConfigMap is a valid obo-authz config', () => {
    const { facts } = checkKubernetes(shared, sharedDir);
    expect(facts.oboConfigMaps).toHaveLength(1);
    const r = compileConfigMap(facts.oboConfigMaps[0]);
    expect(r.issues.filter((i) => i.severity === 'error').map(formatIssue)).toEqual([]);
  });

  it('shared: rejects broken copies', () => {
    expectRejects<Manifest[]>(shared, checkShared, [
      ['Service selector', (ms) => (get(ms, 'Service', 'obo-authz').spec.selector.app = 'authz'), 'selector matches no Deployment'],
      ['Service targetPort', (ms) => (get(ms, 'Service', 'obo-authz').spec.ports[0].targetPort = 'grpc-port'), 'targetPort grpc-port is no container port'],
      ['Deployment selector', (ms) => (get(ms, 'Deployment', 'obo-authz').spec.selector.matchLabels['app.kubernetes.io/name'] = 'x'), 'selector does not match the pod template labels'],
      ['PDB selector', (ms) => (get(ms, 'PodDisruptionBudget', 'obo-authz').spec.selector.matchLabels = { app: 'x' }), 'PodDisruptionBudget obo-authz/obo-authz: selector matches no Deployment'],
      ['readiness probe port', (ms) => (container(ms, 'obo-authz', 'obo-authz').readinessProbe.grpc.port = 9002), 'gRPC probe port 9002 != gRPC port 9001'],
      ['liveness probe port', (ms) => (container(ms, 'obo-authz', 'obo-authz').livenessProbe.httpGet.port = 9001), 'HTTP probe port 9001 != HTTP port 9002'],
      ['readiness not gRPC', (ms) => (container(ms, 'obo-authz', 'obo-authz').readinessProbe = { tcpSocket: { port: 9001 } }), 'readinessProbe must be a gRPC probe'],
      ['grpc on loopback', (ms) => setArg(container(ms, 'obo-authz', 'obo-authz'), '--grpc-address', '127.0.0.1:9001'), 'kubelet cannot probe it'],
      ['--grpc-address vs port', (ms) => setArg(container(ms, 'obo-authz', 'obo-authz'), '--grpc-address', '0.0.0.0:9100'), 'port "grpc" 9001 != --grpc-address port 9100'],
      ['config mount path', (ms) => (container(ms, 'obo-authz', 'obo-authz').volumeMounts[0].mountPath = '/config'), '--config /etc/obo-authz is not a mounted ConfigMap'],
      ['ConfigMap name', (ms) => (get(ms, 'ConfigMap', 'obo-authz-policies').metadata.name = 'policies'), 'ConfigMap obo-authz-policies not defined'],
      ['no requests', (ms) => delete container(ms, 'obo-authz', 'obo-authz').resources, 'resource requests missing'],
      ['root', (ms) => (get(ms, 'Deployment', 'obo-authz').spec.template.spec.securityContext.runAsNonRoot = false), 'must run as non-root'],
      ['image tag', (ms) => (container(ms, 'obo-authz', 'obo-authz').image = 'obo-authz:latest'), 'image tag latest'],
      ['ServiceAccount name', (ms) => (get(ms, 'ServiceAccount', 'obo-authz').metadata.name = 'authz'), 'ServiceAccount obo-authz not defined'],
      ['binding subject', (ms) => (get(ms, 'ClusterRoleBinding', 'obo-authz-tokenreview').subjects[0].namespace = 'default'), 'cannot create tokenreviews'],
      ['binding roleRef', (ms) => (get(ms, 'ClusterRoleBinding', 'obo-authz-tokenreview').roleRef.name = 'tokenreview'), 'roleRef ClusterRole tokenreview not defined'],
      ['RBAC too broad', (ms) => get(ms, 'ClusterRole', 'obo-authz-tokenreview').rules.push({ apiGroups: [''], resources: ['secrets'], verbs: ['get'] }), 'grants more than create on tokenreviews'],
      ['RBAC verbs', (ms) => (get(ms, 'ClusterRole', 'obo-authz-tokenreview').rules[0].verbs = ['get']), 'cannot create tokenreviews'],
      ['no API token', (ms) => (get(ms, 'Deployment', 'obo-authz').spec.template.spec.automountServiceAccountToken = false), 'needs its API token'],
      ['namespace not created', (ms) => (get(ms, 'Service', 'obo-authz').metadata.namespace = 'authz'), 'namespace authz is not created here'],
      ['actor audience', (ms) => (get(ms, 'Deployment', 'research-agent').spec.template.spec.volumes[0].projected.sources[0].serviceAccountToken.audience = 'https://kubernetes.default.svc'), 'audience https://kubernetes.default.svc != obo-authz'],
      ['actor token path', (ms) => (get(ms, 'Deployment', 'research-agent').spec.template.spec.volumes[0].projected.sources[0].serviceAccountToken.path = 'token'), 'no env var points the agent at'],
      ['short-lived token', (ms) => (get(ms, 'Deployment', 'research-agent').spec.template.spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds = 60), 'expirationSeconds must be >= 600'],
    ]);
    const withoutOne = shared.filter((m) => m.file !== '50-agent-example.yaml');
    expect(checkKubernetes(withoutOne, sharedDir).problems.join('\n')).toContain('kustomization.yaml lists 50-agent-example.yaml, which holds no manifest');
  });

  it('shared: scales out with an HPA, and the Redis / login Secrets the config names are mounted there', () => {
    expect(checkScaleOut(shared)).toEqual([]);
  });

  it('shared: scale-out checks reject broken copies', () => {
    const hpa = (ms: Manifest[]) => get(ms, 'HorizontalPodAutoscaler', 'obo-authz');
    const cm = (ms: Manifest[]) => get(ms, 'ConfigMap', 'obo-authz-policies');
    expectRejects<Manifest[]>(shared, checkScaleOut, [
      ['HPA target', (ms) => (hpa(ms).spec.scaleTargetRef.name = 'authz'), 'targets Deployment/authz'],
      ['one replica', (ms) => (hpa(ms).spec.minReplicas = 1), 'minReplicas must be >= 2'],
      ['max below min', (ms) => (hpa(ms).spec.maxReplicas = 1), 'maxReplicas must be >= minReplicas'],
      ['no CPU request', (ms) => delete container(ms, 'obo-authz', 'obo-authz').resources.requests.cpu, 'needs a CPU request'],
      ['PDB too high', (ms) => (get(ms, 'PodDisruptionBudget', 'obo-authz').spec.minAvailable = 2), 'must stay below minReplicas'],
      ['Redis Secret mount path', (ms) => (container(ms, 'obo-authz', 'obo-authz').volumeMounts.find((m: Y) => m.name === 'redis-secrets').mountPath = '/secrets/redis'), 'is not in a Secret volume mounted at /var/run/secrets/obo-authz/redis'],
      ['Redis Secret item', (ms) => (get(ms, 'Deployment', 'obo-authz').spec.template.spec.volumes.find((v: Y) => v.name === 'redis-secrets').secret.items.pop()), 'has no item ca.crt'],
      ['Redis without TLS', (ms) => (cm(ms).data['30-browser-login.yaml'] = cm(ms).data['30-browser-login.yaml'].replace(/ {6}tls:\n.*\n/, '')), 'Redis without TLS'],
      ['Redis without password', (ms) => (cm(ms).data['30-browser-login.yaml'] = cm(ms).data['30-browser-login.yaml'].replace(/ {6}passwordFile: .*\n/, '')), 'Redis without a password'],
      ['cookie sessions with replicas', (ms) => (cm(ms).data['30-browser-login.yaml'] = cm(ms).data['30-browser-login.yaml'].replace(/ {4}redis:[\s\S]*$/, '')), 'need the Redis session store'],
    ]);
  });

  it('sidecar: Envoy, obo-authz and the app share one pod consistently', () => {
    expect(checkSide(sidecar)).toEqual([]);
  });

  it('sidecar: the obo-authz ConfigMap is a valid obo-authz config', () => {
    const { facts } = checkKubernetes(sidecar, sidecarDir);
    expect(facts.oboConfigMaps).toHaveLength(1);
    const r = compileConfigMap(facts.oboConfigMaps[0]);
    expect(r.issues.filter((i) => i.severity === 'error').map(formatIssue)).toEqual([]);
  });

  it('sidecar: rejects broken copies', () => {
    const envoyYaml = (ms: Manifest[]) => get(ms, 'ConfigMap', 'mcp-server-envoy').data;
    const editEnvoy = (ms: Manifest[], f: (cfg: Y) => void) => {
      const cfg = parseYaml(envoyYaml(ms)['envoy.yaml']);
      f(cfg);
      envoyYaml(ms)['envoy.yaml'] = JSON.stringify(cfg);
    };
    const settings = (ms: Manifest[]) => get(ms, 'ConfigMap', 'mcp-server-obo-authz').data;
    expectRejects<Manifest[]>(sidecar, checkSide, [
      ['obo-authz gRPC port', (ms) => setArg(container(ms, 'mcp-server', 'obo-authz'), '--grpc-address', '0.0.0.0:9005'), 'port 9001 != obo-authz gRPC port 9005'],
      ['ext_authz over the network', (ms) => editEnvoy(ms, (c) => (oboClusterOf(c).load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address = 'obo-authz.obo-authz')), 'address obo-authz.obo-authz != 127.0.0.1'],
      ['fail open', (ms) => editEnvoy(ms, (c) => (extAuthzOf(c).typed_config.failure_mode_allow = true)), 'failure_mode_allow'],
      ['app port', (ms) => (container(ms, 'mcp-server', 'app').ports[0].containerPort = 8000), 'port 3000 is no container port in the pod'],
      ['route namespace', (ms) => editEnvoy(ms, (c) => (routeFor(c, '/mcp').typed_per_filter_config[FILTER.extAuthz].check_settings.context_extensions.namespace = 'default')), 'namespace default != mcp'],
      ['Settings namespace', (ms) => (settings(ms)['00-settings.yaml'] = settings(ms)['00-settings.yaml'].replace('defaultNamespace: mcp', 'defaultNamespace: default')), 'Settings.defaultNamespace default != pod namespace mcp'],
      ['Settings labels', (ms) => (settings(ms)['00-settings.yaml'] = settings(ms)['00-settings.yaml'].replace('app: mcp-server', 'app: mcp')), 'Settings.workloadLabels'],
      ['envoy -c path', (ms) => (container(ms, 'mcp-server', 'envoy').args[1] = '/etc/envoy/bootstrap.yaml'), 'is not a key of a mounted ConfigMap'],
      ['envoy readiness port', (ms) => (container(ms, 'mcp-server', 'envoy').readinessProbe.httpGet.port = 9901), 'probe port 9901 is no Envoy listener'],
      ['NetworkPolicy opens 9001', (ms) => get(ms, 'NetworkPolicy', 'mcp-server-ingress').spec.ingress[0].ports.push({ port: 9001, protocol: 'TCP' }), "port 9001 is not Envoy's"],
      ['NetworkPolicy all ports', (ms) => delete get(ms, 'NetworkPolicy', 'mcp-server-ingress').spec.ingress[0].ports, 'opens every port'],
      ['no NetworkPolicy', (ms) => (get(ms, 'NetworkPolicy', 'mcp-server-ingress').spec.podSelector.matchLabels = { app: 'other' }), 'no NetworkPolicy keeps other pods away'],
      ['Service bypasses Envoy', (ms) => (get(ms, 'Service', 'mcp-server').spec.ports[0].targetPort = 'grpc'), 'targets 9001, not an Envoy listener'],
      ['Service targetPort', (ms) => (get(ms, 'Service', 'mcp-server').spec.ports[0].targetPort = 'https'), 'targetPort https is no container port'],
      ['health route authorized', (ms) => editEnvoy(ms, (c) => routesOf(c).shift()), 'no /healthz route'],
    ]);
  });

  it('the example agent calls the sidecar MCP server Service', () => {
    const agent = get(shared, 'Deployment', 'research-agent').spec.template.spec.containers[0];
    const url = new URL(agent.env.find((e: Y) => e.name === 'MCP_SERVER_URL').value);
    const [svc, ns] = url.hostname.split('.');
    const service = get(sidecar, 'Service', svc!);
    expect(service.metadata.namespace).toBe(ns);
    expect(service.spec.ports.map((p: Y) => p.port)).toContain(Number(url.port));
    expect(url.pathname).toBe('/mcp');
  });
});

describe('deploy/istio', () => {
  const mesh = readYaml('deploy', 'istio', 'mesh-config.yaml');
  const policies = readYamlDocs(rel('deploy', 'istio', 'authorization-policy.yaml'));
  const shared = loadManifests(rel('deploy', 'kubernetes', 'shared'));
  const check = (m: Y) => checkIstio(m.mesh, m.policies, m.shared);
  const good = { mesh, policies, shared };
  const prov = (m: Y) => m.mesh.spec.meshConfig.extensionProviders[0];

  it('the CUSTOM policy names the extension provider, which points at the shared Service', () => {
    expect(check(good)).toEqual([]);
  });

  it('the CUSTOM policy is accepted by obo-authz as a verbatim Istio document', () => {
    const dir = mkdtempSync(join(tmpdir(), 'obo-authz-istio-'));
    try {
      writeFileSync(join(dir, 'ap.yaml'), readText('deploy', 'istio', 'authorization-policy.yaml'));
      const r = compileConfigFolder(dir);
      expect(r.issues.filter((i) => i.severity === 'error').map(formatIssue)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects broken copies', () => {
    expectRejects<Y>(good, check, [
      ['provider name', (m) => (m.policies[0].spec.provider.name = 'ext-authz'), 'provider ext-authz is not in meshConfig.extensionProviders'],
      ['service host', (m) => (prov(m).envoyExtAuthzGrpc.service = 'authz.obo-authz.svc.cluster.local'), 'Service obo-authz/authz is not in deploy/kubernetes/shared'],
      ['service namespace', (m) => (prov(m).envoyExtAuthzGrpc.service = 'obo-authz.default.svc.cluster.local'), 'Service default/obo-authz'],
      ['port', (m) => (prov(m).envoyExtAuthzGrpc.port = 9002), 'is not the gRPC port'],
      ['unknown port', (m) => (prov(m).envoyExtAuthzGrpc.port = 8080), 'port 8080 is not a port of Service'],
      ['fail open', (m) => (prov(m).envoyExtAuthzGrpc.failOpen = true), 'failOpen must be false'],
      ['mesh path normalization', (m) => (m.mesh.spec.meshConfig.pathNormalization.normalization = 'BASE'), 'meshConfig.pathNormalization.normalization BASE'],
      ['no timeout', (m) => delete prov(m).envoyExtAuthzGrpc.timeout, 'set timeout'],
      ['HTTP provider', (m) => {
        prov(m).envoyExtAuthzHttp = prov(m).envoyExtAuthzGrpc;
        delete prov(m).envoyExtAuthzGrpc;
      }, 'must be envoyExtAuthzGrpc'],
      ['no CUSTOM', (m) => (m.policies[0].spec.action = 'ALLOW'), 'no AuthorizationPolicy with action: CUSTOM'],
      ['no rules', (m) => delete m.policies[0].spec.rules, 'CUSTOM needs rules'],
      ['old apiVersion', (m) => (m.policies[0].apiVersion = 'security.istio.io/v1alpha1'), 'apiVersion security.istio.io/v1alpha1'],
      ['Service targetPort drift', (m) => {
        const svc = m.shared.find((x: Manifest) => x.doc.kind === 'Service').doc;
        svc.spec.ports[0].targetPort = 'http-admin';
      }, "does not reach obo-authz's gRPC port"],
    ]);
  });
});

describe('deploy/README.md', () => {
  it('references files that exist', () => {
    const readme = readText('deploy', 'README.md');
    const paths = [...readme.matchAll(/`((?:deploy|envoy|examples)\/[\w./-]+)`/g)].map((m) => m[1]!);
    expect(paths.length).toBeGreaterThan(3);
    for (const p of paths) {
      if (p.startsWith('examples/')) continue; // written by the lead in parallel
      expect(existsSync(rel(p)) && (statSync(rel(p)).isFile() || statSync(rel(p)).isDirectory()), p).toBe(true);
    }
  });
});
