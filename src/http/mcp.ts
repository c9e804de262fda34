/**
 * Protected-resource metadata (RFC 9728) on the HTTP port, for deployments that route
 * `/.well-known/oauth-protected-resource[/<path>]` of the MCP host to obo-authz rather than
 * letting the Check answer it. The MCP server is found by the request's `Host` (Envoy keeps
 * it unless the route rewrites it) and the path, among every configured MCPServer (no
 * workload is known here). Returns false for other paths so the caller answers 404.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CompiledConfig } from '../pipeline/compile.js';
import { metadataForHttp } from '../mcp/index.js';

export async function handleMcpHttp(req: IncomingMessage, res: ServerResponse, cfg: CompiledConfig | null): Promise<boolean> {
  if (!cfg || cfg.mcp.count === 0) return false;
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const origin = typeof req.headers.origin === 'string' ? req.headers.origin : undefined;
  const a = metadataForHttp(cfg.mcp, req.headers.host ?? '', path, q < 0 ? '' : url.slice(q + 1), req.method ?? 'GET', origin);
  if (!a) return false;
  const headers: Record<string, string> = {};
  for (const [k, v] of a.headers) headers[k] = v;
  if (a.status === 200) headers['content-length'] = String(Buffer.byteLength(a.server.metadataJson));
  res.writeHead(a.status, headers);
  res.end(a.body);
  return true;
}
