#!/usr/bin/env node
// A small HTTP/2 gRPC load generator for the scenarios h2load cannot express (a different
// request body per request): prebuilt gRPC frames sent round-robin, or HS256 tokens minted
// on the fly into a frame template (1,000,000 distinct tokens without precomputing them).
// Fixed concurrency (connections x streams per connection), closed loop: each stream sends
// its next request when the previous answer is complete. Every response is classified
// (allow / deny + HTTP status) cheaply and counted against the expected decision.
//   node bench/loadgen.mjs SPEC.json   -> prints one JSON result line on stdout
// SPEC: { target, connections, streams, durationSec?, warmupSec?, maxRequests?, expect?,
//         expectHttp?, timeoutHeader?, framesFile? | generator? }
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { CHECK_PATH, classifyResponseBody } from './lib/grpc-frames.mjs';
import { Histogram } from './lib/hist.mjs';
import { signJwt } from './lib/tokens.mjs';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));

function splitFrames(buf) {
  const out = [];
  let i = 0;
  while (i < buf.length) {
    const len = buf.readUInt32BE(i + 1);
    out.push(buf.subarray(i, i + 5 + len));
    i += 5 + len;
  }
  return out;
}

let nextBody;
if (spec.framesFile) {
  const frames = splitFrames(readFileSync(spec.framesFile));
  if (frames.length === 0) throw new Error('no frames');
  let k = spec.startIndex ?? 0;
  nextBody = () => frames[k++ % frames.length];
} else if (spec.generator?.kind === 'hs256-seq') {
  // Template frame holding a placeholder token of exactly the generated tokens' length.
  const g = spec.generator;
  const template = Buffer.from(g.templateB64, 'base64');
  const key = { alg: 'HS256', kid: g.kid, secret: Buffer.from(g.secretB64, 'base64') };
  let i = g.start ?? 0;
  nextBody = () => {
    const token = signJwt(key, { ...g.claims, sub: `user-${String(i++).padStart(10, '0')}` });
    if (token.length !== g.tokenLength) throw new Error(`token length ${token.length} != ${g.tokenLength}`);
    const b = Buffer.from(template);
    b.write(token, g.offset, 'latin1');
    return b;
  };
} else if (spec.generator?.kind === 'sid-seq') {
  // Template frame holding a placeholder session id (32 chars) in its cookie header.
  const g = spec.generator;
  const template = Buffer.from(g.templateB64, 'base64');
  let i = g.start ?? 0;
  nextBody = () => {
    const sid = createHash('sha256').update(`bench-session-${i++}`).digest('base64url').slice(0, 32);
    const b = Buffer.from(template);
    b.write(sid, g.offset, 'latin1');
    return b;
  };
} else {
  throw new Error('spec needs framesFile or generator');
}

const headers = {
  ':method': 'POST',
  ':path': CHECK_PATH,
  'content-type': 'application/grpc',
  te: 'trailers',
  ...(spec.timeoutHeader ? { 'grpc-timeout': spec.timeoutHeader } : {}),
};

const hist = new Histogram();
const counts = { allow: 0, deny: 0, error: 0, other: 0 };
const httpCounts = {};
let sent = 0;
let done = 0;
let measured = 0;
let errors = 0;
let mismatches = 0;
let firstProblem = null;
let measuring = !(spec.warmupSec > 0);
let stopping = false;
let measureStart = performance.now();
let measureEnd = 0;

function finishOne(t0, body, grpcStatus) {
  done++;
  if (!measuring || stopping) return;
  const t1 = performance.now();
  measured++;
  hist.record((t1 - t0) * 1000);
  if (grpcStatus !== '0') {
    errors++;
    firstProblem ??= `grpc-status ${grpcStatus}`;
    return;
  }
  const c = classifyResponseBody(body);
  counts[c.kind] = (counts[c.kind] ?? 0) + 1;
  if (c.http) httpCounts[c.http] = (httpCounts[c.http] ?? 0) + 1;
  if (spec.expect && (c.kind !== spec.expect || (spec.expectHttp && c.http !== spec.expectHttp))) {
    mismatches++;
    firstProblem ??= `expected ${spec.expect}${spec.expectHttp ? ` ${spec.expectHttp}` : ''}, got ${c.kind}${c.http ? ` ${c.http}` : ''} (status ${c.code})`;
  }
}

const sessions = [];
let active = 0;
let resolveAll;
const allDone = new Promise((r) => (resolveAll = r));
let reconnects = 0;
const GOAWAY = Symbol('goaway');
const goaways = {};

const [host, port] = [spec.target.slice(0, spec.target.lastIndexOf(':')), spec.target.slice(spec.target.lastIndexOf(':') + 1)];
function connect() {
  // Like Envoy (and h2load): no Nagle delay on the gRPC connection.
  const s = http2.connect(`http://${host}:${port}`, {
    settings: { enablePush: false },
    createConnection: () => net.connect({ host, port: Number(port), noDelay: true }),
  });
  s.on('error', (e) => {
    firstProblem ??= `session error ${e.code ?? e.message}`;
  });
  s.on('goaway', (code) => {
    goaways[code] = (goaways[code] ?? 0) + 1;
    s[GOAWAY] = true;
  });
  return s;
}

/** One connection slot: replaced by a fresh connection when the server sends GOAWAY or closes it. */
function usable(slot) {
  const s = slot.session;
  if (s.closed || s.destroyed || s[GOAWAY]) {
    reconnects++;
    slot.session = connect();
  }
  return slot.session;
}

function loop(slot) {
  if (stopping || (spec.maxRequests && sent >= spec.maxRequests)) {
    if (--active === 0) resolveAll();
    return;
  }
  sent++;
  const body = nextBody();
  const t0 = performance.now();
  let req;
  try {
    req = usable(slot).request(headers);
  } catch (e) {
    // GOAWAY seen by the session but not by us yet: mark it, retry on a new connection
    slot.session[GOAWAY] = true;
    sent--;
    setImmediate(() => loop(slot));
    return;
  }
  const chunks = [];
  let grpcStatus = null;
  req.on('response', (h) => {
    if (h['grpc-status'] !== undefined) grpcStatus = String(h['grpc-status']); // trailers-only
  });
  req.on('data', (c) => chunks.push(c));
  req.on('trailers', (t) => {
    grpcStatus = String(t['grpc-status']);
  });
  req.on('end', () => {
    finishOne(t0, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks), grpcStatus ?? 'missing');
    loop(slot);
  });
  req.on('error', (e) => {
    errors++;
    firstProblem ??= `stream error ${e.code ?? e.message}`;
    if (e.code === 'ERR_HTTP2_GOAWAY_SESSION' || e.code === 'ERR_HTTP2_STREAM_CANCEL') slot.session[GOAWAY] = true;
    loop(slot);
  });
  req.end(body);
}

const slots = [];
for (let c = 0; c < spec.connections; c++) {
  const s = connect();
  sessions.push(s);
  slots.push({ session: s });
}
await Promise.all(sessions.map((s) => new Promise((r, j) => (s.connecting ? s.once('connect', r).once('error', j) : r()))));

const wallStart = performance.now();
for (const slot of slots) for (let k = 0; k < spec.streams; k++) {
  active++;
  loop(slot);
}
if (spec.warmupSec > 0) {
  setTimeout(() => {
    measuring = true;
    measureStart = performance.now();
  }, spec.warmupSec * 1000);
}
if (spec.durationSec > 0) {
  setTimeout(() => {
    measureEnd = performance.now();
    stopping = true;
  }, ((spec.warmupSec ?? 0) + spec.durationSec) * 1000);
}
let progressTimer;
if (spec.progressEvery) {
  progressTimer = setInterval(() => process.stderr.write(`${JSON.stringify({ progress: done, sent })}\n`), spec.progressEvery * 1000);
}
await allDone;
if (!measureEnd) measureEnd = performance.now();
if (progressTimer) clearInterval(progressTimer);
for (const slot of slots) slot.session.close();
const elapsed = (measureEnd - measureStart) / 1000;
const result = {
  requests: measured,
  elapsedSec: elapsed,
  wallSec: (performance.now() - wallStart) / 1000,
  rps: measured / elapsed,
  p50us: hist.quantile(0.5),
  p99us: hist.quantile(0.99),
  meanUs: hist.n ? hist.sum / hist.n : NaN,
  maxUs: hist.max,
  sent,
  reconnects,
  goaways,
  errors,
  mismatches,
  decisions: counts,
  httpStatus: httpCounts,
  firstProblem,
  hist: hist.toJSON(),
};
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
