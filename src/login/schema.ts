/** The OIDCLogin spec as written (validated shape; semantics in compile.ts). */
import { any, bool, duration, list, num, obj, record, str, type Schema } from '../config/schema.js';
import { redisConnectionFields, type RawRedisConnection } from '../redis/connection.js';

export interface RawLogin {
  selector?: unknown;
  targetRef?: unknown;
  targetRefs?: unknown;
  match?: { hosts?: string[]; paths?: string[] };
  issuer?: string;
  discovery?: { authorizationEndpoint?: string; tokenEndpoint?: string; jwksUri?: string; endSessionEndpoint?: string; revocationEndpoint?: string };
  caFile?: string;
  timeout?: number;
  clientId?: string;
  clientSecretFile?: string;
  clientAuthentication?: string;
  privateKeyJwt?: { keyFile?: string; keyId?: string; algorithm?: string };
  scopes?: string[];
  authorizationParams?: Record<string, string>;
  appUrl?: string;
  callbackPath?: string;
  redirectUri?: string;
  logoutPath?: string;
  postLogoutRedirectUrl?: string;
  idpLogout?: boolean;
  apiClients?: { authorizationHeader?: boolean; nonHtml?: boolean; xhr?: boolean; paths?: string[]; redirectPaths?: string[] };
  pendingLogins?: { max?: number; ttl?: number };
  session?: {
    store?: string;
    keyFiles?: string[];
    cookie?: { name?: string; hostPrefix?: boolean; path?: string; domain?: string; sameSite?: string; persistent?: boolean; insecureDevMode?: boolean };
    absoluteLifetime?: number;
    idleTimeout?: number;
    refreshBefore?: number;
    failOnStoreError?: boolean;
    memoEntries?: number;
    redis?: RawRedisConnection & { localCacheTtl?: number; localCacheEntries?: number };
  };
  upstream?: { accessTokenHeader?: string; accessTokenPrefix?: string; idTokenHeader?: string; idTokenPrefix?: string; keepSessionCookie?: boolean };
}

const strs = list(str({ nonEmpty: true }));
const PATH = str({ nonEmpty: true, pattern: /^\/[^?#\s]*$/, patternHint: 'an absolute path without query or fragment' });

export const loginSchema: Schema<RawLogin> = obj<RawLogin>(
  {
    selector: any(),
    targetRef: any(),
    targetRefs: any(),
    match: obj({ hosts: strs, paths: strs }),
    issuer: str({ nonEmpty: true }),
    discovery: obj({
      authorizationEndpoint: str({ nonEmpty: true }),
      tokenEndpoint: str({ nonEmpty: true }),
      jwksUri: str({ nonEmpty: true }),
      endSessionEndpoint: str({ nonEmpty: true }),
      revocationEndpoint: str({ nonEmpty: true }),
    }),
    caFile: str({ nonEmpty: true }),
    timeout: duration({ minMs: 10, maxMs: 60_000 }),
    clientId: str({ nonEmpty: true }),
    clientSecretFile: str({ nonEmpty: true }),
    clientAuthentication: str({ enum: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'] }),
    privateKeyJwt: obj({ keyFile: str({ nonEmpty: true }), keyId: str({ nonEmpty: true }), algorithm: str({ enum: ['RS256', 'ES256'] }) }, { required: ['keyFile'] }),
    scopes: strs,
    authorizationParams: record(str()),
    appUrl: str({ nonEmpty: true }),
    callbackPath: PATH,
    redirectUri: str({ nonEmpty: true }),
    logoutPath: PATH,
    postLogoutRedirectUrl: str({ nonEmpty: true }),
    idpLogout: bool(),
    apiClients: obj({ authorizationHeader: bool(), nonHtml: bool(), xhr: bool(), paths: strs, redirectPaths: strs }),
    pendingLogins: obj({ max: num({ int: true, min: 1, max: 20 }), ttl: duration({ minMs: 10_000, maxMs: 3_600_000 }) }),
    session: obj({
      store: str({ enum: ['cookie', 'redis'] }),
      keyFiles: list(str({ nonEmpty: true }), { minItems: 1 }),
      cookie: obj({
        name: str({ nonEmpty: true, pattern: /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, patternHint: 'a cookie name (RFC 6265 token)' }),
        hostPrefix: bool(),
        path: PATH,
        domain: str({ nonEmpty: true }),
        sameSite: str({ enum: ['Lax', 'Strict'] }),
        persistent: bool(),
        insecureDevMode: bool(),
      }),
      absoluteLifetime: duration({ minMs: 60_000, maxMs: 90 * 86_400_000 }),
      idleTimeout: duration({ minMs: 0, maxMs: 90 * 86_400_000 }),
      refreshBefore: duration({ minMs: 0, maxMs: 3_600_000 }),
      failOnStoreError: bool(),
      memoEntries: num({ int: true, min: 1, max: 10_000_000 }),
      redis: obj({ ...redisConnectionFields, localCacheTtl: duration({ minMs: 0, maxMs: 60_000 }), localCacheEntries: num({ int: true, min: 1, max: 10_000_000 }) }, { required: ['address'] }),
    }),
    upstream: obj({ accessTokenHeader: str(), accessTokenPrefix: str(), idTokenHeader: str({ nonEmpty: true }), idTokenPrefix: str(), keepSessionCookie: bool() }),
  },
  { required: ['issuer', 'clientId'] },
);

