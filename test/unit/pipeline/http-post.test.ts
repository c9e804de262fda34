/** The keep-alive POST client used for STS exchanges and TokenReviews, against a real loopback server. */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HttpPostClient } from '../../../src/net/http-post.js';
import { BodyTooLargeError } from '../../../src/net/read-capped.js';

let handler: (req: IncomingMessage, body: string, res: ServerResponse) => void = (_q, _b, res) => res.end('ok');
let server: Server;
let url: string;
const sockets = new Set<Socket>();
let connections = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handler(req, Buffer.concat(chunks).toString('utf8'), res));
  });
  server.on('connection', (s: Socket) => {
    connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
});
afterAll(
  () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
);

const clients: HttpPostClient[] = [];
function client(): HttpPostClient {
  const c = new HttpPostClient();
  clients.push(c);
  return c;
}
afterEach(() => {
  for (const c of clients.splice(0)) c.dispose();
  handler = (_q, _b, res) => res.end('ok');
});

describe('HttpPostClient', () => {
  it('posts the body with its headers and reuses one connection for sequential requests', async () => {
    const seen: { body: string; type: string | undefined; length: string | undefined }[] = [];
    handler = (req, body, res) => {
      seen.push({ body, type: req.headers['content-type'], length: req.headers['content-length'] });
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ echo: body }));
    };
    const c = client();
    const before = connections;
    for (let i = 0; i < 5; i++) {
      const a = await c.post(url, { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `a=${i}&é=€`, timeoutMs: 2000 });
      expect(a.status).toBe(201);
      expect(JSON.parse(a.text)).toEqual({ echo: `a=${i}&é=€` });
    }
    expect(connections - before).toBe(1);
    expect(seen[4]).toEqual({ body: 'a=4&é=€', type: 'application/x-www-form-urlencoded', length: String(Buffer.byteLength('a=4&é=€')) });
  });

  it('bounds the whole request: a server that never answers is a TimeoutError', async () => {
    handler = () => undefined;
    const t0 = Date.now();
    await expect(client().post(url, { headers: {}, body: 'x', timeoutMs: 150 })).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it("stops at the caller's signal with an AbortError", async () => {
    const ac = new AbortController();
    handler = () => ac.abort(); // aborted while the request waits for its answer
    await expect(client().post(url, { headers: {}, body: 'x', timeoutMs: 5000, signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
    await expect(client().post(url, { headers: {}, body: 'x', timeoutMs: 5000, signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('cuts a body past maxBytes (BodyTooLargeError), also an endless one', async () => {
    handler = (_q, _b, res) => {
      res.writeHead(200);
      const t = setInterval(() => res.write('x'.repeat(16 << 10)), 1);
      res.on('close', () => clearInterval(t));
    };
    await expect(client().post(url, { headers: {}, body: '', timeoutMs: 5000, maxBytes: 100_000 })).rejects.toBeInstanceOf(BodyTooLargeError);
  });

  it('does not follow redirects', async () => {
    let calls = 0;
    handler = (_q, _b, res) => {
      calls++;
      res.writeHead(302, { location: url });
      res.end();
    };
    const a = await client().post(url, { headers: {}, body: '', timeoutMs: 2000 });
    expect(a.status).toBe(302);
    expect(calls).toBe(1);
  });

  it('reports a refused connection with cause.code, as fetch does', async () => {
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const port = (dead.address() as AddressInfo).port;
    await new Promise<void>((r) => dead.close(() => r()));
    await expect(client().post(`http://127.0.0.1:${port}/`, { headers: {}, body: '', timeoutMs: 2000 })).rejects.toMatchObject({ cause: { code: 'ECONNREFUSED' } });
    await expect(client().post('ftp://127.0.0.1/', { headers: {}, body: '', timeoutMs: 2000 })).rejects.toThrow(/unsupported protocol/);
  });

  it('dispose() closes the kept-alive connections', async () => {
    let served: Socket | undefined;
    handler = (req, _b, res) => {
      served = req.socket;
      res.end('ok');
    };
    const c = new HttpPostClient();
    await c.post(url, { headers: {}, body: '', timeoutMs: 2000 });
    expect(served?.closed).toBe(false); // kept alive after the answer
    c.dispose();
    if (!served!.closed) await once(served!, 'close'); // the server sees the client close it
    expect(served!.closed).toBe(true);
  });
});
