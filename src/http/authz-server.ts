/**
 * The HTTP authorization listener: every request is an authorization request from Envoy
 * (`http_service`, Istio `envoyExtAuthzHttp`), nginx (`auth_request`) or Traefik
 * (`ForwardAuth`), turned into the same RawCheckRequest a gRPC Check carries and evaluated by
 * the same pipeline (authz-request.ts, then pipeline.ts, then authz-response.ts).
 *
 * One port serves HTTP/1.1 (keep-alive) and HTTP/2: in clear text the client preface picks
 * h2c (prior knowledge, as Envoy's HTTP/2 clusters speak it) or HTTP/1.1; with TLS, ALPN
 * does. Every answer is explicit (a proxy's own error path may fail open): an internal error
 * is a 500 deny, a malformed or oversized request a 400/431 deny, each with a reason code in
 * the metrics and the decision log.
 */
import { createServer as createHttp1Server, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createH2Server, type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from 'node:http2';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { DEFAULT_HTTP_AUTHZ, type HttpAuthzSettings, type HttpConvention } from '../config/http-authz-settings.js';
import type { Decision } from '../core/decision.js';
import type { DecisionSink } from '../observability/decision-log.js';
import type { ServerRuntime as Runtime } from '../observability/metrics.js';
import type { CompiledConfig } from '../pipeline/compile.js';
import { evaluateCheck, internalDecision } from '../pipeline/pipeline.js';
import { CheckRecorder } from '../pipeline/recorder.js';
import type { ServingState } from '../grpc/server.js';
import { framedHeaders, utf8Values, wireValue, writableAnswer, type Exchange } from './authz-exchange.js';
import { buildCheckRequest, headersOf, type HopHeaders, type InboundRequest } from './authz-request.js';
import { answerFor, httpLimits, type HttpAnswer } from './authz-response.js';
import { FastPath } from './h1-fast.js';

type Req = IncomingMessage | Http2ServerRequest;
type Res = ServerResponse | Http2ServerResponse;

export interface HttpAuthzServerOptions {
  /** Largest request head (Node maxHeaderSize / HTTP/2 max header list size). */
  readonly maxHeaderBytes?: number;
  readonly tls?: { key: Buffer; cert: Buffer; ca?: Buffer };
  readonly decisionSink?: DecisionSink;
  /** Idle keep-alive connections are closed after this long (default 75 s: above most proxies' pools). */
  readonly keepAliveTimeoutMs?: number;
  /** HTTP/1.1 fast path: a started request head must be complete within this (default 60 s, node:http's headersTimeout). */
  readonly headersTimeoutMs?: number;
  /** HTTP/1.1 fast path: a request body must be complete within this once its head is in (default 60 s). */
  readonly bodyTimeoutMs?: number;
}

export interface HttpAuthzServer {
  listen(port: number, host: string): Promise<number>;
  /** Stop accepting, close idle connections now and the rest once their request is answered. */
  close(): Promise<void>;
}

const H2_PREFACE = 'PRI';
const TEXT = 'text/plain; charset=utf-8';

/** One authorization request being answered. */
interface Pending {
  readonly x: Exchange;
  readonly start: number;
  readonly cfg: CompiledConfig | null;
  readonly s: HttpAuthzSettings;
  readonly headers: Record<string, string>;
  readonly hop: HopHeaders;
  convention: HttpConvention | null;
  answered: boolean;
}

export function createHttpAuthzServer(state: ServingState, runtime: Runtime, opts: HttpAuthzServerOptions = {}): HttpAuthzServer {
  const recorder = new CheckRecorder(runtime, 'http', opts.decisionSink);
  const maxHeaderBytes = opts.maxHeaderBytes ?? DEFAULT_HTTP_AUTHZ.maxHeaderBytes;
  const keepAliveMs = opts.keepAliveTimeoutMs ?? 75_000;
  // A request head over the limit, on HTTP/1.1 (node:http's parser) and HTTP/2 (handle) alike.
  const HEAD_TOO_LARGE = `request head over httpAuthz.maxHeaderBytes (${maxHeaderBytes})`;
  const HEAD_TOO_LARGE_BODY = 'ext_authz: request header fields too large';
  // HTTP/1 connections (an http.Server that does not listen itself does not track the
  // connections handed to it) and those of node:http and HTTP/2 with a request in flight, for
  // a graceful close (the fast path knows its busy connections itself: busySockets).
  const h1Sockets = new Set<Socket>();
  const busy = new Set<unknown>();
  let closing = false;

  const internalError = (): HttpAnswer => ({ status: 500, headers: ['content-type', TEXT], body: 'ext_authz: internal error' });
  const failed = (e: unknown): void => {
    runtime.logger.error({ err: e instanceof Error ? e.name : 'unknown' }, 'http check failed unexpectedly');
    recorder.count(false, 'ERR_INTERNAL');
  };

  /** Count, log and send one answer (once per request). */
  const finish = (t: Pending, d: Decision): void => {
    if (t.answered) return;
    t.answered = true;
    state.leave();
    if (!t.x.tracksBusy) busy.delete(t.x.socket);
    let a: HttpAnswer;
    try {
      a = answerFor(t.convention, d, t.headers, t.s, t.cfg?.settings.reasonHeader ?? false);
      // A header node:http would refuse to write: a 500 deny rather than a dropped connection.
      if (!writableAnswer(a)) throw new TypeError('answer header not writable');
      // The decision line says what the proxy was told.
      recorder.record(t.cfg, a.status === d.httpStatus || d.allow ? d : { ...d, httpStatus: a.status }, performance.now() - t.start);
    } catch (e) {
      failed(e);
      a = internalError();
    }
    t.x.send(a);
  };

  const refuse = (t: Pending, reason: Parameters<typeof internalDecision>[0], message: string, status?: number): void => {
    const d = internalDecision(reason, message, t.headers['x-request-id'] ?? '', null);
    finish(t, status ? { ...d, httpStatus: status } : d);
  };

  /** The request (and its body, if any) is in: build the raw Check and run the pipeline. */
  const run = (t: Pending, body: Uint8Array | undefined): void => {
    const x = t.x;
    const inb: InboundRequest = {
      method: x.method,
      url: x.url,
      headers: t.headers,
      host: t.hop.host,
      peer: () => x.socket?.remoteAddress ?? '',
      protocol: x.http2 ? 'HTTP/2' : 'HTTP/1.1',
    };
    const now = runtime.now();
    const b = buildCheckRequest(inb, t.s, now, body);
    t.convention = b.convention;
    if (!b.ok) return refuse(t, b.reason, b.message, b.status);
    let r: Decision | Promise<Decision>;
    try {
      r = evaluateCheck(b.raw, t.cfg, runtime, { deadline: b.deadline, now, unsupported: httpLimits, headersLowerCase: true });
    } catch (e) {
      return refuse(t, 'ERR_INTERNAL', `evaluate threw: ${e instanceof Error ? e.name : 'unknown'}`);
    }
    if (!(r instanceof Promise)) return finish(t, r);
    r.then(
      (d) => finish(t, d),
      () => refuse(t, 'ERR_INTERNAL', 'evaluate rejected'),
    );
  };

  /**
   * What every transport shares for one request: health paths, headers, serving-state
   * accounting; then `read` gets the body (node:http, node:http2) or `body` is it (the fast
   * path has read it already). Whatever throws is answered 500, never left unanswered.
   */
  const check = (x: Exchange, start: number, read: ((t: Pending) => void) | null, body: Uint8Array | undefined): void => {
    let t: Pending | undefined;
    try {
      const cfg = state.config;
      const s = settingsOf(cfg);
      const url = x.url;
      if (s.mode === 'auto' && (url === '/healthz' || url === '/readyz')) {
        const ok = url === '/healthz' || state.serving;
        return x.send({ status: ok ? 200 : 503, headers: ['content-type', TEXT], body: ok ? 'ok\n' : 'not ready\n' });
      }
      // Headers from the raw list (Node's req.headers object is never made).
      const hop: HopHeaders = { host: '', contentLength: undefined, transferEncoding: undefined };
      const headers = headersOf(x.rawHeaders, hop);
      t = { x, start, cfg, s, headers, hop, convention: null, answered: false };
      state.enter();
      if (!x.tracksBusy) busy.add(x.socket);
      if (read) read(t);
      else run(t, body);
    } catch (e) {
      if (t) refuse(t, 'ERR_INTERNAL', `http check threw: ${e instanceof Error ? e.name : 'unknown'}`);
      else {
        failed(e);
        x.send(internalError());
      }
    }
  };

  /** node:http and node:http2: the body (a forwarded one: Envoy with_request_body, Traefik forwardBody) read up to maxBodyBytes. */
  const readBody = (req: Req, t: Pending): void => {
    const length = Number(t.hop.contentLength ?? 0);
    if (!(length > 0) && t.hop.transferEncoding === undefined) return run(t, undefined);
    const tooBig = `request body over httpAuthz.maxBodyBytes (${t.s.maxBodyBytes})`;
    if (length > t.s.maxBodyBytes) return refuse(t, 'ERR_BAD_REQUEST', tooBig, 413);
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (done) return;
      if (size > t.s.maxBodyBytes) {
        done = true;
        refuse(t, 'ERR_BAD_REQUEST', tooBig, 413);
      } else chunks.push(c);
    });
    req.on('end', () => {
      if (!done) (done = true), run(t, Buffer.concat(chunks));
    });
    req.on('error', () => {
      if (!done) (done = true), refuse(t, 'ERR_BAD_REQUEST', 'request body could not be read');
    });
  };

  const handle = (req: Req, res: Res): void => {
    const start = performance.now();
    // HTTP/2 has no head-size error of its own: a header list over the limit (but under the
    // hard cap advertised in SETTINGS) is answered 431 and counted, as on HTTP/1.1.
    if (req.httpVersion === '2.0' && h2HeaderListSize(req.rawHeaders) > maxHeaderBytes) {
      recorder.record(state.config, { ...internalDecision('ERR_BAD_REQUEST', HEAD_TOO_LARGE, '', null), httpStatus: 431 }, 0);
      return write(res, { status: 431, headers: ['content-type', TEXT], body: HEAD_TOO_LARGE_BODY }, closing);
    }
    const x: Exchange = {
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      rawHeaders: utf8Values(req.rawHeaders),
      http2: req.httpVersion === '2.0',
      socket: req.socket,
      send: (a) => write(res, a, closing),
    };
    check(x, start, (t) => readBody(req, t), undefined);
  };

  // HTTP/1.1. A request Node cannot parse (a head over maxHeaderSize, bad framing) is still
  // answered and counted with a reason code.
  const h1 = createHttp1Server({ maxHeaderSize: maxHeaderBytes, keepAliveTimeout: keepAliveMs }, handle);
  h1.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!String(err.code ?? '').startsWith('HPE_') || !socket.writable) return void socket.destroy();
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    const message = status === 431 ? HEAD_TOO_LARGE : `unparsable HTTP request (${err.code})`;
    const cfg = state.config;
    recorder.record(cfg, { ...internalDecision('ERR_BAD_REQUEST', message, '', null), httpStatus: status }, 0);
    const body = status === 431 ? HEAD_TOO_LARGE_BODY : 'ext_authz: bad request';
    socket.end(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  });

  // HTTP/2 (h2c prior knowledge or ALPN h2).
  // The advertised header list size is a hard cap above maxHeaderBytes: a stream over it is
  // reset by nghttp2 (ENHANCE_YOUR_CALM) before any handler sees it; between the two, handle()
  // answers 431 with a reason code.
  const h2 = createH2Server({ maxSessionMemory: 64, settings: { maxHeaderListSize: h2HardCap(maxHeaderBytes), maxConcurrentStreams: 1000 } }, handle);
  const sessions = new Set<Http2Session>();
  h2.on('session', (s: Http2Session) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });

  // HTTP/1.1 fast path: a strict subset of requests read and answered without node:http;
  // the first request outside it hands the connection to `h1` (h1-fast.ts, h1-parse.ts).
  const fast = new FastPath(
    {
      maxHeaderBytes,
      maxBodyBytes: () => settingsOf(state.config).maxBodyBytes,
      closing: () => closing,
      check: (x, body) => check(x, performance.now(), null, body),
      handOver: (socket) => {
        runtime.logger.debug({}, 'http/1.1 connection handed to node:http');
        h1.emit('connection', socket);
      },
      fault: failed,
    },
    { keepAliveMs, headersMs: opts.headersTimeoutMs ?? 60_000, bodyMs: opts.bodyTimeoutMs ?? 60_000 },
  );

  /** A new connection (`first`: bytes already read from it) to HTTP/2, the fast path or node:http. */
  const dispatch = (socket: Socket, h2Wanted: boolean, first: Buffer | null) => {
    if (closing) return void socket.destroy();
    if (!h2Wanted) {
      h1Sockets.add(socket);
      socket.once('close', () => {
        h1Sockets.delete(socket);
        busy.delete(socket);
      });
      // Read per connection, so a reloaded config switches new connections.
      if (settingsOf(state.config).http1FastPath) return fast.accept(socket, first);
    }
    if (first) {
      socket.pause();
      socket.unshift(first);
    }
    (h2Wanted ? h2 : h1).emit('connection', socket);
    // HTTP/2 reads what is buffered itself; the HTTP/1 parser takes it as 'data'.
    if (first && !h2Wanted) socket.resume();
  };
  let outer: NetServer;
  if (opts.tls) {
    const t = opts.tls;
    outer = createTlsServer(
      { key: t.key, cert: t.cert, ca: t.ca, requestCert: !!t.ca, rejectUnauthorized: !!t.ca, ALPNProtocols: ['h2', 'http/1.1'] },
      (socket: TLSSocket) => dispatch(socket, socket.alpnProtocol === 'h2', null),
    );
  } else {
    outer = createNetServer((socket) => {
      // Peek at the first bytes: an HTTP/2 client preface starts with "PRI", no HTTP/1 method does.
      let seen: Buffer = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        seen = seen.length ? Buffer.concat([seen, chunk]) : chunk;
        if (seen.length < H2_PREFACE.length && H2_PREFACE.startsWith(seen.toString('latin1'))) return;
        socket.off('data', onData);
        dispatch(socket, seen.subarray(0, 3).toString('latin1') === H2_PREFACE, seen);
      };
      socket.on('data', onData);
      socket.on('error', () => socket.destroy());
    });
  }

  return {
    listen(port, host) {
      return new Promise((resolve, reject) => {
        outer.once('error', reject);
        outer.listen(port, host, () => {
          outer.off('error', reject);
          const a = outer.address();
          resolve(typeof a === 'object' && a ? a.port : port);
        });
      });
    },
    close() {
      closing = true;
      return new Promise((resolve) => {
        outer.close(() => resolve());
        // Answers made this turn go out before idle connections end.
        fast.flushHeld();
        // Idle connections now; busy ones once their answer is out (sent with Connection: close).
        const busyFast = fast.busySockets();
        for (const sock of h1Sockets) if (!busy.has(sock) && !busyFast.has(sock)) sock.destroy();
        for (const s of sessions) s.close();
        setTimeout(() => {
          fast.stop();
          for (const sock of h1Sockets) sock.destroy();
          for (const s of sessions) s.destroy();
        }, 1000).unref();
      });
    },
  };
}

/** The HTTP/2 header list size (RFC 9113 §6.5.2: name and value octets plus 32 per field). */
export function h2HeaderListSize(raw: readonly string[]): number {
  let n = 0;
  // one byte per character: Node reads HTTP/2 header fields as latin1
  for (let i = 0; i < raw.length; i++) n += raw[i]!.length;
  return n + 16 * raw.length;
}

/** What an HTTP/2 peer may send before its stream is reset: twice the limit, at least 16 KiB over it. */
export function h2HardCap(maxHeaderBytes: number): number {
  return Math.max(2 * maxHeaderBytes, maxHeaderBytes + 16 * 1024);
}

function settingsOf(cfg: CompiledConfig | null): HttpAuthzSettings {
  return cfg?.settings.httpAuthz ?? DEFAULT_HTTP_AUTHZ;
}

function write(res: Res, a: HttpAnswer, closing: boolean): void {
  if (res.headersSent || res.destroyed) return;
  const http2 = 'stream' in res;
  const headers = framedHeaders(a, closing, http2);
  for (let i = 1; i < headers.length; i += 2) headers[i] = wireValue(headers[i]!);
  try {
    if (http2) {
      // HTTP/2 compatibility API: an object (repeated names joined as a list).
      const o: Record<string, string | string[]> = {};
      for (let i = 0; i < headers.length; i += 2) {
        const k = headers[i]!;
        const prev = o[k];
        o[k] = prev === undefined ? headers[i + 1]! : [...(Array.isArray(prev) ? prev : [prev]), headers[i + 1]!];
      }
      res.writeHead(a.status, o);
    } else {
      res.writeHead(a.status, headers);
    }
    // The body as bytes: node:http writes a string body together with the head as one UTF-8
    // string, which would encode the head's UTF-8 bytes (wireValue) a second time.
    res.end(Buffer.from(a.body, 'utf8'));
  } catch {
    // a header HTTP/2 refuses (checked for HTTP/1.1 before: writableAnswer) or a closed socket
    res.destroy();
  }
}
