/**
 * JWK Sets: parse, validate, select the keys for a token and check its signature with
 * `jose`. Key selection reproduces jwt_verify_lib `verifyJwtWithoutTimeChecking`: a key
 * is a candidate when its `kid` equals the token's (or either side has none), its `alg`
 * (when set) equals the token's, and its type fits the algorithm; no candidate gives
 * "Jwks doesn't have key to match kid or alg from Jwt", candidates that all fail give
 * "Jwt verification fails". Key-type confusion (an RSA key used for HS256, an EC key
 * for RS256, ...) therefore never reaches a signature check.
 */
import { createHash, createPublicKey } from 'node:crypto';
import { compactVerify, importJWK, type JWK } from 'jose';
import type { JwtStatus, ParsedJwt } from './jwt-format.js';
import { decodeBase64Url } from './jwt-format.js';

type ImportedKey = Awaited<ReturnType<typeof importJWK>>;

export interface VerifyKey {
  readonly kid: string | undefined;
  readonly kty: 'RSA' | 'EC' | 'OKP' | 'oct';
  readonly alg: string | undefined;
  readonly crv: string | undefined;
  /** Public (or, for oct, symmetric) JWK with private members stripped. */
  readonly jwk: JWK;
  /** Imported CryptoKey per algorithm (RSA keys are algorithm-bound in WebCrypto). */
  readonly imported: Map<string, Promise<ImportedKey | null>>;
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
  if (kty !== 'oct') {
    try {
      // Validate the public key material now (synchronously), so a broken key is
      // reported at load / fetch time rather than as a failed request later.
      createPublicKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
    } catch {
      return `invalid ${kty} public key material`;
    }
  }
  return {
    kid: kid as string | undefined,
    kty: kty as VerifyKey['kty'],
    alg: alg as string | undefined,
    crv,
    jwk: jwk as JWK,
    imported: new Map(),
  };
}

function keyFitsAlg(k: VerifyKey, alg: string): boolean {
  if (k.alg !== undefined && k.alg !== alg) return false;
  switch (k.kty) {
    case 'RSA':
      return alg.startsWith('RS') || alg.startsWith('PS');
    case 'EC':
      return EC_CRV[alg] === k.crv;
    case 'OKP':
      return alg === 'EdDSA' && k.crv === 'Ed25519';
    case 'oct':
      return alg.startsWith('HS');
  }
}

function importFor(k: VerifyKey, alg: string): Promise<ImportedKey | null> {
  let p = k.imported.get(alg);
  if (!p) {
    p = importJWK({ ...k.jwk, alg }, alg).catch(() => null);
    k.imported.set(alg, p);
  }
  return p;
}

export interface SignatureResult {
  readonly status: JwtStatus | null;
  /** The kid (or `#index`) of the key that verified the token. */
  readonly keyId?: string;
}

/** Verify the token's signature against a key set (time and audience already checked). */
export async function verifySignature(jwt: ParsedJwt, ks: KeySet): Promise<SignatureResult> {
  let matched = false;
  for (let i = 0; i < ks.keys.length; i++) {
    const k = ks.keys[i]!;
    if (jwt.kid !== undefined && jwt.kid !== '' && k.kid !== undefined && k.kid !== '' && k.kid !== jwt.kid) continue;
    if (!keyFitsAlg(k, jwt.alg)) continue;
    matched = true;
    if (jwt.alg === 'EdDSA' && jwt.signature.length !== 64) return { status: 'JwtEd25519SignatureWrongLength' };
    const key = await importFor(k, jwt.alg);
    if (!key) continue;
    try {
      await compactVerify(jwt.token, key, { algorithms: [jwt.alg] });
      return { status: null, keyId: k.kid ?? `#${i}` };
    } catch {
      // try the next candidate (a JWKS may hold several keys without kid)
    }
  }
  return { status: matched ? 'JwtVerificationFail' : 'JwksKidAlgMismatch' };
}
