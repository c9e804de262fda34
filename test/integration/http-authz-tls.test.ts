/** The HTTP authorization listener with TLS and mutual TLS, HTTP/1.1 and HTTP/2 chosen by ALPN. */
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { connect } from 'node:http2';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { makeTestPki, type TestPki } from '../helpers/certs.js';
import { createTestRuntime } from '../helpers/runtime.js';
import { tempDir } from '../helpers/tmp.js';

const CONFIG = `apiVersion: obo-authz.dev/v1alpha1
kind: Settings
metadata: {name: s}
spec:
  httpAuthz: {address: "127.0.0.1:0"}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-get, namespace: default}
spec:
  rules: [{to: [{operation: {methods: [GET]}}]}]
`;

describe('HTTP authorization listener over TLS', () => {
  let pki: TestPki;
  let server: RunningServer;
  beforeAll(async () => {
    pki = makeTestPki();
    const dir = tempDir('obo-http-tls-');
    writeFileSync(join(dir, 'c.yaml'), CONFIG);
    // the listener address comes from Settings.httpAuthz.address (no flag)
    server = await startServer({
      configPaths: [dir],
      grpcAddress: '127.0.0.1:0',
      httpAddress: '127.0.0.1:0',
      runtime: createTestRuntime(),
      watch: false,
      tls: { cert: pki.serverCert, key: pki.serverKey, clientCa: pki.caCert },
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  const h1 = (method: string, withClientCert: boolean) =>
    new Promise<number>((resolve, reject) => {
      const [host, port] = server.httpAuthzAddress.split(':');
      const req = request(
        {
          host,
          port: Number(port),
          method,
          path: '/envoy/x',
          headers: { host: 'api.example.com' },
          servername: 'localhost',
          ca: readFileSync(pki.caCert),
          ...(withClientCert ? { cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey) } : {}),
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end();
    });

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
