/**
 * The decision log: one JSON line per decision with the request id, decision, reason code,
 * deciding policy/rule, subject, actor, audience and latency. Never a token: only
 * principals (iss/sub), which are identifiers, not credentials.
 *
 * One line per Check is on the hot path, so the line is built by hand (decisionLine) in the
 * same shape pino gives every other log line (level, time, service, name, component, ...,
 * msg) and handed to a LineSink, by default a LineWriter that batches lines into few
 * asynchronous writes. Going through pino cost ~9 µs per Check (object serialisation, and
 * sonic-boom measuring its whole pending buffer on every write); this costs ~1 µs.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, write, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Settings } from '../config/settings.js';
import type { Decision } from '../core/decision.js';
import type { DecisionSink, LineSink } from '../core/runtime.js';

export type { DecisionSink, LineSink };


let lastMs = -1;
let lastIso = '';
let lastSec = -1;
let secPrefix = '';
/** pino's isoTime (`new Date().toISOString()`), with the date formatted once per second. */
export function isoNow(ms: number = Date.now()): string {
  if (ms !== lastMs) {
    lastMs = ms;
    const sec = Math.floor(ms / 1000);
    if (sec !== lastSec) {
      lastSec = sec;
      secPrefix = new Date(sec * 1000).toISOString().slice(0, 20); // up to and including '.'
    }
    const frac = ms - sec * 1000;
    lastIso = `${secPrefix}${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}Z`;
  }
  return lastIso;
}

const PREFIX = '{"level":"info","time":"';
const BASE = '","service":"obo-authz","name":"obo-authz","component":"decision"';
const q = JSON.stringify;

/**
 * JSON fragments of values that repeat from line to line (reason codes are a closed set,
 * policy names come from config), kept in small maps emptied when they grow past a bound.
 */
const FRAGMENTS_MAX = 4096;
const verdicts = new Map<string, string>();
const policies = new Map<string, string>();

function verdictFragment(allow: boolean, reason: string): string {
  const key = allow ? reason : `\u0000${reason}`;
  let f = verdicts.get(key);
  if (f === undefined) {
    f = `"decision":"${allow ? 'allow' : 'deny'}","reason":${q(reason)}`;
    if (verdicts.size >= FRAGMENTS_MAX) verdicts.clear();
    verdicts.set(key, f);
  }
  return f;
}

function policyFragment(policy: string): string {
  let f = policies.get(policy);
  if (f === undefined) {
    f = `,"policy":${q(policy)}`;
    if (policies.size >= FRAGMENTS_MAX) policies.clear();
    policies.set(policy, f);
  }
  return f;
}

export type ClientAddressMode = 'remote' | 'peer' | 'none';

/**
 * One decision as one JSON line. Field names are those of the CheckResponse's
 * dynamic_metadata where both carry a value (request_id, decision, reason, policy, rule,
 * principal, actor, audience, exchange_policy, audit, shadow, end_user, mcp_*), so a log
 * query and an Envoy access log (%DYNAMIC_METADATA(envoy.filters.http.ext_authz:reason)%) use
 * the same names. Then what was asked (method, host, path without the query, client_address)
 * and, when present, status and detail (denies), exchange_cache, latency_ms; `transport`
 * (grpc or http) when the log belongs to a transport. Every string
 * goes through JSON.stringify (request ids, hosts, paths and principals are request data).
 */
export function decisionLine(d: Decision, latencyMs: number, time: string = isoNow(), clientAddress: ClientAddressMode = 'remote', transport?: string): string {
  let s = `${PREFIX}${time}${BASE},"request_id":${q(d.requestId)},${verdictFragment(d.allow, d.reason)}`;
  if (transport) s += `,"transport":${q(transport)}`;
  const r = d.request;
  if (r) {
    s += `,"method":${q(r.method)},"host":${q(r.host)},"path":${q(r.path)}`;
    if (clientAddress !== 'none') {
      const ip = clientAddress === 'remote' ? r.remoteIp : r.source.ip;
      if (ip) s += `,"client_address":${q(ip)}`;
    }
  }
  if (!d.allow) s += `,"status":${d.httpStatus},"detail":${q(d.message)}`;
  const a = d.attribution;
  if (a.policy) s += policyFragment(a.policy);
  if (a.rule !== undefined) s += `,"rule":${a.rule}`;
  if (d.identity) s += `,"principal":${q(d.identity.principal)}`;
  if (d.actor) s += `,"actor":${q(d.actor.principal)}`;
  if (a.audience) s += `,"audience":${q(a.audience)}`;
  if (a.exchangePolicy) s += `,"exchange_policy":${q(a.exchangePolicy)}`;
  if (a.exchangeCache) s += `,"exchange_cache":${q(a.exchangeCache)}`;
  if (a.audit?.length) s += `,"audit":${q(a.audit)}`;
  if (a.shadow?.length) s += `,"shadow":${q(a.shadow)}`;
  if (a.endUser !== undefined) s += `,"end_user":${q(a.endUser)}`;
  const m = a.mcp;
  if (m) {
    if (m.server) s += `,"mcp_server":${q(m.server)}`;
    if (m.method !== undefined) s += `,"mcp_method":${q(m.method)}`;
    if (m.tool !== undefined) s += `,"mcp_tool":${q(m.tool)}`;
    if (m.resource !== undefined) s += `,"mcp_resource":${q(m.resource)}`;
    if (m.prompt !== undefined) s += `,"mcp_prompt":${q(m.prompt)}`;
    if (m.id !== undefined) s += `,"mcp_id":${q(m.id)}`;
    if (m.batch !== undefined) s += `,"mcp_batch":${q(m.batch)}`;
    if (m.sessionId !== undefined) s += `,"mcp_session_id":${q(m.sessionId)}`;
  }
  return `${s},"latency_ms":${Math.round(latencyMs * 1000) / 1000},"msg":"decision"}\n`;
}

export class DecisionLog {
  constructor(
    private readonly out: LineSink,
    private readonly random: () => number = Math.random,
    /** `grpc` or `http`: which transport the Check came in on (a field of every line). */
    private readonly transport?: string,
  ) {}

  record(settings: Settings, d: Decision, latencyMs: number): void {
    const cfg = settings.decisionLog;
    if (!cfg.enabled) return;
    // Denies are always logged; allows are sampled (audit/shadow outcomes always logged).
    const a = d.attribution;
    const mustLog = !d.allow || (a.audit !== undefined && a.audit.length > 0) || (a.shadow !== undefined && a.shadow.length > 0);
    if (!mustLog && cfg.allowSampleRate < 1 && this.random() >= cfg.allowSampleRate) return;
    this.out.write(decisionLine(d, latencyMs, isoNow(), cfg.clientAddress, this.transport));
  }
}


export interface LineWriterOptions {
  /** Bytes per write (a full chunk is written at once); below it, lines wait up to `maxDelayMs`. */
  readonly batchBytes?: number;
  readonly maxDelayMs?: number;
  /** Bytes waiting beyond which new lines are dropped (and counted) instead of buffered. */
  readonly maxPendingBytes?: number;
  /** Called once per dropped line (a metric). */
  readonly onDrop?: () => void;
  /** Write what is still buffered synchronously when the process exits (until close()). */
  readonly flushOnExit?: boolean;
}

/**
 * Lines batched into asynchronous writes on a file descriptor: a Check never waits for I/O
 * and a busy server makes a few writes per second instead of one per line. Each line is
 * encoded at once into the current chunk (a Buffer outside the JS heap), so the strings die
 * young and nothing is left for the garbage collector to copy while a batch fills. A
 * non-blocking pipe that is full (EAGAIN) is retried; when the reader stays behind and
 * `maxPendingBytes` bytes wait, lines are dropped (counted) rather than held without bound.
 */
export class LineWriter implements LineSink {
  /** Filled chunks waiting for their write, oldest first. */
  private queue: Buffer[] = [];
  private queued = 0;
  private cur: Buffer;
  private curLen = 0;
  private writing = false;
  private timer: NodeJS.Timeout | undefined;
  private waiters: (() => void)[] = [];
  private closed = false;
  private readonly chunk: number;
  private readonly maxDelayMs: number;
  private readonly maxPending: number;
  private readonly onDrop: (() => void) | undefined;
  private readonly fd: number;
  private readonly ownsFd: boolean;
  dropped = 0;

  /** `target`: a file descriptor (1 = stdout) or a path, opened for append (folders made). */
  constructor(target: number | string, opts: LineWriterOptions = {}) {
    if (typeof target === 'string') {
      mkdirSync(dirname(target), { recursive: true });
      this.fd = openSync(target, 'a');
      this.ownsFd = true;
    } else {
      this.fd = target;
      this.ownsFd = false;
    }
    this.chunk = Math.max(1024, opts.batchBytes ?? 64 * 1024);
    this.maxDelayMs = opts.maxDelayMs ?? 100;
    this.maxPending = opts.maxPendingBytes ?? 16 * 1024 * 1024;
    this.onDrop = opts.onDrop;
    this.cur = Buffer.allocUnsafe(this.chunk);
    if (opts.flushOnExit) {
      this.onExit = () => this.flushSync();
      process.once('exit', this.onExit);
    }
  }
  private onExit: (() => void) | undefined;

  write(line: string): void {
    if (this.closed) return;
    if (this.queued + this.curLen + line.length > this.maxPending) {
      this.drop(1);
      return;
    }
    // UTF-8 needs at most 3 bytes per UTF-16 unit: room for that means the line fits.
    const room = line.length * 3;
    if (room > this.chunk) {
      // a line longer than a chunk: its own buffer, after what is there already
      this.rotate(this.chunk);
      this.enqueue(Buffer.from(line, 'utf8'));
    } else {
      if (this.cur.length - this.curLen < room) this.rotate(this.chunk);
      this.curLen += this.cur.write(line, this.curLen, 'utf8');
    }
    if (this.writing) return;
    if (this.queue.length > 0) this.startWrite();
    else this.schedule();
  }

  /** Queue what the current chunk holds and start a fresh one. */
  private rotate(size: number): void {
    if (this.curLen > 0) {
      this.enqueue(this.cur.subarray(0, this.curLen));
      this.cur = Buffer.allocUnsafe(size);
      this.curLen = 0;
    }
  }

  private enqueue(b: Buffer): void {
    this.queue.push(b);
    this.queued += b.length;
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.writing) {
        this.rotate(this.chunk);
        this.startWrite();
      }
    }, this.maxDelayMs);
    this.timer.unref();
  }

  private startWrite(): void {
    const buf = this.queue.shift();
    if (buf === undefined) {
      this.notifyIdle();
      return;
    }
    this.queued -= buf.length;
    this.writing = true;
    this.writeBuf(buf, 0);
  }

  private writeBuf(buf: Buffer, off: number): void {
    write(this.fd, buf, off, buf.length - off, null, (err, n) => {
      if (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
          // A full non-blocking pipe: try again shortly (the reader is behind). While someone
          // waits for a flush (shutdown), the retry keeps the process alive.
          const t = setTimeout(() => this.writeBuf(buf, off), 10);
          if (this.waiters.length === 0) t.unref();
          return;
        }
        // Nowhere to write (closed pipe, full disk): the lines are lost, the server goes on.
        this.drop(countLines(buf, off));
      } else if (off + n < buf.length) {
        this.writeBuf(buf, off + n);
        return;
      }
      this.writing = false;
      if (this.waiters.length > 0) this.rotate(this.chunk);
      if (this.queue.length > 0) this.startWrite();
      else if (this.curLen > 0) this.schedule();
      else this.notifyIdle();
    });
  }

  private drop(lines: number): void {
    this.dropped += lines;
    if (this.onDrop) for (let i = 0; i < lines; i++) this.onDrop();
  }

  private notifyIdle(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves when every line written so far has reached the descriptor. */
  flush(): Promise<void> {
    if (!this.writing && this.queue.length === 0 && this.curLen === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      if (!this.writing) {
        if (this.timer) {
          clearTimeout(this.timer);
          this.timer = undefined;
        }
        this.rotate(this.chunk);
        this.startWrite();
      }
    });
  }

  /** Flush, then close the descriptor when this writer opened it. Later lines are ignored. */
  async close(maxWaitMs = 5_000): Promise<void> {
    // A stdout nobody reads must not hold shutdown forever: wait at most maxWaitMs.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.flush(), new Promise<void>((r) => (timer = setTimeout(r, maxWaitMs)))]);
    clearTimeout(timer);
    this.closed = true;
    if (this.onExit) process.off('exit', this.onExit);
    if (this.timer) clearTimeout(this.timer);
    if (this.ownsFd) closeSync(this.fd);
  }

  /**
   * Last resort on process exit (registered by the server): the lines still waiting, written
   * synchronously, a full pipe retried for up to a second. A batch whose asynchronous write
   * is under way is left to it.
   */
  flushSync(): void {
    if (this.closed) return;
    this.rotate(this.chunk);
    const bufs = this.queue;
    this.queue = [];
    this.queued = 0;
    const pause = new Int32Array(new SharedArrayBuffer(4));
    for (let b = 0; b < bufs.length; b++) {
      const buf = bufs[b]!;
      let off = 0;
      let waited = 0;
      while (off < buf.length) {
        try {
          off += writeSync(this.fd, buf, off, buf.length - off);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'EAGAIN' && waited < 1000) {
            Atomics.wait(pause, 0, 0, 10);
            waited += 10;
            continue;
          }
          for (let r = b; r < bufs.length; r++) this.drop(countLines(bufs[r]!, r === b ? off : 0));
          return;
        }
      }
    }
    try {
      if (this.ownsFd) fsyncSync(this.fd);
    } catch {
      // exiting anyway
    }
  }
}

/** Lines (newlines) in buf from off: what a failed write loses. */
function countLines(buf: Buffer, off: number): number {
  let n = 0;
  for (let i = buf.indexOf(10, off); i >= 0; i = buf.indexOf(10, i + 1)) n++;
  return n;
}
