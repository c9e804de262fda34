/**
 * Fetching JWKS and OIDC discovery documents for the remote key source (jwks-source.ts):
 * one bounded GET of a capped JSON body, the fetch outcome taxonomy of the metric, the
 * Cache-Control reading that sets the refresh interval, and URL redaction for whatever
 * is shown (descriptions, logs, error text).
 */
import type { Runtime } from '../core/runtime.js';
import { timerDelay } from '../core/timers.js';
import { BodyTooLargeError, readCapped } from '../net/read-capped.js';
import { sanitizeRemoteText } from '../observability/redact.js';

/**
 * A URL as it may be shown (descriptions, --explain, logs): `scheme://host[:port]/path`,
 * without userinfo, query or fragment, where credentials or API keys may hide.
 */
export function redactUrl(u: string): string {
  try {
    const url = new URL(u);
    return `${url.protocol}//${url.host}${url.pathname}`;
  } catch {
    return '(unparseable URL)';
  }
}

/** Every http(s) URL in a text (an error message may quote one) passed through redactUrl. */
export function redactUrlsIn(text: string): string {
  return text.replace(/\bhttps?:\/\/[^\s"'<>`]+/gi, (m) => redactUrl(m));
}

/** Closed set of `outcome` label values for the fetch metric. */
export type FetchOutcome = 'success' | 'http_error' | 'network_error' | 'timeout' | 'invalid' | 'discovery_error';

export class FetchError extends Error {
  constructor(readonly outcome: FetchOutcome, message: string) {
    super(message);
  }
}

/** Wait for `p`, but no longer than `ms` nor past `signal`. Never rejects. */
export async function boundedWait(p: Promise<unknown>, signal: AbortSignal | undefined, ms: number): Promise<void> {
  if (signal?.aborted) return;
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    await Promise.race([
      p.then(
        () => undefined,
        () => undefined,
      ),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timerDelay(ms));
        timer.unref?.();
        if (signal) {
          onAbort = () => resolve();
          signal.addEventListener('abort', onAbort, { once: true });
        }
      }),
    ]);
  } finally {
    if (timer) clearTimeout(timer);
    if (signal && onAbort) signal.removeEventListener('abort', onAbort);
  }
}

/** Cache-Control max-age in ms (undefined when absent); `no-store`/`no-cache` count as 0. */
export function cacheControlMaxAgeMs(header: string | null): number | undefined {
  if (!header) return undefined;
  const h = header.toLowerCase();
  if (/(?:^|,)\s*(?:no-store|no-cache)\s*(?:,|$)/.test(h)) return 0;
  const m = /(?:^|,)\s*(?:s-maxage|max-age)\s*=\s*"?(\d+)"?/.exec(h);
  return m ? Number(m[1]) * 1000 : undefined;
}

/**
 * GET a JSON document (a JWKS or an OIDC discovery document): bounded by `timeoutMs`, body
 * streamed with a byte cap, redirects followed. Throws a FetchError whose message never
 * holds the URL's credentials.
 */
export async function fetchJsonDocument(runtime: Runtime, url: string, timeoutMs: number, maxBytes: number): Promise<{ body: unknown; maxAgeMs: number | undefined }> {
  let res: Response;
  try {
    res = await runtime.fetch(url, {
      method: 'GET',
      headers: { accept: 'application/json' },
      redirect: 'follow',
      signal: AbortSignal.timeout(timerDelay(timeoutMs)),
    });
  } catch (e) {
    throw requestFailure(e, timeoutMs);
  }
  if (!res.ok) {
    void res.body?.cancel().catch(() => undefined);
    throw new FetchError('http_error', `HTTP ${res.status}`);
  }
  let text: string;
  try {
    // Streamed with a byte cap: an oversized document is never buffered whole.
    text = await readCapped(res, maxBytes);
  } catch (e) {
    if (e instanceof BodyTooLargeError) throw new FetchError('invalid', `document larger than ${maxBytes} bytes`);
    const name = (e as { name?: string })?.name;
    throw new FetchError(name === 'TimeoutError' || name === 'AbortError' ? 'timeout' : 'network_error', 'body read failed');
  }
  return { body: parseDocument(text), maxAgeMs: cacheControlMaxAgeMs(res.headers.get('cache-control')) };
}

/** A request that got no answer: timed out or aborted, else a network error (never the URL's credentials). */
function requestFailure(e: unknown, timeoutMs: number): FetchError {
  const name = (e as { name?: string })?.name;
  if (name === 'TimeoutError' || name === 'AbortError') return new FetchError('timeout', `no answer within ${timeoutMs}ms`);
  const cause = (e as { cause?: { code?: string } })?.cause?.code;
  // The message may quote the URL (e.g. "...a URL that includes credentials: <url>").
  return new FetchError('network_error', cause ?? sanitizeRemoteText(redactUrlsIn((e as Error)?.message ?? String(e)), 120));
}

function parseDocument(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new FetchError('invalid', 'not JSON');
  }
}

/** How a remote key source GETs a JSON document (fetchJsonDocument by default). */
export type DocumentFetcher = (url: string, timeoutMs: number, maxBytes: number) => Promise<{ body: unknown; maxAgeMs: number | undefined }>;

/** The answer of a capped GET (net/http-post.ts HttpPostClient.get). */
export type CappedGet = (url: string, o: { headers: Record<string, string>; timeoutMs: number; maxBytes: number }) => Promise<{ status: number; text: string }>;

/**
 * A DocumentFetcher on another client's capped GET (one with its own trusted CA, say): the same
 * outcomes (FetchError) as fetchJsonDocument. It follows no redirect and reads no Cache-Control,
 * so the source refreshes on its own schedule.
 */
export function documentFetcherOn(get: CappedGet): DocumentFetcher {
  return async (url, timeoutMs, maxBytes) => {
    let r: { status: number; text: string };
    try {
      r = await get(url, { headers: { accept: 'application/json' }, timeoutMs, maxBytes });
    } catch (e) {
      if (e instanceof BodyTooLargeError) throw new FetchError('invalid', `document larger than ${maxBytes} bytes`);
      throw requestFailure(e, timeoutMs);
    }
    if (r.status < 200 || r.status >= 300) throw new FetchError('http_error', `HTTP ${r.status}`);
    return { body: parseDocument(r.text), maxAgeMs: undefined };
  };
}

/** OpenID Connect Discovery 1.0 §4: `<issuer>/.well-known/openid-configuration`. */
export function discoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
}
