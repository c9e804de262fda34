/** Shared helpers for the token-exchange tests: an IdP, loopback servers, Check states. */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import type { CompiledConfig } from '../../../src/pipeline/compile.js';
import { buildRequestContext, type RawCheckRequest } from '../../../src/core/context.js';
import type { Identity } from '../../../src/core/identity.js';
import { Trace, UpstreamMutations, type CheckState } from '../../../src/core/state.js';
import type { Runtime } from '../../../src/core/runtime.js';

export const FIXTURES = resolve(import.meta.dirname, '../../fixtures/exchange');
export const fixture = (name: string): string => resolve(FIXTURES, name);

export interface Idp {
  readonly issuer: string;
  /** Inline JWKS JSON (public). */
  readonly jwks: string;
  sign(claims: JWTPayload, opts?: { expSec?: number; nowSec?: number }): Promise<string>;
}

export async function makeIdp(issuer: string, kid = 'idp-1'): Promise<Idp> {
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  return {
    issuer,
    jwks: JSON.stringify({ keys: [jwk] }),
    async sign(claims, opts = {}) {
      const now = opts.nowSec ?? Math.floor(Date.now() / 1000);
      return new SignJWT({ ...claims })
        .setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' })
        .setIssuer(issuer)
        .setIssuedAt(now)
        .setExpirationTime(opts.expSec ?? now + 3600)
        .sign(privateKey);
    },
  };
}

export interface Recorded {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

export interface Loopback {
  readonly url: string;
  readonly calls: Recorded[];
  close(): Promise<void>;
}

/** A real HTTP server on 127.0.0.1:0; the handler sees the parsed body. */
export async function startLoopback(handler: (req: Recorded, res: ServerResponse) => void | Promise<void>): Promise<Loopback> {
  const calls: Recorded[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      calls.push(rec);
      void Promise.resolve(handler(rec, res)).catch(() => {
        res.statusCode = 500;
        res.end();
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export function json(res: ServerResponse, status: number, body: unknown): void {
  const t = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(t);
}

export function checkRequest(opts: { headers?: Record<string, string>; path?: string; host?: string; ext?: Record<string, string> } = {}): RawCheckRequest {
  return {
    attributes: {
      request: {
        http: {
          id: 'req-1',
          method: 'GET',
          host: opts.host ?? 'mcp.example.com',
          path: opts.path ?? '/mcp',
          scheme: 'https',
          headers: { ':method': 'GET', ':path': opts.path ?? '/mcp', ...(opts.headers ?? {}) },
        },
      },
      context_extensions: opts.ext ?? {},
    },
  };
}

export function userIdentity(token: string, claims: Record<string, unknown>, over: Partial<Identity> = {}): Identity {
  const iss = String(claims['iss'] ?? 'https://idp.example');
  const sub = String(claims['sub'] ?? 'alice');
  const exp = typeof claims['exp'] === 'number' ? claims['exp'] : undefined;
  return {
    kind: 'jwt',
    principal: `${iss}/${sub}`,
    issuer: iss,
    subject: sub,
    audiences: [],
    presenter: '',
    claims,
    token,
    location: 'header:authorization',
    ...(exp !== undefined ? { expiresAt: exp } : {}),
    admittedBy: 'istio-system/idp jwtRules[0]',
    ...over,
  };
}

export function makeState(runtime: Runtime, cfg: CompiledConfig, raw: RawCheckRequest, identity: Identity | null, signal?: AbortSignal): CheckState {
  const ctx = buildRequestContext(raw, { settings: cfg.settings });
  return {
    ctx,
    runtime,
    signal: signal ?? new AbortController().signal,
    trace: new Trace(),
    identity,
    identities: identity ? [identity] : [],
    actor: null,
    // What the authn stage records before exchange runs.
    tokenLocations: cfg.authn.requestAuthentications.locationsFor(ctx.workload),
    upstream: new UpstreamMutations(),
    attribution: {},
  };
}

/** `yaml` single-quoted scalar (JWKS JSON inline). */
export function sq(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}
