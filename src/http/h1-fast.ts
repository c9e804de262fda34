/**
 * The HTTP/1.1 fast path of the authorization listener: keep-alive connections read and
 * answered without node:http's per-request machinery (IncomingMessage/ServerResponse streams,
 * events, a header object, a socket timeout re-armed per request). Only the strict subset of
 * requests in h1-parse.ts is read here; at the first request outside it the connection is
 * handed to node:http (the bytes of that request put back on the socket), which answers it and
 * the rest of the connection as it always did. Requests are handled one at a time per
 * connection, in order (pipelined ones wait in the buffer), and a hand-over happens only when
 * nothing of ours is in flight on that connection.
 *
 * The answer is written the way node:http writes it (status line, the answer's headers, Date,
 * Connection and Keep-Alive, then the body) in one socket write. Timeouts (idle keep-alive,
 * a partial head, a partial body, a client not reading its answers) are checked by one
 * coarse periodic sweep over all fast-path connections instead of a timer per request.
 */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { flat } from '../core/flat.js';
import { framedHeaders, type Exchange } from './authz-exchange.js';
import type { HttpAnswer } from './authz-response.js';
import { HAND_OVER, INCOMPLETE, parseHead, type Head } from './h1-parse.js';

export interface FastPathHost {
  /** Largest request head (the node:http server's maxHeaderSize). */
  readonly maxHeaderBytes: number;
  /** Largest request body, from the config in force now. */
  maxBodyBytes(): number;
  /** The server is closing: answers say Connection: close. */
  closing(): boolean;
  /** Answer one request (the transport-independent part); calls `x.send` exactly once. */
  check(x: Exchange, body: Uint8Array | undefined): void;
  /** Give the connection to node:http; its unread bytes are already back on the socket. */
  handOver(socket: Socket): void;
  /** A fault of this code on a connection (it is closed): count and log it. */
  fault(e: unknown): void;
}

export interface FastPathTimeouts {
  readonly keepAliveMs: number;
  readonly headersMs: number;
  readonly bodyMs: number;
}

const IDLE = 0;
const HEAD = 1;
const BODY = 2;
const BUSY = 3;
const DRAIN = 4;

/** All fast-path connections of one listener and the sweep that times them out. */
export class FastPath {
  private readonly conns = new Set<FastConnection>();
  private timer: NodeJS.Timeout | undefined;
  /** A coarse clock (ms), read when a connection changes phase; set by the sweep. */
  clock = performance.now();
  private readonly sweepMs: number;
  private readonly keepAliveHeader: string;

  constructor(
    readonly host: FastPathHost,
    readonly timeouts: FastPathTimeouts,
  ) {
    // Coarse on purpose: a timeout fires up to one sweep late (or early, for a phase entered
    // between two sweeps); a quarter of the shortest timeout, at most 1 s.
    this.sweepMs = Math.max(10, Math.min(1000, Math.floor(Math.min(timeouts.keepAliveMs, timeouts.headersMs, timeouts.bodyMs) / 4)));
    // What node:http announces: whole seconds of its keepAliveTimeout.
    this.keepAliveHeader = `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(timeouts.keepAliveMs / 1000)}\r\n`;
  }

  /** Serve `socket` (with `first`, bytes already read from it) on the fast path. */
  accept(socket: Socket, first: Buffer | null): void {
    this.clock = performance.now();
    const c = new FastConnection(this, socket, this.keepAliveHeader);
    this.conns.add(c);
    if (!this.timer) {
      this.timer = setInterval(() => this.sweep(), this.sweepMs);
      this.timer.unref();
    }
    c.start(first);
  }

  forget(c: FastConnection): void {
    this.conns.delete(c);
    if (this.conns.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private sweep(): void {
    const now = (this.clock = performance.now());
    const t = this.timeouts;
    for (const c of this.conns) {
      const limit = c.phase === IDLE || c.phase === DRAIN ? t.keepAliveMs : c.phase === HEAD ? t.headersMs : c.phase === BODY ? t.bodyMs : Infinity;
      // Idle: closed as node:http closes an idle keep-alive connection. A partial head or body
      // (or an answer the client does not read): closed without an answer, as node:http does
      // on its headers timeout (its error answer is not written on this listener either).
      if (now - c.since > limit) c.socket.destroy();
    }
  }

  /** The Date of answers, made once per second (as node:http does): '' once the second is over. */
  private dateText = '';
  /** The head's end for this second: Date, Connection and Keep-Alive, the blank line (keep-alive, close). */
  private tails: [string, string] = ['', ''];
  private readonly dateExpired = (): void => {
    this.dateText = '';
  };

  /**
   * The IMF-fixdate of this second. Like node:http, a timer (unref'd) drops it when the second
   * ends, so answers within one second read no clock.
   */
  httpDate(): string {
    if (this.dateText === '') {
      const ms = Date.now();
      this.dateText = new Date(ms).toUTCString();
      this.tails = [flat(`Date: ${this.dateText}\r\n${this.keepAliveHeader}\r\n`), flat(`Date: ${this.dateText}\r\nConnection: close\r\n\r\n`)];
      setTimeout(this.dateExpired, 1000 - (ms % 1000)).unref();
    }
    return this.dateText;
  }

  /** What ends a head whose answer sets neither Date nor Connection: one string per second. */
  headTail(close: boolean): string {
    this.httpDate();
    return this.tails[close ? 1 : 0];
  }

  /** Sockets whose answers wait for the end of this event-loop turn (see `hold`). */
  private held: Socket[] = [];
  private readonly release = (): void => {
    const list = this.held;
    this.held = [];
    for (const s of list) s.uncork();
  };

  /**
   * Hold the answers written to `s` until the I/O callbacks of this event-loop turn have run,
   * then write them (setImmediate: right after the poll phase, before any timer). Under load
   * one turn reads requests from many connections; written at once, every answer would wake
   * the sleeping peer (a proxy's event loop) with its own write system call, while answers
   * written back to back after the reads wake it once per burst. Measured on loopback with
   * 64 keep-alive connections: the socket write (system call included) went from 9.4 to 6.9 µs
   * per answer, the whole request from 20-22 to 18 µs of server CPU.
   * Idempotent within a turn.
   */
  hold(s: Socket): void {
    if (s.writableCorked > 0) return;
    s.cork();
    if (this.held.push(s) === 1) setImmediate(this.release);
  }

  /**
   * The connections with a request in flight (its body arriving, or being answered): a
   * graceful close waits for their answers. Asked once, at close; per request the phase is
   * all there is to keep.
   */
  busySockets(): Set<Socket> {
    const out = new Set<Socket>();
    for (const c of this.conns) if (c.phase === BODY || c.phase === BUSY) out.add(c.socket);
    return out;
  }

  /** Write every held answer now (a graceful close is about to end idle connections). */
  flushHeld(): void {
    this.release();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** One connection: the bytes not read yet and the request in flight. Is the Exchange of that request. */
class FastConnection implements Exchange {
  method = '';
  url = '';
  rawHeaders: readonly string[] = [];
  readonly http2 = false;
  readonly tracksBusy = true;
  phase = IDLE;
  since: number;
  /** Unread bytes, starting at a request boundary (or inside the body of `head`). */
  private buf: Buffer | null = null;
  /** A complete head whose body is still arriving. */
  private head: Head | null = null;
  private headOnly = false;
  private closeAfter = false;
  private pumping = false;
  private paused = false;
  private gone = false;
  private readonly highWater: number;

  constructor(
    private readonly fp: FastPath,
    readonly socket: Socket,
    private readonly keepAliveHeader: string,
  ) {
    this.since = fp.clock;
    this.highWater = fp.host.maxHeaderBytes + fp.host.maxBodyBytes();
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.gone) return;
    this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.phase === IDLE) {
      this.phase = HEAD;
      this.since = this.fp.clock;
    }
    if (this.phase === BUSY || this.phase === DRAIN) {
      // Pipelined requests wait; stop reading once a full request's worth is waiting.
      if (this.buf.length > this.highWater && !this.paused) {
        this.paused = true;
        this.socket.pause();
      }
      return;
    }
    this.pump();
  };

  private readonly onDrain = (): void => {
    if (this.gone || this.phase !== DRAIN) return;
    this.idle();
    this.pump();
  };

  /** The client half-closed: as node:http (httpAllowHalfOpen false), whatever is unanswered is dropped and the connection ends. */
  private readonly onEnd = (): void => {
    this.gone = true;
    this.buf = null;
    this.socket.end();
  };

  private readonly onClose = (): void => {
    this.gone = true;
    this.buf = null;
    this.fp.forget(this);
  };

  start(first: Buffer | null): void {
    const s = this.socket;
    s.setNoDelay(true);
    s.on('data', this.onData);
    s.on('drain', this.onDrain);
    s.on('end', this.onEnd);
    s.on('close', this.onClose);
    s.on('error', destroy);
    if (first?.length) this.onData(first);
  }

  private idle(): void {
    this.phase = this.buf === null ? IDLE : HEAD;
    this.since = this.fp.clock;
  }

  /** Read and answer buffered requests until one is in flight, incomplete, or handed over. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.gone && (this.phase === IDLE || this.phase === HEAD || this.phase === BODY)) {
        const buf = this.buf;
        if (buf === null) {
          this.phase = IDLE;
          break;
        }
        let h = this.head;
        if (h === null) {
          const r = parseHead(buf, this.fp.host.maxHeaderBytes, this.fp.host.maxBodyBytes());
          if (r === INCOMPLETE) break;
          if (r === HAND_OVER) return this.handOver();
          h = r;
        }
        const total = h.headLength + h.contentLength;
        if (buf.length < total) {
          if (this.head === null) {
            this.head = h;
            this.phase = BODY;
            this.since = this.fp.clock;
          }
          break;
        }
        this.head = null;
        this.buf = buf.length > total ? buf.subarray(total) : null;
        this.method = h.method;
        this.url = h.url;
        this.rawHeaders = h.rawHeaders;
        this.headOnly = h.method === 'HEAD';
        this.closeAfter = h.close;
        this.phase = BUSY;
        this.fp.host.check(this, h.contentLength > 0 ? buf.subarray(h.headLength, total) : undefined);
      }
    } catch (e) {
      // Fail closed: never an answer we are unsure of.
      this.fp.host.fault(e);
      this.socket.destroy();
    } finally {
      this.pumping = false;
    }
    if (this.paused && !this.gone && (this.buf === null || this.buf.length <= this.highWater)) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /** node:http takes over from the request at the start of `buf`. */
  private handOver(): void {
    const s = this.socket;
    this.gone = true;
    s.off('data', this.onData);
    s.off('drain', this.onDrain);
    s.off('end', this.onEnd);
    s.off('close', this.onClose);
    s.off('error', destroy);
    this.fp.forget(this);
    s.pause();
    if (this.buf) s.unshift(this.buf);
    this.buf = null;
    this.fp.host.handOver(s);
    s.resume();
  }

  /** Write the answer to the request in flight (node:http's framing), then go on. */
  send(a: HttpAnswer): void {
    if (this.phase !== BUSY) return;
    if (this.gone || this.socket.destroyed) {
      this.phase = IDLE;
      return;
    }
    try {
      this.write(a);
    } catch (e) {
      // Fail closed: a connection we cannot answer on is closed, never left waiting.
      this.gone = true;
      this.fp.host.fault(e);
      this.socket.destroy();
    }
  }

  private write(a: HttpAnswer): void {
    const s = this.socket;
    const status = a.status;
    let head = statusLine(status);
    let date = false;
    let close = this.closeAfter;
    let connection = false;
    const hs = framedHeaders(a, this.fp.host.closing(), false);
    for (let i = 0; i < hs.length; i += 2) {
      const n = hs[i]!;
      const v = hs[i + 1]!;
      head += `${n}: ${v}\r\n`;
      if (n.length === 4 && n.toLowerCase() === 'date') date = true;
      else if (n.length === 10 && n.toLowerCase() === 'connection') {
        connection = true;
        if (v.toLowerCase() === 'close') close = true;
      }
    }
    if (!date && !connection) head += this.fp.headTail(close);
    else {
      if (!date) head += `Date: ${this.fp.httpDate()}\r\n`;
      if (!connection) head += close ? 'Connection: close\r\n' : this.keepAliveHeader;
      head += '\r\n';
    }
    // Head and body as one UTF-8 string: a non-ASCII header value goes out as its UTF-8 bytes,
    // as node:http writes it after wireValue (authz-exchange.ts). No body for HEAD, 204, 304.
    const withBody = a.body !== '' && !this.headOnly && status !== 204 && status !== 304 && status >= 200;
    this.fp.hold(s);
    const ok = s.write(withBody ? head + a.body : head, 'utf8');
    if (close) {
      this.gone = true;
      this.buf = null;
      s.end();
      return;
    }
    if (!ok) {
      this.phase = DRAIN;
      this.since = this.fp.clock;
      return;
    }
    this.idle();
    this.pump();
  }
}

const STATUS_LINES: string[] = [];
/** `HTTP/1.1 <status> <reason>\r\n`, made once per status. */
function statusLine(status: number): string {
  return (STATUS_LINES[status] ??= flat(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'unknown'}\r\n`));
}

function destroy(this: Socket): void {
  this.destroy();
}
