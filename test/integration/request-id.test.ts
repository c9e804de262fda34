/**
 * The request id in the decision log and dynamic_metadata is the request's x-request-id (what
 * Envoy's access log and the upstream see); attributes.request.http.id, which Envoy fills with
 * its internal stream id, is used only when the header is absent. Decision lines also carry
 * method, host, path (no query) and the client address.
 */
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpRequest, startTestServer, type TestServer } from '../helpers/server.js';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ 's.yaml': 'apiVersion: obo-authz.dev/v1alpha1\nkind: Settings\nmetadata: {name: s}\nspec: {trustedProxyHops: 1}\n' });
});
afterAll(async () => {
  await t?.close();
  if (t) rmSync(t.dir, { recursive: true, force: true });
});

const lineFor = (id: string) => t.runtime.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((o) => o['msg'] === 'decision' && o['request_id'] === id);

describe('request id', () => {
  it('is the x-request-id header, not Envoy\'s stream id', async () => {
    const r = await t.check(httpRequest({ id: '10781473976817513413', path: '/tools?access_token=abc', headers: { 'x-request-id': 'my-trace-123', 'x-forwarded-for': '203.0.113.7' } }));
    expect(r.dynamic_metadata.fields['request_id']).toMatchObject({ stringValue: 'my-trace-123' });
    const line = lineFor('my-trace-123');
    expect(line).toMatchObject({ decision: 'allow', method: 'GET', host: 'mcp.example.com', path: '/tools', client_address: '203.0.113.7' });
    expect(JSON.stringify(line)).not.toContain('access_token');
    expect(lineFor('10781473976817513413')).toBeUndefined();
  });

  it('falls back to attributes.request.http.id when the header is absent', async () => {
    const r = await t.check(httpRequest({ id: 'stream-42' }));
    expect(r.dynamic_metadata.fields['request_id']).toMatchObject({ stringValue: 'stream-42' });
    expect(lineFor('stream-42')).toBeDefined();
  });
});
