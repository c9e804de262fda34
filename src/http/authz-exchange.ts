/**
 * One authorization request as the transport-independent handling in authz-server.ts sees it:
 * node:http and node:http2 requests (wrapped) and the HTTP/1.1 fast path (h1-fast.ts) alike.
 */
import type { Socket } from 'node:net';
import { isToken } from '../core/headers.js';
import type { HttpAnswer } from './authz-response.js';

export interface Exchange {
  readonly method: string;
  /** The request target as received. */
  readonly url: string;
  /** [name, value, ...] as node:http's req.rawHeaders. */
  readonly rawHeaders: readonly string[];
  readonly http2: boolean;
  /**
   * The transport knows itself whether the connection has a request in flight (the fast
   * path: its connection's phase), so the server keeps no per-request record for a graceful close.
   */
  readonly tracksBusy?: boolean;
  /** The connection: graceful-close bookkeeping and the peer address. */
  readonly socket: Socket;
  /** Send the answer, framed by the transport (called once per request). */
  send(a: HttpAnswer): void;
}

// Node's name check in writeHead (checkIsHttpToken: isToken), and its value check for what remains
// after non-ASCII characters are written as their UTF-8 bytes (wireValue): no control
// character but HTAB. An answer that would make res.writeHead throw is never half-written.
const INVALID_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;

/**
 * A header value as node:http and node:http2 write it (one byte per character): its UTF-8
 * bytes, so a claim such as `José` or `日本` reaches the proxy as the same bytes Envoy puts on
 * the wire from a gRPC CheckResponse (protobuf strings are UTF-8). ASCII is returned as is.
 */
export function wireValue(v: string): string {
  return Buffer.byteLength(v, 'utf8') === v.length ? v : Buffer.from(v, 'utf8').toString('latin1');
}

/**
 * Request header values as the gRPC Check carries them: node:http and node:http2 (and the
 * fast path) read one character per byte, Envoy's CheckRequest has the value's bytes as a
 * UTF-8 string. A list whose values are all ASCII is returned as is.
 */
export function utf8Values(raw: readonly string[]): readonly string[] {
  let out: string[] | null = null;
  for (let i = 1; i < raw.length; i += 2) {
    const v = raw[i]!;
    if (!NON_ASCII.test(v)) continue;
    out ??= raw.slice();
    out[i] = Buffer.from(v, 'latin1').toString('utf8');
  }
  return out ?? raw;
}
const NON_ASCII = /[^\x00-\x7f]/;

/** Would node:http write every header of this answer (values through wireValue)? */
export function writableAnswer(a: HttpAnswer): boolean {
  const h = a.headers;
  for (let i = 0; i < h.length; i += 2) if (!isToken(h[i]!) || INVALID_VALUE.test(h[i + 1]!)) return false;
  return true;
}

/** The answer's headers with the framing both HTTP/1.1 transports send: content-length, and connection: close while closing. */
export function framedHeaders(a: HttpAnswer, closing: boolean, http2: boolean): string[] {
  const headers = a.headers;
  headers.push('content-length', a.body === '' ? '0' : String(Buffer.byteLength(a.body)));
  if (closing && !http2) headers.push('connection', 'close');
  return headers;
}
