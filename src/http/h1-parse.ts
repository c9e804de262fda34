/**
 * The strict HTTP/1.1 request heads the fast path (h1-fast.ts) answers itself. Anything
 * outside this subset is handed to node:http, which answers it as before (400, 431, 413 with
 * a reason code, or a normal answer): the subset is chosen so that every head it accepts
 * node:http's parser (llhttp) would also accept and read the same way (RFC 9112 §3, §5).
 *   request line  METHOD SP origin-form SP "HTTP/1.1" CRLF, METHOD one of the methods below
 *                 (llhttp refuses methods it does not know; CONNECT switches protocols), the
 *                 target "/" followed by visible ASCII (0x21-0x7E) only
 *   header line   tchar+ ":" OWS value OWS CRLF, value bytes HTAB, SP, 0x21-0x7E, 0x80-0xFF
 *                 (no obs-fold, no space before the colon, no bare CR or LF, no other CTL)
 *   framing       exactly one Host, at most one Content-Length (digits, <= maxBodyBytes); no
 *                 Transfer-Encoding, Expect, Upgrade or Proxy-Connection; Connection only
 *                 `keep-alive` or `close`; the whole head within maxHeaderBytes, at most
 *                 MAX_FIELDS header lines.
 * Leading and trailing OWS of a value is dropped, as llhttp does (a 0xA0 byte is not OWS).
 */

import { isAscii } from 'node:buffer';
import { FORWARDED_HEADERS } from '../config/http-authz-settings.js';

/** The head is not complete yet (wait for more bytes). */
export const INCOMPLETE = 0;
/** Not in the strict subset: node:http answers this request and the rest of the connection. */
export const HAND_OVER = 1;

export interface Head {
  readonly method: string;
  readonly url: string;
  /** [name, value, ...] as node:http's req.rawHeaders: names as sent, values without OWS (read as UTF-8). */
  readonly rawHeaders: string[];
  /** Bytes of the head, final CRLF CRLF included. */
  readonly headLength: number;
  /** Content-Length (0 when absent). */
  readonly contentLength: number;
  /** The request asked for the connection to close after the answer. */
  readonly close: boolean;
}

/** More header lines than this: node:http reads it (its own limit is 2000). */
export const MAX_FIELDS = 100;


// One pass over the head (request line and every header line) in the regex engine: the
// character classes are disjoint from their delimiters, so there is no backtracking.
const STRICT_HEAD =
  /^(?:GET|POST|PUT|DELETE|PATCH|OPTIONS|HEAD) \/[\x21-\x7e]* HTTP\/1\.1\r\n(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*$/;
/** What a strict header line may start with (up to its CR). */
const HEADER_LINE_START = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]*(?::[\t\x20-\x7e\x80-\xff]*)?\r?$/;
/** In a partial head: a byte never allowed, a bare CR or a bare LF (llhttp may answer at once). */
const BAD_PARTIAL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r[^\n]|(?:^|[^\r])\n/;

/**
 * The head at the start of `buf`: a Head, INCOMPLETE, or HAND_OVER. A partial head already
 * outside the subset (or already over the limit) is handed over at once, so node:http answers
 * it as soon as it would have.
 */
export function parseHead(buf: Buffer, maxHeaderBytes: number, maxBodyBytes: number): Head | typeof INCOMPLETE | typeof HAND_OVER {
  // One latin1 copy of what may be the head, searched as a string (faster than Buffer#indexOf).
  const all = buf.toString('latin1', 0, Math.min(buf.length, maxHeaderBytes + 4));
  const end = all.indexOf('\r\n\r\n');
  if (end < 0) return partialHead(buf, maxHeaderBytes);
  const headLength = end + 4;
  if (headLength > maxHeaderBytes) return HAND_OVER;
  const s = all.length === end + 2 ? all : all.slice(0, end + 2);
  if (!STRICT_HEAD.test(s)) return HAND_OVER;
  const sp1 = s.indexOf(' ');
  const sp2 = s.indexOf(' ', sp1 + 1);
  const method = s.slice(0, sp1);
  const url = s.slice(sp1 + 1, sp2);
  const rawHeaders: string[] = [];
  let hosts = 0;
  let contentLength = -1;
  let connection = 0;
  let close = false;
  let i = s.indexOf('\r\n', sp2) + 2;
  while (i < s.length) {
    const eol = s.indexOf('\r\n', i);
    const colon = s.indexOf(':', i);
    let a = colon + 1;
    let b = eol;
    while (a < b && isOws(s.charCodeAt(a))) a++;
    while (b > a && isOws(s.charCodeAt(b - 1))) b--;
    const name = known(s, i, colon);
    const value = s.slice(a, b);
    i = eol + 2;
    if (rawHeaders.push(name, value) > 2 * MAX_FIELDS) return HAND_OVER;
    // Framing headers (compared by length first: most names are not one of these).
    switch (name.length) {
      case 4:
        if (named(name, 'host')) hosts++;
        break;
      case 14:
        if (named(name, 'content-length')) {
          if (contentLength >= 0 || !/^\d{1,15}$/.test(value)) return HAND_OVER;
          contentLength = Number(value);
          if (contentLength > maxBodyBytes) return HAND_OVER;
        }
        break;
      case 10:
        if (named(name, 'connection')) {
          const v = value.toLowerCase();
          if (++connection > 1 || (v !== 'keep-alive' && v !== 'close')) return HAND_OVER;
          close = v === 'close';
        }
        break;
      case 6:
        if (named(name, 'expect')) return HAND_OVER;
        break;
      case 7:
        if (named(name, 'upgrade')) return HAND_OVER;
        break;
      case 16:
        if (named(name, 'proxy-connection')) return HAND_OVER;
        break;
      case 17:
        if (named(name, 'transfer-encoding')) return HAND_OVER;
        break;
    }
  }
  if (hosts !== 1) return HAND_OVER;
  // Values with bytes above 0x7F: their UTF-8 reading, as the gRPC Check carries them.
  if (!isAscii(buf) && !isAscii(buf.subarray(0, end))) {
    for (let k = 1; k < rawHeaders.length; k += 2) rawHeaders[k] = Buffer.from(rawHeaders[k]!, 'latin1').toString('utf8');
  }
  return { method, url, rawHeaders, headLength, contentLength: contentLength < 0 ? 0 : contentLength, close };
}

/**
 * Header names most requests carry, as string constants: a name sent exactly so (lower case,
 * as Envoy, nginx and Traefik send them) is returned as the constant instead of a new string,
 * so the header object built from it (headersOf) needs no hashing and no string-table lookup
 * of a fresh key. Any other name is a fresh slice.
 */
const KNOWN: readonly (readonly string[])[] = (() => {
  const byLength: string[][] = [];
  for (const n of [
    'host', 'accept', 'cookie', 'user-agent', 'connection', 'content-type', 'x-request-id', 'authorization',
    'content-length', 'accept-encoding', 'mcp-session-id', 'mcp-protocol-version', 'x-envoy-expected-rq-timeout-ms',
    'x-envoy-internal', 'x-forwarded-client-cert', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-sampled', 'traceparent',
    'tracestate', ...FORWARDED_HEADERS,
  ]) (byLength[n.length] ??= []).push(n);
  return byLength;
})();

function known(s: string, from: number, to: number): string {
  const candidates = KNOWN[to - from];
  if (candidates !== undefined) {
    for (const n of candidates) if (s.startsWith(n, from)) return n;
  }
  return s.slice(from, to);
}

/**
 * `name` (a tchar token of the same length as `lower`) is `lower` in any case. `lower` holds
 * only a-z and '-': OR-ing 0x20 folds A-Z onto a-z and maps no other tchar onto either.
 */
function named(name: string, lower: string): boolean {
  for (let k = 0; k < lower.length; k++) if ((name.charCodeAt(k) | 0x20) !== lower.charCodeAt(k)) return false;
  return true;
}

function isOws(c: number): boolean {
  return c === 32 || c === 9;
}

function partialHead(buf: Buffer, maxHeaderBytes: number): typeof INCOMPLETE | typeof HAND_OVER {
  if (buf.length > maxHeaderBytes) return HAND_OVER;
  const s = buf.toString('latin1');
  if (BAD_PARTIAL.test(s)) return HAND_OVER;
  const eol = s.lastIndexOf('\r\n');
  if (eol < 0) return INCOMPLETE; // the request line is still arriving
  // The complete lines so far must be a strict head already, and the line being received the
  // start of a strict header line (an obs-fold or a space before the colon shows at once).
  if (!STRICT_HEAD.test(s.slice(0, eol + 2)) || !HEADER_LINE_START.test(s.slice(eol + 2))) return HAND_OVER;
  return INCOMPLETE;
}
