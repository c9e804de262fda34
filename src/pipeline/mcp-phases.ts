/**
 * The MCP front door's place in the pipeline (src/mcp does the work; this file only orders
 * it around the stages):
 *
 *   1. before authn: protected-resource metadata answered directly; the request's MCP
 *      server found; the lazy MCP view (JSON-RPC body, MCP headers) put on the state;
 *   2. after authn: MCP challenges (401 + resource_metadata), token required, audience;
 *   3. authz, once per element of a JSON-RPC batch whose elements the policies look at
 *      (a batch is allowed only if every element is); a decision that needed an unreadable
 *      body becomes that body problem's explicit deny;
 *   4. after authz: refusals in MCP terms, then the scopes the request needs.
 */
import { authorize, type AuthzConfig } from '../authz/index.js';
import type { CheckState, Deny } from '../core/state.js';
import { afterAuthn, afterAuthz, bodyProblemDeny, createMcpView, metadataDeny, recordMcp, serverFor, type CompiledMcpServer, type McpConfig } from '../mcp/index.js';

export interface McpPhaseState extends CheckState {
  mcpServer: CompiledMcpServer | null;
}

/** Phase 1: a direct metadata answer, or null (the request goes on, its MCP view in place). */
export function mcpBeforeAuthn(state: McpPhaseState, cfg: McpConfig): Deny | null {
  const m = metadataDeny(state, cfg);
  if (m) return m;
  const s = serverFor(cfg, state.ctx);
  state.mcpServer = s;
  state.mcp = createMcpView(state.ctx, s);
  if (s) state.trace?.add('mcp', `request is on MCPServer ${s.ref} (resource ${s.resource})`);
  return null;
}

/** Phase 2 (authn's answer in, the answer to go on with out). */
export function mcpAfterAuthn(state: McpPhaseState, d: Deny | null): Deny | null {
  return state.mcpServer ? afterAuthn(state, state.mcpServer, d) : d;
}

/** Phases 3 and 4. */
export function mcpAuthorize(state: McpPhaseState, cfg: AuthzConfig): Deny | null {
  const view = state.mcp;
  let d = authorize(state, cfg);
  if (view) {
    if (view.problemSeen === null && d === null && view.reads > 0) {
      const f = view.facts();
      if (f.batch) {
        const audit = state.attribution.audit;
        for (let i = 1; i < f.messages.length && d === null; i++) {
          view.index = i;
          d = authorize(state, cfg);
          if (d) state.trace?.add('mcp', `batch element ${i} refused: the whole batch is refused`);
        }
        view.index = 0;
        // AUDIT matches are recorded once, not once per element.
        if (audit !== undefined || state.attribution.audit !== undefined) state.attribution.audit = [...new Set(state.attribution.audit)];
      }
    }
    if (view.problemSeen !== null) d = bodyProblemDeny(state, view.facts(), state.mcpServer);
  }
  return state.mcpServer ? afterAuthz(state, state.mcpServer, d) : d;
}

/** Before the Decision is made: what the decision log and dynamic_metadata say about MCP. */
export function mcpRecord(state: McpPhaseState): void {
  recordMcp(state, state.mcpServer);
}
