/**
 * The `MCPServer` kind (obo-authz.dev/v1alpha1): one MCP server as an OAuth protected
 * resource (RFC 9728) — its canonical resource URI (RFC 8707), authorization servers,
 * scopes and documentation, the scopes each tool / resource / prompt / method needs, the
 * audience check and the body limit. Scoped like the Istio kinds (namespace, selector,
 * targetRefs) and matched by host and path. docs/mcp.md documents every field; every
 * error names the file, document and field.
 */
import type { CompileContext, KindDocument } from '../config/kinds.js';
import type { Path } from '../config/issues.js';
import { bool, duration, list, num, obj, str, type Schema } from '../config/schema.js';
import { parseScope, type CompiledScope } from '../config/scope.js';
import { compileRoute, normalizeHost, type RouteMatch } from '../match/route.js';
import { StringSet } from '../match/strings.js';
import { DEFAULT_MAX_BODY_BYTES } from './jsonrpc.js';

export const WELL_KNOWN = '/.well-known/oauth-protected-resource';
const BEARER_METHODS = ['header', 'body', 'query'] as const;

interface RawScopeRule {
  names?: string[];
  uris?: string[];
  scopes?: string[];
}
interface RawSpec {
  selector?: unknown;
  targetRef?: unknown;
  targetRefs?: unknown;
  resource?: string;
  match?: { hosts?: string[]; paths?: string[] };
  authorizationServers?: string[];
  scopesSupported?: string[];
  bearerMethodsSupported?: string[];
  resourceName?: string;
  resourceDocumentation?: string;
  resourcePolicyUri?: string;
  resourceTosUri?: string;
  metadata?: { maxAge?: number; allowOrigins?: string[] };
  requireToken?: boolean;
  audience?: { check?: boolean; also?: string[] };
  scopes?: { required?: string[]; methods?: RawScopeRule[]; tools?: RawScopeRule[]; resources?: RawScopeRule[]; prompts?: RawScopeRule[] };
  maxBodyBytes?: number;
  policyDenial?: 'JSONRPCError' | 'Forbidden';
}

/** Scope tokens (RFC 6750 §3: %x21 / %x23-5B / %x5D-7E), so a challenge can carry them. */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;
const scopeToken = () => str({ nonEmpty: true, pattern: SCOPE_TOKEN, patternHint: 'must be a scope token (visible ASCII, no space, `"` or `\\`)' });
const nonEmpty = () => str({ nonEmpty: true });
const scopeRule = (key: 'names' | 'uris') =>
  obj<RawScopeRule>({ [key]: list(nonEmpty(), { minItems: 1 }), scopes: list(scopeToken(), { minItems: 1 }) }, { required: [key, 'scopes'] });

const specSchema: Schema<RawSpec> = obj<RawSpec>(
  {
    selector: { typeName: 'mapping', parse: (v) => v },
    targetRef: { typeName: 'mapping', parse: (v) => v },
    targetRefs: { typeName: 'list', parse: (v) => v },
    resource: nonEmpty(),
    match: obj({ hosts: list(nonEmpty(), { minItems: 1 }), paths: list(nonEmpty(), { minItems: 1 }) }),
    authorizationServers: list(nonEmpty(), { minItems: 1 }),
    scopesSupported: list(scopeToken()),
    bearerMethodsSupported: list(str({ enum: BEARER_METHODS })),
    resourceName: nonEmpty(),
    resourceDocumentation: nonEmpty(),
    resourcePolicyUri: nonEmpty(),
    resourceTosUri: nonEmpty(),
    metadata: obj({ maxAge: duration({ minMs: 0, maxMs: 7 * 86_400_000 }), allowOrigins: list(nonEmpty(), { minItems: 1 }) }),
    requireToken: bool(),
    audience: obj({ check: bool(), also: list(nonEmpty(), { minItems: 1 }) }),
    scopes: obj({
      required: list(scopeToken()),
      methods: list(scopeRule('names')),
      tools: list(scopeRule('names')),
      resources: list(scopeRule('uris')),
      prompts: list(scopeRule('names')),
    }),
    maxBodyBytes: num({ int: true, min: 1, max: 64 * 1024 * 1024 }),
    policyDenial: str({ enum: ['JSONRPCError', 'Forbidden'] }) as Schema<'JSONRPCError' | 'Forbidden'>,
  },
  { required: ['resource', 'authorizationServers'] },
);

export interface ScopeRule {
  readonly match: StringSet;
  readonly scopes: readonly string[];
}

export interface CompiledMcpServer {
  readonly ref: string;
  readonly scope: CompiledScope;
  /** The canonical resource URI, verbatim (RFC 9728 §3.3: the metadata's `resource` must be identical). */
  readonly resource: string;
  /** `scheme://authority` of the resource (as written). */
  readonly origin: string;
  /** Path (and query) of the resource after the host, without a terminating `/` after the host ('' when none). */
  readonly resourcePath: string;
  /** Path the path-inserted metadata is served at: `/.well-known/oauth-protected-resource<resourcePath>`. */
  readonly wellKnownPath: string;
  /** The metadata URL put in `resource_metadata` challenges. */
  readonly metadataUrl: string;
  /** The RFC 9728 document, serialized once. */
  readonly metadataJson: string;
  readonly maxAgeSeconds: number;
  /** null = any origin (`*`). */
  readonly allowOrigins: readonly string[] | null;
  /** `match` (hosts normalized, paths without query). */
  readonly route: RouteMatch;
  readonly requireToken: boolean;
  readonly checkAudience: boolean;
  /** Accepted `aud` values, normalized (see normalizeAudience). */
  readonly audiences: ReadonlySet<string>;
  readonly requiredScopes: readonly string[];
  readonly methodScopes: readonly ScopeRule[];
  readonly toolScopes: readonly ScopeRule[];
  readonly resourceScopes: readonly ScopeRule[];
  readonly promptScopes: readonly ScopeRule[];
  /** Per-message scopes are configured: the body is read to find the scopes a request needs. */
  readonly perMessageScopes: boolean;
  readonly maxBodyBytes: number;
  readonly policyDenial: 'JSONRPCError' | 'Forbidden';
}

/**
 * An `aud` value or resource URI as compared for the RFC 8707 check: scheme and host are
 * case-insensitive (the MCP spec asks servers to accept upper-case ones), and one trailing
 * `/` is ignored (`https://mcp.example.com` and the `https://mcp.example.com/` a URL parser
 * makes of it name the same resource). The path stays case-sensitive.
 */
export function normalizeAudience(a: string): string {
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)([^/?#]*)(.*)$/.exec(a);
  let s = m ? `${m[1]!.toLowerCase()}${m[2]!.toLowerCase()}${m[3]!}` : a;
  if (s.endsWith('/')) s = s.slice(0, -1);
  return s;
}

interface ParsedResource {
  origin: string;
  rest: string;
  host: string;
}

/** RFC 8707 §2 / MCP "Canonical Server URI": absolute http(s) URI, no fragment. */
function parseResource(k: KindDocument, v: string, path: Path): ParsedResource | undefined {
  const m = /^(https?):\/\/([^/?#]+)([^#]*)$/i.exec(v);
  if (!m) {
    k.v.error(path, v.includes('#') ? 'must not contain a fragment (RFC 8707 §2)' : 'must be an absolute http(s) URI such as https://mcp.example.com/mcp');
    return undefined;
  }
  try {
    new URL(v);
  } catch {
    k.v.error(path, 'is not a valid URI');
    return undefined;
  }
  if (m[1] !== m[1]!.toLowerCase() || m[2] !== m[2]!.toLowerCase()) {
    k.v.warn(path, 'the canonical form has a lower-case scheme and host; clients compare the metadata `resource` with the URL they use');
  }
  // RFC 9728 §3.1: a terminating `/` following the host is removed before the well-known
  // string is inserted.
  const rest = m[3] === '/' ? '' : m[3]!;
  return { origin: `${m[1]}://${m[2]}`, rest, host: m[2]! };
}

function checkUrls(k: KindDocument, urls: readonly string[] | undefined, path: Path): void {
  urls?.forEach((u, i) => checkUrl(k, u, [...path, i]));
}

function checkUrl(k: KindDocument, u: string | undefined, path: Path): void {
  if (u !== undefined && (!/^https?:\/\/[^/?#]+/i.test(u) || u.includes('#'))) k.v.error(path, 'must be an absolute http(s) URL without a fragment');
}

function rules(raw: RawScopeRule[] | undefined, key: 'names' | 'uris'): ScopeRule[] {
  return (raw ?? []).map((r) => ({ match: new StringSet(r[key]!, { star: 'nonEmpty' }), scopes: Object.freeze([...r.scopes!]) }));
}

/** The RFC 9728 §2 document (only the members configured; `bearer_methods_supported` defaults to header). */
function metadataDocument(resource: string, s: RawSpec): Record<string, unknown> {
  const doc: Record<string, unknown> = { resource, authorization_servers: s.authorizationServers };
  if (s.scopesSupported) doc['scopes_supported'] = s.scopesSupported;
  doc['bearer_methods_supported'] = s.bearerMethodsSupported ?? ['header'];
  if (s.resourceName) doc['resource_name'] = s.resourceName;
  if (s.resourceDocumentation) doc['resource_documentation'] = s.resourceDocumentation;
  if (s.resourcePolicyUri) doc['resource_policy_uri'] = s.resourcePolicyUri;
  if (s.resourceTosUri) doc['resource_tos_uri'] = s.resourceTosUri;
  return doc;
}

/** Validate and compile one MCPServer; undefined after reporting errors. */
export function compileMcpServer(k: KindDocument, cc: CompileContext): CompiledMcpServer | undefined {
  const before = k.v.issues.filter((i) => i.severity === 'error').length;
  const rawSpec = (k.spec ?? {}) as Record<string, unknown>;
  if (k.spec === undefined || k.spec === null) {
    k.v.error(['spec'], 'required field is missing (spec.resource and spec.authorizationServers are required)');
    return undefined;
  }
  const s = specSchema.parse(rawSpec, ['spec'], k.v);
  const scope = parseScope(k, rawSpec, cc.settings);
  if (!s) return undefined;
  const res = parseResource(k, s.resource!, ['spec', 'resource']);
  checkUrls(k, s.authorizationServers, ['spec', 'authorizationServers']);
  checkUrl(k, s.resourceDocumentation, ['spec', 'resourceDocumentation']);
  checkUrl(k, s.resourcePolicyUri, ['spec', 'resourcePolicyUri']);
  checkUrl(k, s.resourceTosUri, ['spec', 'resourceTosUri']);
  const required = s.scopes?.required ?? [];
  if (s.scopesSupported?.includes('offline_access')) {
    k.v.warn(['spec', 'scopesSupported'], 'the MCP authorization spec says protected resources SHOULD NOT list offline_access (refresh tokens are not a resource requirement)');
  }
  if (s.audience?.check === false && s.audience.also) k.v.error(['spec', 'audience', 'also'], 'has no effect with audience.check: false');
  if (!res || k.v.issues.filter((i) => i.severity === 'error').length > before) return undefined;

  const resourcePathOnly = res.rest.split('?')[0]!;
  // Default hosts: the resource's; default paths: the resource path and below (a resource
  // without a path covers the host).
  const route = compileRoute({
    hosts: s.match?.hosts ?? [normalizeHost(res.host)],
    ...(s.match?.paths ? { paths: s.match.paths } : resourcePathOnly === '' ? {} : { paths: [resourcePathOnly, `${resourcePathOnly.replace(/\/$/, '')}/*`] }),
  });
  const wellKnownPath = `${WELL_KNOWN}${res.rest}`;
  const methodScopes = rules(s.scopes?.methods, 'names');
  const toolScopes = rules(s.scopes?.tools, 'names');
  const resourceScopes = rules(s.scopes?.resources, 'uris');
  const promptScopes = rules(s.scopes?.prompts, 'names');
  const checkAudience = s.audience?.check ?? true;
  return Object.freeze({
    ref: k.ref,
    scope,
    resource: s.resource!,
    origin: res.origin,
    resourcePath: res.rest,
    wellKnownPath,
    metadataUrl: `${res.origin}${wellKnownPath}`,
    metadataJson: JSON.stringify(metadataDocument(s.resource!, s)),
    maxAgeSeconds: Math.floor((s.metadata?.maxAge ?? 3_600_000) / 1000),
    allowOrigins: !s.metadata?.allowOrigins || s.metadata.allowOrigins.includes('*') ? null : Object.freeze([...s.metadata.allowOrigins]),
    route,
    requireToken: s.requireToken ?? true,
    checkAudience,
    audiences: new Set([s.resource!, ...(s.audience?.also ?? [])].map(normalizeAudience)),
    requiredScopes: Object.freeze([...required]),
    methodScopes,
    toolScopes,
    resourceScopes,
    promptScopes,
    perMessageScopes: methodScopes.length + toolScopes.length + resourceScopes.length + promptScopes.length > 0,
    maxBodyBytes: s.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    policyDenial: s.policyDenial ?? 'JSONRPCError',
  });
}
