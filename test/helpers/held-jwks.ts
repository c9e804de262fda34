/** A real JWKS server on loopback whose answers wait until release(): a Check that needs its keys stays asynchronous until then. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

export interface HeldJwks {
  readonly url: string;
  /** An ES256 token of `issuer` for `sub` (10 minutes), signed with the served key. */
  sign(sub: string): Promise<string>;
  /** Answer the requests held so far and every later one at once. */
  release(): void;
  /** JWKS requests received. */
  readonly requests: number;
  close(): Promise<void>;
}

export async function startHeldJwks(issuer: string): Promise<HeldJwks> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const state = { requests: 0 };
  const server: Server = createServer((req, res) => {
    state.requests++;
    void released.then(() => res.end(JSON.stringify({ keys: [jwk] })));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`,
    sign: (sub) => new SignJWT({ sub }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(issuer).setExpirationTime('10m').sign(privateKey),
    release: () => release(),
    get requests() {
      return state.requests;
    },
    close: () => new Promise((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}
