import { describe, expect, it } from 'vitest';
import type { Decision } from '../../../src/core/decision.js';
import { UpstreamMutations } from '../../../src/core/state.js';
import { decisionMetadata, toCheckResponse, toStruct } from '../../../src/respond/respond.js';
import { decision } from '../../helpers/decision.js';


describe('toCheckResponse', () => {
  it('sets headers with append=false and OVERWRITE_IF_EXISTS_OR_ADD, and never removes a header it sets', () => {
    const up = new UpstreamMutations();
    up.setHeader('Authorization', 'Bearer exchanged');
    up.removeHeader('authorization');
    up.removeHeader('x-actor-token');
    up.removeQuery.add('access_token');
    const r = toCheckResponse(decision({ upstream: up }), { reasonHeader: false });
    expect(r.status.code).toBe(0);
    expect(r.ok_response!.headers).toEqual([{ header: { key: 'authorization', value: 'Bearer exchanged' }, append: { value: false }, append_action: 2 }]);
    expect(r.ok_response!.headers_to_remove).toEqual(['x-actor-token']);
    expect(r.ok_response!.query_parameters_to_remove).toEqual(['access_token']);
    expect(r.denied_response).toBeUndefined();
  });

  it('never sends an allow with a CR/LF header value: it throws (the pipeline denies such a Decision before it is final)', () => {
    const up = new UpstreamMutations();
    up.setHeader('x-user', 'alice\r\nx-admin: true');
    expect(() => toCheckResponse(decision({ upstream: up }), { reasonHeader: false })).toThrow(/unsendable upstream header/);
  });

  it('denies with an explicit HTTP status, body, headers and the opt-in reason header', () => {
    const r = toCheckResponse(
      decision({
        allow: false,
        reason: 'ERR_JWT_EXPIRED',
        httpStatus: 401,
        body: 'Jwt is expired',
        denyHeaders: [['www-authenticate', 'Bearer realm="https://h/p", error="invalid_token"']],
        attribution: { policy: 'ns/p', rule: 2 },
      }),
      { reasonHeader: true },
    );
    expect(r.status.code).toBe(16);
    expect(r.denied_response).toMatchObject({ status: { code: 401 }, body: 'Jwt is expired' });
    expect(r.denied_response!.headers.map((h) => h.header.key)).toEqual(['www-authenticate', 'x-obo-authz-reason']);
    expect(r.dynamic_metadata.fields['reason']).toEqual({ stringValue: 'ERR_JWT_EXPIRED' });
    expect(r.dynamic_metadata.fields['policy']).toEqual({ stringValue: 'ns/p' });
    expect(r.dynamic_metadata.fields['rule']).toEqual({ numberValue: 2 });
  });

  it('dynamic_metadata carries every decision field, in decisionMetadata() order, as a Struct', () => {
    const id = (principal: string) => ({ principal }) as unknown as NonNullable<Decision['identity']>;
    const d = decision({
      identity: id('https://idp/u1'),
      actor: id('spiffe://td/ns/a/sa/agent'),
      attribution: {
        policy: 'ns/p',
        rule: 0,
        exchangePolicy: 'ns/tep',
        audience: 'mcp-tools',
        audit: ['ns/a1'],
        shadow: [{ policy: 'ns/dry', rule: 1, wouldDeny: true }],
      },
    });
    const r = toCheckResponse(d, { reasonHeader: false });
    expect(r.dynamic_metadata).toEqual(toStruct(decisionMetadata(d)));
    expect(Object.keys(r.dynamic_metadata.fields)).toEqual(Object.keys(decisionMetadata(d)));
    expect(r.dynamic_metadata.fields['shadow']).toEqual({
      listValue: { values: [{ structValue: { fields: { policy: { stringValue: 'ns/dry' }, rule: { numberValue: 1 }, wouldDeny: { boolValue: true } } } }] },
    });
  });
});
