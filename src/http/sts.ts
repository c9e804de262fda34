/**
 * Built-in STS HTTP endpoints on the admin port: POST /oauth2/token
 * (RFC 8693), GET /.well-known/jwks.json and GET /.well-known/openid-configuration, so
 * backends can verify the tokens we mint. The STS served is the builtin
 * SecurityTokenService marked `default: true`, or the only builtin one. Returns false for
 * other paths (and when no builtin STS is configured) so the caller answers 404.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CompiledConfig } from '../pipeline/compile.js';
import { handleTokenRequest, type TokenEndpointAnswer } from '../exchange/token-endpoint.js';
import { sanitizeRemoteText } from '../observability/redact.js';
import type { Runtime } from '../core/runtime.js';
import { DEFAULT_HTTP_LIMITS, type TokenRateLimiter } from './limits.js';

const MAX_BODY = 64 * 1024;
const RATE_LIMITED_PAUSE_MS = 1000;
const PATHS = new Set(['/oauth2/token', '/.well-known/jwks.json', '/.well-known/openid-configuration']);

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/**
 * Resolves with the body, or null as soon as it exceeds MAX_BODY: the rest is not waited
 * for (a client could otherwise hold the request open with an endless body). Rejects on
 * a stream error.
 */
function readBody(req: IncomingMessage, timeoutMs: number): Promise<string | null | 'timeout'> {
  return new Promise((resolve, reject) => {
    req.on('error', reject);
    // A body trickled in slowly would hold a token request (and its slot) open.
    const timer = setTimeout(() => resolve('timeout'), timeoutMs);
    timer.unref();
    req.once('close', () => clearTimeout(timer));
    req.once('end', () => clearTimeout(timer));
    if (Number(req.headers['content-length'] ?? 0) > MAX_BODY) {
      req.resume();
      resolve(null);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY) {
        chunks.push(c);
        return;
      }
      chunks.length = 0;
      req.off('data', onData);
      // Keep the stream flowing (data discarded) until the 413 is out; the caller then
      // destroys the request.
      req.resume();
      resolve(null);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

/** The client id a refused request presented (request data: sanitized, bounded, flagged as unverified). */
function presentedClientId(form: URLSearchParams, authorization: string | undefined): string | undefined {
  let id = form.get('client_id') ?? undefined;
  if (authorization && /^basic\s/i.test(authorization)) {
    const dec = Buffer.from(authorization.replace(/^basic\s*/i, '').trim(), 'base64').toString('utf8');
    if (dec.includes(':')) id = dec.slice(0, dec.indexOf(':'));
  }
  return id === undefined ? undefined : sanitizeRemoteText(id, 128);
}

/**
 * The audit trail of the token endpoint: one line per issuance ("token issued") and per
 * refusal ("token request refused"), with the client, the subject (and actor), the requested
 * audiences, resources and scopes and the outcome. Never a token, a secret or a key.
 */
function auditTokenRequest(runtime: Runtime, sts: string, ans: TokenEndpointAnswer, form: URLSearchParams, authorization: string | undefined): void {
  const a = ans.audit ?? {};
  const fields = {
    component: 'token-endpoint',
    sts,
    outcome: ans.outcome,
    status: ans.status,
    ...(a.clientId ? { client_id: a.clientId } : { client_id_presented: presentedClientId(form, authorization) ?? null }),
    ...(a.subject !== undefined ? { subject: a.subject, subject_issuer: a.subjectIssuer } : {}),
    ...(a.actor !== undefined ? { actor: a.actor } : {}),
    audience: (a.audiences ?? form.getAll('audience')).map((x) => sanitizeRemoteText(x, 256)),
    resource: (a.resources ?? form.getAll('resource')).map((x) => sanitizeRemoteText(x, 256)),
    ...(a.scopes?.length ? { scope: a.scopes.join(' ') } : {}),
    ...(ans.status === 200 && typeof ans.body['expires_in'] === 'number' ? { expires_in: ans.body['expires_in'] } : {}),
  };
  if (ans.status === 200) runtime.logger.info(fields, 'token issued');
  else runtime.logger.warn(fields, 'token request refused');
}

export interface StsHttpOptions {
  /** Per-client rate and concurrency limit of the token endpoint. */
  readonly limiter?: TokenRateLimiter;
  readonly bodyTimeoutMs?: number;
}

export async function handleStsHttp(
  req: IncomingMessage,
  res: ServerResponse,
  cfg: CompiledConfig | null,
  runtime: Runtime,
  opts: StsHttpOptions = {},
): Promise<boolean> {
  const path = (req.url ?? '/').split('?')[0]!;
  if (!PATHS.has(path)) return false;
  const b = cfg?.exchange.builtinSts ?? null;
  if (!b) return false;
  const metric = runtime.metrics.counter('sts_http_requests_total', 'Built-in STS HTTP requests by endpoint and outcome.', ['endpoint', 'outcome'] as const);
  if (path === '/.well-known/jwks.json' || path === '/.well-known/openid-configuration') {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, { error: 'method_not_allowed' }, { allow: 'GET, HEAD' });
      return true;
    }
    const jwks = path === '/.well-known/jwks.json';
    metric.inc({ endpoint: jwks ? 'jwks' : 'discovery', outcome: 'success' });
    send(res, 200, jwks ? b.sts.jwks : b.sts.discovery(!!b.tokenEndpoint), { 'cache-control': 'public, max-age=300' });
    return true;
  }
  if (req.method !== 'POST') {
    send(res, 405, { error: 'invalid_request', error_description: 'use POST' }, { allow: 'POST' });
    return true;
  }
  if (!b.tokenEndpoint) return false;
  // Before anything that costs: a flood from one client must not take the event loop that
  // answers Checks (token requests verify and sign on it).
  const wait = opts.limiter?.take(req.socket.remoteAddress ?? '') ?? 0;
  if (wait > 0) {
    metric.inc({ endpoint: 'token', outcome: 'rate_limited' });
    req.resume();
    // Answered after a pause: a client over its limit then sends at most one request per
    // connection per second (and its connections are capped), so rejecting it stays cheap.
    const t = setTimeout(() => {
      if (!res.destroyed) send(res, 429, { error: 'temporarily_unavailable', error_description: 'too many requests' }, { 'cache-control': 'no-store', 'retry-after': String(wait) });
    }, RATE_LIMITED_PAUSE_MS);
    t.unref();
    res.once('close', () => clearTimeout(t));
    return true;
  }
  try {
    return await tokenRequest(req, res, b, runtime, metric, opts);
  } finally {
    opts.limiter?.done();
  }
}

async function tokenRequest(
  req: IncomingMessage,
  res: ServerResponse,
  b: NonNullable<CompiledConfig['exchange']['builtinSts']>,
  runtime: Runtime,
  metric: { inc(labels: { endpoint: string; outcome: string }): void },
  opts: StsHttpOptions,
): Promise<boolean> {
  const ct = (req.headers['content-type'] ?? '').toLowerCase();
  if (!ct.startsWith('application/x-www-form-urlencoded')) {
    metric.inc({ endpoint: 'token', outcome: 'invalid_request' });
    send(res, 400, { error: 'invalid_request', error_description: 'content-type must be application/x-www-form-urlencoded' }, { 'cache-control': 'no-store' });
    return true;
  }
  let text: string | null | 'timeout';
  try {
    text = await readBody(req, opts.bodyTimeoutMs ?? DEFAULT_HTTP_LIMITS.bodyTimeoutMs);
  } catch {
    // The request stream failed (client gone, parse error): nothing sensible to answer.
    res.destroy();
    return true;
  }
  if (text === 'timeout') {
    metric.inc({ endpoint: 'token', outcome: 'invalid_request' });
    res.once('finish', () => req.destroy());
    send(res, 408, { error: 'invalid_request', error_description: 'request body not received in time' }, { 'cache-control': 'no-store', connection: 'close' });
    return true;
  }
  if (text === null) {
    metric.inc({ endpoint: 'token', outcome: 'invalid_request' });
    // The unread rest of the body makes the connection unusable: close it once the 413
    // has been flushed rather than reading on.
    res.once('finish', () => req.destroy());
    res.once('close', () => req.destroy());
    send(res, 413, { error: 'invalid_request', error_description: 'request body too large' }, { 'cache-control': 'no-store', connection: 'close' });
    return true;
  }
  const auth = req.headers['authorization'];
  let ans;
  try {
    ans = await handleTokenRequest(b, new URLSearchParams(text), typeof auth === 'string' ? auth : undefined, runtime);
  } catch {
    runtime.logger.error({ sts: b.ref }, 'token endpoint failed');
    send(res, 500, { error: 'server_error' }, { 'cache-control': 'no-store' });
    return true;
  }
  metric.inc({ endpoint: 'token', outcome: ans.outcome });
  auditTokenRequest(runtime, b.ref, ans, new URLSearchParams(text), typeof auth === 'string' ? auth : undefined);
  send(res, ans.status, ans.body, ans.headers);
  return true;
}
