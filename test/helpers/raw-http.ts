/** Raw HTTP/1.1 over TCP for the listener's byte-level tests: send exact bytes, read exact answers. */
import { connect, type Socket } from 'node:net';

/** One answer as received: the status line, header lines (Date removed: it is the clock), body. */
export interface RawAnswer {
  readonly status: string;
  readonly headers: string[];
  readonly body: string;
}

/**
 * Connect to `address`, send `chunks` as separate writes (each flushed before the next), then
 * half-close and read until the server closes. Resolves with every byte received.
 */
export async function rawExchange(address: string, chunks: readonly Buffer[], opts: { halfClose?: boolean } = {}): Promise<Buffer> {
  const s = await open(address);
  const got: Buffer[] = [];
  const closed = new Promise<void>((resolve) => s.on('close', () => resolve()));
  s.on('data', (d: Buffer) => got.push(d));
  s.on('error', () => {});
  for (const c of chunks) {
    await new Promise<void>((resolve) => s.write(c, () => resolve()));
    // let the server read this chunk on its own before the next one is sent
    await new Promise((r) => setImmediate(r));
  }
  if (opts.halfClose !== false) s.end();
  await closed;
  return Buffer.concat(got);
}

export function open(address: string): Promise<Socket> {
  const i = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const s = connect({ host: address.slice(0, i), port: Number(address.slice(i + 1)), noDelay: true }, () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Split a byte stream of answers (content-length framed; a trailing unframed rest is kept as is). `keepDate`: Date lines stay. */
export function parseAnswers(b: Buffer, keepDate = false): RawAnswer[] {
  const out: RawAnswer[] = [];
  let at = 0;
  while (at < b.length) {
    const end = b.indexOf('\r\n\r\n', at, 'latin1');
    if (end < 0) {
      out.push(unframed(b.subarray(at), keepDate));
      break;
    }
    const lines = b.subarray(at, end).toString('latin1').split('\r\n');
    const headers = lines.slice(1).filter((l) => keepDate || !/^date:/i.test(l));
    const cl = lines.find((l) => /^content-length:/i.test(l));
    const n = cl ? Number(cl.slice(cl.indexOf(':') + 1).trim()) : 0;
    if (end + 4 + n > b.length) {
      out.push(unframed(b.subarray(at), keepDate));
      break;
    }
    const body = b.subarray(end + 4, end + 4 + n).toString('latin1');
    out.push({ status: lines[0]!, headers, body });
    at = end + 4 + n;
  }
  return out;
}

/** Bytes that are not a whole framed answer, as they came (their Date lines removed unless `keepDate`: two answers may straddle a second). */
function unframed(rest: Buffer, keepDate: boolean): RawAnswer {
  const text = rest.toString('latin1');
  return { status: `<unframed> ${keepDate ? text : text.replace(/\r\ndate:[^\r\n]*/gi, '')}`, headers: [], body: '' };
}

/** Read from `s` until `n` content-length framed answers are in. */
export function readAnswers(s: Socket, n: number, keepDate = false): Promise<RawAnswer[]> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const got = parseAnswers(buf, keepDate);
      const complete = got.filter((a) => !a.status.startsWith('<unframed>'));
      if (complete.length >= n && !got.some((a) => a.status.startsWith('<unframed>'))) {
        s.off('data', onData);
        s.off('close', onClose);
        resolve(complete);
      }
    };
    const onClose = () => reject(new Error(`connection closed after ${parseAnswers(buf).length} of ${n} answers`));
    s.on('data', onData);
    s.once('close', onClose);
  });
}
