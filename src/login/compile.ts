/**
 * The `OIDCLogin` kind (obo-authz.dev/v1alpha1): browser login at the edge with the OIDC
 * authorization code flow and PKCE, answered through the Check. Scoped like the other kinds
 * (namespace, selector, targetRefs) and matched by host and path; several logins (several
 * IdPs) may serve different hosts or paths, each with its own cookie. Two logins whose
 * cookies would reach the same host and path under the same name are a config error.
 */
import { readFileSync } from 'node:fs';
import type { CompileContext, KindDocument } from '../config/kinds.js';
import type { Path } from '../config/issues.js';
import { missingOutsideCluster } from '../config/outside-cluster.js';
import { parseScope, scopeSpecificity, type CompiledScope } from '../config/scope.js';
import { isValidHeaderName } from '../core/headers.js';
import { compileString, type StringMatch, type StringOptions } from '../match/strings.js';

const PATH_MATCH: StringOptions = { star: 'nonEmpty' };
import { compileRedisConnection, sharedRedis } from '../redis/connection.js';
import { loginSchema, type RawLogin } from './schema.js';
import type { CookieOptions, SameSite } from '../session/cookie.js';
import { compileKeyFiles, type SessionKeys } from '../session/keys.js';
import { CookieSessionStore, type SessionStore } from '../session/store.js';
import { RedisSessionStore } from '../session/redis-store.js';
import { loadSigningKey, sharedProvider, type ClientAuth, type OidcProvider } from './provider.js';
import { LoginRuntime } from './runtime.js';

export interface ApiClientRule {
  readonly authorizationHeader: boolean;
  readonly nonHtml: boolean;
  readonly xhr: boolean;
  /** Paths always answered 401 (never redirected) / always redirected. */
  readonly paths: readonly StringMatch[];
  readonly redirectPaths: readonly StringMatch[];
}

export interface CompiledLogin {
  readonly ref: string;
  readonly scope: CompiledScope;
  readonly specificity: number;
  readonly hosts: readonly string[];
  readonly paths: readonly StringMatch[] | null;
  /** Longest literal part of the path patterns (ordering among logins). */
  readonly pathWeight: number;
  readonly issuer: string;
  readonly discoveryOverride: RawLogin['discovery'];
  readonly ca?: string;
  readonly timeoutMs: number;
  readonly clientId: string;
  readonly clientAuth: ClientAuth;
  readonly scopes: string;
  readonly authorizationParams: Readonly<Record<string, string>>;
  /** scheme://host[:port] of the app (the cookie's origin). */
  readonly appOrigin: string;
  readonly appHost: string;
  readonly redirectUri: string;
  readonly callbackPath: string;
  readonly logoutPath: string;
  readonly postLogoutRedirectUrl: string;
  readonly idpLogout: boolean;
  readonly apiClients: ApiClientRule;
  readonly pendingMax: number;
  readonly pendingTtlMs: number;
  readonly keys: SessionKeys;
  readonly store: SessionStore;
  readonly provider: OidcProvider;
  readonly runtime: LoginRuntime;
  readonly cookie: CookieOptions;
  readonly absoluteLifetimeMs: number;
  readonly idleTimeoutMs: number;
  readonly refreshBeforeMs: number;
  readonly failOnStoreError: boolean;
  readonly upstream: {
    readonly accessTokenHeader: string;
    readonly accessTokenPrefix: string;
    readonly idTokenHeader: string;
    readonly idTokenPrefix: string;
    readonly keepSessionCookie: boolean;
  };
}

const LOOPBACK = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/i;

function parseUrl(k: KindDocument, path: Path, value: string, what: string): URL | undefined {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    k.v.error(path, `${what} must be an absolute URL, got ${JSON.stringify(value)}`);
    return undefined;
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') {
    k.v.error(path, `${what} must be an http(s) URL`);
    return undefined;
  }
  if (u.username || u.password) {
    k.v.error(path, `${what} must not carry credentials`);
    return undefined;
  }
  return u;
}

function readSecret(k: KindDocument, cc: CompileContext, path: Path, file: string): string | undefined {
  // validate --ci: a Secret mounted only in the pod is a warning; compile on with a stand-in.
  if (missingOutsideCluster(cc, k.v, path, file, cc.resolvePath(k.doc, file))) return 'stand-in';
  try {
    const t = readFileSync(cc.resolvePath(k.doc, file), 'utf8').replace(/\r?\n$/, '');
    if (t === '') k.v.error(path, 'the file is empty');
    // Redacted wherever it would appear in a log line (an IdP echoing it in an error, say).
    else cc.runtime.secrets?.register(`login:${k.ref}:${path.join('.')}`, [t]);
    return t || undefined;
  } catch (e) {
    k.v.error(path, `cannot read ${JSON.stringify(file)}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    return undefined;
  }
}

/** Compile one OIDCLogin; undefined after reporting errors on `k.v`. */
export function compileLogin(k: KindDocument, cc: CompileContext): CompiledLogin | undefined {
  const s = loginSchema.parse(k.spec ?? {}, ['spec'], k.v);
  if (!s) return undefined;
  const v = k.v;
  const scope = parseScope(k, k.spec as Record<string, unknown>, cc.settings);

  const issuerUrl = parseUrl(k, ['spec', 'issuer'], s.issuer!, 'issuer');
  if (issuerUrl && issuerUrl.protocol === 'http:' && !LOOPBACK.test(issuerUrl.hostname)) v.error(['spec', 'issuer'], 'the issuer must use https (http only on loopback, for tests)');
  for (const [f, val] of Object.entries(s.discovery ?? {})) parseUrl(k, ['spec', 'discovery', f], val as string, f);

  // Where the app lives: appUrl + callbackPath, or a full redirectUri.
  let app: URL | undefined;
  let callbackPath = s.callbackPath ?? '/oauth2/callback';
  let redirectUri: string | undefined;
  if (s.redirectUri) {
    const r = parseUrl(k, ['spec', 'redirectUri'], s.redirectUri, 'redirectUri');
    if (r) {
      if (r.search || r.hash) v.error(['spec', 'redirectUri'], 'redirectUri must not have a query or fragment');
      if (s.callbackPath && s.callbackPath !== r.pathname) v.error(['spec', 'callbackPath'], `callbackPath ${JSON.stringify(s.callbackPath)} contradicts redirectUri's path ${JSON.stringify(r.pathname)}`);
      callbackPath = r.pathname;
      redirectUri = r.href;
      app = s.appUrl ? parseUrl(k, ['spec', 'appUrl'], s.appUrl, 'appUrl') : new URL(r.origin);
      if (app && app.origin !== r.origin) v.error(['spec', 'redirectUri'], `redirectUri must be on the app's origin ${app.origin} (the session cookie is set there)`);
    }
  } else if (s.appUrl) {
    app = parseUrl(k, ['spec', 'appUrl'], s.appUrl, 'appUrl');
    if (app) redirectUri = new URL(callbackPath, app.origin).href;
  } else {
    v.error(['spec', 'appUrl'], 'required field is missing (appUrl, or redirectUri)');
  }
  if (app && (app.search || app.hash)) v.error(['spec', 'appUrl'], 'appUrl must not have a query or fragment');

  // Cookie.
  const c = s.session?.cookie ?? {};
  const insecure = c.insecureDevMode === true;
  if (app && app.protocol === 'http:' && !insecure) v.error(['spec', 'appUrl'], 'an http appUrl needs session.cookie.insecureDevMode: true (cookies are Secure by default)');
  if (insecure && app && !LOOPBACK.test(app.hostname)) v.error(['spec', 'session', 'cookie', 'insecureDevMode'], `insecureDevMode (cookies without Secure) is only for a loopback appUrl, not ${app.hostname}`);
  if (insecure) v.warn(['spec', 'session', 'cookie', 'insecureDevMode'], 'session cookies are sent without Secure: development only');
  const hostPrefix = c.hostPrefix === true;
  let cookiePath = c.path ?? '/';
  if (hostPrefix) {
    if (c.path && c.path !== '/') v.error(['spec', 'session', 'cookie', 'path'], 'a __Host- cookie must have Path=/');
    if (c.domain) v.error(['spec', 'session', 'cookie', 'domain'], 'a __Host- cookie must not have a Domain');
    if (insecure) v.error(['spec', 'session', 'cookie', 'hostPrefix'], 'a __Host- cookie must be Secure (not with insecureDevMode)');
    cookiePath = '/';
  }
  const baseName = c.name ?? 'obo_session';
  if (/^__(Host|Secure)-/i.test(baseName)) v.error(['spec', 'session', 'cookie', 'name'], 'write the name without a prefix; set hostPrefix: true for __Host-');
  const cookieName = hostPrefix ? `__Host-${baseName}` : baseName;
  const absoluteLifetimeMs = s.session?.absoluteLifetime ?? 8 * 3_600_000;
  const cookie: CookieOptions = Object.freeze({
    name: cookieName,
    path: cookiePath,
    ...(c.domain ? { domain: c.domain } : {}),
    secure: !insecure,
    sameSite: (c.sameSite ?? 'Lax') as SameSite,
    ...(c.persistent === false ? {} : { maxAgeS: Math.floor(absoluteLifetimeMs / 1000) }),
  });

  // Client authentication.
  const method = s.clientAuthentication ?? (s.privateKeyJwt ? 'private_key_jwt' : s.clientSecretFile ? 'client_secret_basic' : 'none');
  let clientAuth: ClientAuth | undefined;
  if (method === 'private_key_jwt') {
    if (!s.privateKeyJwt) v.error(['spec', 'privateKeyJwt'], 'required for clientAuthentication private_key_jwt');
    else {
      const key = loadSigningKey(cc.resolvePath(k.doc, s.privateKeyJwt.keyFile!), s.privateKeyJwt.algorithm as 'RS256' | 'ES256' | undefined);
      if (typeof key === 'string') v.error(['spec', 'privateKeyJwt', 'keyFile'], key);
      else clientAuth = { method, clientId: s.clientId!, key: key.key, alg: key.alg, kid: s.privateKeyJwt.keyId ?? key.kid };
    }
  } else if (method === 'client_secret_basic' || method === 'client_secret_post') {
    if (!s.clientSecretFile) v.error(['spec', 'clientSecretFile'], `required for clientAuthentication ${method}`);
    else {
      const secret = readSecret(k, cc, ['spec', 'clientSecretFile'], s.clientSecretFile);
      if (secret) clientAuth = { method, clientId: s.clientId!, secret };
    }
  } else {
    clientAuth = { method: 'none', clientId: s.clientId! };
  }

  // Keys and store.
  let keys: SessionKeys | undefined;
  if (!s.session?.keyFiles) v.error(['spec', 'session', 'keyFiles'], 'required field is missing (files with 32-byte keys; the first seals)');
  else {
    keys = compileKeyFiles(cc, v, ['spec', 'session', 'keyFiles'], s.session.keyFiles, (f) => cc.resolvePath(k.doc, f), (texts) =>
      cc.runtime.secrets?.register(`login:${k.ref}:session.keyFiles`, texts),
    );
  }
  const storeKind = s.session?.store ?? (s.session?.redis ? 'redis' : 'cookie');
  if (storeKind === 'redis' && !s.session?.redis) v.error(['spec', 'session', 'redis'], 'required for store: redis');
  if (storeKind === 'cookie' && s.session?.redis) v.error(['spec', 'session', 'store'], 'session.redis is set but store is cookie');
  let redisConn;
  if (storeKind === 'redis' && s.session?.redis) {
    const { localCacheTtl: _t, localCacheEntries: _e, ...conn } = s.session.redis;
    redisConn = compileRedisConnection(k, cc, ['spec', 'session', 'redis'], conn, 'obo:session:');
  }

  let ca: string | undefined;
  if (s.caFile && !missingOutsideCluster(cc, v, ['spec', 'caFile'], s.caFile, cc.resolvePath(k.doc, s.caFile))) {
    try {
      ca = readFileSync(cc.resolvePath(k.doc, s.caFile), 'utf8');
    } catch (e) {
      v.error(['spec', 'caFile'], `cannot read ${JSON.stringify(s.caFile)}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  }

  // Upstream headers.
  const u = s.upstream ?? {};
  const accessTokenHeader = (u.accessTokenHeader ?? 'authorization').toLowerCase();
  const idTokenHeader = (u.idTokenHeader ?? '').toLowerCase();
  for (const [f, h] of [['accessTokenHeader', accessTokenHeader], ['idTokenHeader', idTokenHeader]] as const) {
    if (h && !isValidHeaderName(h)) v.error(['spec', 'upstream', f], `invalid header name ${JSON.stringify(h)}`);
  }
  if (accessTokenHeader && accessTokenHeader === idTokenHeader) v.error(['spec', 'upstream', 'idTokenHeader'], 'must differ from accessTokenHeader');

  // Matching.
  const hosts = (s.match?.hosts ?? (app ? [app.host] : [])).map((h) => h.toLowerCase());
  const paths = s.match?.paths ? s.match.paths.map((p) => compileString(p, PATH_MATCH)) : null;
  const pathWeight = s.match?.paths ? Math.max(...s.match.paths.map((p) => p.replace(/\*/g, '').length)) : 0;
  const api = s.apiClients ?? {};

  if (v.hasErrors || !app || !redirectUri || !keys || !clientAuth || (storeKind === 'redis' && !redisConn)) return undefined;

  const memoEntries = s.session?.memoEntries ?? 10_000;
  const storeKey = `login:store:${k.ref}:${keys.id}:${JSON.stringify(cookie)}:${storeKind}:${redisConn?.id ?? ''}:${redisConn?.keyPrefix ?? ''}:${memoEntries}:${s.session?.redis?.localCacheTtl ?? ''}:${s.session?.idleTimeout ?? 0}`;
  const store: SessionStore = cc.runtime.shared.get(storeKey, () =>
    storeKind === 'redis'
      ? new RedisSessionStore(sharedRedis(cc.runtime, redisConn!), keys!, cookie, {
          keyPrefix: redisConn!.keyPrefix,
          localCacheTtlMs: s.session?.redis?.localCacheTtl ?? 1_000,
          localCacheEntries: s.session?.redis?.localCacheEntries ?? memoEntries,
          idleTimeoutMs: s.session?.idleTimeout ?? 0,
        })
      : new CookieSessionStore(keys!, cookie, { memoEntries }),
  );

  const scopes = ['openid', ...(s.scopes ?? []).filter((x) => x !== 'openid')];
  return Object.freeze({
    ref: k.ref,
    scope,
    specificity: scopeSpecificity(scope),
    hosts,
    paths,
    pathWeight,
    issuer: s.issuer!,
    discoveryOverride: s.discovery,
    ...(ca ? { ca } : {}),
    timeoutMs: s.timeout ?? 5_000,
    clientId: s.clientId!,
    clientAuth,
    scopes: scopes.join(' '),
    authorizationParams: Object.freeze({ ...(s.authorizationParams ?? {}) }),
    appOrigin: app.origin,
    appHost: app.host.toLowerCase(),
    redirectUri,
    callbackPath,
    logoutPath: s.logoutPath ?? '/oauth2/logout',
    postLogoutRedirectUrl: s.postLogoutRedirectUrl ?? `${app.origin}/`,
    idpLogout: s.idpLogout !== false,
    apiClients: Object.freeze({
      authorizationHeader: api.authorizationHeader !== false,
      nonHtml: api.nonHtml !== false,
      xhr: api.xhr !== false,
      paths: (api.paths ?? []).map((p) => compileString(p, PATH_MATCH)),
      redirectPaths: (api.redirectPaths ?? []).map((p) => compileString(p, PATH_MATCH)),
    }),
    pendingMax: s.pendingLogins?.max ?? 5,
    pendingTtlMs: s.pendingLogins?.ttl ?? 600_000,
    keys,
    store,
    provider: sharedProvider(cc.runtime, s.issuer!, s.discovery, s.timeout ?? 5_000, ca),
    runtime: cc.runtime.shared.get(`login:runtime:${k.ref}`, () => new LoginRuntime(cc.runtime, memoEntries)),
    cookie,
    absoluteLifetimeMs,
    idleTimeoutMs: s.session?.idleTimeout ?? 0,
    refreshBeforeMs: s.session?.refreshBefore ?? 60_000,
    failOnStoreError: s.session?.failOnStoreError !== false,
    upstream: Object.freeze({
      accessTokenHeader,
      accessTokenPrefix: u.accessTokenPrefix ?? 'Bearer ',
      idTokenHeader,
      idTokenPrefix: u.idTokenPrefix ?? '',
      keepSessionCookie: u.keepSessionCookie === true,
    }),
  });
}

/** Do two cookie paths reach a common request path (one is a path-prefix of the other)? */
function pathsOverlap(a: string, b: string): boolean {
  const under = (x: string, y: string) => x === y || y === '/' || x.startsWith(y.endsWith('/') ? y : `${y}/`);
  return under(a, b) || under(b, a);
}

/**
 * Cross-document checks: a cookie name used by two logins on the same host with overlapping
 * paths (the browser would send one login's cookie to the other), and the same callback or
 * logout path on the same host, are config errors on the later document, naming the earlier.
 */
export function checkClashes(logins: readonly { k: KindDocument; c: CompiledLogin }[]): void {
  for (let i = 0; i < logins.length; i++) {
    const a = logins[i]!;
    for (let j = 0; j < i; j++) {
      const b = logins[j]!;
      const where = `OIDCLogin ${b.k.ref} (${b.k.doc.file} document ${b.k.doc.index})`;
      const sameHost = a.c.appHost === b.c.appHost || (a.c.cookie.domain !== undefined && a.c.cookie.domain === b.c.cookie.domain);
      if (!sameHost) continue;
      if (a.c.cookie.name === b.c.cookie.name && pathsOverlap(a.c.cookie.path, b.c.cookie.path)) {
        a.k.v.error(['spec', 'session', 'cookie', 'name'], `cookie name ${JSON.stringify(a.c.cookie.name)} is also used on host ${a.c.appHost} (path ${b.c.cookie.path}) by ${where}: give each login its own cookie name`);
      }
      if (a.c.callbackPath === b.c.callbackPath) a.k.v.error(['spec', 'callbackPath'], `callback path ${a.c.callbackPath} on host ${a.c.appHost} is also the callback of ${where}`);
      if (a.c.logoutPath === b.c.logoutPath) a.k.v.error(['spec', 'logoutPath'], `logout path ${a.c.logoutPath} on host ${a.c.appHost} is also the logout path of ${where}`);
    }
  }
}

