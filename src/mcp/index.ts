/**
 * The MCP front door (a stage-floor folder: it imports core and libraries only; the
 * orchestrator in src/pipeline/ calls it around the other stages):
 *
 *   before authn   metadataDeny: GET/OPTIONS of the protected-resource metadata -> direct answer
 *   after authn    afterAuthn: authn 401s become MCP challenges; no token -> 401 challenge;
 *                  a token whose audience does not name the resource (RFC 8707) -> 401
 *   after authz    afterAuthz: an anonymous refusal -> 401 challenge; a refused JSON-RPC
 *                  request -> JSON-RPC error; then the scopes the request needs -> 403
 *                  insufficient_scope
 *
 * The JSON-RPC body is read through the lazy McpView (core) the pipeline puts on the state.
 */
import type { CompileContext, KindDocument } from '../config/kinds.js';
import { ScopedIndex } from '../config/scope.js';
import { isCorsPreflight, type RequestContext } from '../core/context.js';
import { scopesOf, type Identity } from '../core/identity.js';
import { MCP_PROBLEM_REASONS, type McpAttribution, type McpFacts, type McpView } from '../core/mcp.js';
import { deny, type CheckState, type Deny } from '../core/state.js';
import { normalizeHost, routeMatches } from '../match/route.js';
import { challenge, challengeAuthnDeny, jsonRpcBodyError, jsonRpcRefusal, neededScopes } from './challenge.js';
import { compileMcpServer, normalizeAudience, type CompiledMcpServer } from './compile.js';
import { DEFAULT_MAX_BODY_BYTES, LazyMcpView } from './jsonrpc.js';
import { isMetadataPath, metadataAnswer, serverForMetadataPath, type DirectAnswer } from './metadata.js';

export { WELL_KNOWN, type CompiledMcpServer } from './compile.js';
export { DEFAULT_MAX_BODY_BYTES, parseMcpRequest } from './jsonrpc.js';
export { isMetadataPath, type DirectAnswer } from './metadata.js';

export interface McpConfig {
  readonly count: number;
  readonly servers: ScopedIndex<CompiledMcpServer, CompiledMcpServer>;
  readonly all: readonly CompiledMcpServer[];
}

export function compileMcp(docs: readonly KindDocument[], cc: CompileContext): McpConfig {
  const all: CompiledMcpServer[] = [];
  for (const k of docs) {
    const s = compileMcpServer(k, cc);
    if (s) all.push(s);
  }
  all.sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
  return Object.freeze({ count: all.length, servers: new ScopedIndex(all, cc.settings.rootNamespace, (s) => [s]), all: Object.freeze(all) });
}

function onHost(s: CompiledMcpServer, host: string): boolean {
  return s.route.hosts === null || s.route.hosts.test(host);
}

/** The MCP server this request is on (workload scope, host and path), or null. */
export function serverFor(cfg: McpConfig, ctx: RequestContext): CompiledMcpServer | null {
  if (cfg.count === 0) return null;
  const host = normalizeHost(ctx.host);
  for (const s of cfg.servers.forWorkload(ctx.workload)) {
    if (routeMatches(s.route, ctx, host)) return s;
  }
  return null;
}

/** The HTTP port's lookup: every configured MCP server on the host (no workload is known there). */
export function metadataForHttp(cfg: McpConfig, host: string, path: string, query: string, method: string, origin: string | undefined): DirectAnswer | null {
  if (!isMetadataPath(path)) return null;
  const h = normalizeHost(host);
  const s = serverForMetadataPath(cfg.all.filter((x) => onHost(x, h)), path, query);
  return s ? metadataAnswer(s, method, origin) : null;
}

/** Before authn: the protected-resource metadata of an MCP server on this host, as a direct answer. */
export function metadataDeny(state: CheckState, cfg: McpConfig): Deny | null {
  const ctx = state.ctx;
  if (cfg.count === 0 || !isMetadataPath(ctx.path)) return null;
  const host = normalizeHost(ctx.host);
  const s = serverForMetadataPath(cfg.servers.forWorkload(ctx.workload).filter((x) => onHost(x, host)), ctx.path, ctx.query);
  if (!s) return null;
  const a = metadataAnswer(s, ctx.method, ctx.header('origin'));
  (state.attribution.mcp ??= {}).server = s.ref;
  state.trace?.add('mcp', `protected-resource metadata of MCPServer ${s.ref} answered directly (${a.status})`);
  return deny('MCP_METADATA', `protected-resource metadata of ${s.ref}`, { status: a.status, headers: a.headers, body: a.body, policy: s.ref });
}

/** The lazy MCP view for this Check (body limit of the request's MCP server). */
export function createMcpView(ctx: RequestContext, server: CompiledMcpServer | null): McpView {
  return new LazyMcpView(ctx, server?.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES);
}

/** Scopes for a challenge: the needed ones the body tells, without turning a 401 into a body error. */
function challengeScopes(s: CompiledMcpServer, view: McpView | undefined): string[] {
  if (!s.perMessageScopes || !view) return [...s.requiredScopes];
  const f = view.facts();
  return neededScopes(s, f.problem === null ? f.messages : []);
}

/** RFC 8707: does the token name this resource (or an `audience.also` value)? Only tokens that carry an audience. */
function audienceOk(s: CompiledMcpServer, id: Identity): boolean {
  if (!s.checkAudience || id.kind === 'api-key' || id.kind === 'shared-token' || id.kind === 'edge') return true;
  for (const a of id.audiences) if (s.audiences.has(normalizeAudience(a))) return true;
  return false;
}

/** After authn, on an MCP resource. */
export function afterAuthn(state: CheckState, s: CompiledMcpServer, d: Deny | null): Deny | null {
  const t = state.trace;
  if (d) {
    const c = challengeAuthnDeny(s, d, challengeScopes(s, state.mcp));
    if (c !== d) t?.add('mcp', `MCPServer ${s.ref}: ${d.reason} answered with the MCP challenge (401, resource_metadata)`);
    return c;
  }
  if (isCorsPreflight(state)) return null;
  const id = state.identity;
  if (id === null) {
    if (!s.requireToken) return null;
    t?.add('mcp', `MCPServer ${s.ref}: no token: 401 with resource_metadata ${s.metadataUrl}`);
    return deny('ERR_MCP_TOKEN_REQUIRED', `MCP resource ${s.ref} needs a token`, { status: 401, headers: [['www-authenticate', challenge(s, challengeScopes(s, state.mcp), null)]], policy: s.ref });
  }
  if (!audienceOk(s, id)) {
    t?.add('mcp', `MCPServer ${s.ref}: token audience ${JSON.stringify(id.audiences)} does not name ${s.resource}: 401 invalid_token`);
    return deny('ERR_MCP_AUDIENCE', `token audience does not name the MCP resource ${s.resource}`, {
      headers: [['www-authenticate', challenge(s, challengeScopes(s, state.mcp), 'invalid_token', 'The token audience does not name this resource')]],
      policy: s.ref,
    });
  }
  t?.add('mcp', `MCPServer ${s.ref}: token accepted for resource ${s.resource}${s.checkAudience ? ' (audience checked)' : ''}`);
  return null;
}

/** A body problem met by a stage, answered in JSON-RPC terms where a client can read them. */
export function bodyProblemDeny(state: CheckState, facts: McpFacts, s: CompiledMcpServer | null): Deny {
  const p = facts.problem!;
  const reason = MCP_PROBLEM_REASONS[p];
  state.trace?.add('mcp', `the decision needs the MCP body, which cannot be read (${p}: ${facts.detail}): denied ${reason}`);
  // On an MCP resource, an unreadable body is answered the way an MCP server would: a
  // JSON-RPC parse error (-32700) or invalid request (-32600) with HTTP 400.
  const parseError = p === 'invalid' && facts.detail.startsWith('body is not');
  const json = s !== null && (p === 'invalid' || p === 'header-mismatch');
  return deny(reason, `MCP body ${p}: ${facts.detail}`, {
    ...(json
      ? { body: jsonRpcBodyError(parseError ? -32700 : -32600, parseError ? 'Parse error' : p === 'header-mismatch' ? 'Header mismatch' : 'Invalid request'), headers: [['content-type', 'application/json']] }
      : {}),
    ...(s ? { policy: s.ref } : {}),
  });
}

/** After authz, on an MCP resource: refusals in MCP terms, then the scopes the request needs. */
export function afterAuthz(state: CheckState, s: CompiledMcpServer, d: Deny | null): Deny | null {
  const t = state.trace;
  const view = state.mcp;
  if (d) {
    if (d.reason !== 'ERR_RBAC_DENIED') return d;
    if (state.identity === null) {
      t?.add('mcp', `MCPServer ${s.ref}: anonymous request refused by policy: answered 401 with the MCP challenge so the client can sign in`);
      return { ...d, reason: 'ERR_MCP_TOKEN_REQUIRED', status: 401, body: undefined, headers: [['www-authenticate', challenge(s, challengeScopes(s, view), null)]] };
    }
    const f = view?.facts();
    if (s.policyDenial === 'JSONRPCError' && f && f.problem === null) {
      const body = jsonRpcRefusal(f.messages, f.batch);
      if (body !== null) {
        t?.add('mcp', `MCPServer ${s.ref}: refused JSON-RPC request answered as a JSON-RPC error (HTTP 200), so the client's session goes on`);
        return { ...d, status: 200, body, headers: [['content-type', 'application/json']] };
      }
    }
    return d;
  }
  if (isCorsPreflight(state)) return null;
  let messages: McpFacts['messages'] = [];
  if (s.perMessageScopes && view && state.ctx.method === 'POST') {
    const f = view.facts();
    if (f.problem !== null) return bodyProblemDeny(state, f, s);
    messages = f.messages;
  }
  const needed = neededScopes(s, messages);
  if (needed.length === 0) return null;
  const id = state.identity;
  const held = id ? scopesOf(id.claims) : new Set<string>();
  const missing = needed.filter((x) => !held.has(x));
  if (missing.length === 0) {
    t?.add('mcp', `MCPServer ${s.ref}: token holds every needed scope (${needed.join(' ')})`);
    return null;
  }
  if (id === null) {
    return deny('ERR_MCP_TOKEN_REQUIRED', `MCP resource ${s.ref} needs a token with scopes ${needed.join(' ')}`, {
      status: 401,
      headers: [['www-authenticate', challenge(s, needed, null)]],
      policy: s.ref,
    });
  }
  t?.add('mcp', `MCPServer ${s.ref}: token lacks ${missing.join(' ')}: 403 insufficient_scope with scope="${needed.join(' ')}"`);
  return deny('ERR_MCP_INSUFFICIENT_SCOPE', `token lacks scope(s) ${missing.join(' ')} needed on ${s.ref}`, {
    headers: [['www-authenticate', challenge(s, needed, 'insufficient_scope', 'The request needs more scopes')]],
    policy: s.ref,
  });
}

/** The MCP facts for the decision log and dynamic_metadata (only what was parsed; never arguments). */
export function recordMcp(state: CheckState, s: CompiledMcpServer | null): void {
  const view = state.mcp;
  if (!view) return;
  const parsed = view.reads > 0 || s !== null;
  if (!parsed) return;
  const a: McpAttribution = (state.attribution.mcp ??= {});
  if (s) a.server = s.ref;
  if (view.sessionId !== undefined) a.sessionId = view.sessionId.slice(0, 128);
  const f = view.facts();
  if (f.problem !== null || f.messages.length === 0) return;
  const m = f.messages[0]!;
  if (m.method !== undefined) a.method = m.method;
  if (m.tool !== undefined) a.tool = m.tool;
  if (m.resource !== undefined) a.resource = m.resource;
  if (m.prompt !== undefined) a.prompt = m.prompt;
  if (m.id !== undefined && m.id !== null) a.id = String(m.id).slice(0, 128);
  if (f.batch) a.batch = f.messages.length;
}
