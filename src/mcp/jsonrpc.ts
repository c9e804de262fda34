/**
 * The JSON-RPC 2.0 body of an MCP POST (Streamable HTTP: every client message is one POST
 * whose body is a request, a notification or a response; protocol 2025-03-26 also allowed a
 * JSON array, a batch). Parsed only when a stage asks for it, never trusted partially: a
 * body that is missing, partial (`x-envoy-auth-partial-body: true`), over the limit, not
 * UTF-8, not JSON, not JSON-RPC 2.0, or whose tools/call / resources/* / prompts/get lacks
 * its name or URI is a problem with its own reason code — never a guess.
 *
 * Duplicate object keys are refused: JSON.parse keeps the last `name`, another parser (the
 * MCP server's) may keep the first, and the policy would then judge a different tool than
 * the one that runs.
 */
import type { RequestBody, RequestContext } from '../core/context.js';
import type { McpBodyProblem, McpFacts, McpMessage, McpView } from '../core/mcp.js';

/** Default body limit (bytes) when no MCPServer names one: Envoy's max_request_bytes should match. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

const NO_MESSAGES: readonly McpMessage[] = Object.freeze([]);
const NOT_MCP: McpFacts = Object.freeze({ problem: null, detail: '', messages: NO_MESSAGES, batch: false });

function problem(p: McpBodyProblem, detail: string): McpFacts {
  return { problem: p, detail, messages: NO_MESSAGES, batch: false };
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Methods whose target is `params.uri` (MCP resources). */
const URI_METHODS = new Set(['resources/read', 'resources/subscribe', 'resources/unsubscribe']);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** One element: the message, or a problem detail string. */
function readMessage(v: unknown, where: string): McpMessage | string {
  if (!isPlainObject(v)) return `${where} is not a JSON object`;
  if (v['jsonrpc'] !== '2.0') return `${where}: "jsonrpc" must be "2.0"`;
  const hasId = Object.prototype.hasOwnProperty.call(v, 'id');
  const id = v['id'];
  // MCP: "Unlike base JSON-RPC, the ID MUST NOT be null" (and must be a string or an integer).
  if (hasId && typeof id !== 'string' && !(typeof id === 'number' && Number.isFinite(id))) return `${where}: "id" must be a string or a number`;
  const method = v['method'];
  if (method === undefined) {
    if (!hasId || (!('result' in v) && !('error' in v))) return `${where}: neither a request, a notification nor a response`;
    return { kind: 'response', id: id as string | number };
  }
  if (typeof method !== 'string' || method.length === 0) return `${where}: "method" must be a non-empty string`;
  const params = v['params'];
  if (params !== undefined && params !== null && typeof params !== 'object') return `${where}: "params" must be an object or an array`;
  const kind = hasId ? 'request' : 'notification';
  const p = isPlainObject(params) ? params : undefined;
  if (method === 'tools/call' || method === 'prompts/get') {
    const name = p?.['name'];
    if (typeof name !== 'string' || name.length === 0) return `${where}: ${method} without a string params.name`;
    return method === 'tools/call' ? { kind, method, id: id as string | number | undefined, tool: name } : { kind, method, id: id as string | number | undefined, prompt: name };
  }
  if (URI_METHODS.has(method)) {
    const uri = p?.['uri'];
    if (typeof uri !== 'string' || uri.length === 0) return `${where}: ${method} without a string params.uri`;
    return { kind, method, id: id as string | number | undefined, resource: uri };
  }
  return hasId ? { kind, method, id: id as string | number } : { kind, method };
}

/**
 * Keys whose duplicates would change what a policy sees. A body that mentions none of them
 * twice and has no `\u` escape (a key can be spelled `"n\u0061me"`) cannot hold such a
 * duplicate, so the structural scan below runs only for bodies that might.
 */
const WATCHED = /"(?:name|uri|method|params|jsonrpc|id)"/g;

function mayHoldDuplicateKeys(text: string, messages: number): boolean {
  if (text.includes('\\u')) return true;
  // One pass over the text (a 4 KiB tool call is mostly one argument string).
  const counts = new Map<string, number>();
  WATCHED.lastIndex = 0;
  for (let m = WATCHED.exec(text); m !== null; m = WATCHED.exec(text)) {
    const n = (counts.get(m[0]) ?? 0) + 1;
    if (n > messages) return true;
    counts.set(m[0], n);
  }
  return false;
}

/** Does any object in this (already JSON.parse-valid) text repeat a key? A linear scan. */
export function hasDuplicateKeys(text: string): boolean {
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */) {
      stack.push(new Set());
      expectKey = true;
    } else if (c === 0x5b /* [ */) {
      stack.push(null);
      expectKey = false;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      expectKey = false;
    } else if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1] instanceof Set;
    } else if (c === 0x22 /* " */) {
      let j = i + 1;
      let escaped = false;
      for (; j < text.length; j++) {
        const d = text.charCodeAt(j);
        if (d === 0x5c) {
          j++;
          escaped = true;
        } else if (d === 0x22) break;
      }
      if (expectKey) {
        const raw = text.slice(i + 1, j);
        const key = escaped ? (JSON.parse(`"${raw}"`) as string) : raw;
        const keys = stack[stack.length - 1] as Set<string>;
        if (keys.has(key)) return true;
        keys.add(key);
        expectKey = false;
      }
      i = j;
    }
  }
  return false;
}

function bodyText(body: RequestBody, maxBytes: number): string | McpFacts {
  if (typeof body.data !== 'string') {
    if (body.data.length > maxBytes) return problem('too-large', `body of ${body.data.length} bytes is over the limit of ${maxBytes}`);
    try {
      return UTF8.decode(body.data);
    } catch {
      return problem('invalid', 'body is not UTF-8');
    }
  }
  const s = body.data;
  // UTF-16 length <= UTF-8 length <= 3 x UTF-16 length: count bytes only when it matters.
  if (s.length > maxBytes || (s.length * 3 > maxBytes && Buffer.byteLength(s, 'utf8') > maxBytes)) {
    return problem('too-large', `body is over the limit of ${maxBytes} bytes`);
  }
  return s;
}

/** `=?base64?...?=` header values (Streamable HTTP, 2026-07-28) decoded; others as is. */
export function decodeMcpHeaderValue(v: string): string {
  if (v.startsWith('=?base64?') && v.endsWith('?=') && v.length >= 11) return Buffer.from(v.slice(9, -2), 'base64').toString('utf8');
  return v;
}

/**
 * Protocol 2026-07-28 mirrors `method` into `Mcp-Method` and the tool / prompt name or
 * resource URI into `Mcp-Name` "so that intermediaries can route and inspect requests
 * without parsing the body"; a component that reads the body MUST reject a mismatch.
 */
function headerMismatch(ctx: RequestContext, facts: McpFacts): string | null {
  const hm = ctx.header('mcp-method');
  const hn = ctx.header('mcp-name');
  if (hm === undefined && hn === undefined) return null;
  if (facts.batch) return 'Mcp-Method / Mcp-Name headers on a batch';
  const m = facts.messages[0]!;
  if (hm !== undefined && hm !== m.method) return 'Mcp-Method header differs from the body method';
  if (hn !== undefined && decodeMcpHeaderValue(hn) !== (m.tool ?? m.prompt ?? m.resource)) return 'Mcp-Name header differs from the body';
  return null;
}

/** Parse the MCP message(s) of a Check. Never throws. */
export function parseMcpRequest(ctx: RequestContext, maxBytes: number): McpFacts {
  // Streamable HTTP: client messages are POSTs; a GET (event stream) or DELETE (end of
  // session) carries none, and its MCP keys are simply absent.
  if (ctx.method !== 'POST') return NOT_MCP;
  const body = ctx.body();
  if (body === null) {
    const len = ctx.header('content-length');
    const why = len !== undefined && len !== '0' ? ` (content-length ${len.slice(0, 20)}: is with_request_body / includeRequestBodyInCheck set for this route?)` : '';
    return problem('missing', `the Check carried no body${why}`);
  }
  if (body.partial) return problem('partial', 'Envoy sent a partial body (x-envoy-auth-partial-body: true): raise max_request_bytes or turn off allow_partial_message');
  const text = bodyText(body, maxBytes);
  if (typeof text !== 'string') return text;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return problem('invalid', 'body is not JSON');
  }
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0) return problem('invalid', 'empty batch');
  const messages: McpMessage[] = [];
  for (let i = 0; i < list.length; i++) {
    const m = readMessage(list[i], Array.isArray(v) ? `batch element ${i}` : 'body');
    if (typeof m === 'string') return problem('invalid', m);
    messages.push(m);
  }
  if (mayHoldDuplicateKeys(text, messages.length) && hasDuplicateKeys(text)) return problem('invalid', 'body repeats an object key');
  const facts: McpFacts = { problem: null, detail: '', messages, batch: Array.isArray(v) };
  const mismatch = headerMismatch(ctx, facts);
  return mismatch ? problem('header-mismatch', mismatch) : facts;
}

/** The lazy per-Check McpView the pipeline hangs on the state. */
export class LazyMcpView implements McpView {
  index = 0;
  reads = 0;
  problemSeen: McpBodyProblem | null = null;
  private parsed: McpFacts | null = null;
  constructor(
    private readonly ctx: RequestContext,
    private readonly maxBytes: number,
  ) {}
  get sessionId(): string | undefined {
    return this.ctx.header('mcp-session-id');
  }
  get protocolVersion(): string | undefined {
    return this.ctx.header('mcp-protocol-version');
  }
  facts(): McpFacts {
    return (this.parsed ??= parseMcpRequest(this.ctx, this.maxBytes));
  }
  current(): McpMessage | undefined {
    const f = this.facts();
    this.reads++;
    if (f.problem !== null) {
      this.problemSeen ??= f.problem;
      return undefined;
    }
    return f.messages[this.index];
  }
}
