/**
 * A final Decision -> the HTTP answer each proxy convention understands. Nothing is decided
 * here: the pipeline already turned what a transport cannot carry into a deny (see
 * `httpLimits`); this only formats, and maps deny statuses a proxy would misread.
 *   envoy    allow = exactly 200 (any other 2xx is a deny for Envoy); upstream headers are
 *            answer headers (Envoy copies those in `allowed_upstream_headers`), removals go in
 *            `x-envoy-auth-headers-to-remove`; deny = status, headers and body to the client.
 *   nginx    2xx allows; only 401 and 403 reach the client (others become 500), without our
 *            body (the subrequest is header-only); 401 carries WWW-Authenticate.
 *   traefik  2xx allows; any other answer (status, headers, body) goes to the client as is.
 * nginx and Traefik replace each header they take from the answer (absent = removed), so for
 * `managedHeaders` the answer states the final upstream value: the set one, the inbound one
 * when the pipeline left it alone, nothing when it removed it.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Decision } from '../core/decision.js';
import { isValidHeaderValue } from '../core/headers.js';
import type { UpstreamMutations } from '../core/state.js';
import type { HttpAuthzSettings, HttpConvention } from '../config/http-authz-settings.js';

export const REASON_HEADER = 'x-obo-authz-reason';
/** Envoy reads this answer header (comma-separated names) on a 200 as headers_to_remove. */
export const ENVOY_HEADERS_TO_REMOVE = 'x-envoy-auth-headers-to-remove';

export interface HttpAnswer {
  readonly status: number;
  /** Flat [name, value, name, value, ...] (names may repeat). */
  readonly headers: string[];
  readonly body: string;
}

/**
 * What an allow needs that no HTTP convention can carry: a query rewrite (the answer has no
 * way to change the request target) or a pseudo-header. Used as the pipeline's `unsupported`.
 */
export function httpLimits(up: UpstreamMutations): string | null {
  const q = up.queryRemovals();
  if (q) return `the HTTP answer cannot remove query parameter ${q.map((n) => JSON.stringify(n)).join(', ')} from the upstream request`;
  for (const k of up.set.keys()) if (k.charCodeAt(0) === 58) return `the HTTP answer cannot set pseudo-header ${k}`;
  return null;
}

/** The status a proxy passes on as a deny (see the table at the top). */
export function denyStatus(convention: HttpConvention | null, status: number): number {
  // A 2xx would be an allow for every convention (Envoy: 200), a 1xx no answer at all.
  if (status < 300) return 403;
  if (convention === 'nginx') {
    if (status === 401 || status === 403 || status >= 500) return status;
    return 403; // nginx turns any other status into 500; a refusal stays a refusal
  }
  return status;
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v;
}

const TEXT = 'text/plain; charset=utf-8';

export function answerFor(
  convention: HttpConvention | null,
  d: Decision,
  inbound: IncomingHttpHeaders,
  s: HttpAuthzSettings,
  reasonHeader: boolean,
): HttpAnswer {
  if (!d.allow) {
    const headers: string[] = [];
    let typed = false;
    for (const [k, v] of d.denyHeaders) {
      if (!isValidHeaderValue(v)) continue;
      headers.push(k, v);
      if (k === 'content-type') typed = true;
    }
    if (!typed) headers.push('content-type', TEXT);
    if (reasonHeader) headers.push(REASON_HEADER, d.reason);
    return { status: denyStatus(convention, d.httpStatus), headers, body: d.body };
  }
  const up = d.upstream;
  const headers: string[] = [];
  for (const [k, v] of up.set) headers.push(k, v);
  if (convention === 'envoy') {
    let remove = '';
    for (const k of up.remove) if (!up.set.has(k)) remove += remove ? `,${k}` : k;
    if (remove) headers.push(ENVOY_HEADERS_TO_REMOVE, remove);
  } else {
    for (const h of s.managedHeaders) {
      if (up.set.has(h) || up.remove.has(h)) continue;
      const v = one(inbound[h]);
      if (v !== undefined && isValidHeaderValue(v)) headers.push(h, v);
    }
  }
  // Headers for the downstream response on allow (Envoy allowed_client_headers_on_success).
  for (const [k, v] of up.responseHeaders()) if (!up.set.has(k) && isValidHeaderValue(v)) headers.push(k, v);
  return { status: 200, headers, body: '' };
}
