/**
 * A small form-POST client on node:http / node:https with keep-alive connections, for the
 * calls made while a Check waits: RFC 8693 token exchanges (exchange/sts-remote.ts) and
 * Kubernetes TokenReviews (kubernetes/tokenreview.ts). Global fetch (undici) costs ~250 µs of
 * CPU per request here against ~40 µs for node:http with a keep-alive Agent (measured on
 * loopback, docs/benchmarks.md), and cannot trust a private CA without undici's own Agent.
 *
 * Bounded like every remote call: the whole exchange (connect, send, read) is limited by
 * `timeoutMs` and by the caller's `signal`, the body by `maxBytes` (BodyTooLargeError).
 * Errors keep fetch's shape where callers look: `cause.code` for network errors,
 * `name === 'TimeoutError'` / `'AbortError'`.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { timerDelay } from '../core/timers.js';
import { BodyTooLargeError, MAX_RESPONSE_BYTES } from './read-capped.js';

export interface PostAnswer {
  readonly status: number;
  readonly text: string;
}

export interface PostOptions {
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  /** Bound on the whole request (ms). */
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
  readonly maxBytes?: number;
}

export interface HttpPostClientOptions {
  /** PEM CA bundle to trust (https only); the system store otherwise. */
  readonly ca?: string | Buffer;
  /** Connections kept per host (default 64). */
  readonly maxSockets?: number;
}

function namedError(name: string, message: string): Error {
  const e = new Error(message);
  e.name = name;
  return e;
}

/** One client per remote (its connections are reused across Checks); dispose() closes them. */
export class HttpPostClient {
  private readonly http: HttpAgent;
  private readonly https: HttpsAgent;

  constructor(opts: HttpPostClientOptions = {}) {
    const common = { keepAlive: true, maxSockets: opts.maxSockets ?? 64, scheduling: 'lifo' as const };
    this.http = new HttpAgent(common);
    this.https = new HttpsAgent(opts.ca !== undefined ? { ...common, ca: opts.ca } : common);
  }

  post(url: string, o: PostOptions): Promise<PostAnswer> {
    return this.send('POST', url, o);
  }

  /** GET (a discovery document): the same caps, bound, abort and connection reuse as post(). */
  get(url: string, o: Omit<PostOptions, 'body'>): Promise<PostAnswer> {
    return this.send('GET', url, o);
  }

  private send(method: 'GET' | 'POST', url: string, o: Omit<PostOptions, 'body'> & { readonly body?: string }): Promise<PostAnswer> {
    const u = new URL(url);
    const isHttps = u.protocol === 'https:';
    if (!isHttps && u.protocol !== 'http:') return Promise.reject(new Error(`unsupported protocol ${u.protocol}`));
    const signal = o.signal;
    if (signal?.aborted) return Promise.reject(namedError('AbortError', 'aborted'));
    const max = o.maxBytes ?? MAX_RESPONSE_BYTES;
    const body = o.body === undefined ? undefined : Buffer.from(o.body, 'utf8');
    return new Promise<PostAnswer>((resolve, reject) => {
      let settled = false;
      const finish = (err: unknown, answer?: PostAnswer) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(answer!);
      };
      const headers = body ? { ...o.headers, 'content-length': String(body.length) } : o.headers;
      const options = { method, headers, agent: isHttps ? this.https : this.http };
      const onResponse = (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > max) {
            req.destroy();
            finish(new BodyTooLargeError(max));
          } else chunks.push(c);
        });
        res.on('end', () => finish(null, { status: res.statusCode ?? 0, text: chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (e) => finish(Object.assign(new Error('response failed'), { cause: e })));
        res.on('aborted', () => finish(Object.assign(new Error('response aborted'), { cause: { code: 'ECONNRESET' } })));
      };
      const req = isHttps ? httpsRequest(u, options, onResponse) : httpRequest(u, options, onResponse);
      // The whole request is bounded (node's own `timeout` is only an idle timeout).
      const timer = setTimeout(() => {
        req.destroy();
        finish(namedError('TimeoutError', `no answer within ${o.timeoutMs}ms`));
      }, timerDelay(o.timeoutMs));
      timer.unref?.();
      const onAbort = () => {
        req.destroy();
        finish(namedError('AbortError', 'aborted'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', (e) => finish(Object.assign(new Error('request failed'), { cause: e })));
      // A socket closed before the response completed, without an 'error'.
      req.on('close', () => finish(Object.assign(new Error('connection closed'), { cause: { code: 'ECONNRESET' } })));
      req.end(body);
    });
  }

  dispose(): void {
    this.http.destroy();
    this.https.destroy();
  }
}
