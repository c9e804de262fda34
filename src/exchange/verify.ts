/**
 * JWT verification for the built-in STS's HTTP token endpoint (subject and actor tokens
 * presented by OAuth clients). Keys: an inline JWKS, a JWKS URL (fetched through the
 * injected fetch, cached by jose), or this STS's own keys when the issuer is ours.
 */
import { createLocalJWKSet, createRemoteJWKSet, customFetch, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { Runtime } from '../core/runtime.js';

export interface TrustedIssuer {
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly getKey: JWTVerifyGetKey;
}

export interface TrustedIssuerSpec {
  issuer: string;
  audiences?: string[];
  jwks?: string;
  jwksUri?: string;
}

export function makeTrustedIssuer(spec: TrustedIssuerSpec, runtime: Runtime, own?: { issuer: string; jwks: { keys: readonly Record<string, unknown>[] } }): TrustedIssuer {
  let getKey: JWTVerifyGetKey;
  if (spec.jwks) getKey = createLocalJWKSet(JSON.parse(spec.jwks) as Parameters<typeof createLocalJWKSet>[0]);
  else if (spec.jwksUri) getKey = createRemoteJWKSet(new URL(spec.jwksUri), { [customFetch]: runtime.fetch as never, timeoutDuration: 5000 });
  else if (own && own.issuer === spec.issuer) getKey = createLocalJWKSet({ keys: own.jwks.keys.map((k) => ({ ...k })) } as Parameters<typeof createLocalJWKSet>[0]);
  else throw new Error('no key source');
  return { issuer: spec.issuer, audiences: spec.audiences ?? [], getKey };
}

export type VerifyResult = { ok: true; payload: Record<string, unknown> } | { ok: false; message: string };

/** Verify against the first trusted issuer whose `iss` matches; 60 s clock skew like Envoy. */
export async function verifyWithIssuers(token: string, issuers: readonly TrustedIssuer[], runtime: Runtime): Promise<VerifyResult> {
  let iss: unknown;
  try {
    const part = token.split('.')[1] ?? '';
    iss = (JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>)['iss'];
  } catch {
    return { ok: false, message: 'token is not a JWT' };
  }
  const t = issuers.find((i) => i.issuer === iss);
  if (!t) return { ok: false, message: 'token issuer is not trusted' };
  try {
    const { payload } = await jwtVerify(token, t.getKey, {
      issuer: t.issuer,
      ...(t.audiences.length > 0 ? { audience: [...t.audiences] } : {}),
      clockTolerance: 60,
      currentDate: new Date(runtime.now()),
      algorithms: ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'PS256', 'PS384', 'PS512', 'EdDSA'],
    });
    return { ok: true, payload: payload as Record<string, unknown> };
  } catch (e) {
    return { ok: false, message: `token verification failed (${(e as { code?: string }).code ?? 'error'})` };
  }
}
