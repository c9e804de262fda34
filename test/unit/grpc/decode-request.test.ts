/**
 * The Check RPC's own CheckRequest deserializer against proto-loader's (what grpc-js used
 * before): the same object — same keys in the same order, same values, same Buffers — for
 * CheckRequests as Envoy sends them, for generated ones, and for damaged bytes (where both
 * must fail alike or agree).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkRequestDeserializer } from '../../../src/grpc/decode-request.js';
import { loadProtos, protoRoot } from '../../../src/grpc/proto.js';

const check = loadProtos().authorization.Check!;
const reference = (b: Buffer): unknown => check.requestDeserialize(b);
let fullCalls = 0;
const ours = checkRequestDeserializer((b) => {
  fullCalls++;
  return reference(b);
});
const Req = protoRoot().lookupType('envoy.service.auth.v3.CheckRequest');
const encode = (o: object): Buffer => Buffer.from(Req.encode(Req.fromObject(o)).finish());

/** Keys in order, values, Buffers by content, and only plain objects and arrays. */
function canonical(v: unknown): string {
  const shape = (x: unknown): unknown => {
    if (Buffer.isBuffer(x)) return { buffer: x.toString('hex') };
    if (Array.isArray(x)) return x.map(shape);
    if (x && typeof x === 'object') {
      if (Object.getPrototypeOf(x) !== Object.prototype) return { prototype: String(Object.getPrototypeOf(x)?.constructor?.name) };
      return Object.keys(x).map((k) => [k, shape((x as Record<string, unknown>)[k])]);
    }
    return x;
  };
  return JSON.stringify(shape(v));
}

function same(bytes: Buffer, fast = true): void {
  const before = fullCalls;
  let want: unknown;
  let wantError: unknown;
  try {
    want = reference(bytes);
  } catch (e) {
    wantError = e;
  }
  if (wantError !== undefined) {
    expect(() => ours(bytes)).toThrow();
    return;
  }
  expect(canonical(ours(bytes))).toBe(canonical(want));
  if (fast) expect(fullCalls).toBe(before);
}

/** A CheckRequest as Envoy's ext_authz filter fills it. */
const envoyLike = {
  attributes: {
    source: { address: { socket_address: { address: '10.0.0.7', port_value: 40000 } }, principal: 'spiffe://cluster.local/ns/a/sa/agent', service: 'agent', labels: { app: 'agent', '10': 'x' } },
    destination: { address: { socket_address: { address: '10.0.0.9', port_value: 8080 } }, principal: 'spiffe://cluster.local/ns/b/sa/mcp' },
    request: {
      time: { seconds: 1767225600, nanos: 123456789 },
      http: {
        id: '1234567890',
        method: 'POST',
        headers: { ':method': 'POST', ':path': '/mcp?x=1', ':authority': 'mcp.example.com', authorization: 'Bearer eyJ.eyJ.sig', 'x-request-id': 'r-1', 'ü-ok': 'välue ✓ 😀' },
        path: '/mcp?x=1',
        host: 'mcp.example.com',
        scheme: 'https',
        size: 42,
        protocol: 'HTTP/1.1',
        raw_body: Buffer.from('{"jsonrpc":"2.0"}'),
      },
    },
    context_extensions: { namespace: 'bench', backend: 'mcp-tools', 'label.app': 'x' },
    metadata_context: {},
    tls_session: { sni: 'mcp.example.com' },
  },
};

describe('checkRequestDeserializer', () => {
  it('reads what Envoy sends exactly as proto-loader does, without the full deserializer', () => {
    same(encode(envoyLike));
    same(encode({}));
    same(encode({ attributes: {} }));
    same(encode({ attributes: { request: { http: { headers: {} } } } }));
    same(encode({ attributes: { request: { http: { body: '', raw_body: Buffer.alloc(0), id: '' } } } }));
    same(encode({ attributes: { source: { address: { socket_address: { address: '::1', named_port: 'http', protocol: 1 } } } } }));
    same(encode({ attributes: { request: { time: { seconds: '-62135596800', nanos: 0 }, http: { size: '-1' } } } }));
    same(encode({ attributes: { request: { time: { seconds: '9007199254740993' }, http: { size: '9223372036854775807' } } } }));
    same(encode({ attributes: { request: { time: { seconds: '-9223372036854775808' } } } }));
    same(encode({ attributes: { route_metadata_context: {}, request: { http: { header_map: {} } } } }));
  });

  it('skips unknown fields (a newer Envoy) as protobufjs does', () => {
    const unknown = Buffer.from([
      0xf8, 0x07, 0x96, 0x01, // field 127 varint
      0xf9, 0x07, 1, 2, 3, 4, 5, 6, 7, 8, // field 127 fixed64
      0xfa, 0x07, 0x03, 0x61, 0x62, 0x63, // field 127 bytes
      0xfd, 0x07, 1, 2, 3, 4, // field 127 fixed32
    ]);
    // unknown fields at the top and inside AttributeContext
    same(Buffer.concat([unknown, encode(envoyLike), unknown]));
    const AC = protoRoot().lookupType('envoy.service.auth.v3.AttributeContext');
    const attrs = Buffer.from(AC.encode(AC.fromObject(envoyLike.attributes)).finish());
    const body = Buffer.concat([unknown, attrs, unknown]);
    same(Buffer.concat([Buffer.from([0x0a]), varint(body.length), body]));
  });

  it('hands the unusual to the full deserializer, with the same result', () => {
    for (const o of [
      { attributes: { metadata_context: { filter_metadata: { 'envoy.filters.http.rbac': { fields: { a: { stringValue: 'b' } } } } } } },
      { attributes: { request: { http: { header_map: { headers: [{ key: 'a', value: 'b' }, { key: 'c', raw_value: Buffer.from('d') }] } } } } },
      { attributes: { source: { address: { pipe: { path: '/tmp/s', mode: 0o600 } } } } },
      { attributes: { request: { http: { headers: { ['__proto__']: 'x', a: 'b' } } } } },
      { attributes: { request: { time: { nanos: -1 } } } },
    ]) {
      const before = fullCalls;
      same(encode(o), false);
      expect(fullCalls).toBe(before + 1);
    }
    // a map key `__proto__` is an own property in proto-loader's object: the same here
    const entry = Buffer.from([0x0a, 0x09, 0x5f, 0x5f, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x5f, 0x5f, 0x12, 0x01, 0x78]);
    const http = Buffer.concat([Buffer.from([0x1a, entry.length]), entry]);
    const reqm = Buffer.concat([Buffer.from([0x12, http.length]), http]);
    const attrs = Buffer.concat([Buffer.from([0x22, reqm.length]), reqm]);
    same(Buffer.concat([Buffer.from([0x0a, attrs.length]), attrs]), false);
  });

  it('short strings remembered from earlier Checks: never another string of the same length and shape', () => {
    for (let i = 0; i < 3000; i++) {
      const v = `a${String.fromCharCode(33 + (i % 90))}${'x'.repeat(i % 7)}${i % 13}a`;
      const nonAscii = `é${i % 5}`;
      same(encode({ attributes: { request: { http: { method: v, host: nonAscii, headers: { [v]: v, k: `${'\u0080'}${i % 3}` } } } } }));
    }
  });

  it('generated CheckRequests: the same object', () => {
    const str = fc.oneof(fc.string({ maxLength: 20 }), fc.string({ unit: 'binary', maxLength: 20 }), fc.constantFrom('', 'a', ':path', '10', '0', 'constructor', 'toString'));
    const map = fc.dictionary(str, str, { maxKeys: 5 }).map((d) => Object.fromEntries(Object.entries(d).filter(([k]) => k !== '__proto__')));
    const peer = fc.record(
      {
        address: fc.record({ socket_address: fc.record({ protocol: fc.constantFrom(0, 1), address: str, port_value: fc.integer({ min: 0, max: 0xffffffff }) }, { requiredKeys: [] }) }, { requiredKeys: [] }),
        service: str,
        labels: map,
        principal: str,
        certificate: str,
      },
      { requiredKeys: [] },
    );
    const long = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String);
    const http = fc.record(
      { id: str, method: str, headers: map, path: str, host: str, scheme: str, query: str, fragment: str, size: long, protocol: str, body: str, raw_body: fc.uint8Array({ maxLength: 16 }).map((a) => Buffer.from(a)) },
      { requiredKeys: [] },
    );
    const attributes = fc.record(
      {
        source: peer,
        destination: peer,
        request: fc.record({ time: fc.record({ seconds: long, nanos: fc.integer({ min: 0, max: 999_999_999 }) }, { requiredKeys: [] }), http }, { requiredKeys: [] }),
        context_extensions: map,
        metadata_context: fc.constant({}),
        tls_session: fc.record({ sni: str }, { requiredKeys: [] }),
        route_metadata_context: fc.constant({}),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.record({ attributes }, { requiredKeys: [] }), (o) => {
        same(encode(o));
      }),
      { numRuns: 400 },
    );
  });

  it('damaged bytes: both fail, or both give the same object', () => {
    const base = encode(envoyLike);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: base.length - 1 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: base.length }), (at, byte, cut) => {
        const flipped = Buffer.from(base);
        flipped[at] = byte;
        same(flipped, false);
        same(base.subarray(0, cut), false);
      }),
      { numRuns: 600 },
    );
  });
});

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 127) {
    out.push((n & 127) | 128);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}
