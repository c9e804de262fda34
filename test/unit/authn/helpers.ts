/** Test helpers for authn: keys, token signing, a loopback JWKS/OIDC server, CheckRequests. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CompactSign, exportJWK, generateKeyPair, type JWK } from 'jose';
import type { RawCheckRequest } from '../../../src/core/context.js';

export interface TestKey {
  readonly alg: string;
  readonly kid: string;
  readonly privateKey: CryptoKey | Uint8Array;
  /** Public JWK as published in a JWKS (with kid, alg, use). */
  readonly jwk: JWK;
}

export async function makeKey(alg: string, kid: string, opts: { publishAlg?: boolean } = {}): Promise<TestKey> {
  if (alg.startsWith('HS')) {
    const secret = new Uint8Array(64);
    for (let i = 0; i < secret.length; i++) secret[i] = (i * 37 + kid.length) & 0xff;
    const jwk: JWK = { kty: 'oct', k: Buffer.from(secret).toString('base64url'), kid, use: 'sig' };
    if (opts.publishAlg !== false) jwk.alg = alg;
    return { alg, kid, privateKey: secret, jwk };
  }
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, use: 'sig' } as JWK;
  if (opts.publishAlg !== false) jwk.alg = alg;
  return { alg, kid, privateKey, jwk };
}

export function jwks(...keys: TestKey[]): { keys: JWK[] } {
  return { keys: keys.map((k) => k.jwk) };
}

export const NOW_S = 1_750_000_000;

export interface SignOpts {
  header?: Record<string, unknown>;
  /** Omit kid from the header. */
  noKid?: boolean;
}

/** Sign a compact JWS with exactly this payload (no defaults added). */
export async function sign(key: TestKey, payload: Record<string, unknown>, opts: SignOpts = {}): Promise<string> {
  const header: Record<string, unknown> = { alg: key.alg, typ: 'JWT', ...(opts.noKid ? {} : { kid: key.kid }), ...(opts.header ?? {}) };
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader(header as { alg: string })
    .sign(key.privateKey);
}

/** Base64url JSON segment. */
export function seg(v: unknown): string {
  return Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
}

export interface IdpServer {
  readonly url: string;
  readonly issuer: string;
  /** Requests served, by path. */
  readonly hits: Map<string, number>;
  jwks: unknown;
  /** 'up' serves; 'error' answers 500; 'hang' never answers; 'reset' destroys the socket. */
  mode: 'up' | 'error' | 'hang' | 'reset';
  cacheControl: string | undefined;
  /** Delay before answering (ms). */
  delayMs: number;
  hitCount(path: string): number;
  close(): Promise<void>;
}

/** Loopback IdP: `/jwks` and `/.well-known/openid-configuration` on 127.0.0.1:0. */
export async function startIdp(initial: unknown, opts: { issuerPath?: string } = {}): Promise<IdpServer> {
  const sockets = new Set<import('node:net').Socket>();
  const hanging: ServerResponse[] = [];
  const state: IdpServer = {
    url: '',
    issuer: '',
    hits: new Map(),
    jwks: initial,
    mode: 'up',
    cacheControl: undefined,
    delayMs: 0,
    hitCount(path) {
      return this.hits.get(path) ?? 0;
    },
    async close() {
      for (const r of hanging) r.destroy();
      for (const s of sockets) s.destroy();
      await new Promise<void>((res) => server.close(() => res()));
    },
  };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!;
    state.hits.set(path, (state.hits.get(path) ?? 0) + 1);
    const answer = () => {
      if (state.mode === 'hang') {
        hanging.push(res);
        return;
      }
      if (state.mode === 'reset') {
        req.socket.destroy();
        return;
      }
      if (state.mode === 'error') {
        res.writeHead(500, { 'content-type': 'text/plain' }).end('boom');
        return;
      }
      if (path === '/jwks') {
        const h: Record<string, string> = { 'content-type': 'application/json' };
        if (state.cacheControl) h['cache-control'] = state.cacheControl;
        res.writeHead(200, h).end(JSON.stringify(state.jwks));
        return;
      }
      if (path.endsWith('/.well-known/openid-configuration')) {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: state.issuer, jwks_uri: `${state.url}/jwks` }));
        return;
      }
      res.writeHead(404).end();
    };
    if (state.delayMs > 0) setTimeout(answer, state.delayMs);
    else answer();
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  const port = (server.address() as AddressInfo).port;
  (state as { url: string }).url = `http://127.0.0.1:${port}`;
  (state as { issuer: string }).issuer = `http://127.0.0.1:${port}${opts.issuerPath ?? ''}`;
  return state;
}

/** A port nothing listens on (bind then close). */
export async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((res) => s.listen(0, '127.0.0.1', () => res()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((res) => s.close(() => res()));
  return `http://127.0.0.1:${port}`;
}

export interface ReqOpts {
  method?: string;
  path?: string;
  host?: string;
  scheme?: string;
  headers?: Record<string, string>;
  ext?: Record<string, string>;
}

export function checkRequest(o: ReqOpts = {}): RawCheckRequest {
  return {
    attributes: {
      request: {
        http: {
          id: 'req-1',
          method: o.method ?? 'GET',
          path: o.path ?? '/api',
          host: o.host ?? 'example.com',
          scheme: o.scheme ?? 'https',
          headers: { ...(o.headers ?? {}) },
        },
      },
      context_extensions: o.ext ?? {},
    },
  };
}

/** A token of a fixture table: signed by one of its keys (`key`, optional `kid`), or `raw`. */
export interface FixtureToken {
  key?: string;
  kid?: string;
  claims?: Record<string, unknown>;
  raw?: string;
}

/**
 * The RequestAuthentication fixture table's keys made (`a` RS256, `b` ES256, `c` EdDSA, and
 * `evil`: kid a1 but never published): its config with `__JWKS_<key>__` replaced by each key's
 * public JWKS, and its tokens signed.
 */
export async function signFixture(f: { config: string; tokens: Record<string, FixtureToken> }): Promise<{ config: string; tokens: Record<string, string> }> {
  const keys: Record<string, TestKey> = {
    a: await makeKey('RS256', 'a1'),
    b: await makeKey('ES256', 'b1'),
    c: await makeKey('EdDSA', 'c1'),
    evil: await makeKey('RS256', 'a1'),
  };
  let config = f.config;
  for (const [n, k] of Object.entries(keys)) config = config.replaceAll(`__JWKS_${n}__`, JSON.stringify(jwks(k)));
  const tokens: Record<string, string> = {};
  for (const [n, t] of Object.entries(f.tokens)) tokens[n] = t.raw ?? (await sign(keys[t.key!]!, t.claims ?? {}, t.kid ? { header: { kid: t.kid } } : {}));
  return { config, tokens };
}
