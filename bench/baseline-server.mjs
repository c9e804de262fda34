#!/usr/bin/env node
// Baseline Check servers for the benchmark (never a product surface).
//   --mode grpc : @grpc/grpc-js with the server's own proto loading (dist/src/grpc/proto.js)
//                 and the same server options as src/grpc/server.ts; the request is decoded
//                 by the stack as usual and a constant OK CheckResponse object is returned
//                 (serialized by the stack on every call, as the real server's are).
//   --mode h2   : plain node:http2 answering every POST with one constant, pre-encoded gRPC
//                 response (no decode, no encode): the floor of HTTP/2 on Node.
//   --mode http : plain node:http (HTTP/1.1 keep-alive) answering every request 200 with an
//                 empty body: the floor of the HTTP authorization transport (Envoy http_service,
//                 nginx auth_request, Traefik ForwardAuth all take a bare 200 as an allow).
// Prints one JSON line {"grpcAddress": "127.0.0.1:PORT"} when listening.
import http from 'node:http';
import http2 from 'node:http2';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '../dist/src/grpc/proto.js';
import { encodeCheckResponse, frame } from './lib/grpc-frames.mjs';

const { values } = parseArgs({ options: { mode: { type: 'string', default: 'grpc' }, port: { type: 'string', default: '0' } } });

/** What the real server answers for a simple allow (status OK, ok_response, decision metadata). */
export const CONSTANT_OK = {
  status: { code: 0, message: '' },
  ok_response: {
    headers: [
      { header: { key: 'x-user-sub', value: 'user-00000001' }, append: { value: false }, append_action: 2 },
    ],
    headers_to_remove: ['authorization'],
    response_headers_to_add: [],
    query_parameters_to_remove: [],
  },
  dynamic_metadata: {
    fields: {
      decision: { stringValue: 'allow' },
      reason: { stringValue: 'OK' },
      principal: { stringValue: 'https://idp.bench.example/user-00000001' },
      request_id: { stringValue: 'bench-1' },
    },
  },
};

if (values.mode === 'grpc') {
  const protos = loadProtos();
  const server = new grpc.Server({ 'grpc.max_concurrent_streams': 1000, 'grpc.keepalive_permit_without_calls': 1 });
  server.addService(protos.authorization, {
    Check(_call, callback) {
      callback(null, CONSTANT_OK);
    },
  });
  server.addService(protos.health, {
    Check(_call, callback) {
      callback(null, { status: 1 });
    },
    Watch(call) {
      call.write({ status: 1 });
    },
  });
  server.bindAsync(`127.0.0.1:${values.port}`, grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) throw err;
    process.stdout.write(`${JSON.stringify({ msg: 'baseline listening', mode: 'grpc', grpcAddress: `127.0.0.1:${port}` })}\n`);
  });
} else if (values.mode === 'h2') {
  const body = frame(encodeCheckResponse(CONSTANT_OK));
  const server = http2.createServer({ settings: { maxConcurrentStreams: 1000 } });
  server.on('stream', (stream) => {
    // Read (and discard) the request body, then answer: headers, one message, trailers.
    stream.on('data', () => {});
    stream.on('end', () => {
      if (stream.destroyed) return;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': '' }));
      stream.end(body);
    });
  });
  server.listen(Number(values.port), '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ msg: 'baseline listening', mode: 'h2', grpcAddress: `127.0.0.1:${server.address().port}` })}\n`);
  });
} else if (values.mode === 'http') {
  const server = http.createServer((req, res) => {
    // Read (and discard) any body, then answer: what an allow costs at the least on Node.
    req.resume();
    res.writeHead(200, { 'content-length': '0' });
    res.end();
  });
  server.listen(Number(values.port), '127.0.0.1', () => {
    const a = `127.0.0.1:${server.address().port}`;
    process.stdout.write(`${JSON.stringify({ msg: 'baseline listening', mode: 'http', grpcAddress: a, httpAuthzAddress: a })}\n`);
  });
} else {
  process.stderr.write(`unknown --mode ${values.mode}\n`);
  process.exit(2);
}
process.on('SIGTERM', () => process.exit(0));
