/**
 * Wire compatibility: a CheckRequest encoded by hand from Envoy's field numbers (proto/)
 * is sent as raw bytes over gRPC, and the CheckResponse bytes are decoded by hand the same
 * way. If a .proto field number drifts, this fails even though our own client would agree
 * with our own server.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/server.js';

// --- a minimal protobuf writer/reader (varint + length-delimited only) ---
function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 127) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}
function tag(field: number, wire: number): number[] {
  return varint((field << 3) | wire);
}
function ld(field: number, payload: Buffer | string): Buffer {
  const b = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  return Buffer.concat([Buffer.from([...tag(field, 2), ...varint(b.length)]), b]);
}
function vi(field: number, n: number): Buffer {
  return Buffer.from([...tag(field, 0), ...varint(n)]);
}
function mapEntry(field: number, k: string, v: string): Buffer {
  return ld(field, Buffer.concat([ld(1, k), ld(2, v)]));
}

interface Field {
  no: number;
  wire: number;
  value: number | Buffer;
}
function decode(buf: Buffer): Field[] {
  const out: Field[] = [];
  let i = 0;
  const readVarint = () => {
    let shift = 0;
    let n = 0;
    for (;;) {
      const b = buf[i++]!;
      n += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return n;
      shift += 7;
    }
  };
  while (i < buf.length) {
    const t = readVarint();
    const no = Math.floor(t / 8);
    const wire = t & 7;
    if (wire === 0) out.push({ no, wire, value: readVarint() });
    else if (wire === 2) {
      const len = readVarint();
      out.push({ no, wire, value: buf.subarray(i, i + len) });
      i += len;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return out;
}
const get = (fs: Field[], no: number) => fs.filter((f) => f.no === no);
const one = (fs: Field[], no: number) => get(fs, no)[0];
const sub = (fs: Field[], no: number) => decode(one(fs, no)!.value as Buffer);
const str = (f: Field | undefined) => (f ? (f.value as Buffer).toString('utf8') : undefined);

function checkRequestBytes(headers: Record<string, string>, path: string): Buffer {
  // HttpRequest: id=1 method=2 headers=3 (map) path=4 host=5 scheme=6
  const http = Buffer.concat([
    ld(1, 'wire-1'),
    ld(2, 'GET'),
    ...Object.entries(headers).map(([k, v]) => mapEntry(3, k, v)),
    ld(4, path),
    ld(5, 'wire.example.com'),
    ld(6, 'https'),
  ]);
  // Request: http=2 ; SocketAddress: address=2 port_value=3 ; Address: socket_address=1 ; Peer: address=1 principal=4
  const request = ld(2, http);
  const sourcePeer = Buffer.concat([ld(1, ld(1, Buffer.concat([ld(2, '10.1.2.3'), vi(3, 5555)]))), ld(4, 'spiffe://cluster.local/ns/agents/sa/bot')]);
  // AttributeContext: source=1 request=4 context_extensions=10 (map)
  const attrs = Buffer.concat([ld(1, sourcePeer), ld(4, request), mapEntry(10, 'namespace', 'wire')]);
  return ld(1, attrs); // CheckRequest: attributes=1
}

const CONFIG = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-agents, namespace: wire}
spec:
  action: ALLOW
  rules:
  - from: [{source: {namespaces: ["agents"]}}]
    to: [{operation: {paths: ["/tools/*"], hosts: ["wire.example.com"]}}]
---
# Allows only with a header the request carries nowhere but in header_map.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: header-only, namespace: wire-hdr}
spec:
  action: ALLOW
  rules:
  - when: [{key: "request.headers[x-agent]", values: ["bot-7"]}]
`;

describe('ext_authz v3 wire compatibility (hand-encoded protobuf)', () => {
  let t: TestServer;
  let raw: grpc.Client;
  beforeAll(async () => {
    t = await startTestServer({ 'policy.yaml': CONFIG });
    raw = new grpc.Client(t.server.grpcAddress, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    raw?.close();
    await t?.close();
  });

  const call = (bytes: Buffer) =>
    new Promise<Buffer>((resolve, reject) =>
      raw.makeUnaryRequest(
        '/envoy.service.auth.v3.Authorization/Check',
        (b: Buffer) => b,
        (b: Buffer) => b,
        bytes,
        (err, resp) => (err ? reject(err) : resolve(resp!)),
      ),
    );

  it('allow: CheckResponse.status(1).code(1)=0 and ok_response(3)', async () => {
    const resp = decode(await call(checkRequestBytes({ ':path': '/tools/search?q=1' }, '/tools/search?q=1')));
    const status = one(resp, 1) ? sub(resp, 1) : [];
    expect(one(status, 1)?.value ?? 0).toBe(0);
    expect(one(resp, 3)).toBeDefined(); // ok_response
    expect(one(resp, 2)).toBeUndefined(); // no denied_response
    expect(one(resp, 5)).toBeUndefined(); // never error_response
    // dynamic_metadata(4) is a Struct: fields(1) map<string, Value>; Value.string_value = 3
    const meta = get(sub(resp, 4), 1).map((e) => decode(e.value as Buffer));
    const reason = meta.find((e) => str(one(e, 1)) === 'reason');
    expect(str(one(decode(one(reason!, 2)!.value as Buffer), 3))).toBe('OK');
  });

  it('deny: non-zero status, denied_response(2) with HttpStatus(1).code=403 and body(3)', async () => {
    const resp = decode(await call(checkRequestBytes({ ':path': '/admin' }, '/admin')));
    const status = sub(resp, 1);
    expect(one(status, 1)?.value).toBe(7); // PERMISSION_DENIED
    const denied = sub(resp, 2);
    const httpStatus = decode(one(denied, 1)!.value as Buffer);
    expect(one(httpStatus, 1)?.value).toBe(403);
    expect(str(one(denied, 3))).toBe('RBAC: access denied');
    expect(one(resp, 3)).toBeUndefined();
  });

  it('reads headers from header_map(13) with raw_value(3) when Envoy uses encode_raw_headers', async () => {
    // HeaderMap: headers=1 (HeaderValue: key=1 value=2 raw_value=3)
    const request = (agent: string) => {
      const header = (k: string, v: string) => ld(1, Buffer.concat([ld(1, k), ld(3, Buffer.from(v))]));
      const headerMap = Buffer.concat([header(':path', '/tools/x'), header('x-agent', agent)]);
      const http = Buffer.concat([ld(2, 'GET'), ld(4, '/tools/x'), ld(5, 'wire.example.com'), ld(13, headerMap)]);
      const sourcePeer = ld(4, 'spiffe://cluster.local/ns/agents/sa/bot');
      return ld(1, Buffer.concat([ld(1, sourcePeer), ld(4, ld(2, http)), mapEntry(10, 'namespace', 'wire-hdr')]));
    };
    // x-agent is only in header_map: the allow shows it was read, the deny that its value counts
    const allowed = decode(await call(request('bot-7')));
    expect(one(allowed, 3)).toBeDefined(); // ok_response
    expect(one(allowed, 2)).toBeUndefined();
    const denied = decode(await call(request('bot-8')));
    expect(one(denied, 3)).toBeUndefined();
    expect(one(decode(one(sub(denied, 2), 1)!.value as Buffer), 1)?.value).toBe(403);
  });
});
