/** Real HTTP/1.1 clients for the HTTP authorization listener (node:http, keep-alive agents; node:https with `tls`). */
import { Agent, request } from 'node:http';
import { request as httpsRequest } from 'node:https';

export interface HttpReply {
  readonly status: number;
  /** Lower-case name -> value (repeated names joined by ', '). */
  readonly headers: Record<string, string>;
  readonly body: string;
  /** Client-side port of the connection that carried the request (keep-alive reuse). */
  readonly localPort: number;
}

export interface HttpCall {
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
  agent?: Agent;
  /** Source address on loopback (127.0.0.2 is another peer than 127.0.0.1). */
  localAddress?: string;
  /** HTTPS, trusting `ca`, presenting `cert`/`key` when given (server name `localhost`). */
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
}

export function httpCall(address: string, c: HttpCall): Promise<HttpReply> {
  const i = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const req = (c.tls ? httpsRequest : request)(
      {
        ...(c.tls ? { servername: 'localhost', ...c.tls } : {}),
        host: address.slice(0, i),
        port: Number(address.slice(i + 1)),
        method: c.method ?? 'GET',
        path: c.path,
        headers: { ...(c.body !== undefined ? { 'content-length': String(Buffer.byteLength(c.body)) } : {}), ...c.headers },
        agent: c.agent ?? false,
        localAddress: c.localAddress,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
          resolve({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks).toString('utf8'), localPort: res.socket?.localPort ?? 0 });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(c.body);
  });
}

/** Headers of an answer that belong to the HTTP exchange itself, not to the decision. */
export const FRAMING = new Set(['content-length', 'content-type', 'date', 'connection', 'keep-alive']);
