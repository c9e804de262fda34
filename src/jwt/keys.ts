/**
 * JWK Sets: parse, validate, select the keys for a token and check its signature with
 * node:crypto, synchronously. Key selection reproduces jwt_verify_lib
 * `verifyJwtWithoutTimeChecking`: a key is a candidate when its `kid` equals the token's (or
 * either side has none), its `alg` (when set) equals the token's, and its type fits the
 * algorithm; no candidate gives "Jwks doesn't have key to match kid or alg from Jwt",
 * candidates that all fail give "Jwt verification fails". Key-type confusion (an RSA key
 * used for HS256, an EC key for RS256, ...) therefore never reaches a signature check.
 *
 * Every key is imported once, when the key set is parsed, into a `KeyObject` (public key,
 * or secret key for inline `oct`); a request then costs one synchronous `crypto.verify` (or
 * HMAC + `timingSafeEqual`). The checks `jose.compactVerify` made on top of the signature
 * are kept: RSA keys under 2048 bits never verify, the protected header must be valid UTF-8,
 * and a `crit` header must be a non-empty list naming only `b64`, present as a boolean.
 */
import {
  constants,
  createHash,
  createHmac,
  createPublicKey,
  createSecretKey,
  timingSafeEqual,
  verify as cryptoVerify,
  type JsonWebKey,
  type KeyObject,
  type VerifyKeyObjectInput,
} from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import type { JWK } from 'jose';
import type { JwtStatus, ParsedJwt } from './jwt-format.js';
import { decodeBase64Url } from './jwt-format.js';

export interface VerifyKey {
  readonly kid: string | undefined;
  readonly kty: 'RSA' | 'EC' | 'OKP' | 'oct';
  readonly alg: string | undefined;
  readonly crv: string | undefined;
  /** Public (or, for oct, symmetric) JWK with private members stripped. */
  readonly jwk: JWK;
  /** The key material, imported once when the key set is parsed (secret key for oct). */
  readonly keyObject: KeyObject;
  /** RSA modulus length in bits (0 for other key types). */
  readonly rsaBits: number;
  /** `crypto.verify` key inputs, prepared once: PSS padding (RSA), IEEE P1363 signatures (EC). */
  readonly pssInput: VerifyKeyObjectInput | undefined;
  readonly p1363Input: VerifyKeyObjectInput | undefined;
}

export interface KeySet {
  readonly keys: readonly VerifyKey[];
  /** Content hash: part of the verified-token cache key, changes only when keys change. */
  readonly hash: string;
  readonly kids: ReadonlySet<string>;
}

const EC_CRV: Record<string, string> = { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' };
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth'];

export interface ParseJwksOptions {
  /** Accept `oct` (HMAC) keys: only for inline JWKS; a remote JWKS with secrets is refused. */
  readonly allowSymmetric: boolean;
}

export type ParseJwksResult = { ok: true; keySet: KeySet; skipped: string[] } | { ok: false; error: string };

/** Parse a JWK Set document. Unusable keys are skipped (listed); no usable key is an error. */
export function parseJwks(input: string | unknown, opts: ParseJwksOptions): ParseJwksResult {
  let doc: unknown = input;
  if (typeof input === 'string') {
    try {
      doc = JSON.parse(input);
    } catch {
      return { ok: false, error: 'Jwks is an invalid JSON' };
    }
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return { ok: false, error: 'Jwks is an invalid JSON' };
  const rawKeys = (doc as Record<string, unknown>)['keys'];
  if (rawKeys === undefined) return { ok: false, error: 'Jwks does not have [keys] field' };
  if (!Array.isArray(rawKeys)) return { ok: false, error: '[keys] in Jwks is not an array' };
  const keys: VerifyKey[] = [];
  const skipped: string[] = [];
  rawKeys.forEach((k, i) => {
    const r = parseKey(k, opts);
    if (typeof r === 'string') skipped.push(`keys[${i}]: ${r}`);
    else keys.push(r);
  });
  if (keys.length === 0) {
    return { ok: false, error: `Jwks doesn't have any valid public key${skipped.length ? ` (${skipped.join('; ')})` : ''}` };
  }
  const hash = createHash('sha256')
    .update(JSON.stringify(keys.map((k) => k.jwk)))
    .digest('base64url')
    .slice(0, 16);
  const kids = new Set<string>();
  for (const k of keys) if (k.kid !== undefined) kids.add(k.kid);
  return { ok: true, keySet: { keys, hash, kids }, skipped };
}

function parseKey(k: unknown, opts: ParseJwksOptions): VerifyKey | string {
  if (k === null || typeof k !== 'object' || Array.isArray(k)) return 'not an object';
  const raw = k as Record<string, unknown>;
  const kty = raw['kty'];
  if (typeof kty !== 'string') return '[kty] is missing in [keys]';
  const kid = raw['kid'];
  if (kid !== undefined && typeof kid !== 'string') return '[kid] is not a string';
  const alg = raw['alg'];
  if (alg !== undefined && typeof alg !== 'string') return '[alg] is not a string';
  const use = raw['use'];
  if (use !== undefined && use !== 'sig') return `[use] is ${JSON.stringify(use)}, not "sig"`;
  const ops = raw['key_ops'];
  if (Array.isArray(ops) && !ops.includes('verify')) return '[key_ops] does not include "verify"';
  const jwk: Record<string, unknown> = { ...raw };
  for (const m of PRIVATE_MEMBERS) delete jwk[m];
  delete jwk['key_ops'];
  delete jwk['ext'];
  const crv = typeof raw['crv'] === 'string' ? (raw['crv'] as string) : undefined;
  switch (kty) {
    case 'RSA':
      if (alg !== undefined && !/^(RS|PS)(256|384|512)$/.test(alg)) return '[alg] is not started with [RS] or [PS] for an RSA key';
      if (typeof raw['n'] !== 'string' || typeof raw['e'] !== 'string') return 'Jwks RSA [n] or [e] field is missing or has a parse error';
      break;
    case 'EC':
      if (alg !== undefined && !(alg in EC_CRV)) return '[alg] is not started with [ES] for an EC key';
      if (!crv || !Object.values(EC_CRV).includes(crv)) return '[crv] or [alg] field is not supported for an EC key';
      if (alg !== undefined && EC_CRV[alg] !== crv) return '[crv] field specified is not compatible with [alg] for an EC key';
      if (typeof raw['x'] !== 'string' || typeof raw['y'] !== 'string') return '[x] or [y] field is missing for an EC key';
      break;
    case 'OKP':
      if (alg !== undefined && alg !== 'EdDSA') return '[alg] is not [EdDSA] for an OKP key';
      if (crv !== 'Ed25519') return '[crv] field is not supported for an OKP key';
      if (typeof raw['x'] !== 'string') return '[x] field is missing for an OKP key';
      break;
    case 'oct': {
      if (!opts.allowSymmetric) return 'symmetric (oct) keys are accepted only in an inline jwks';
      if (alg !== undefined && !/^HS(256|384|512)$/.test(alg)) return '[alg] does not start with [HS] for an HMAC key';
      const kk = raw['k'];
      if (typeof kk !== 'string') return '[k] field is missing for an HMAC key';
      const bytes = decodeBase64Url(kk);
      if (!bytes || bytes.length === 0) return 'Jwks Oct key is an invalid Base64';
      break;
    }
    default:
      return '[kty] is not supported in [keys]';
  }
  let keyObject: KeyObject;
  try {
    // Import (and so validate) the key material now, once: a broken key is reported at
    // load / fetch time rather than as a failed request later, and no request imports.
    keyObject = kty === 'oct' ? createSecretKey(decodeBase64Url(raw['k'] as string)!) : createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
  } catch {
    return `invalid ${kty} ${kty === 'oct' ? 'secret' : 'public'} key material`;
  }
  // The import must give the key type the JWK claims (createPublicKey derives it from kty/crv).
  const expectedType = kty === 'RSA' ? 'rsa' : kty === 'EC' ? 'ec' : kty === 'OKP' ? 'ed25519' : undefined;
  if (expectedType !== undefined && keyObject.asymmetricKeyType !== expectedType) return `invalid ${kty} public key material`;
  if (kty === 'EC' && NIST_CURVES[keyObject.asymmetricKeyDetails?.namedCurve ?? ''] !== crv) return `invalid ${kty} public key material`;
  const rsaBits = kty === 'RSA' ? (keyObject.asymmetricKeyDetails?.modulusLength ?? 0) : 0;
  return {
    kid: kid as string | undefined,
    kty: kty as VerifyKey['kty'],
    alg: alg as string | undefined,
    crv,
    jwk: jwk as JWK,
    keyObject,
    rsaBits,
    pssInput:
      kty === 'RSA' ? { key: keyObject, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST } : undefined,
    p1363Input: kty === 'EC' ? { key: keyObject, dsaEncoding: 'ieee-p1363' } : undefined,
  };
}

/** OpenSSL curve names of the JOSE curves. */
const NIST_CURVES: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' };

/** How each supported JWS algorithm is verified (the only algorithms a key can fit). */
interface AlgSpec {
  readonly kind: 'rsa' | 'pss' | 'ec' | 'eddsa' | 'hmac';
  /** Digest for crypto.verify / createHmac; null for EdDSA (the curve fixes it). */
  readonly hash: string | null;
  /** ES*: the IEEE P1363 signature length (r || s) for the curve. */
  readonly sigLen: number;
}

const ALGS: ReadonlyMap<string, AlgSpec> = new Map<string, AlgSpec>([
  ['RS256', { kind: 'rsa', hash: 'sha256', sigLen: 0 }],
  ['RS384', { kind: 'rsa', hash: 'sha384', sigLen: 0 }],
  ['RS512', { kind: 'rsa', hash: 'sha512', sigLen: 0 }],
  ['PS256', { kind: 'pss', hash: 'sha256', sigLen: 0 }],
  ['PS384', { kind: 'pss', hash: 'sha384', sigLen: 0 }],
  ['PS512', { kind: 'pss', hash: 'sha512', sigLen: 0 }],
  ['ES256', { kind: 'ec', hash: 'sha256', sigLen: 64 }],
  ['ES384', { kind: 'ec', hash: 'sha384', sigLen: 96 }],
  ['ES512', { kind: 'ec', hash: 'sha512', sigLen: 132 }],
  ['EdDSA', { kind: 'eddsa', hash: null, sigLen: 0 }],
  ['HS256', { kind: 'hmac', hash: 'sha256', sigLen: 0 }],
  ['HS384', { kind: 'hmac', hash: 'sha384', sigLen: 0 }],
  ['HS512', { kind: 'hmac', hash: 'sha512', sigLen: 0 }],
]);

/** jose refuses RS* / PS* with an RSA modulus under 2048 bits; so do we. */
const MIN_RSA_BITS = 2048;

function keyFitsAlg(k: VerifyKey, alg: string, spec: AlgSpec): boolean {
  if (k.alg !== undefined && k.alg !== alg) return false;
  switch (k.kty) {
    case 'RSA':
      return spec.kind === 'rsa' || spec.kind === 'pss';
    case 'EC':
      return spec.kind === 'ec' && EC_CRV[alg] === k.crv;
    case 'OKP':
      return spec.kind === 'eddsa' && k.crv === 'Ed25519';
    case 'oct':
      return spec.kind === 'hmac';
  }
}

/**
 * The checks `jose.compactVerify` made on the protected header besides `alg` (which
 * parseJwt checked): the header decodes as strict UTF-8 and a `crit` member is a non-empty
 * array of non-empty strings naming only `b64` (the one extension jose understands), which
 * must then be present as a boolean. With `b64: false` the signing input is still the
 * token's first two segments as sent, so the signature check below covers it unchanged.
 */
function headerAcceptable(jwt: ParsedJwt, headerB64: string): boolean {
  if (!isUtf8(Buffer.from(headerB64, 'base64url'))) return false;
  const h = jwt.header;
  const crit = h['crit'];
  if (crit === undefined) return true;
  if (!Array.isArray(crit) || crit.length === 0) return false;
  for (const c of crit) {
    if (typeof c !== 'string' || c.length === 0) return false;
    if (c !== 'b64') return false;
  }
  return Object.hasOwn(h, 'b64') && typeof h['b64'] === 'boolean';
}

/** One candidate key against the signing input; never throws. */
function checkWith(k: VerifyKey, spec: AlgSpec, data: Buffer, sig: Uint8Array): boolean {
  try {
    switch (spec.kind) {
      case 'rsa':
        return k.rsaBits >= MIN_RSA_BITS && cryptoVerify(spec.hash, data, k.keyObject, sig);
      case 'pss':
        return k.rsaBits >= MIN_RSA_BITS && cryptoVerify(spec.hash, data, k.pssInput!, sig);
      case 'ec':
        return sig.length === spec.sigLen && cryptoVerify(spec.hash, data, k.p1363Input!, sig);
      case 'eddsa':
        return cryptoVerify(null, data, k.keyObject, sig);
      case 'hmac': {
        const mac = createHmac(spec.hash!, k.keyObject).update(data).digest();
        return mac.length === sig.length && timingSafeEqual(mac, sig);
      }
    }
  } catch {
    return false;
  }
}

export interface SignatureResult {
  readonly status: JwtStatus | null;
  /** The kid (or `#index`) of the key that verified the token. */
  readonly keyId?: string;
}

/**
 * Verify the token's signature against a key set (time and audience already checked).
 * Synchronous: the keys were imported when the set was parsed.
 */
export function verifySignature(jwt: ParsedJwt, ks: KeySet): SignatureResult {
  // parseJwt admits only SUPPORTED_ALGS (never `none`); refuse anything else here as well.
  const spec = ALGS.get(jwt.alg);
  if (!spec) return { status: 'JwtHeaderNotImplementedAlg' };
  let matched = false;
  let data: Buffer | undefined;
  for (let i = 0; i < ks.keys.length; i++) {
    const k = ks.keys[i]!;
    if (jwt.kid !== undefined && jwt.kid !== '' && k.kid !== undefined && k.kid !== '' && k.kid !== jwt.kid) continue;
    if (!keyFitsAlg(k, jwt.alg, spec)) continue;
    matched = true;
    if (jwt.alg === 'EdDSA' && jwt.signature.length !== 64) return { status: 'JwtEd25519SignatureWrongLength' };
    if (data === undefined) {
      const token = jwt.token;
      const end = token.lastIndexOf('.');
      if (end < 0 || !headerAcceptable(jwt, token.slice(0, token.indexOf('.')))) return { status: 'JwtVerificationFail' };
      // The signing input is ASCII (parseJwt checked the base64url alphabet).
      data = Buffer.from(token.slice(0, end), 'latin1');
    }
    if (checkWith(k, spec, data, jwt.signature)) return { status: null, keyId: k.kid ?? `#${i}` };
    // else try the next candidate (a JWKS may hold several keys without kid)
  }
  return { status: matched ? 'JwtVerificationFail' : 'JwksKidAlgMismatch' };
}
