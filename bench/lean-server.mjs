#!/usr/bin/env node
// EXPERIMENT (bench only, not the product): the real pipeline (dist/: loadConfig,
// evaluate, toCheckResponse, metrics, decision log, exactly as src/grpc/server.ts calls
// them) behind a lean gRPC transport: node:http2 + protobufjs decode/encode, no grpc-js.
// Used by `npm run bench` (scenario s1-lean) to measure how much of the gap to the
// baseline is the gRPC stack rather than the pipeline.
//   node bench/lean-server.mjs --config DIR   -> {"grpcAddress": ...} when listening
import http2 from 'node:http2';
import { parseArgs } from 'node:util';
import { createRuntime } from '../dist/src/cli/serve.js';
import { loadConfig } from '../dist/src/pipeline/compile.js';
import { protoRoot } from '../dist/src/grpc/proto.js';
import { DecisionLog } from '../dist/src/observability/decision-log.js';
import { evaluateCheck } from '../dist/src/pipeline/pipeline.js';
import { toCheckResponse } from '../dist/src/respond/respond.js';

const { values } = parseArgs({ options: { config: { type: 'string', multiple: true }, port: { type: 'string', default: '0' } } });
const runtime = createRuntime();
const r = loadConfig(values.config, runtime);
if (!r.ok) {
  process.stderr.write(`${JSON.stringify(r.issues)}\n`);
  process.exit(2);
}
const cfg = r.config;
const root = protoRoot();
const Req = root.lookupType('envoy.service.auth.v3.CheckRequest');
const Resp = root.lookupType('envoy.service.auth.v3.CheckResponse');
// the same conversion options as proto-loader's in src/grpc/proto.ts
const TO_OBJECT = { longs: String, enums: Number, defaults: false, oneofs: true };
const decisionLog = new DecisionLog(runtime.decisionSink);
const m = runtime.metrics;
const allowChild = m.checkDuration.labels('allow', 'grpc');
const denyChild = m.checkDuration.labels('deny', 'grpc');

/** grpc-timeout header -> absolute deadline (ms since epoch). */
function deadlineOf(h) {
  const v = h['grpc-timeout'];
  if (typeof v !== 'string' || v.length < 2) return undefined;
  const n = Number(v.slice(0, -1));
  const unit = { H: 3600e3, M: 60e3, S: 1e3, m: 1, u: 1e-3, n: 1e-6 }[v[v.length - 1]];
  return unit ? Date.now() + n * unit : undefined;
}

const server = http2.createServer({ settings: { maxConcurrentStreams: 1000 } });
server.on('stream', (stream, headers) => {
  if (headers[':path'] !== '/envoy.service.auth.v3.Authorization/Check') {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12' }, { endStream: true });
    return;
  }
  const deadline = deadlineOf(headers);
  const chunks = [];
  stream.on('data', (c) => chunks.push(c));
  stream.on('end', () => {
    const start = performance.now();
    const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    let req;
    try {
      req = Req.toObject(Req.decode(body.subarray(5, 5 + body.readUInt32BE(1))), TO_OBJECT);
    } catch {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '13' }, { endStream: true });
      return;
    }
    const finish = (d) => {
      const resp = toCheckResponse(d, { reasonHeader: cfg.settings.reasonHeader ?? false });
      const ms = performance.now() - start;
      const decision = resp.status.code === 0 ? 'allow' : 'deny';
      (decision === 'allow' ? allowChild : denyChild).observe(ms / 1000);
      m.checks.inc({ decision, reason: d.reason, transport: 'grpc' });
      decisionLog.record(cfg.settings, d, ms);
      const bytes = Resp.encode(Resp.fromObject(resp)).finish();
      const out = Buffer.allocUnsafe(5 + bytes.length);
      out[0] = 0;
      out.writeUInt32BE(bytes.length, 1);
      out.set(bytes, 5);
      if (stream.destroyed) return;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(out);
    };
    const r = evaluateCheck(req, cfg, runtime, { deadline });
    if (r instanceof Promise) r.then(finish);
    else finish(r);
  });
});
server.listen(Number(values.port), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ msg: 'lean server listening', grpcAddress: `127.0.0.1:${server.address().port}` })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
