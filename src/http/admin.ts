/**
 * The HTTP side: GET /healthz (liveness), GET /readyz (serving: config loaded and not
 * draining), GET /metrics (Prometheus), plus route handlers mounted by the caller (the
 * built-in STS endpoints).
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { ServerRuntime as Runtime } from '../observability/metrics.js';
import type { ServingState } from '../grpc/server.js';
import { applyServerLimits, DEFAULT_HTTP_LIMITS, type HttpLimits } from './limits.js';

export type RouteHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

export interface AdminOptions {
  readonly state: ServingState;
  readonly runtime: Runtime;
  readonly routes?: readonly RouteHandler[];
  readonly tls?: { key: Buffer; cert: Buffer; ca?: Buffer };
  /** Timeouts and connection caps (http/limits.ts). */
  readonly limits?: HttpLimits;
}

function send(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

/** GET /healthz (liveness) and /readyz (serving); false for any other request. */
function answerHealth(req: IncomingMessage, res: ServerResponse, url: string, state: ServingState): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  if (url === '/healthz') send(res, 200, 'ok\n');
  else if (url === '/readyz') {
    if (state.serving) send(res, 200, 'ready\n');
    else send(res, 503, state.draining ? 'draining\n' : 'no configuration loaded\n');
  } else return false;
  return true;
}

/**
 * A plain-HTTP listener with /healthz and /readyz only (serve --health-address): what a
 * container health check or a kubelet probe can reach when the other listeners use TLS or
 * require client certificates. It tells only whether the server is ready.
 */
export function createHealthServer(state: ServingState, runtime: Runtime): Server {
  return createHttpServer((req, res) => {
    try {
      if (!answerHealth(req, res, (req.url ?? '/').split('?')[0]!, state)) send(res, 404, 'not found\n');
    } catch (e) {
      runtime.logger.error({ err: e instanceof Error ? e.name : 'unknown' }, 'health handler failed');
      if (!res.headersSent) send(res, 500, 'internal error\n');
    }
  });
}

export function createAdminServer(opts: AdminOptions): Server {
  const { state, runtime } = opts;
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const url = (req.url ?? '/').split('?')[0]!;
    (async () => {
      if (answerHealth(req, res, url, state)) return;
      if (req.method === 'GET' || req.method === 'HEAD') {
        if (url === '/metrics') {
          const body = await runtime.metrics.registry.metrics();
          return send(res, 200, body, runtime.metrics.registry.contentType);
        }
      }
      for (const r of opts.routes ?? []) {
        if (await r(req, res)) return;
      }
      send(res, 404, 'not found\n');
    })().catch((e: unknown) => {
      runtime.logger.error({ err: e instanceof Error ? e.name : 'unknown', path: url }, 'admin handler failed');
      if (!res.headersSent) send(res, 500, 'internal error\n');
      else res.destroy();
    });
  };
  const limits = opts.limits ?? DEFAULT_HTTP_LIMITS;
  // Timeouts are enforced by a periodic sweep: often enough that they hold to about a second.
  const base = { connectionsCheckingInterval: Math.max(100, Math.min(1000, limits.headersTimeoutMs / 2)) };
  const server: Server = opts.tls
    ? createHttpsServer(
        { ...base, key: opts.tls.key, cert: opts.tls.cert, ca: opts.tls.ca, requestCert: !!opts.tls.ca, rejectUnauthorized: !!opts.tls.ca },
        handler,
      )
    : createHttpServer(base, handler);
  applyServerLimits(server, limits);
  return server;
}
