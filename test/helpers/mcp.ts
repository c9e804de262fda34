/**
 * Real parts for the MCP tests, all on loopback:
 *  - an OAuth authorization server (RFC 8414 metadata, authorization code + PKCE with
 *    auto-approval, client_credentials, RFC 8707 `resource` -> `aud`, JWKS), signing real JWTs;
 *  - an MCP server made with the official SDK (McpServer + Streamable HTTP, stateless);
 *  - `envoyFetch`: a fetch that does what Envoy's ext_authz filter does with
 *    `with_request_body` — builds the CheckRequest (headers, body, x-envoy-auth-partial-body),
 *    sends it over real gRPC, answers a denied_response as is, or applies the ok_response
 *    header mutations and forwards to the MCP server. The official SDK client talks through it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import type { OAuthClientInformationMixed, OAuthClientMetadata, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
import type { RawCheckRequest } from '../../src/core/context.js';
import type { CheckResponseObject } from '../../src/respond/respond.js';

async function listen(server: Server): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function readAll(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

// ------------------------------------------------------------------ authorization server

export interface AuthServer {
  readonly issuer: string;
  /** Every authorization / token request's `scope` and `resource`, in order. */
  readonly authorizeRequests: URLSearchParams[];
  readonly tokenRequests: URLSearchParams[];
  /** Mint a token directly (tests that send Checks without the OAuth dance). */
  mint(claims: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
}

export async function startAuthServer(): Promise<AuthServer> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'as-1', alg: 'RS256', use: 'sig' };
  const codes = new Map<string, { challenge: string; scope: string; resource: string; clientId: string }>();
  const authorizeRequests: URLSearchParams[] = [];
  const tokenRequests: URLSearchParams[] = [];
  let issuer = '';
  const mint = (claims: Record<string, unknown>) =>
    new SignJWT({ ...claims })
      .setProtectedHeader({ alg: 'RS256', kid: 'as-1', typ: 'at+jwt' })
      .setIssuer(issuer)
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(privateKey);
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const url = new URL(req.url ?? '/', issuer);
      const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      if (req.method === 'GET' && url.pathname === '/.well-known/oauth-authorization-server') {
        return json(200, {
          issuer,
          authorization_endpoint: `${issuer}/authorize`,
          token_endpoint: `${issuer}/token`,
          jwks_uri: `${issuer}/jwks`,
          response_types_supported: ['code'],
          grant_types_supported: ['authorization_code', 'client_credentials'],
          code_challenge_methods_supported: ['S256'],
          token_endpoint_auth_methods_supported: ['none', 'client_secret_post'],
        });
      }
      if (req.method === 'GET' && url.pathname === '/jwks') return json(200, { keys: [jwk] });
      if (req.method === 'GET' && url.pathname === '/authorize') {
        // Auto-approval: the "user" consents at once.
        authorizeRequests.push(url.searchParams);
        const code = randomBytes(16).toString('hex');
        codes.set(code, {
          challenge: url.searchParams.get('code_challenge') ?? '',
          scope: url.searchParams.get('scope') ?? '',
          resource: url.searchParams.get('resource') ?? '',
          clientId: url.searchParams.get('client_id') ?? '',
        });
        const back = new URL(url.searchParams.get('redirect_uri')!);
        back.searchParams.set('code', code);
        if (url.searchParams.get('state')) back.searchParams.set('state', url.searchParams.get('state')!);
        return res.writeHead(302, { location: back.toString() }).end();
      }
      if (req.method === 'POST' && url.pathname === '/token') {
        const form = new URLSearchParams(await readAll(req));
        tokenRequests.push(form);
        const grant = form.get('grant_type');
        if (grant === 'authorization_code') {
          const c = codes.get(form.get('code') ?? '');
          const verifier = form.get('code_verifier') ?? '';
          if (!c || createHash('sha256').update(verifier).digest('base64url') !== c.challenge) return json(400, { error: 'invalid_grant' });
          codes.delete(form.get('code')!);
          const resource = form.get('resource') ?? c.resource;
          const token = await mint({ sub: 'alice', client_id: c.clientId, scope: c.scope, ...(resource ? { aud: resource } : {}) });
          return json(200, { access_token: token, token_type: 'Bearer', expires_in: 600, scope: c.scope });
        }
        if (grant === 'client_credentials') {
          const resource = form.get('resource');
          const token = await mint({ sub: form.get('client_id') ?? 'agent', scope: form.get('scope') ?? '', ...(resource ? { aud: resource } : {}) });
          return json(200, { access_token: token, token_type: 'Bearer', expires_in: 600 });
        }
        return json(400, { error: 'unsupported_grant_type' });
      }
      res.writeHead(404).end();
    })().catch(() => res.writeHead(500).end());
  });
  const l = await listen(server);
  issuer = l.url;
  return { issuer, authorizeRequests, tokenRequests, mint, close: l.close };
}

/**
 * The IdP's RequestAuthentication and one MCPServer `tools` (root namespace) for `resource`;
 * `more` is the rest of its spec (YAML at the spec's level), 4 KiB bodies unless given.
 */
export function mcpServerYaml(issuer: string, resource: string, more = 'maxBodyBytes: 4096'): string {
  return `${idpYaml(issuer)}---
apiVersion: obo-authz.dev/v1alpha1
kind: MCPServer
metadata: {name: tools, namespace: istio-system}
spec:
  resource: ${resource}
  authorizationServers: [${issuer}]
${more.replace(/^/gm, '  ')}
`;
}

/** A RequestAuthentication (root namespace) trusting the authorization server's tokens. */
export function idpYaml(issuer: string): string {
  return `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: idp, namespace: istio-system}
spec:
  jwtRules: [{issuer: ${issuer}, jwksUri: ${issuer}/jwks}]
`;
}

// ------------------------------------------------------------------ MCP server (official SDK)

export interface McpBackend {
  readonly url: string;
  /** Authorization headers the backend received, in order. */
  readonly authorizations: (string | undefined)[];
  close(): Promise<void>;
}

function buildMcpServer(): McpServer {
  const s = new McpServer({ name: 'test-tools', version: '1.0.0' });
  for (const name of ['search', 'delete_repo', 'drop_db']) {
    s.registerTool(name, { description: `${name} tool` }, async () => ({ content: [{ type: 'text', text: `${name} done` }] }));
  }
  s.registerResource('readme', 'file:///docs/readme.md', { mimeType: 'text/markdown' }, async (uri) => ({ contents: [{ uri: uri.href, text: '# readme' }] }));
  s.registerResource('secrets', new ResourceTemplate('file:///secret/{name}', { list: undefined }), {}, async (uri) => ({ contents: [{ uri: uri.href, text: 'secret' }] }));
  s.registerPrompt('summarize', { description: 'summarize' }, async () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'summarize' } }] }));
  s.registerPrompt('admin_report', { description: 'admin' }, async () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'report' } }] }));
  return s;
}

/** Stateless Streamable HTTP: a new McpServer and transport per request (the SDK's stateless pattern). */
export async function startMcpBackend(): Promise<McpBackend> {
  const authorizations: (string | undefined)[] = [];
  const server = createServer((req, res) => {
    authorizations.push(req.headers.authorization);
    void (async () => {
      const mcp = buildMcpServer();
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      res.on('close', () => {
        void transport.close();
        void mcp.close();
      });
      await mcp.connect(transport);
      const body = req.method === 'POST' ? JSON.parse(await readAll(req)) : undefined;
      await transport.handleRequest(req, res, body);
    })().catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  const l = await listen(server);
  return { url: l.url, authorizations, close: l.close };
}

// ------------------------------------------------------------------ Envoy's ext_authz, emulated

export interface BodySettings {
  /** with_request_body set at all. */
  readonly enabled: boolean;
  readonly maxRequestBytes: number;
  readonly allowPartialMessage: boolean;
  readonly packAsBytes: boolean;
}

export const DEFAULT_BODY: BodySettings = { enabled: true, maxRequestBytes: 65536, allowPartialMessage: false, packAsBytes: false };

export interface EnvoyOptions {
  /** The MCP host's origin the client uses (e.g. https://mcp.example.test); other URLs go out unchanged. */
  readonly origin: string;
  readonly backend: string;
  readonly check: (req: RawCheckRequest) => Promise<CheckResponseObject>;
  readonly body?: BodySettings;
  /** Every CheckRequest sent and its response (assertions). */
  readonly log?: { req: RawCheckRequest; resp: CheckResponseObject }[];
}

function headerRecord(h: RequestInit['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  new Headers(h ?? {}).forEach((v, k) => (out[k.toLowerCase()] = v));
  return out;
}

/** The CheckRequest Envoy would send for this request (with_request_body as configured). */
export function checkRequestFor(url: URL, method: string, headers: Record<string, string>, body: string | undefined, b: BodySettings): RawCheckRequest | 'too-large' {
  const path = `${url.pathname}${url.search}`;
  const h: Record<string, string> = { ...headers, ':method': method, ':path': path, ':authority': url.host, ':scheme': url.protocol.slice(0, -1) };
  delete h['x-envoy-auth-partial-body']; // Envoy drops a client's copy
  const http: NonNullable<NonNullable<NonNullable<RawCheckRequest['attributes']>['request']>['http']> = {
    id: String(Math.random()).slice(2),
    method,
    path,
    host: url.host,
    scheme: url.protocol.slice(0, -1),
    protocol: 'HTTP/1.1',
    headers: h,
  };
  if (b.enabled && body !== undefined && body.length > 0) {
    let bytes = Buffer.from(body, 'utf8');
    let partial = false;
    if (bytes.length > b.maxRequestBytes) {
      if (!b.allowPartialMessage) return 'too-large';
      bytes = bytes.subarray(0, b.maxRequestBytes);
      partial = true;
    }
    if (b.packAsBytes) http.raw_body = bytes;
    else http.body = bytes.toString('utf8');
    h['x-envoy-auth-partial-body'] = partial ? 'true' : 'false';
  }
  return {
    attributes: {
      source: { address: { socket_address: { address: '10.0.0.7', port_value: 40000 } } },
      destination: { address: { socket_address: { address: '10.0.0.9', port_value: 443 } } },
      request: { http },
      context_extensions: {},
    },
  };
}

export function envoyFetch(opts: EnvoyOptions): typeof fetch {
  const b = opts.body ?? DEFAULT_BODY;
  return (async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (url.origin !== opts.origin) return fetch(input, init);
    const method = (init?.method ?? 'GET').toUpperCase();
    const headers = headerRecord(init?.headers);
    const body = typeof init?.body === 'string' ? init.body : undefined;
    const cr = checkRequestFor(url, method, headers, body, b);
    if (cr === 'too-large') return new Response('Payload Too Large', { status: 413 });
    const resp = await opts.check(cr);
    opts.log?.push({ req: cr, resp });
    if (resp.denied_response) {
      const d = resp.denied_response;
      const hs = new Headers();
      for (const x of d.headers ?? []) hs.set(x.header.key, x.header.value);
      const status = d.status?.code || 403;
      return new Response(status === 204 || status === 304 ? null : d.body, { status, headers: hs });
    }
    const ok = resp.ok_response!;
    const fwd = new Headers(headers);
    for (const x of ok.headers ?? []) fwd.set(x.header.key, x.header.value);
    for (const k of ok.headers_to_remove ?? []) fwd.delete(k);
    return fetch(`${opts.backend}${url.pathname}${url.search}`, { method, headers: fwd, body, signal: init?.signal ?? null });
  }) as typeof fetch;
}

// ------------------------------------------------------------------ an OAuth client provider

/**
 * The SDK's OAuthClientProvider for a pre-registered public client using the authorization
 * code flow; `redirectToAuthorization` records the URL (a test "browser" follows it).
 */
export class TestOAuthProvider implements OAuthClientProvider {
  readonly redirectUrl = 'http://127.0.0.1:1/callback';
  lastAuthorizationUrl: URL | undefined;
  private saved: OAuthTokens | undefined;
  private verifier = '';
  constructor(private readonly clientId = 'agent-app') {}
  get clientMetadata(): OAuthClientMetadata {
    return { client_name: 'test agent', redirect_uris: [this.redirectUrl], grant_types: ['authorization_code'], response_types: ['code'], token_endpoint_auth_method: 'none' };
  }
  clientInformation(): OAuthClientInformationMixed {
    return { client_id: this.clientId };
  }
  tokens(): OAuthTokens | undefined {
    return this.saved;
  }
  saveTokens(t: OAuthTokens): void {
    this.saved = t;
  }
  redirectToAuthorization(url: URL): void {
    this.lastAuthorizationUrl = url;
  }
  saveCodeVerifier(v: string): void {
    this.verifier = v;
  }
  codeVerifier(): string {
    return this.verifier;
  }
  /** The "browser": follow the last authorization URL to the AS and return the code it redirects back with. */
  async approve(): Promise<string> {
    const r = await fetch(this.lastAuthorizationUrl!, { redirect: 'manual' });
    const loc = r.headers.get('location');
    if (r.status !== 302 || !loc) throw new Error(`authorization failed: ${r.status}`);
    return new URL(loc).searchParams.get('code')!;
  }
}
