/**
 * A real OpenID Provider on loopback: panva's `oidc-provider`, with a programmatic login and
 * consent (no HTML forms), so tests complete a browser login with plain HTTP requests.
 * GET /interaction/:uid logs in `idp.user` (login prompt) or grants what was asked (consent).
 */
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as oidc from 'oidc-provider';

export interface TestIdp {
  readonly issuer: string;
  readonly provider: oidc.Provider;
  /** Account id the next login signs in as. */
  user: string;
  /** Access token lifetime (s) for tokens issued from now on. */
  accessTtl: number;
  /** Counters: logins performed at the IdP (login prompts), token endpoint calls by grant type. */
  readonly counts: { logins: number; token: Record<string, number>; endSession: number };
  close(): Promise<void>;
}

export const USERS: Record<string, Record<string, unknown>> = {
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice', groups: ['staff'] },
  bob: { email: 'bob@example.com', email_verified: true, name: 'Bob', groups: ['guests'] },
};

export async function startTestIdp(opts: { clientSecret: string; redirectUris: string[]; postLogoutRedirectUris: string[] }): Promise<TestIdp> {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...(privateKey.export({ format: 'jwk' }) as Record<string, string>), kid: 'idp-1', alg: 'RS256', use: 'sig' };
  const server: Server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const state = { user: 'alice', accessTtl: 300 };
  const counts = { logins: 0, token: {} as Record<string, number>, endSession: 0 };
  const provider = new oidc.Provider(issuer, {
    clients: [
      {
        client_id: 'web',
        client_secret: opts.clientSecret,
        redirect_uris: opts.redirectUris,
        post_logout_redirect_uris: opts.postLogoutRedirectUris,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [jwk] },
    cookies: { keys: ['obo-authz-test-idp-cookie-key'] },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false }, revocation: { enabled: true }, rpInitiatedLogout: { enabled: true } },
    pkce: { required: () => true },
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    issueRefreshToken: async (_ctx: unknown, client: { grantTypeAllowed(t: string): boolean }) => client.grantTypeAllowed('refresh_token'),
    ttl: { AccessToken: () => state.accessTtl, IdToken: 3600, RefreshToken: 86_400, Session: 86_400, Grant: 86_400, Interaction: 600, AuthorizationCode: 60 },
    async findAccount(_ctx: unknown, id: string) {
      if (!USERS[id]) return undefined;
      return { accountId: id, claims: async () => ({ sub: id, ...USERS[id] }) };
    },
  } as unknown as oidc.Configuration);
  // A loopback test issuer is plain http.
  provider.proxy = false;
  const handler = provider.callback();
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const url = new URL(req.url ?? '/', issuer);
      if (url.pathname === '/token' && req.method === 'POST') counts.token['*'] = (counts.token['*'] ?? 0) + 1;
      if (url.pathname.startsWith('/session/end')) counts.endSession++;
      const m = /^\/interaction\/([^/]+)$/.exec(url.pathname);
      if (m && req.method === 'GET') {
        const details = await provider.interactionDetails(req, res);
        if (details.prompt.name === 'login') {
          counts.logins++;
          return provider.interactionFinished(req, res, { login: { accountId: state.user } }, { mergeWithLastSubmission: false });
        }
        const d = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[] };
        const grant = details.grantId
          ? await provider.Grant.find(details.grantId)
          : new provider.Grant({ accountId: details.session!.accountId, clientId: details.params['client_id'] as string });
        if (d.missingOIDCScope) grant!.addOIDCScope(d.missingOIDCScope.join(' '));
        if (d.missingOIDCClaims) grant!.addOIDCClaims(d.missingOIDCClaims);
        const grantId = await grant!.save();
        return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      }
      return handler(req, res);
    })().catch((e: unknown) => {
      res.statusCode = 500;
      res.end(String(e));
    });
  });
  provider.on('grant.success', (ctx: { oidc: { params?: { grant_type?: string } } }) => {
    const g = ctx.oidc.params?.grant_type ?? '?';
    counts.token[g] = (counts.token[g] ?? 0) + 1;
  });
  const idp: TestIdp = {
    issuer,
    provider,
    get user() {
      return state.user;
    },
    set user(u: string) {
      state.user = u;
    },
    get accessTtl() {
      return state.accessTtl;
    },
    set accessTtl(s: number) {
      state.accessTtl = s;
    },
    counts,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  return idp;
}
