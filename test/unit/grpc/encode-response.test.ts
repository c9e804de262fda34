/**
 * The Check RPC's own CheckResponse serializer against proto-loader's (protobufjs fromObject +
 * encode, what grpc-js used before): byte for byte, for the responses toCheckResponse makes and
 * for generated ones (any string, any nesting, lengths across the varint boundaries).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Decision } from '../../../src/core/decision.js';
import { REASONS, type ReasonCode } from '../../../src/core/reasons.js';
import { UpstreamMutations } from '../../../src/core/state.js';
import { encodeCheckResponse } from '../../../src/grpc/encode-response.js';
import { loadProtos } from '../../../src/grpc/proto.js';
import { toCheckResponse, toStruct, type CheckResponseObject, type HeaderValueOption } from '../../../src/respond/respond.js';
import { decision } from '../../helpers/decision.js';

const check = loadProtos().authorization.Check!;
const reference = (r: CheckResponseObject): Buffer => check.responseSerialize(r) as Buffer;
const decode = (b: Buffer) => check.responseDeserialize(b) as CheckResponseObject;

function same(r: CheckResponseObject): void {
  const ours = encodeCheckResponse(r);
  const ref = reference(r);
  expect(ours.toString('hex')).toBe(ref.toString('hex'));
}

const id = (principal: string) => ({ principal }) as unknown as NonNullable<Decision['identity']>;

describe('encodeCheckResponse', () => {
  it('writes what proto-loader writes for allows: headers set and removed, response headers, set-cookie lines, query removals', () => {
    const up = new UpstreamMutations();
    up.setHeader('authorization', `Bearer ${'e'.repeat(900)}`);
    up.setHeader('x-user-sub', 'user-1');
    up.removeHeader('x-actor-token');
    up.removeQuery.add('access_token');
    up.responseAdd.set('x-obo', 'v');
    up.responseAppend.push(['set-cookie', 'a=1'], ['set-cookie', 'b=2']);
    same(toCheckResponse(decision({ upstream: up, identity: id('https://idp.example/user-1'), attribution: { policy: 'bench/allow-mcp', rule: 0 } }), { reasonHeader: false }));
    same(toCheckResponse(decision({ requestId: '' }), { reasonHeader: false }));
  });

  it('writes what proto-loader writes for every reason code (status, body, headers, reason header) and for the internal-error answer', () => {
    // every reason code of the table, with its status and body, with and without the reason header
    const codes = Object.keys(REASONS) as ReasonCode[];
    for (const [i, reason] of codes.entries()) {
      const d = decision({
        allow: reason === 'OK',
        reason,
        httpStatus: REASONS[reason].http,
        body: REASONS[reason].body,
        denyHeaders: i % 2 ? [['www-authenticate', `Bearer realm="https://h/p", error="${reason}"`]] : [],
        attribution: { policy: `ns/p-${i}`, rule: i, audit: i % 3 ? [] : ['ns/a1', 'ns/a2'], shadow: i % 4 ? [] : [{ policy: 'ns/dry', rule: 1, wouldDeny: true }] },
        identity: i % 2 ? id('https://idp/ü/✓/😀') : null,
        actor: i % 3 ? null : id('spiffe://td/ns/a/sa/agent'),
      });
      for (const reasonHeader of [false, true]) same(toCheckResponse(d, { reasonHeader }));
    }
    same({
      status: { code: 13, message: 'ERR_INTERNAL' },
      denied_response: { status: { code: 500 }, headers: [], body: 'ext_authz: internal error' },
      dynamic_metadata: { fields: { reason: { stringValue: 'ERR_INTERNAL' } } },
    });
    // defaults present in the object are written, as protobufjs does (code 0, empty message and body)
    same({ status: { code: 0, message: '' }, denied_response: { status: { code: 403 }, headers: [], body: '' }, dynamic_metadata: { fields: {} } });
    same({ status: { code: -5, message: 'negative' }, dynamic_metadata: { fields: {} } });
  });

  it('numbers, booleans, lists and nested structs in dynamic_metadata; lengths across 128 and 16384 bytes', () => {
    for (const n of [0, -0, 1, -1, 0.5, 2 ** 53, -1e300, Number.MAX_VALUE, Number.MIN_VALUE]) same({ status: { code: 0, message: '' }, dynamic_metadata: toStruct({ n }) });
    for (const len of [0, 1, 126, 127, 128, 129, 16_383, 16_384, 16_400, 70_000, 2_200_000]) {
      same({ status: { code: 7, message: 'x'.repeat(len) }, denied_response: { status: { code: 403 }, headers: [], body: 'é'.repeat(len >> 1) }, dynamic_metadata: toStruct({ a: ['x'.repeat(len)], s: { deep: { er: 'y'.repeat(len) } } }) });
    }
    same({ status: { code: 0, message: '' }, dynamic_metadata: toStruct({ t: true, f: false, list: [1, 'two', false, { three: [] }], '10': 'integer-like keys first', '2': 'as Object.keys orders them' }) });
  });

  it('any strings and shapes: the same bytes (strings without lone surrogates)', () => {
    const str = fc.oneof(
      fc.string({ unit: fc.constantFrom('a', '"', '\\', '\u0000', '\n', '\u007f', '\u0080', 'é', '\u07ff', '\u0800', '✓', '\uffff', '😀'), maxLength: 200 }),
      fc.string({ unit: 'binary', maxLength: 200 }),
      fc.string({ unit: 'binary-ascii', maxLength: 300 }),
    );
    const hvo = fc.record({ header: fc.record({ key: str, value: str }), append: fc.record({ value: fc.boolean() }), append_action: fc.integer({ min: 0, max: 3 }) }) as fc.Arbitrary<HeaderValueOption>;
    const leaf = fc.oneof(str, fc.double({ noNaN: true }), fc.boolean());
    const meta = fc.dictionary(str, fc.oneof(leaf, fc.array(leaf, { maxLength: 4 }), fc.dictionary(str, leaf, { maxKeys: 3 })), { maxKeys: 6 });
    const resp = fc.oneof(
      fc.record({
        status: fc.record({ code: fc.constant(0), message: fc.constant('') }),
        ok_response: fc.record({ headers: fc.array(hvo, { maxLength: 4 }), headers_to_remove: fc.array(str, { maxLength: 3 }), response_headers_to_add: fc.array(hvo, { maxLength: 3 }), query_parameters_to_remove: fc.array(str, { maxLength: 3 }) }),
        dynamic_metadata: meta.map((m) => toStruct(m)),
      }),
      fc.record({
        status: fc.record({ code: fc.integer({ min: 1, max: 16 }), message: str }),
        denied_response: fc.record({ status: fc.record({ code: fc.constantFrom(400, 401, 403, 404, 413, 429, 500, 503) }), headers: fc.array(hvo, { maxLength: 4 }), body: str }),
        dynamic_metadata: meta.map((m) => toStruct(m)),
      }),
    ) as fc.Arbitrary<CheckResponseObject>;
    fc.assert(fc.property(resp, (r) => encodeCheckResponse(r).equals(reference(r))), { numRuns: 500 });
  });

  it('a lone surrogate is written as U+FFFD (well-formed UTF-8), in short and long strings alike', () => {
    for (const s of ['\ud800', 'a\udc00b', `${'x'.repeat(60)}\ud83d`]) {
      const r: CheckResponseObject = { status: { code: 7, message: s }, denied_response: { status: { code: 403 }, headers: [], body: '' }, dynamic_metadata: toStruct({ principal: s }) };
      const ours = encodeCheckResponse(r);
      expect(ours.length).toBe(reference(r).length);
      const back = decode(ours);
      expect(back.status.message).toBe(s.replace(/[\ud800-\udfff]/g, '\ufffd'));
      expect(Buffer.from(back.status.message, 'utf8').toString('utf8')).toBe(back.status.message);
    }
  });

  it('returns a fresh buffer each time (grpc-js may hold one while the next Check is encoded)', () => {
    const a = encodeCheckResponse({ status: { code: 7, message: 'first' }, dynamic_metadata: { fields: {} } });
    const copy = Buffer.from(a);
    encodeCheckResponse({ status: { code: 7, message: 'other' }, dynamic_metadata: { fields: {} } });
    expect(a.equals(copy)).toBe(true);
  });
});
