/** Shared helpers for the AuthorizationPolicy tests: build a state from a compact request description. */
import { stringify } from 'yaml';
import type { CompiledConfig } from '../../../src/pipeline/compile.js';
import { buildRequestContext, type RawCheckRequest } from '../../../src/core/context.js';
import type { Identity } from '../../../src/core/identity.js';
import { Trace, UpstreamMutations, type CheckState } from '../../../src/core/state.js';
import { mustCompile } from '../../helpers/config.js';
import { createTestRuntime, type TestRuntime } from '../../helpers/runtime.js';

export interface PeerSpec {
  ip?: string;
  port?: number;
  principal?: string;
  labels?: Record<string, string>;
}

export interface RequestSpec {
  method?: string;
  host?: string;
  /** May include a query string (it is stripped by the context builder). */
  path?: string;
  headers?: Record<string, string>;
  source?: PeerSpec;
  destination?: PeerSpec;
  sni?: string;
  contextExtensions?: Record<string, string>;
}

export interface IdentitySpec {
  iss?: string;
  sub?: string;
  aud?: string[];
  azp?: string;
  claims?: Record<string, unknown>;
}

function peer(p: PeerSpec | undefined) {
  if (!p) return undefined;
  return {
    address: p.ip !== undefined || p.port !== undefined ? { socket_address: { address: p.ip ?? '', port_value: p.port ?? 0 } } : undefined,
    principal: p.principal,
    labels: p.labels,
  };
}

export function rawRequest(r: RequestSpec): RawCheckRequest {
  return {
    attributes: {
      source: peer(r.source),
      destination: peer(r.destination),
      request: {
        http: {
          id: 'test-request',
          method: r.method ?? 'GET',
          host: r.host ?? 'example.com',
          path: r.path ?? '/',
          headers: r.headers ?? {},
        },
      },
      context_extensions: r.contextExtensions ?? {},
      tls_session: r.sni !== undefined ? { sni: r.sni } : null,
    },
  };
}

export function makeIdentity(s: IdentitySpec | null | undefined): Identity | null {
  if (!s) return null;
  const iss = s.iss ?? '';
  const sub = s.sub ?? '';
  const claims: Record<string, unknown> = { ...(s.claims ?? {}) };
  if (s.iss !== undefined) claims['iss'] = iss;
  if (s.sub !== undefined) claims['sub'] = sub;
  if (s.aud !== undefined) claims['aud'] = s.aud;
  if (s.azp !== undefined) claims['azp'] = s.azp;
  return {
    kind: 'jwt',
    principal: `${iss}/${sub}`,
    issuer: iss,
    subject: sub,
    audiences: s.aud ?? [],
    presenter: s.azp ?? '',
    claims,
    admittedBy: 'test/jwt[0]',
  };
}

export function makeState(cfg: CompiledConfig, runtime: TestRuntime, req: RequestSpec, identity: IdentitySpec | null | undefined, explain = false): CheckState {
  const ctx = buildRequestContext(rawRequest(req), { settings: cfg.settings });
  const id = makeIdentity(identity);
  return {
    ctx,
    runtime,
    signal: new AbortController().signal,
    trace: explain ? new Trace() : null,
    identity: id,
    identities: id ? [id] : [],
    actor: null,
    tokenLocations: [],
    upstream: new UpstreamMutations(),
    attribution: {},
  };
}

/** Compile a list of documents (objects) as one multi-document YAML file. */
export function compileDocs(docs: readonly unknown[], runtime = createTestRuntime()): CompiledConfig {
  return mustCompile(docs.map((d) => stringify(d)).join('---\n'), runtime);
}

export function policy(name: string, spec: unknown, extra: { namespace?: string; annotations?: Record<string, string>; apiVersion?: string } = {}) {
  return {
    apiVersion: extra.apiVersion ?? 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name, namespace: extra.namespace ?? 'foo', ...(extra.annotations ? { annotations: extra.annotations } : {}) },
    spec,
  };
}
