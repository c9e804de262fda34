/** The HTTP authorization listener with TLS and mutual TLS, HTTP/1.1 and HTTP/2 chosen by ALPN. */
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:http2';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../src/cli/serve.js';
import { httpsStatus, makeTestPki, type TestPki } from '../helpers/certs.js';
import { startTlsServer } from '../helpers/server.js';
import { tempDir } from '../helpers/tmp.js';

const CONFIG = (fast: boolean) => `apiVersion: obo-authz.dev/v1alpha1
kind: Settings
metadata: {name: s}
spec:
  httpAuthz: {address: "127.0.0.1:0", http1FastPath: ${fast}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-get, namespace: default}
spec:
  rules: [{to: [{operation: {methods: [GET]}}]}]
`;

describe.each([
  ['HTTP/1.1 fast path', true],
  ['node:http only', false],
])('HTTP authorization listener over TLS (%s)', (_name, fast) => {
  let pki: TestPki;
  let server: RunningServer;
  beforeAll(async () => {
    pki = makeTestPki();
    const dir = tempDir('obo-http-tls-');
    writeFileSync(join(dir, 'c.yaml'), CONFIG(fast));
    // the listener address comes from Settings.httpAuthz.address (no flag)
    server = await startTlsServer(dir, pki);
  });
  afterAll(async () => {
    await server?.close();
  });

  const h1 = (method: string, withClientCert: boolean) =>
    httpsStatus(server.httpAuthzAddress, { method, path: '/envoy/x', headers: { host: 'api.example.com' } }, pki, withClientCert);

  it('answers HTTP/1.1 Checks to a client with a certificate', async () => {
    expect(server.httpAuthzAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(await h1('GET', true)).toBe(200);
    expect(await h1('POST', true)).toBe(403);
  });

  it('refuses a client without a certificate', async () => {
    await expect(h1('GET', false)).rejects.toThrow();
  });

  it('speaks HTTP/2 when the client offers h2 by ALPN', async () => {
    const s = connect(`https://${server.httpAuthzAddress}`, { ca: readFileSync(pki.caCert), cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey), servername: 'localhost' });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const q = s.request({ ':method': 'GET', ':path': '/envoy/x', ':authority': 'api.example.com' });
        q.on('response', (h) => {
          q.resume();
          resolve(Number(h[':status']));
        });
        q.on('error', reject);
        q.end();
      });
      expect(status).toBe(200);
      expect(s.alpnProtocol).toBe('h2');
    } finally {
      s.close();
    }
  });
});
