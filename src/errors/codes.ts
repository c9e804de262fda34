/**
 * The closed set of reason codes (DESIGN.md §6). A code is at once the metric label,
 * the decision-log reason and `dynamic_metadata.reason`, and it selects the HTTP
 * status of a deny. Extend the set here and nowhere else.
 */
import { status as GrpcStatus } from '@grpc/grpc-js';

export interface ReasonInfo {
  /** HTTP status Envoy sends downstream on deny; 0 for OK. */
  readonly http: number;
  /** google.rpc.Status code put in CheckResponse.status. */
  readonly grpc: number;
  /** Short human description (docs, --explain); never request data. */
  readonly description: string;
}

export const REASONS = {
  OK: { http: 0, grpc: GrpcStatus.OK, description: 'allowed' },
  ERR_JWT_INVALID: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED, description: 'token present and invalid' },
  ERR_JWT_EXPIRED: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED, description: 'token expired' },
  ERR_JWT_NOT_YET_VALID: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED, description: 'token not yet valid (nbf)' },
  ERR_JWT_SIGNATURE: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED, description: 'token signature or key mismatch' },
  ERR_JWT_MALFORMED: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED, description: 'token cannot be parsed' },
  ERR_JWT_ISSUER_UNKNOWN: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED, description: 'token issuer matches no jwtRule' },
  ERR_JWT_AUDIENCE: { http: 403, grpc: GrpcStatus.PERMISSION_DENIED, description: 'token audience not allowed' },
  ERR_JWKS_UNAVAILABLE: { http: 503, grpc: GrpcStatus.UNAVAILABLE, description: 'identity provider keys unreachable and none cached' },
  ERR_RBAC_DENIED: { http: 403, grpc: GrpcStatus.PERMISSION_DENIED, description: 'AuthorizationPolicy denied the request' },
  ERR_NO_VALIDATOR_ADMITTED: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED, description: 'a required credential chain admitted nobody' },
  ERR_INVALID_CREDENTIAL: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED, description: 'a presented credential was rejected' },
  ERR_CREDENTIAL_EXPIRED: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED, description: 'a presented credential has expired' },
  ERR_ACTOR_TOKEN_MISSING: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED, description: 'delegation needs an actor token and none was sent' },
  ERR_ACTOR_TOKEN_INVALID: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED, description: 'the actor token was rejected' },
  ERR_SUBJECT_MISSING: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED, description: 'token exchange applies but no authenticated subject token' },
  ERR_DELEGATION_DENIED: { http: 403, grpc: GrpcStatus.PERMISSION_DENIED, description: 'DelegationPolicy or may_act refused the actor' },
  ERR_EXCHANGE_REFUSED: { http: 403, grpc: GrpcStatus.PERMISSION_DENIED, description: 'the STS refused the exchange' },
  ERR_EXCHANGE_UNAVAILABLE: { http: 503, grpc: GrpcStatus.UNAVAILABLE, description: 'the STS is down, answered 5xx or timed out' },
  ERR_EXCHANGE_MISCONFIGURED: { http: 503, grpc: GrpcStatus.UNAVAILABLE, description: 'invalid_client or an unusable STS response' },
  ERR_BAD_REQUEST: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, description: 'the request cannot be evaluated (e.g. invalid header value)' },
  ERR_DEADLINE: { http: 503, grpc: GrpcStatus.UNAVAILABLE, description: 'the Check deadline would pass before a decision' },
  ERR_UNAVAILABLE: { http: 503, grpc: GrpcStatus.UNAVAILABLE, description: 'the server has no configuration loaded or is shutting down' },
  ERR_INTERNAL: { http: 500, grpc: GrpcStatus.INTERNAL, description: 'unexpected internal error (always a deny)' },
} as const satisfies Record<string, ReasonInfo>;

export type ReasonCode = keyof typeof REASONS;

export const REASON_CODES = Object.keys(REASONS) as ReasonCode[];

/** Envoy's status strings for the deny bodies we reproduce (see DESIGN.md §4). */
export const ENVOY_BODIES = {
  RBAC_DENIED: 'RBAC: access denied',
  JWT_EXPIRED: 'Jwt is expired',
  JWT_NOT_YET_VALID: 'Jwt not yet valid',
  JWT_VERIFICATION_FAILS: 'Jwt verification fails',
  JWT_BAD_FORMAT: 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections',
  JWT_HEADER_PARSE_ERROR: 'Jwt header is an invalid JSON',
  JWT_PAYLOAD_PARSE_ERROR: 'Jwt payload is an invalid JSON',
  JWT_ISSUER_UNKNOWN: 'Jwt issuer is not configured',
  JWT_AUDIENCE: 'Audiences in Jwt are not allowed',
  JWT_UNKNOWN_KID: "Jwks doesn't have key to match kid or alg from Jwt",
  JWT_ALG_NOT_IMPLEMENTED: 'Jwt header [alg] is not supported',
  JWT_HEADER_BAD_BASE64: 'Jwt header is an invalid Base64url encoded',
  JWT_PAYLOAD_BAD_BASE64: 'Jwt payload is an invalid Base64url encoded',
  JWKS_FETCH_FAILED: 'Jwks remote fetch is failed',
  JWT_MISSING: 'Jwt is missing',
} as const;

/** An error with a stable reason code; thrown only inside stages and turned into a Decision. */
export class AuthzError extends Error {
  readonly code: ReasonCode;
  /** Body sent downstream; defaults to a generic string for the code's HTTP status. */
  readonly body: string | undefined;
  constructor(code: ReasonCode, message: string, body?: string) {
    super(message);
    this.name = 'AuthzError';
    this.code = code;
    this.body = body;
  }
}

export function reasonInfo(code: ReasonCode): ReasonInfo {
  return REASONS[code];
}
