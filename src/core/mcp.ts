/**
 * MCP facts of one Check, as the stages read them: the JSON-RPC 2.0 message(s) of an MCP
 * POST body (method, tool, resource URI, prompt name, id) and the MCP transport headers.
 * The body is parsed by src/mcp the first time a stage asks (an AuthorizationPolicy
 * `request.mcp.*` key, a per-tool scope, a per-tool token exchange); core only defines the
 * shapes, so authz and exchange read MCP facts without importing the MCP stage.
 */
import type { ReasonCode } from './reasons.js';

/** Why the body cannot answer a question about it; each has its own reason code. */
export type McpBodyProblem = 'missing' | 'partial' | 'too-large' | 'invalid' | 'header-mismatch';

export const MCP_PROBLEM_REASONS: Readonly<Record<McpBodyProblem, ReasonCode>> = Object.freeze({
  missing: 'ERR_MCP_BODY_MISSING',
  partial: 'ERR_MCP_BODY_PARTIAL',
  'too-large': 'ERR_MCP_BODY_TOO_LARGE',
  invalid: 'ERR_MCP_BODY_INVALID',
  'header-mismatch': 'ERR_MCP_HEADER_MISMATCH',
});

/** One JSON-RPC 2.0 message (one element of a batch). */
export interface McpMessage {
  readonly kind: 'request' | 'notification' | 'response';
  /** `method`; undefined for a response. */
  readonly method?: string;
  /** `id` as sent (string or number), undefined for a notification. */
  readonly id?: string | number | null;
  /** `params.name` of tools/call. */
  readonly tool?: string;
  /** `params.uri` of resources/read, resources/subscribe, resources/unsubscribe. */
  readonly resource?: string;
  /** `params.name` of prompts/get. */
  readonly prompt?: string;
}

export interface McpFacts {
  /** null when the body was read; else why it could not be. */
  readonly problem: McpBodyProblem | null;
  /** Secret-free detail of the problem (logs, --explain); '' when none. */
  readonly detail: string;
  /** The messages (empty when there is a problem or no MCP message is expected, e.g. a GET). */
  readonly messages: readonly McpMessage[];
  /** The body was a JSON array (a batch, protocol 2025-03-26). */
  readonly batch: boolean;
}

/**
 * The per-Check view the stages read. A batch is evaluated element by element (`index`):
 * it is allowed only if every element is.
 */
export interface McpView {
  /** `Mcp-Session-Id` header, undefined when absent. */
  readonly sessionId: string | undefined;
  /** `MCP-Protocol-Version` header, undefined when absent. */
  readonly protocolVersion: string | undefined;
  /** Parse the body on first use (never throws). */
  facts(): McpFacts;
  /** Element of a batch being evaluated; 0 otherwise. */
  index: number;
  /**
   * The message being evaluated, for a condition that needs the body. Records the read
   * (`reads`) and, when the body has a problem, the problem (`problemSeen`): an answer that
   * depended on an unreadable body is replaced by an explicit deny with its reason code.
   */
  current(): McpMessage | undefined;
  reads: number;
  problemSeen: McpBodyProblem | null;
}

/** What the decision log and dynamic_metadata say about an MCP request (never arguments). */
export interface McpAttribution {
  method?: string;
  tool?: string;
  resource?: string;
  prompt?: string;
  id?: string;
  /** Number of messages when the body was a batch. */
  batch?: number;
  sessionId?: string;
  /** `namespace/name` of the MCPServer the request is on. */
  server?: string;
}
