/**
 * JWT parsing and the claim checks Envoy's jwt_authn performs before the signature
 * (jwt_verify_lib `Jwt::parseFromString`, `verifyTimeConstraint`, provider audiences).
 * Every failure is a `JwtStatus`, whose text is Envoy's exact status string: that
 * string is the deny body Envoy would send, so clients scripted against Envoy see the
 * same bytes. Nothing here throws for bad input.
 */
import type { ReasonCode } from '../core/reasons.js';

/**
 * jwt_verify_lib `getStatusString()` for the statuses a request can end in
 * (envoy source/common/jwt/status.cc). Keys are the upstream enum names.
 */
export const JWT_STATUS = {
  JwtMissed: 'Jwt is missing',
  JwtNotYetValid: 'Jwt not yet valid',
  JwtExpired: 'Jwt is expired',
  JwtBadFormat: 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections',
  JwtHeaderParseErrorBadBase64: 'Jwt header is an invalid Base64url encoded',
  JwtHeaderParseErrorBadJson: 'Jwt header is an invalid JSON',
  JwtHeaderBadAlg: 'Jwt header [alg] field is required and must be a string',
  JwtHeaderNotImplementedAlg: 'Jwt header [alg] is not supported',
  JwtHeaderBadKid: 'Jwt header [kid] field is not a string',
  JwtPayloadParseErrorBadBase64: 'Jwt payload is an invalid Base64url encoded',
  JwtEd25519SignatureWrongLength: 'Jwt ED25519 signature is wrong length',
  JwtPayloadParseErrorBadJson: 'Jwt payload is an invalid JSON',
  JwtPayloadParseErrorIssNotString: 'Jwt payload [iss] field is not a string',
  JwtPayloadParseErrorSubNotString: 'Jwt payload [sub] field is not a string',
  JwtPayloadParseErrorIatNotInteger: 'Jwt payload [iat] field is not an integer',
  JwtPayloadParseErrorIatOutOfRange: 'Jwt payload [iat] field is not a positive 64 bit integer',
  JwtPayloadParseErrorNbfNotInteger: 'Jwt payload [nbf] field is not an integer',
  JwtPayloadParseErrorNbfOutOfRange: 'Jwt payload [nbf] field is not a positive 64 bit integer',
  JwtPayloadParseErrorExpNotInteger: 'Jwt payload [exp] field is not an integer',
  JwtPayloadParseErrorExpOutOfRange: 'Jwt payload [exp] field is not a positive 64 bit integer',
  JwtPayloadParseErrorJtiNotString: 'Jwt payload [jti] field is not a string',
  JwtPayloadParseErrorAudNotString: 'Jwt payload [aud] field is not a string or string list',
  JwtSignatureParseErrorBadBase64: 'Jwt signature is an invalid Base64url encoded',
  JwtUnknownIssuer: 'Jwt issuer is not configured',
  JwtAudienceNotAllowed: 'Audiences in Jwt are not allowed',
  JwtVerificationFail: 'Jwt verification fails',
  JwksKidAlgMismatch: "Jwks doesn't have key to match kid or alg from Jwt",
  JwksFetchFail: 'Jwks remote fetch is failed',
} as const;

export type JwtStatus = keyof typeof JWT_STATUS;

/** Reason code (metric label, decision log) for each status. */
export function reasonForStatus(s: JwtStatus): ReasonCode {
  switch (s) {
    case 'JwtExpired':
      return 'ERR_JWT_EXPIRED';
    case 'JwtNotYetValid':
      return 'ERR_JWT_NOT_YET_VALID';
    case 'JwtUnknownIssuer':
      return 'ERR_JWT_ISSUER_UNKNOWN';
    case 'JwtAudienceNotAllowed':
      return 'ERR_JWT_AUDIENCE';
    case 'JwtVerificationFail':
    case 'JwksKidAlgMismatch':
    case 'JwtHeaderNotImplementedAlg':
    case 'JwtEd25519SignatureWrongLength':
      return 'ERR_JWT_SIGNATURE';
    case 'JwksFetchFail':
      return 'ERR_JWKS_UNAVAILABLE';
    case 'JwtMissed':
      return 'ERR_JWT_INVALID';
    default:
      return 'ERR_JWT_MALFORMED';
  }
}

/** Closed set of `result` label values for the verification metric. */
export type VerifyResultLabel =
  | 'ok'
  | 'cached'
  | 'expired'
  | 'not_yet_valid'
  | 'audience'
  | 'signature'
  | 'kid_miss'
  | 'malformed'
  | 'unknown_issuer'
  | 'jwks_unavailable';

export function resultLabel(s: JwtStatus): VerifyResultLabel {
  switch (s) {
    case 'JwtExpired':
      return 'expired';
    case 'JwtNotYetValid':
      return 'not_yet_valid';
    case 'JwtAudienceNotAllowed':
      return 'audience';
    case 'JwtUnknownIssuer':
      return 'unknown_issuer';
    case 'JwksKidAlgMismatch':
      return 'kid_miss';
    case 'JwksFetchFail':
      return 'jwks_unavailable';
    case 'JwtVerificationFail':
    case 'JwtHeaderNotImplementedAlg':
    case 'JwtEd25519SignatureWrongLength':
      return 'signature';
    default:
      return 'malformed';
  }
}

/** The algorithms jwt_verify_lib implements; anything else (including `none`) is rejected. */
export const SUPPORTED_ALGS = new Set([
  'RS256', 'RS384', 'RS512',
  'PS256', 'PS384', 'PS512',
  'ES256', 'ES384', 'ES512',
  'HS256', 'HS384', 'HS512',
  'EdDSA',
]);

export interface ParsedJwt {
  readonly token: string;
  readonly header: Record<string, unknown>;
  readonly payload: Record<string, unknown>;
  readonly alg: string;
  readonly kid: string | undefined;
  readonly iss: string;
  readonly sub: string;
  readonly audiences: readonly string[];
  /** seconds since epoch; 0 = absent (RFC 7519: optional). */
  readonly exp: number;
  readonly nbf: number;
  /** The payload segment as sent (Envoy's `outputPayloadToHeader` value). */
  readonly payloadB64: string;
  readonly signature: Uint8Array;
}

const B64URL = /^[A-Za-z0-9_-]*$/;

/** Strict base64url (no padding, no other alphabet); undefined when invalid. */
export function decodeBase64Url(s: string): Buffer | undefined {
  if (!B64URL.test(s) || s.length % 4 === 1) return undefined;
  return Buffer.from(s, 'base64url');
}

function parseJsonObject(buf: Buffer): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(buf.toString('utf8'));
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
    return v as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

type NumCheck = { ok: true; value: number } | { ok: false; status: JwtStatus };

function numericDate(v: unknown, notInt: JwtStatus, range: JwtStatus): NumCheck {
  if (v === undefined) return { ok: true, value: 0 };
  if (typeof v !== 'number' || !Number.isFinite(v)) return { ok: false, status: notInt };
  // jwt_verify_lib reads these as unsigned 64-bit integers: negatives are out of range,
  // fractions are truncated (RFC 7519 NumericDate may carry them).
  if (v < 0 || v > Number.MAX_SAFE_INTEGER) return { ok: false, status: range };
  return { ok: true, value: Math.floor(v) };
}

/** Parse a compact JWS in jwt_verify_lib's order of checks. */
export function parseJwt(token: string): ParsedJwt | { status: JwtStatus } {
  const first = token.indexOf('.');
  const second = first < 0 ? -1 : token.indexOf('.', first + 1);
  if (first < 0 || second < 0 || token.indexOf('.', second + 1) >= 0) return { status: 'JwtBadFormat' };
  const h = token.slice(0, first);
  const p = token.slice(first + 1, second);
  const s = token.slice(second + 1);

  const hb = decodeBase64Url(h);
  if (!hb) return { status: 'JwtHeaderParseErrorBadBase64' };
  const header = parseJsonObject(hb);
  if (!header) return { status: 'JwtHeaderParseErrorBadJson' };
  const alg = header['alg'];
  if (typeof alg !== 'string') return { status: 'JwtHeaderBadAlg' };
  if (!SUPPORTED_ALGS.has(alg)) return { status: 'JwtHeaderNotImplementedAlg' };
  const kid = header['kid'];
  if (kid !== undefined && typeof kid !== 'string') return { status: 'JwtHeaderBadKid' };

  const pb = decodeBase64Url(p);
  if (!pb) return { status: 'JwtPayloadParseErrorBadBase64' };
  const payload = parseJsonObject(pb);
  if (!payload) return { status: 'JwtPayloadParseErrorBadJson' };
  const iss = payload['iss'];
  if (iss !== undefined && typeof iss !== 'string') return { status: 'JwtPayloadParseErrorIssNotString' };
  const sub = payload['sub'];
  if (sub !== undefined && typeof sub !== 'string') return { status: 'JwtPayloadParseErrorSubNotString' };
  const iat = numericDate(payload['iat'], 'JwtPayloadParseErrorIatNotInteger', 'JwtPayloadParseErrorIatOutOfRange');
  if (!iat.ok) return { status: iat.status };
  const nbf = numericDate(payload['nbf'], 'JwtPayloadParseErrorNbfNotInteger', 'JwtPayloadParseErrorNbfOutOfRange');
  if (!nbf.ok) return { status: nbf.status };
  const exp = numericDate(payload['exp'], 'JwtPayloadParseErrorExpNotInteger', 'JwtPayloadParseErrorExpOutOfRange');
  if (!exp.ok) return { status: exp.status };
  const jti = payload['jti'];
  if (jti !== undefined && typeof jti !== 'string') return { status: 'JwtPayloadParseErrorJtiNotString' };
  const aud = payload['aud'];
  let audiences: string[];
  if (aud === undefined) audiences = [];
  else if (typeof aud === 'string') audiences = [aud];
  else if (Array.isArray(aud) && aud.every((a) => typeof a === 'string')) audiences = aud as string[];
  else return { status: 'JwtPayloadParseErrorAudNotString' };

  const sb = decodeBase64Url(s);
  if (!sb) return { status: 'JwtSignatureParseErrorBadBase64' };

  return {
    token,
    header,
    payload,
    alg,
    kid: kid as string | undefined,
    iss: (iss as string | undefined) ?? '',
    sub: (sub as string | undefined) ?? '',
    audiences,
    exp: exp.value,
    nbf: nbf.value,
    payloadB64: p,
    signature: sb,
  };
}

/** Envoy's default clock skew (JwtProvider.clock_skew_seconds, Istio does not set it). */
export const CLOCK_SKEW_S = 60;

/** jwt_verify_lib `verifyTimeConstraint`: nbf first, then exp; no exp = never expires. */
export function checkTime(nbf: number, exp: number, nowMs: number, skewS = CLOCK_SKEW_S): JwtStatus | null {
  const now = Math.floor(nowMs / 1000);
  if (now + skewS < nbf) return 'JwtNotYetValid';
  if (exp && now > exp + skewS) return 'JwtExpired';
  return null;
}

/** Envoy's audience sanitising: drop one leading `http://`/`https://` and one trailing `/`. */
export function normalizeAudience(a: string): string {
  let s = a;
  if (s.startsWith('http://')) s = s.slice(7);
  else if (s.startsWith('https://')) s = s.slice(8);
  if (s.endsWith('/')) s = s.slice(0, -1);
  return s;
}

/** Empty configured set = not checked; else any token audience must be in the set. */
export function audiencesAllowed(allowed: ReadonlySet<string> | null, tokenAudiences: readonly string[]): boolean {
  if (!allowed) return true;
  for (const a of tokenAudiences) if (allowed.has(normalizeAudience(a))) return true;
  return false;
}

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Three base64url segments: what a JWT looks like before any parsing. */
export function isJwtShaped(t: string): boolean {
  return JWT_SHAPE.test(t);
}
