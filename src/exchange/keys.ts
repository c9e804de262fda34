/**
 * Signing keys of the built-in STS: PEM (PKCS#8 / SEC1 / PKCS#1 private, or SPKI public)
 * or JWK files, each with a `kid`. ES256 needs an EC P-256 key, RS256 an RSA key of at
 * least 2048 bits. Several keys allow rotation: all are published in the JWKS, the
 * active one signs.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type JsonWebKey, type KeyObject } from 'node:crypto';

export type SigningAlg = 'ES256' | 'RS256';

export interface LoadedKey {
  readonly kid: string;
  readonly alg: SigningAlg;
  /** null for a publish-only (public) key kept for rotation. */
  readonly privateKey: KeyObject | null;
  readonly publicJwk: Readonly<Record<string, unknown>>;
}

export type KeyLoadResult = { ok: true; key: LoadedKey } | { ok: false; message: string };

/** Parse key material (file contents) without ever echoing it in an error. */
export function loadKey(material: string, kid: string, alg: SigningAlg): KeyLoadResult {
  let priv: KeyObject | null = null;
  let pub: KeyObject;
  const text = material.trim();
  try {
    if (text.startsWith('{')) {
      let jwk: JsonWebKey;
      try {
        jwk = JSON.parse(text) as JsonWebKey;
      } catch {
        return { ok: false, message: 'key file is neither PEM nor a JSON JWK' };
      }
      if (typeof jwk.kid === 'string' && jwk.kid !== kid) {
        return { ok: false, message: `the JWK's kid ${JSON.stringify(jwk.kid)} differs from the configured kid ${JSON.stringify(kid)}` };
      }
      if (jwk.d) {
        priv = createPrivateKey({ key: jwk, format: 'jwk' });
        pub = createPublicKey(priv);
      } else {
        pub = createPublicKey({ key: jwk, format: 'jwk' });
      }
    } else if (text.includes('PRIVATE KEY-----')) {
      priv = createPrivateKey(text);
      pub = createPublicKey(priv);
    } else if (text.includes('PUBLIC KEY-----')) {
      pub = createPublicKey(text);
    } else {
      return { ok: false, message: 'key file is neither PEM nor a JSON JWK' };
    }
  } catch {
    return { ok: false, message: 'key file cannot be parsed as a key' };
  }
  const details = pub.asymmetricKeyDetails ?? {};
  if (alg === 'ES256') {
    if (pub.asymmetricKeyType !== 'ec' || details.namedCurve !== 'prime256v1') {
      return { ok: false, message: 'ES256 needs an EC P-256 key' };
    }
  } else if (pub.asymmetricKeyType !== 'rsa' || (details.modulusLength ?? 0) < 2048) {
    return { ok: false, message: 'RS256 needs an RSA key of at least 2048 bits' };
  }
  const jwk = pub.export({ format: 'jwk' }) as Record<string, unknown>;
  const publicJwk = Object.freeze({ ...jwk, kid, alg, use: 'sig' });
  return { ok: true, key: { kid, alg, privateKey: priv, publicJwk } };
}

/** A throw-away private key (PEM) standing in for a pod-only key file in validate --ci. */
export function standInKey(alg: SigningAlg): string {
  const { privateKey } = alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}
