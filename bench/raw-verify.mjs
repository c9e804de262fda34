#!/usr/bin/env node
// Raw signature-verification rate for the same tokens and key type as scenario 2, in its
// own process pinned to the server's core (so it is comparable with the server's rate):
//   crypto.verify  : synchronous node:crypto, key object prepared once (the floor, and what
//                    the server's verifier calls since KeyObjects are prepared at key load);
//   jose           : jose.compactVerify with an imported key, 32 in flight (the server's
//                    former path, kept for comparison; WebCrypto runs on the libuv pool);
//   verifier       : the server's own JwtVerifier (dist/), the step every scenario-2 Check
//                    runs: parse, issuer, time, audience, key lookup, signature, awaited as
//                    jwt-rules-member.ts awaits it; verified-token cache off, so every
//                    call verifies a signature (checked: all must pass).
//   node bench/raw-verify.mjs SPEC.json  -> one JSON line
import { createPublicKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { compactVerify, importJWK } from 'jose';
import { StaticKeySource } from '../dist/src/jwt/jwks-source.js';
import { parseJwks } from '../dist/src/jwt/keys.js';
import { JwtVerifier } from '../dist/src/jwt/verifier.js';
import { Metrics } from '../dist/src/observability/metrics.js';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const tokens = readFileSync(spec.tokensFile, 'utf8').split('\n').filter(Boolean);
const alg = spec.jwk.alg;
const keyObject = createPublicKey({ key: spec.jwk, format: 'jwk' });
const parts = tokens.map((t) => {
  const i = t.lastIndexOf('.');
  return { data: Buffer.from(t.slice(0, i)), sig: Buffer.from(t.slice(i + 1), 'base64url') };
});
const hash = 'sha' + alg.slice(2);
const opts = alg.startsWith('ES') ? { key: keyObject, dsaEncoding: 'ieee-p1363' } : keyObject;

function rawFor(seconds) {
  let n = 0;
  let bad = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let now = t0;
  while (now < end) {
    for (let k = 0; k < 64; k++) {
      const p = parts[n % parts.length];
      if (!verify(hash, p.data, opts, p.sig)) bad++;
      n++;
    }
    now = performance.now();
  }
  return { rate: n / ((now - t0) / 1000), n, bad };
}

async function joseFor(seconds) {
  const key = await importJWK(spec.jwk, alg);
  let n = 0;
  let bad = 0;
  let i = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const worker = async () => {
    while (performance.now() < end) {
      const t = tokens[i++ % tokens.length];
      try {
        await compactVerify(t, key, { algorithms: [alg] });
      } catch {
        bad++;
      }
      n++;
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  return { rate: n / ((performance.now() - t0) / 1000), n, bad };
}

async function verifierFor(seconds) {
  const parsed = parseJwks({ keys: [spec.jwk] }, { allowSymmetric: false });
  if (!parsed.ok) throw new Error(`bench key did not parse: ${parsed.error}`);
  const runtime = { now: () => Date.now(), metrics: new Metrics() };
  const v = new JwtVerifier(runtime, { issuer: spec.issuer, audiences: spec.audiences, source: new StaticKeySource(parsed.keySet), timeoutMs: 1000 });
  let n = 0;
  let bad = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let now = t0;
  while (now < end) {
    for (let k = 0; k < 64; k++) {
      const r = await v.verify(tokens[n % tokens.length]);
      if (!r.ok || r.cached) bad++;
      n++;
    }
    now = performance.now();
  }
  return { rate: n / ((now - t0) / 1000), n, bad };
}

rawFor(Math.min(0.5, spec.seconds / 4)); // warm up
const raw = rawFor(spec.seconds);
await joseFor(Math.min(0.5, spec.seconds / 4));
const jose = await joseFor(spec.seconds);
await verifierFor(Math.min(0.5, spec.seconds / 4));
const ours = await verifierFor(spec.seconds);
// raw again after the others: the ratio uses the mean of the two raw measurements
const raw2 = rawFor(spec.seconds);
process.stdout.write(
  `${JSON.stringify({
    alg,
    tokens: tokens.length,
    cryptoVerifyPerSec: (raw.rate + raw2.rate) / 2,
    cryptoVerifyBad: raw.bad + raw2.bad,
    joseVerifyPerSec: jose.rate,
    joseVerifyBad: jose.bad,
    verifierPerSec: ours.rate,
    verifierBad: ours.bad,
  })}\n`,
);
