/**
 * The reason table: the closed set of codes a Check ends with, one row per code. A code is
 * at once the metric label (`obo_authz_checks_total{reason}`), the decision-log `reason`
 * and `dynamic_metadata.reason`; its row gives the HTTP status of the deny, the gRPC code
 * put in CheckResponse.status, and the default deny body. Bodies keep Envoy's own strings
 * where Envoy has one (jwt_authn, RBAC filter); a stage may send a finer Envoy string for
 * the same code (the JWT status texts in jwt/jwt-format.ts). Add a code here and nowhere else.
 */
import { status as GrpcStatus } from '@grpc/grpc-js';

export interface ReasonInfo {
  /** HTTP status Envoy sends downstream on deny; 0 for OK. */
  readonly http: number;
  /** google.rpc.Status code put in CheckResponse.status (never 0 for a deny). */
  readonly grpc: number;
  /** Default deny body: a fixed string, never request data, never remote text. */
  readonly body: string;
  /** Short human description (docs, --explain). */
  readonly description: string;
}

const { OK, UNAUTHENTICATED, PERMISSION_DENIED, UNAVAILABLE, INVALID_ARGUMENT, INTERNAL } = GrpcStatus;

export const REASONS = {
  OK: { http: 0, grpc: OK, body: '', description: 'allowed' },
  ERR_JWT_INVALID: { http: 401, grpc: UNAUTHENTICATED, body: 'Jwt verification fails', description: 'token present and invalid' },
  ERR_JWT_EXPIRED: { http: 401, grpc: UNAUTHENTICATED, body: 'Jwt is expired', description: 'token expired' },
  ERR_JWT_NOT_YET_VALID: { http: 401, grpc: UNAUTHENTICATED, body: 'Jwt not yet valid', description: 'token not yet valid (nbf)' },
  ERR_JWT_SIGNATURE: { http: 401, grpc: UNAUTHENTICATED, body: 'Jwt verification fails', description: 'token signature or key mismatch' },
  ERR_JWT_MALFORMED: {
    http: 401,
    grpc: UNAUTHENTICATED,
    body: 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections',
    description: 'token cannot be parsed',
  },
  ERR_JWT_ISSUER_UNKNOWN: { http: 401, grpc: UNAUTHENTICATED, body: 'Jwt issuer is not configured', description: 'token issuer matches no jwtRule' },
  ERR_JWT_AUDIENCE: { http: 403, grpc: PERMISSION_DENIED, body: 'Audiences in Jwt are not allowed', description: 'token audience not allowed' },
  ERR_JWKS_UNAVAILABLE: { http: 503, grpc: UNAVAILABLE, body: 'Jwks remote fetch is failed', description: 'identity provider keys unreachable and none cached' },
  ERR_RBAC_DENIED: { http: 403, grpc: PERMISSION_DENIED, body: 'RBAC: access denied', description: 'AuthorizationPolicy denied the request' },
  ERR_NO_VALIDATOR_ADMITTED: { http: 401, grpc: UNAUTHENTICATED, body: 'Authentication required', description: 'a required credential chain admitted nobody' },
  ERR_INVALID_CREDENTIAL: { http: 401, grpc: UNAUTHENTICATED, body: 'Invalid credential', description: 'a presented credential was rejected' },
  ERR_CREDENTIAL_EXPIRED: { http: 401, grpc: UNAUTHENTICATED, body: 'Credential is expired', description: 'a presented credential has expired' },
  ERR_ACTOR_TOKEN_MISSING: { http: 401, grpc: UNAUTHENTICATED, body: 'Actor token is missing', description: 'delegation needs an actor token and none was sent' },
  ERR_ACTOR_TOKEN_INVALID: { http: 401, grpc: UNAUTHENTICATED, body: 'Actor token verification fails', description: 'the actor token was rejected' },
  ERR_SUBJECT_MISSING: { http: 401, grpc: UNAUTHENTICATED, body: 'Jwt is missing', description: 'token exchange applies but no authenticated subject token' },
  ERR_DELEGATION_DENIED: { http: 403, grpc: PERMISSION_DENIED, body: 'Delegation is not allowed', description: 'DelegationPolicy or may_act refused the actor' },
  ERR_EXCHANGE_REFUSED: { http: 403, grpc: PERMISSION_DENIED, body: 'Token exchange refused', description: 'the STS refused the exchange' },
  ERR_EXCHANGE_UNAVAILABLE: { http: 503, grpc: UNAVAILABLE, body: 'Token exchange service unavailable', description: 'the STS is down, answered 5xx or timed out' },
  ERR_EXCHANGE_MISCONFIGURED: { http: 503, grpc: UNAVAILABLE, body: 'Token exchange service unavailable', description: 'invalid_client or an unusable STS response' },
  // Browser login (OIDCLogin, src/login/): answers given through the Check itself (302s carry
  // a `location`), and the ways a login, a callback or a session can fail.
  LOGIN_REDIRECT: { http: 302, grpc: UNAUTHENTICATED, body: '', description: 'no session: the browser is sent to the identity provider' },
  LOGIN_CALLBACK: { http: 302, grpc: UNAUTHENTICATED, body: '', description: 'login callback answered: session created, browser sent back to the original URL' },
  LOGOUT: { http: 302, grpc: UNAUTHENTICATED, body: '', description: 'logout answered: session ended (and the identity provider asked to end its own)' },
  ERR_LOGIN_REQUIRED: { http: 401, grpc: UNAUTHENTICATED, body: 'Login required', description: 'an API client without a session or an admitted token on a login-protected route' },
  ERR_LOGIN_STATE_INVALID: { http: 400, grpc: INVALID_ARGUMENT, body: 'Invalid login callback', description: 'login callback without a matching pending login (missing, forged or expired state)' },
  ERR_LOGIN_CALLBACK_REPLAYED: { http: 400, grpc: INVALID_ARGUMENT, body: 'Invalid login callback', description: 'login callback whose state was already used' },
  ERR_LOGIN_CODE_REJECTED: { http: 401, grpc: UNAUTHENTICATED, body: 'Login failed', description: 'the identity provider refused the authorization code (reused, expired, PKCE mismatch)' },
  ERR_LOGIN_NONCE_MISMATCH: { http: 401, grpc: UNAUTHENTICATED, body: 'Login failed', description: 'the id token does not carry the nonce of the pending login' },
  ERR_LOGIN_ID_TOKEN_INVALID: { http: 401, grpc: UNAUTHENTICATED, body: 'Login failed', description: 'the id token failed validation (signature, iss, aud, azp, exp)' },
  ERR_LOGIN_IDP_ERROR: { http: 401, grpc: UNAUTHENTICATED, body: 'Login failed', description: 'the identity provider answered the login with an error (e.g. access_denied)' },
  ERR_LOGIN_IDP_UNAVAILABLE: { http: 503, grpc: UNAVAILABLE, body: 'Identity provider unavailable', description: 'the identity provider (discovery, token endpoint, keys) is unreachable' },
  ERR_LOGOUT_CROSS_SITE: { http: 403, grpc: PERMISSION_DENIED, body: 'Cross-site logout refused', description: 'a logout request sent from another site' },
  ERR_SESSION_STORE_UNAVAILABLE: { http: 503, grpc: UNAVAILABLE, body: 'Session store unavailable', description: 'the session store (Redis) is unreachable: never treated as anonymous' },
  ERR_MCP_TOKEN_REQUIRED: { http: 401, grpc: UNAUTHENTICATED, body: 'Authentication required', description: 'MCP resource: no token (401 with the resource_metadata challenge)' },
  ERR_MCP_AUDIENCE: { http: 401, grpc: UNAUTHENTICATED, body: 'Token audience does not name this resource', description: 'MCP resource: token not issued for this resource (RFC 8707)' },
  ERR_MCP_INSUFFICIENT_SCOPE: { http: 403, grpc: PERMISSION_DENIED, body: 'Insufficient scope', description: 'MCP resource: token lacks a scope the request needs (insufficient_scope challenge)' },
  ERR_MCP_BODY_MISSING: { http: 400, grpc: INVALID_ARGUMENT, body: 'MCP request body is required', description: 'a policy needs the MCP body and the Check carried none' },
  ERR_MCP_BODY_PARTIAL: { http: 413, grpc: INVALID_ARGUMENT, body: 'MCP request body is too large', description: 'a policy needs the MCP body and Envoy sent only part of it' },
  ERR_MCP_BODY_TOO_LARGE: { http: 413, grpc: INVALID_ARGUMENT, body: 'MCP request body is too large', description: 'the MCP body is over the configured limit' },
  ERR_MCP_BODY_INVALID: { http: 400, grpc: INVALID_ARGUMENT, body: 'MCP request body is not valid JSON-RPC 2.0', description: 'a policy needs the MCP body and it is not valid JSON-RPC 2.0' },
  ERR_MCP_HEADER_MISMATCH: { http: 400, grpc: INVALID_ARGUMENT, body: 'MCP request headers do not match the body', description: 'Mcp-Method / Mcp-Name headers differ from the JSON-RPC body' },
  MCP_METADATA: { http: 200, grpc: PERMISSION_DENIED, body: '', description: 'protected-resource metadata (RFC 9728) or its CORS preflight answered directly' },
  ERR_BAD_REQUEST: { http: 400, grpc: INVALID_ARGUMENT, body: 'ext_authz: bad request', description: 'the request cannot be evaluated, or its answer cannot be sent (e.g. CR/LF in a header value)' },
  ERR_UNTRUSTED_PROXY: {
    http: 403,
    grpc: PERMISSION_DENIED,
    body: 'ext_authz: untrusted proxy',
    description: 'an HTTP authorization request carried forwarded headers (client address, original host, URI or method) from a peer not in httpAuthz.trustedProxies',
  },
  ERR_TRANSPORT_UNSUPPORTED: {
    http: 403,
    grpc: PERMISSION_DENIED,
    body: 'ext_authz: request cannot be authorized over this transport',
    description: 'the answer needs a change the HTTP authorization transport cannot make (removing a token from the query string)',
  },
  ERR_PATH_NOT_CANONICAL: {
    http: 400,
    grpc: INVALID_ARGUMENT,
    body: 'ext_authz: path not normalized',
    description: 'the path is not in the canonical form of Settings.pathNormalization (the proxy did not normalize it as configured)',
  },
  ERR_DEADLINE: { http: 503, grpc: UNAVAILABLE, body: 'ext_authz: deadline exceeded', description: 'the Check deadline would pass before a decision' },
  ERR_UNAVAILABLE: { http: 503, grpc: UNAVAILABLE, body: 'ext_authz: service unavailable', description: 'the server has no configuration loaded or is shutting down' },
  ERR_INTERNAL: { http: 500, grpc: INTERNAL, body: 'ext_authz: internal error', description: 'unexpected internal error (always a deny)' },
} as const satisfies Record<string, ReasonInfo>;

export type ReasonCode = keyof typeof REASONS;
