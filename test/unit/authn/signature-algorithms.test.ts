/**
 * Signature verification with node:crypto (src/authn/keys.ts): every supported algorithm
 * verifies good tokens and rejects tampered ones; algorithm / key-type confusion never
 * reaches a signature check; and the result agrees with jose.compactVerify (what the
 * verifier called before) on every case, including the header checks jose made.
 */
import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, KeyObject, sign as cryptoSign } from 'node:crypto';
import { compactVerify, importJWK, type JWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { parseJwt, type ParsedJwt } from '../../../src/jwt/jwt-format.js';
import { parseJwks, verifySignature, type KeySet } from '../../../src/jwt/keys.js';
import { jwks, makeKey, seg, sign, type TestKey } from './helpers.js';

function keySet(doc: unknown, allowSymmetric = true): KeySet {
  const r = parseJwks(doc, { allowSymmetric });
  if (!r.ok) throw new Error(r.error);
  return r.keySet;
}

function parsed(token: string): ParsedJwt {
  const p = parseJwt(token);
  if ('status' in p) throw new Error(`parseJwt: ${p.status}`);
  return p;
}

function status(token: string, ks: KeySet): string | null {
  return verifySignature(parsed(token), ks).status;
}

/** What jose.compactVerify says about the token with this JWK (the previous implementation). */
async function joseAccepts(token: string, jwk: JWK, alg: string): Promise<boolean> {
  try {
    const { key_ops: _ops, ...rest } = jwk as JWK & { key_ops?: unknown };
    const key = await importJWK({ ...rest, alg }, alg);
    await compactVerify(token, key, { algorithms: [alg] });
    return true;
  } catch {
    return false;
  }
}

/** Flip one bit in the middle of the signature. */
function flipSignatureBit(token: string): string {
  const i = token.lastIndexOf('.');
  const sig = Buffer.from(token.slice(i + 1), 'base64url');
  sig[sig.length >> 1]! ^= 0x01;
  return `${token.slice(0, i + 1)}${sig.toString('base64url')}`;
}

function withSignature(token: string, sig: Uint8Array): string {
  return `${token.slice(0, token.lastIndexOf('.') + 1)}${Buffer.from(sig).toString('base64url')}`;
}

function signatureOf(token: string): Buffer {
  return Buffer.from(token.slice(token.lastIndexOf('.') + 1), 'base64url');
}

/** HMAC-sign header.payload with any secret bytes. */
function hsToken(alg: 'HS256' | 'HS384' | 'HS512', header: Record<string, unknown> | Buffer, payload: unknown, secret: Uint8Array | string): string {
  const h = Buffer.isBuffer(header) ? header.toString('base64url') : seg({ typ: 'JWT', ...header, alg });
  const input = `${h}.${seg(payload)}`;
  return `${input}.${createHmac(`sha${alg.slice(2)}`, secret).update(input).digest('base64url')}`;
}

const ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'HS256', 'HS384', 'HS512'] as const;
const ES_LEN: Record<string, number> = { ES256: 64, ES384: 96, ES512: 132 };

describe('every algorithm (node:crypto, prepared keys)', () => {
  for (const alg of ALGS) {
    describe(alg, () => {
      let key: TestKey;
      let ks: KeySet;
      const ready = (async () => {
        key = await makeKey(alg, `k-${alg}`);
        ks = keySet(jwks(key));
      })();

      it('verifies a good token (with and without kid, with and without alg on the key), as jose does', async () => {
        await ready;
        const t = await sign(key, { iss: 'https://idp', sub: 'u', n: 1 });
        expect(verifySignature(parsed(t), ks)).toEqual({ status: null, keyId: `k-${alg}` });
        expect(await joseAccepts(t, key.jwk, alg)).toBe(true);
        const noKid = await sign(key, { iss: 'https://idp' }, { noKid: true });
        expect(status(noKid, ks)).toBeNull();
        const bare = { ...key.jwk };
        delete bare.alg;
        delete bare.kid;
        const r = verifySignature(parsed(t), keySet({ keys: [bare] }));
        expect(r).toEqual({ status: null, keyId: '#0' });
      });

      it('rejects a flipped signature bit, as jose does', async () => {
        await ready;
        const bad = flipSignatureBit(await sign(key, { iss: 'https://idp', sub: 'u' }));
        expect(status(bad, ks)).toBe('JwtVerificationFail');
        expect(await joseAccepts(bad, key.jwk, alg)).toBe(false);
      });

      it('rejects a tampered payload', async () => {
        await ready;
        const t = await sign(key, { iss: 'https://idp', sub: 'u' });
        const [h, , s] = t.split('.');
        expect(status(`${h}.${seg({ iss: 'https://idp', sub: 'root' })}.${s}`, ks)).toBe('JwtVerificationFail');
      });

      it('rejects a truncated or extended signature', async () => {
        await ready;
        const t = await sign(key, { iss: 'https://idp' });
        const sig = signatureOf(t);
        const expected = alg === 'EdDSA' ? 'JwtEd25519SignatureWrongLength' : 'JwtVerificationFail';
        expect(status(withSignature(t, sig.subarray(0, sig.length - 1)), ks)).toBe(expected);
        expect(status(withSignature(t, Buffer.concat([sig, Buffer.from([0])])), ks)).toBe(expected);
        expect(status(withSignature(t, new Uint8Array(0)), ks)).toBe(expected);
      });
    });
  }
});

describe('ES*: IEEE P1363 signatures of exactly the curve length', () => {
  for (const alg of ['ES256', 'ES384', 'ES512'] as const) {
    it(`${alg}: ${ES_LEN[alg]} bytes; a DER signature of the same input or a wrong-length one is refused`, async () => {
      const key = await makeKey(alg, 'e');
      const ks = keySet(jwks(key));
      const t = await sign(key, { iss: 'https://idp' });
      expect(signatureOf(t).length).toBe(ES_LEN[alg]);
      expect(status(t, ks)).toBeNull();
      // The same signing input signed by the same key in DER (ASN.1) form: valid ECDSA, wrong encoding.
      const input = t.slice(0, t.lastIndexOf('.'));
      const der = cryptoSign(`sha${alg.slice(2)}`, Buffer.from(input), KeyObject.from(key.privateKey as CryptoKey));
      const derToken = withSignature(t, der);
      expect(status(derToken, ks)).toBe('JwtVerificationFail');
      expect(await joseAccepts(derToken, key.jwk, alg)).toBe(false);
      // Right signature, zero-padded to another curve's length.
      for (const len of Object.values(ES_LEN).filter((l) => l !== ES_LEN[alg])) {
        const padded = Buffer.alloc(len);
        signatureOf(t).copy(padded, 0, 0, Math.min(len, ES_LEN[alg]!));
        expect(status(withSignature(t, padded), ks)).toBe('JwtVerificationFail');
      }
    });
  }

  it('an ES384 token never reaches a P-256 key (curve bound to alg), nor ES256 a P-384 key', async () => {
    const p256 = await makeKey('ES256', 'k', { publishAlg: false });
    const p384 = await makeKey('ES384', 'k', { publishAlg: false });
    expect(status(await sign(p384, { iss: 'x' }), keySet(jwks(p256)))).toBe('JwksKidAlgMismatch');
    expect(status(await sign(p256, { iss: 'x' }), keySet(jwks(p384)))).toBe('JwksKidAlgMismatch');
  });
});

describe('PS*: the PSS salt must be the digest length (as WebCrypto required)', () => {
  for (const [alg, digestLen] of [['PS256', 32], ['PS384', 48], ['PS512', 64]] as const) {
    it(`${alg}: salt ${digestLen} verifies; salt 0 and salt ${digestLen + 1} do not`, async () => {
      const key = await makeKey(alg, 'p');
      const ks = keySet(jwks(key));
      const priv = KeyObject.from(key.privateKey as CryptoKey);
      const input = `${seg({ alg, kid: 'p' })}.${seg({ iss: 'x' })}`;
      for (const [saltLength, ok] of [[digestLen, true], [0, false], [digestLen + 1, false]] as const) {
        const sig = cryptoSign(`sha${alg.slice(2)}`, Buffer.from(input), { key: priv, padding: 6, saltLength });
        const token = `${input}.${sig.toString('base64url')}`;
        expect(status(token, ks)).toBe(ok ? null : 'JwtVerificationFail');
        expect(await joseAccepts(token, key.jwk, alg)).toBe(ok);
      }
      // PKCS#1 v1.5 signature under a PS header (and the reverse) is refused.
      const v15 = cryptoSign(`sha${alg.slice(2)}`, Buffer.from(input), priv);
      expect(status(`${input}.${v15.toString('base64url')}`, ks)).toBe('JwtVerificationFail');
    });
  }
});

describe('algorithm / key-type confusion never reaches a signature check', () => {
  it('RS256 token against an EC key (same kid): no matching key', async () => {
    const rsa = await makeKey('RS256', 'k');
    const ec = await makeKey('ES256', 'k');
    const t = await sign(rsa, { iss: 'x' });
    expect(status(t, keySet(jwks(ec)))).toBe('JwksKidAlgMismatch');
    const ecNoAlg = await makeKey('ES256', 'k', { publishAlg: false });
    expect(status(t, keySet(jwks(ecNoAlg)))).toBe('JwksKidAlgMismatch');
  });

  it('ES256 / EdDSA / HS256 tokens against an RSA key: no matching key', async () => {
    const rsa = await makeKey('RS256', 'k', { publishAlg: false });
    const ks = keySet(jwks(rsa));
    for (const alg of ['ES256', 'EdDSA', 'HS256']) {
      const other = await makeKey(alg, 'k');
      expect(status(await sign(other, { iss: 'x' }), ks)).toBe('JwksKidAlgMismatch');
    }
  });

  it('HS256 signed with the RSA public key as the HMAC secret (PEM, DER, JWK, modulus) is refused', async () => {
    for (const publishAlg of [true, false]) {
      const rsa = await makeKey('RS256', 'k', { publishAlg });
      const ks = keySet(jwks(rsa));
      const pub = createPublicKey({ key: rsa.jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
      const secrets: (string | Uint8Array)[] = [
        pub.export({ type: 'spki', format: 'pem' }) as string,
        pub.export({ type: 'pkcs1', format: 'pem' }) as string,
        pub.export({ type: 'spki', format: 'der' }),
        JSON.stringify(rsa.jwk),
        Buffer.from(rsa.jwk.n!, 'base64url'),
        rsa.jwk.n!,
      ];
      for (const secret of secrets) {
        for (const header of [{ kid: 'k' }, {}]) {
          expect(status(hsToken('HS256', header, { iss: 'x', sub: 'root' }, secret), ks)).toBe('JwksKidAlgMismatch');
        }
      }
    }
  });

  it('a key whose own alg differs from the header is not a candidate (RS256 key, PS256 token)', async () => {
    const rs = await makeKey('RS256', 'k');
    // The same RSA key material signing PS256 (a KeyObject: jose re-imports it for RSA-PSS).
    const ps: TestKey = { ...rs, alg: 'PS256', privateKey: KeyObject.from(rs.privateKey as CryptoKey) as unknown as CryptoKey };
    expect(status(await sign(ps, { iss: 'x' }), keySet(jwks(rs)))).toBe('JwksKidAlgMismatch');
    // Without an alg on the key, the same RSA key verifies RS* and PS* alike.
    const bare = { ...rs.jwk };
    delete bare.alg;
    expect(status(await sign(ps, { iss: 'x' }), keySet({ keys: [bare] }))).toBeNull();
  });

  it('an HMAC key in a remote (non-inline) JWKS is never loaded', async () => {
    const hs = await makeKey('HS256', 'h');
    const rsa = await makeKey('RS256', 'r');
    const r = parseJwks(jwks(hs, rsa), { allowSymmetric: false });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.keySet.keys.map((k) => k.kty)).toEqual(['RSA']);
    expect(status(await sign(hs, { iss: 'x' }, { noKid: true }), r.keySet)).toBe('JwksKidAlgMismatch');
  });
});

describe('alg none and unsupported algorithms', () => {
  it('`none` (any spelling) is refused by the parser, and by verifySignature itself', async () => {
    const key = await makeKey('HS256', 'k');
    const ks = keySet(jwks(key));
    for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
      const token = `${seg({ alg, typ: 'JWT' })}.${seg({ iss: 'x' })}.`;
      expect(parseJwt(token)).toEqual({ status: 'JwtHeaderNotImplementedAlg' });
      const good = parsed(await sign(key, { iss: 'x' }));
      const forged: ParsedJwt = { ...good, alg, header: { ...good.header, alg }, signature: new Uint8Array(0) };
      expect(verifySignature(forged, ks).status).toBe('JwtHeaderNotImplementedAlg');
    }
  });

  it('an algorithm outside the supported set never reaches a key (RS1, ES256K, Ed25519, HS1)', async () => {
    const rsa = await makeKey('RS256', 'k', { publishAlg: false });
    const good = parsed(await sign(rsa, { iss: 'x' }));
    for (const alg of ['RS1', 'RSA-OAEP', 'ES256K', 'Ed25519', 'Ed448', 'HS1', 'PS']) {
      expect(verifySignature({ ...good, alg }, keySet(jwks(rsa))).status).toBe('JwtHeaderNotImplementedAlg');
    }
  });
});

describe('RSA keys under 2048 bits never verify (as jose refused them)', () => {
  for (const alg of ['RS256', 'PS256'] as const) {
    it(`${alg} with a 1024-bit key: loaded, but every token fails`, async () => {
      const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
      const jwk = { ...(publicKey.export({ format: 'jwk' }) as JWK), kid: 'small', alg };
      const ks = keySet({ keys: [jwk] });
      const input = `${seg({ alg, kid: 'small' })}.${seg({ iss: 'x' })}`;
      const sig = cryptoSign(`sha256`, Buffer.from(input), alg === 'PS256' ? { key: privateKey, padding: 6, saltLength: 32 } : privateKey);
      const token = `${input}.${sig.toString('base64url')}`;
      // The signature itself is mathematically valid...
      expect(createPrivateKey(privateKey.export({ format: 'pem', type: 'pkcs8' })).asymmetricKeyDetails?.modulusLength).toBe(1024);
      // ...but the key is too small.
      expect(status(token, ks)).toBe('JwtVerificationFail');
      expect(await joseAccepts(token, jwk, alg)).toBe(false);
    });
  }
});

describe('protected-header checks jose.compactVerify made', () => {
  const secret = new Uint8Array(32).fill(7);
  const jwk: JWK = { kty: 'oct', k: Buffer.from(secret).toString('base64url'), kid: 'h' };
  const ks = keySet({ keys: [jwk] });
  const cases: [string, Record<string, unknown> | Buffer, boolean][] = [
    ['no crit', { kid: 'h' }, true],
    ['crit [b64] with b64 true', { kid: 'h', crit: ['b64'], b64: true }, true],
    ['crit [b64] with b64 false (same signing input for a base64url payload)', { kid: 'h', crit: ['b64'], b64: false }, true],
    ['b64 false without crit (ignored)', { kid: 'h', b64: false }, true],
    ['crit naming an unknown extension', { kid: 'h', crit: ['exp'], exp: 1 }, false],
    ['crit [b64] without b64', { kid: 'h', crit: ['b64'] }, false],
    ['crit [b64] with a non-boolean b64', { kid: 'h', crit: ['b64'], b64: 'false' }, false],
    ['empty crit', { kid: 'h', crit: [] }, false],
    ['crit not an array', { kid: 'h', crit: 'b64', b64: true }, false],
    ['crit with an empty name', { kid: 'h', crit: [''] }, false],
    ['header not valid UTF-8', Buffer.concat([Buffer.from('{"alg":"HS256","kid":"h","x":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]), false],
  ];
  for (const [name, header, ok] of cases) {
    it(`${name}: ${ok ? 'accepted' : 'refused'}, as jose does`, async () => {
      const token = hsToken('HS256', header, { iss: 'x' }, secret);
      expect(status(token, ks)).toBe(ok ? null : 'JwtVerificationFail');
      expect(await joseAccepts(token, jwk, 'HS256')).toBe(ok);
    });
  }
});

describe('keys are imported once, when the key set is parsed', () => {
  it('every parsed key carries a KeyObject of the type its JWK names', async () => {
    const keys = await Promise.all(['RS256', 'ES384', 'EdDSA', 'HS512'].map((a) => makeKey(a, a)));
    const ks = keySet(jwks(...keys));
    expect(ks.keys.map((k) => [k.kty, k.keyObject.type, k.keyObject.asymmetricKeyType ?? null])).toEqual([
      ['RSA', 'public', 'rsa'],
      ['EC', 'public', 'ec'],
      ['OKP', 'public', 'ed25519'],
      ['oct', 'secret', null],
    ]);
    expect(ks.keys[0]!.rsaBits).toBe(2048);
  });

  it('several keys without kid: each candidate is tried, the one that verifies is reported', async () => {
    const a = await makeKey('ES256', 'a', { publishAlg: false });
    const b = await makeKey('ES256', 'b', { publishAlg: false });
    const strip = (k: TestKey) => {
      const j = { ...k.jwk };
      delete j.kid;
      return j;
    };
    const ks = keySet({ keys: [strip(a), strip(b)] });
    expect(verifySignature(parsed(await sign(b, { iss: 'x' }, { noKid: true })), ks)).toEqual({ status: null, keyId: '#1' });
    const stranger = await makeKey('ES256', 'c');
    expect(status(await sign(stranger, { iss: 'x' }, { noKid: true }), ks)).toBe('JwtVerificationFail');
  });

  it('verifySignature is synchronous', async () => {
    const key = await makeKey('ES256', 'k');
    const r = verifySignature(parsed(await sign(key, { iss: 'x' })), keySet(jwks(key)));
    expect(r).not.toBeInstanceOf(Promise);
    expect(r.status).toBeNull();
  });
});
