/**
 * Shutdown with the HTTP authorization listener: during the grace period its /readyz fails
 * (a proxy's health check takes the endpoint out) while authorization requests are still
 * answered, on the keep-alive connection already open; then the listener closes.
 */
import { Agent } from 'node:http';
import { describe, expect, it } from 'vitest';
import { httpCall } from '../helpers/http-authz.js';
import { startTestServer } from '../helpers/server.js';

const CONFIG = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-get, namespace: default}
spec:
  rules: [{to: [{operation: {methods: [GET]}}]}]
`;

const settings = (fast: boolean) => `apiVersion: obo-authz.dev/v1alpha1
kind: Settings
metadata: {name: s}
spec:
  httpAuthz: {http1FastPath: ${fast}}
`;

describe.each([
  ['HTTP/1.1 fast path', true],
  ['node:http only', false],
])('HTTP authorization listener during shutdown (%s)', (_name, fast) => {
  it('fails readiness, keeps answering during the grace period, then closes its connections', async () => {
    const t = await startTestServer({ 'ap.yaml': CONFIG, 's.yaml': settings(fast) }, { httpAuthz: true });
    const at = t.server.httpAuthzAddress;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const before = await httpCall(at, { path: '/envoy/x', agent, headers: { host: 'h' } });
      expect([before.status, (await httpCall(at, { path: '/readyz' })).status]).toEqual([200, 200]);

      const done = t.server.shutdown(400);
      expect((await httpCall(at, { path: '/readyz' })).status).toBe(503);
      const during = await httpCall(at, { method: 'POST', path: '/envoy/x', agent, headers: { host: 'h' } });
      expect(during.status).toBe(403);
      expect(during.localPort).toBe(before.localPort);
      await done;
      await expect(httpCall(at, { path: '/envoy/x', headers: { host: 'h' } })).rejects.toThrow();
    } finally {
      agent.destroy();
      await t.close();
    }
  });
});
