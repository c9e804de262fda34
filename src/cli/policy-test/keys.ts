/**
 * Test keys of a table: each signs the tokens its cases ask for (iss, aud, iat, exp filled in
 * from the key and the table's clock), and its public half is what the config under test
 * fetches for that issuer — `obo-authz test` never goes to the network: OIDC discovery of a
 * key's issuer and its `jwksUri` are answered from the table, any other URL fails as an
 * unreachable host would.
 */
import { createPrivateKey, createPublicKey, sign, constants, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { FetchLike } from '../../core/runtime.js';
import { parseDuration } from '../../config/schema.js';
import type { KeySpec, TokenSpec } from './table.js';

export interface TestKey {
  readonly name: string;
  readonly key: KeyObject;
  readonly alg: string;
  readonly kid: string | undefined;
  readonly issuer: string | undefined;
  readonly audience: string | string[] | undefined;
  readonly jwksUri: string | undefined;
  readonly publicJwk: Record<string, unknown>;
}

/** The JWS algorithm a key type implies when the table and the JWK name none. */
function defaultAlg(k: KeyObject): string {
  const t = k.asymmetricKeyType;
  if (t === 'rsa') return 'RS256';
  if (t === 'ed25519') return 'EdDSA';
  if (t === 'ec') return { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' }[k.asymmetricKeyDetails?.namedCurve ?? ''] ?? 'ES256';
  throw new Error(`unsupported key type ${t}`);
}

/** Load one table key (a private JWK, file or inline, or a PEM private key). Throws with a message naming the key. */
export function loadTestKey(name: string, spec: KeySpec, tableFile: string): TestKey {
  let text: string;
  if (spec.file !== undefined) {
    const p = isAbsolute(spec.file) ? spec.file : resolve(dirname(tableFile), spec.file);
    try {
      text = readFileSync(p, 'utf8');
    } catch (e) {
      throw new Error(`keys.${name}.file: cannot read ${spec.file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  } else text = typeof spec.jwk === 'string' ? spec.jwk : JSON.stringify(spec.jwk);
  let key: KeyObject;
  let jwk: Record<string, unknown> = {};
  try {
    if (text.trim().startsWith('{')) {
      jwk = JSON.parse(text) as Record<string, unknown>;
      key = createPrivateKey({ key: jwk as never, format: 'jwk' });
    } else key = createPrivateKey(text);
  } catch {
    throw new Error(`keys.${name}: not a private key (a private JWK with "d", or a PEM private key)`);
  }
  const alg = spec.alg ?? (typeof jwk['alg'] === 'string' ? jwk['alg'] : defaultAlg(key));
  const kid = spec.kid ?? (typeof jwk['kid'] === 'string' ? jwk['kid'] : undefined);
  const pub = createPublicKey(key).export({ format: 'jwk' }) as Record<string, unknown>;
  return {
    name,
    key,
    alg,
    kid,
    issuer: spec.issuer,
    audience: spec.audience,
    jwksUri: spec.jwksUri,
    publicJwk: { ...pub, ...(kid ? { kid } : {}), alg, use: 'sig' },
  };
}

function lifetimeSeconds(s: string | undefined): number {
  if (s === undefined) return 3600;
  const neg = s.startsWith('-');
  return ((neg ? -1 : 1) * (parseDuration(neg ? s.slice(1) : s) ?? 0)) / 1000;
}

/** A compact JWS, signed synchronously with node:crypto (a table signs hundreds of tokens). */
export function signJwt(header: Record<string, unknown>, payload: Record<string, unknown>, k: TestKey): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${b64(header)}.${b64(payload)}`;
  const bits = k.alg === 'EdDSA' ? undefined : k.alg.slice(2);
  const opts = k.alg.startsWith('ES')
    ? { key: k.key, dsaEncoding: 'ieee-p1363' as const }
    : k.alg.startsWith('PS')
      ? { key: k.key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(bits) / 8 }
      : k.key;
  return `${input}.${sign(bits ? `sha${bits}` : null, Buffer.from(input), opts).toString('base64url')}`;
}

/**
 * Mint the token a case asks for: `iss`/`aud` from the key unless the claims set them
 * (`null` leaves a claim out), `iat` = now, `exp` = now + expiresIn (default 1h). Tokens
 * are cached per table, so a table that reuses a token signs it once.
 */
export class TokenMinter {
  private readonly cache = new Map<string, string>();
  constructor(
    private readonly keys: ReadonlyMap<string, TestKey>,
    private readonly nowMs: () => number,
  ) {}

  mint(t: TokenSpec): string {
    const k = this.keys.get(t.key)!;
    const now = Math.floor(this.nowMs() / 1000);
    const claims: Record<string, unknown> = { iss: k.issuer, aud: k.audience, iat: now, exp: now + Math.round(lifetimeSeconds(t.expiresIn)), ...(t.claims ?? {}) };
    for (const [c, v] of Object.entries(claims)) if (v === null || v === undefined) delete claims[c];
    const cacheKey = `${t.key}\0${JSON.stringify(claims)}`;
    let p = this.cache.get(cacheKey);
    if (!p) {
      p = signJwt({ alg: k.alg, ...(k.kid ? { kid: k.kid } : {}), typ: 'JWT' }, claims, k);
      this.cache.set(cacheKey, p);
    }
    return p;
  }
}

/**
 * The network of a test run: OIDC discovery of every key's issuer and the JWKS of its keys,
 * and every key's `jwksUri`. Nothing else is reachable.
 */
export function tableFetch(keys: readonly TestKey[]): FetchLike {
  const docs = new Map<string, unknown>();
  const jwks = (pred: (k: TestKey) => boolean) => ({ keys: keys.filter(pred).map((k) => k.publicJwk) });
  for (const issuer of new Set(keys.map((k) => k.issuer).filter((x): x is string => !!x))) {
    const base = issuer.replace(/\/+$/, '');
    const uri = `${base}/.well-known/jwks.json`;
    docs.set(`${base}/.well-known/openid-configuration`, { issuer, jwks_uri: uri });
    docs.set(uri, jwks((k) => k.issuer === issuer || k.jwksUri === uri));
  }
  for (const uri of new Set(keys.map((k) => k.jwksUri).filter((x): x is string => !!x))) {
    if (!docs.has(uri)) docs.set(uri, jwks((k) => k.jwksUri === uri));
  }
  return async (input) => {
    const url = String(input);
    const doc = docs.get(url);
    if (doc === undefined) {
      throw Object.assign(new TypeError('fetch failed'), { cause: { code: 'offline: obo-authz test serves only the JWKS of its table keys' } });
    }
    return new Response(JSON.stringify(doc), { status: 200, headers: { 'content-type': 'application/json', 'cache-control': 'max-age=86400' } });
  };
}
