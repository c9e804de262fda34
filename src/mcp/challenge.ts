/**
 * What an MCP client acts on (MCP authorization spec; official TypeScript SDK behaviour):
 * it starts OAuth only on a 401, or on a 403 whose `WWW-Authenticate: Bearer` carries
 * `error="insufficient_scope"`; a plain 403 ends its session. So on an MCP resource:
 *
 *   no token                -> 401  Bearer resource_metadata="…", scope="…"
 *   token refused / not ours -> 401  Bearer resource_metadata="…", scope="…", error="invalid_token", error_description="…"
 *   scope missing           -> 403  Bearer error="insufficient_scope", scope="<every scope the request needs>", resource_metadata="…"
 *
 * RFC 6750 §3.1: a request without credentials gets no `error`. The SDK reads each
 * parameter with `name=("…"|token)` (first match, no escapes), so values are fixed strings
 * of the RFC 6750 character sets, never empty, never request data.
 */
import type { Deny } from '../core/state.js';
import type { McpMessage } from '../core/mcp.js';
import type { ReasonCode } from '../core/reasons.js';
import type { CompiledMcpServer, ScopeRule } from './compile.js';

export type ChallengeError = 'invalid_token' | 'insufficient_scope' | null;

export function challenge(s: CompiledMcpServer, scopes: readonly string[], error: ChallengeError, description?: string): string {
  const parts: string[] = [];
  if (error) parts.push(`error="${error}"`);
  parts.push(`resource_metadata="${s.metadataUrl}"`);
  if (scopes.length > 0) parts.push(`scope="${scopes.join(' ')}"`);
  if (error && description) parts.push(`error_description="${description}"`);
  return `Bearer ${parts.join(', ')}`;
}

/** Reasons of authn that mean "a credential was presented and refused". */
const REFUSED: ReadonlySet<ReasonCode> = new Set<ReasonCode>([
  'ERR_JWT_INVALID',
  'ERR_JWT_EXPIRED',
  'ERR_JWT_NOT_YET_VALID',
  'ERR_JWT_SIGNATURE',
  'ERR_JWT_MALFORMED',
  'ERR_JWT_ISSUER_UNKNOWN',
  'ERR_JWT_AUDIENCE',
  'ERR_INVALID_CREDENTIAL',
  'ERR_CREDENTIAL_EXPIRED',
]);

/**
 * An authn deny on an MCP resource, re-answered as the MCP challenge. A refused token is a
 * 401 with error="invalid_token" — also an audience not allowed by a jwtRule, which Istio
 * answers 403: the MCP spec makes a token not issued for this server invalid here (401),
 * and a 403 without insufficient_scope would end the client's session. The reason code,
 * body and attribution stay those of authn.
 */
export function challengeAuthnDeny(s: CompiledMcpServer, d: Deny, scopes: readonly string[]): Deny {
  if (REFUSED.has(d.reason)) {
    return { ...d, status: 401, headers: [['www-authenticate', challenge(s, scopes, 'invalid_token', 'The access token is invalid for this resource')]] };
  }
  if (d.reason === 'ERR_NO_VALIDATOR_ADMITTED' || d.reason === 'ERR_SUBJECT_MISSING') {
    return { ...d, status: 401, headers: [['www-authenticate', challenge(s, scopes, null)]] };
  }
  return d;
}

/** The scopes of the rules whose patterns match `v` (added to `out`). */
function addRuleScopes(rules: readonly ScopeRule[], v: string | undefined, out: Set<string>): void {
  if (v === undefined) return;
  for (const r of rules) if (r.match.test(v)) for (const x of r.scopes) out.add(x);
}

/**
 * Every scope the request needs: `scopes.required`, plus, per message, those of its method,
 * tool, resource URI and prompt (a batch needs the union). The MCP spec asks for all of them
 * in one challenge rather than one per round trip.
 */
export function neededScopes(s: CompiledMcpServer, messages: readonly McpMessage[]): string[] {
  const out = new Set<string>(s.requiredScopes);
  for (const m of messages) {
    addRuleScopes(s.methodScopes, m.method, out);
    addRuleScopes(s.toolScopes, m.tool, out);
    addRuleScopes(s.resourceScopes, m.resource, out);
    addRuleScopes(s.promptScopes, m.prompt, out);
  }
  return [...out];
}

/** JSON-RPC error code for a request refused by policy (implementation-defined range -32000..-32019). */
export const JSONRPC_FORBIDDEN = -32010;

function describe(m: McpMessage): string {
  const target = m.tool ?? m.prompt ?? m.resource;
  const t = target === undefined ? '' : ` ${JSON.stringify(target.length > 128 ? `${target.slice(0, 128)}…` : target)}`;
  return `${m.method ?? 'message'}${t} is not allowed by policy`;
}

/**
 * A policy refusal of JSON-RPC request(s) as JSON-RPC error response(s) with the same ids
 * (HTTP 200, application/json): the MCP client settles the pending request with an error
 * the agent can show, and its session goes on. null when nothing in the body is a request
 * (notifications and responses take the plain 403: the MCP transport answers a refused
 * notification with an HTTP error status).
 */
export function jsonRpcRefusal(messages: readonly McpMessage[], batch: boolean): string | null {
  const errors = messages
    .filter((m) => m.kind === 'request')
    .map((m) => ({ jsonrpc: '2.0', id: m.id, error: { code: JSONRPC_FORBIDDEN, message: `Forbidden: ${describe(m)}` } }));
  if (errors.length === 0) return null;
  return JSON.stringify(batch ? errors : errors[0]);
}

/** JSON-RPC error bodies for bodies that cannot be read (-32700 parse error, -32600 invalid request). */
export function jsonRpcBodyError(code: -32700 | -32600, message: string): string {
  return JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message } });
}
