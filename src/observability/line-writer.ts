/**
 * Lines batched into asynchronous writes on a file descriptor, one ordered writer per
 * descriptor (sharedLineWriter): the decision log and the main log share stdout in a
 * container, and two independent writers on one pipe interleave whenever the kernel takes a
 * batch in parts (a pipe whose reader is behind accepts what fits), so a line of one could
 * land inside a line of the other. Through one writer every line reaches the descriptor
 * whole and in order, however slowly the reader drains it.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, write, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { LineSink } from '../core/runtime.js';

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

  /** Set by sharedLineWriter: false while other users remain (close() then only flushes). */
  beforeClose: (() => boolean) | undefined;

  get isClosed(): boolean {
    return this.closed;
  }

  /** Flush, then close the descriptor when this writer opened it. Later lines are ignored. */
  async close(maxWaitMs = 5_000): Promise<void> {
    if (this.beforeClose && !this.beforeClose()) {
      await this.flushWithin(maxWaitMs);
      return;
    }
    await this.flushWithin(maxWaitMs);
    this.closed = true;
    if (this.onExit) process.off('exit', this.onExit);
    if (this.timer) clearTimeout(this.timer);
    if (this.ownsFd) closeSync(this.fd);
  }

  private async flushWithin(maxWaitMs: number): Promise<void> {
    // A stdout nobody reads must not hold shutdown forever: wait at most maxWaitMs.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.flush(), new Promise<void>((r) => (timer = setTimeout(r, maxWaitMs)))]);
    clearTimeout(timer);
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

interface SharedEntry {
  readonly writer: LineWriter;
  users: number;
}
/** The writers of this process by descriptor: `fd:1` or `file:<absolute path>`. */
const shared = new Map<string, SharedEntry>();

/**
 * The one LineWriter of a descriptor (1 = stdout) or file path, made on first use with
 * these options; later callers share it (their options are ignored, `onDrop` included:
 * every drop is counted by the first caller's counter). close() on the writer returned here
 * closes it only when every user has closed it.
 */
export function sharedLineWriter(target: number | string, opts: LineWriterOptions = {}): LineWriter {
  const key = typeof target === 'number' ? `fd:${target}` : `file:${resolve(target)}`;
  let e = shared.get(key);
  if (!e || e.writer.isClosed) {
    const writer = new LineWriter(target, opts);
    const entry: SharedEntry = { writer, users: 0 };
    writer.beforeClose = () => {
      entry.users--;
      if (entry.users > 0) return false;
      shared.delete(key);
      return true;
    };
    e = entry;
    shared.set(key, e);
  }
  e.users++;
  return e.writer;
}
