/**
 * OAuth 2.0 Protected Resource Metadata (RFC 9728) answered directly: through the Check (a
 * denied_response with status 200 and a JSON body, which Envoy passes to the client as is,
 * so it works with plain Envoy and Istio CUSTOM without a route to any backend) and on the
 * HTTP port. The document is built from configuration only, never from the request: RFC
 * 9728 §3.3 makes the client compare its `resource` with the URL it used.
 *
 * Paths (RFC 9728 §3.1, MCP "Protected Resource Metadata Discovery"): the well-known string
 * inserted between host and path — `https://mcp.example.com/mcp` is described at
 * `/.well-known/oauth-protected-resource/mcp` — and, as the MCP clients' fallback, the root
 * `/.well-known/oauth-protected-resource` when exactly one MCP server is on that host.
 */
import type { CompiledMcpServer } from './compile.js';
import { WELL_KNOWN } from './compile.js';

/** A direct answer: status, headers and body. */
export interface DirectAnswer {
  readonly status: number;
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: string;
  readonly server: CompiledMcpServer;
}

/** Is this path (without query) a protected-resource metadata path at all? */
export function isMetadataPath(path: string): boolean {
  return path === WELL_KNOWN || path.startsWith(`${WELL_KNOWN}/`);
}

/**
 * The server a metadata path names among the candidates (the MCP servers on the request's
 * host that apply to the workload): the one whose path-inserted URL it is, else — for the
 * root path — the only server on the host.
 */
export function serverForMetadataPath(candidates: readonly CompiledMcpServer[], path: string, query: string): CompiledMcpServer | null {
  const full = query ? `${path}?${query}` : path;
  for (const s of candidates) if (s.wellKnownPath === full || s.wellKnownPath === path) return s;
  if (path === WELL_KNOWN && candidates.length === 1) return candidates[0]!;
  return null;
}

/** `access-control-allow-origin` for an Origin (null: none; CORS not granted). */
function allowOrigin(s: CompiledMcpServer, origin: string | undefined): string | null {
  if (s.allowOrigins === null) return '*';
  if (origin !== undefined && s.allowOrigins.includes(origin)) return origin;
  return null;
}

/**
 * The answer for `method` on a metadata path: GET/HEAD -> 200 JSON with cache headers;
 * OPTIONS (a browser preflight: MCP clients send `MCP-Protocol-Version` on discovery, which
 * makes the GET non-simple) -> 204 with the CORS grant; other methods -> 405.
 */
export function metadataAnswer(s: CompiledMcpServer, method: string, origin: string | undefined): DirectAnswer {
  const cors: [string, string][] = [];
  const ao = allowOrigin(s, origin);
  if (ao !== null) {
    cors.push(['access-control-allow-origin', ao]);
    if (ao !== '*') cors.push(['vary', 'origin']);
  }
  if (method === 'OPTIONS') {
    if (ao !== null) {
      cors.push(['access-control-allow-methods', 'GET, HEAD, OPTIONS']);
      cors.push(['access-control-allow-headers', 'mcp-protocol-version, authorization, content-type']);
      cors.push(['access-control-max-age', '86400']);
    }
    return { status: 204, headers: cors, body: '', server: s };
  }
  if (method !== 'GET' && method !== 'HEAD') {
    return { status: 405, headers: [...cors, ['allow', 'GET, HEAD, OPTIONS']], body: '', server: s };
  }
  return {
    status: 200,
    headers: [['content-type', 'application/json'], ['cache-control', `public, max-age=${s.maxAgeSeconds}`], ...cors],
    body: method === 'HEAD' ? '' : s.metadataJson,
    server: s,
  };
}
