/**
 * `request.mcp.*` condition keys (an obo-authz extension to AuthorizationPolicy `when`;
 * Istio itself does not know them). They read the MCP facts of the request from core's
 * McpView — the JSON-RPC body Envoy sends with `with_request_body` (Istio:
 * `includeRequestBodyInCheck`) and the MCP transport headers — never the MCP stage itself.
 *
 *   request.mcp.method           JSON-RPC method (`tools/call`, `resources/read`, `initialize`, ...)
 *   request.mcp.tool             params.name of tools/call
 *   request.mcp.resource         params.uri of resources/read, resources/subscribe, resources/unsubscribe
 *   request.mcp.prompt           params.name of prompts/get
 *   request.mcp.sessionId        Mcp-Session-Id header
 *   request.mcp.protocolVersion  MCP-Protocol-Version header
 *
 * A body key on a request whose body cannot be read (missing, partial, over the limit,
 * invalid) is not "absent": the view records the problem and the pipeline denies with its
 * reason code, whatever the rules said. A batch is evaluated once per element.
 */
import type { McpMessage } from '../core/mcp.js';
import type { StringSet } from '../match/strings.js';
import type { Field } from './matchers.js';
import type { RequestView } from './request-view.js';

export type McpAttr = 'method' | 'tool' | 'resource' | 'prompt' | 'sessionId' | 'protocolVersion';

export const MCP_KEYS: Readonly<Record<string, McpAttr>> = Object.freeze({
  'request.mcp.method': 'method',
  'request.mcp.tool': 'tool',
  'request.mcp.resource': 'resource',
  'request.mcp.prompt': 'prompt',
  'request.mcp.sessionId': 'sessionId',
  'request.mcp.protocolVersion': 'protocolVersion',
});

function fromMessage(m: McpMessage | undefined, attr: McpAttr): string | undefined {
  if (m === undefined) return undefined;
  return attr === 'method' ? m.method : attr === 'tool' ? m.tool : attr === 'resource' ? m.resource : m.prompt;
}

function value(r: RequestView, attr: McpAttr): string | undefined {
  const v = r.mcp;
  if (v === undefined) return undefined;
  if (attr === 'sessionId') return v.sessionId;
  if (attr === 'protocolVersion') return v.protocolVersion;
  return fromMessage(v.current(), attr);
}

export class McpField implements Field {
  constructor(
    readonly label: string,
    readonly negate: boolean,
    readonly values: readonly string[],
    private readonly attr: McpAttr,
    private readonly set: StringSet,
  ) {}
  test(r: RequestView): boolean {
    return this.set.test(value(r, this.attr));
  }
  actual(r: RequestView): string {
    const v = r.mcp;
    if (v !== undefined && this.attr !== 'sessionId' && this.attr !== 'protocolVersion') {
      const f = v.facts();
      if (f.problem !== null) return `(MCP body ${f.problem}: ${f.detail})`;
      if (f.batch) return `${JSON.stringify(fromMessage(f.messages[v.index], this.attr) ?? '(absent)')} (batch element ${v.index})`;
    }
    const s = v === undefined ? undefined : this.attr === 'sessionId' ? v.sessionId : this.attr === 'protocolVersion' ? v.protocolVersion : fromMessage(v.facts().messages[v.index], this.attr);
    return s === undefined ? '(absent)' : JSON.stringify(s);
  }
}
