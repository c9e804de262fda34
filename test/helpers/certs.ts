/**
 * A throw-away CA, server and client certificates made with the openssl CLI for TLS tests.
 * The private keys live in a temp folder: remove() deletes it (else it goes after the test file).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { httpCall } from './http-authz.js';
import { removeTempDir, tempDir } from './tmp.js';

export interface TestPki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** Delete the folder with every key and certificate. */
  remove(): void;
}

function ossl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

export function makeTestPki(): TestPki {
  const dir = tempDir('obo-pki-');
  ossl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=obo-authz test CA'], dir);
  const leaf = (name: string, ext: string) => {
    writeFileSync(join(dir, `${name}.ext`), ext);
    ossl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
    ossl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`], dir);
  };
  leaf('server', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  leaf('client', 'subjectAltName=URI:spiffe://cluster.local/ns/istio-system/sa/envoy\nextendedKeyUsage=clientAuth\n');
  return {
    dir,
    caCert: join(dir, 'ca.crt'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.crt'),
    clientKey: join(dir, 'client.key'),
    remove: () => removeTempDir(dir),
  };
}

/** The status of one HTTPS request to `address` trusting the PKI's CA, with or without its client certificate. */
export async function httpsStatus(address: string, req: { method?: string; path: string; headers?: Record<string, string> }, pki: TestPki, withClientCert: boolean): Promise<number> {
  const tls = { ca: readFileSync(pki.caCert), ...(withClientCert ? { cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey) } : {}) };
  return (await httpCall(address, { ...req, tls })).status;
}
