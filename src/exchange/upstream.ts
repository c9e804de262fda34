/**
 * What the upstream gets once a TokenExchangePolicy applies (`spec.upstream`): its compile and
 * the rewrite. Upstream gets only the exchanged token, in `header` (default Authorization,
 * `Bearer ` prefix) set with overwrite; every location authn looked for a user token, the
 * admitted identities' locations, the client-sent actor headers and `removeHeaders` are
 * removed. Forwarding the actor token (for a backend that performs the exchange itself) is an
 * opt-in, contrary to MCP's "no token passthrough" rule.
 */
import type { ValidationContext } from '../config/schema.js';
import { bool, obj, str } from '../config/schema.js';
import { removeCookie } from '../core/context.js';
import { isValidHeaderValue } from '../core/headers.js';
import type { Identity } from '../core/identity.js';
import type { CheckState } from '../core/state.js';
import type { CachedToken } from './cache.js';
import { headerNameOk, strs } from './compile-helpers.js';

export interface RawUpstream {
  header?: string;
  prefix?: string;
  forwardActorToken?: boolean;
  actorHeader?: string;
  removeHeaders?: string[];
}

export const upstreamSchema = obj<RawUpstream>({
  header: str({ nonEmpty: true }),
  prefix: str(),
  forwardActorToken: bool(),
  actorHeader: str({ nonEmpty: true }),
  removeHeaders: strs,
});

/**
 * The header value for a cached token (prefix + token), checked once per cache entry instead
 * of on every hit. Owned by one compiled policy, whose prefix is constant; entries go with
 * the cached tokens (WeakMap).
 */
export class UpstreamValues {
  private readonly memo = new WeakMap<CachedToken, string | null>();
  constructor(private readonly prefix: string) {}

  /** undefined when prefix + token is not a valid header value. */
  of(t: CachedToken): string | undefined {
    let v = this.memo.get(t);
    if (v === undefined) {
      const value = this.prefix + t.accessToken;
      v = isValidHeaderValue(value) ? value : null;
      this.memo.set(t, v);
    }
    return v ?? undefined;
  }
}

export interface CompiledUpstream {
  readonly header: string;
  readonly prefix: string;
  readonly forwardActorToken: boolean;
  readonly actorHeader: string;
  readonly removeHeaders: readonly string[];
  /**
   * Precomputed: the headers always removed when the actor token is not
   * forwarded — the actor headers (`actorHeader`, `x-actor-token`, the actor source
   * header), then `removeHeaders` — deduplicated in that order, never the output header.
   */
  readonly strip: readonly string[];
  /** With `forwardActorToken`: the actor headers other than `actorHeader` (removed before it is set). */
  readonly stripForwarding: readonly string[];
  readonly values: UpstreamValues;
}

/**
 * `spec.upstream` of a policy in `mode` whose actor token comes from `actorSourceHeader` (when
 * it comes from a header); issues reported on `v`.
 */
export function compileUpstream(u: RawUpstream = {}, mode: 'Impersonation' | 'Delegation', actorSourceHeader: string | undefined, v: ValidationContext): CompiledUpstream {
  const header = (u.header ?? 'authorization').toLowerCase();
  headerNameOk(v, ['spec', 'upstream', 'header'], header);
  const prefix = u.prefix ?? (header === 'authorization' ? 'Bearer ' : '');
  if (/[\r\n\0]/.test(prefix)) v.error(['spec', 'upstream', 'prefix'], 'must not contain CR, LF or NUL');
  const actorHeader = (u.actorHeader ?? 'x-actor-token').toLowerCase();
  headerNameOk(v, ['spec', 'upstream', 'actorHeader'], actorHeader);
  if (u.forwardActorToken) {
    if (mode !== 'Delegation') v.error(['spec', 'upstream', 'forwardActorToken'], 'only meaningful with mode Delegation');
    v.warn(['spec', 'upstream', 'forwardActorToken'], 'forwards a credential upstream, contrary to the MCP "no token passthrough" rule; only for backends that perform the exchange themselves');
    if (actorHeader === header) v.error(['spec', 'upstream', 'actorHeader'], 'must differ from upstream.header');
  }
  const removeHeaders: string[] = [];
  (u.removeHeaders ?? []).forEach((h, i) => {
    const lh = h.toLowerCase();
    if (headerNameOk(v, ['spec', 'upstream', 'removeHeaders', i], lh)) {
      if (lh === header) v.error(['spec', 'upstream', 'removeHeaders', i], 'must not list the output header (it is set with overwrite)');
      removeHeaders.push(lh);
    }
  });
  // Header lists that do not depend on the request (applyUpstream).
  const actorHeaders = [...new Set([actorHeader, 'x-actor-token', ...(actorSourceHeader ? [actorSourceHeader] : [])])];
  const strip = [...new Set([...actorHeaders, ...removeHeaders])].filter((h) => h !== header);
  const stripForwarding = actorHeaders.filter((h) => h !== actorHeader && h !== header);
  return {
    header,
    prefix,
    forwardActorToken: u.forwardActorToken === true,
    actorHeader,
    removeHeaders,
    strip,
    stripForwarding,
    values: new UpstreamValues(prefix),
  };
}

/** Where the admitted identities' and the rules' tokens were found on this request. */
interface Found {
  readonly headers: string[];
  params: Set<string> | null;
  cookies: Set<string> | null;
}

/** `header:<name>` label -> the lower-case header name (labels come from config: a bounded memo). */
const headerOfLabel = new Map<string, string>();

function addLocation(f: Found, loc: string | undefined): void {
  if (!loc) return;
  if (loc.startsWith('header:')) {
    let h = headerOfLabel.get(loc);
    if (h === undefined) {
      h = loc.slice(7).toLowerCase();
      if (headerOfLabel.size >= 1024) headerOfLabel.clear();
      headerOfLabel.set(loc, h);
    }
    f.headers.push(h);
  } else if (loc.startsWith('query:') || loc.startsWith('param:')) (f.params ??= new Set()).add(loc.slice(6));
  else if (loc.startsWith('cookie:')) (f.cookies ??= new Set()).add(loc.slice(7));
}

/** Remove header `h` upstream (set or sent), unless it is the output header. */
function removeHeader(up: CheckState['upstream'], out: string, h: string): void {
  if (h === out) return;
  up.set.delete(h);
  up.removeHeader(h);
}

/**
 * Upstream gets only the exchanged token: the location of every admitted
 * identity and every header / query parameter / cookie token location of every jwtRule that
 * applies to the workload is removed (a second user token at another rule's location must
 * not travel next to the exchanged one), as are client-sent actor/identity headers. The
 * output header itself is never removed.
 */
export function applyUpstream(state: CheckState, u: CompiledUpstream, subject: Identity, actor: Identity | null, value: string): void {
  const up = state.upstream;
  const ctx = state.ctx;
  const out = u.header;
  // Usually one header location (Authorization): plain arrays, sets only when needed.
  const f: Found = { headers: [], params: null, cookies: null };
  addLocation(f, subject.location);
  const ids = state.identities;
  for (let i = 0; i < ids.length; i++) if (ids[i] !== subject) addLocation(f, ids[i]!.location);
  // Every place authn looked for a user token on this request (state.tokenLocations).
  const locs = state.tokenLocations;
  for (let i = 0; i < locs.length; i++) {
    const l = locs[i]!;
    if (l.kind === 'header') {
      const h = l.name.toLowerCase();
      if (ctx.header(h) !== undefined || up.set.has(h)) f.headers.push(h);
    } else if (l.kind === 'param') {
      // No query string, no parameter (and no parse of it).
      if (ctx.query !== '' && ctx.queryParams.has(l.name)) (f.params ??= new Set()).add(l.name);
    } else if (ctx.cookie(l.name) !== undefined) {
      (f.cookies ??= new Set()).add(l.name);
    }
  }
  const { headers, params, cookies } = f;
  for (let i = 0; i < headers.length; i++) removeHeader(up, out, headers[i]!);
  // Removed by every name the client wrote them with (`access%5Ftoken` is `access_token`).
  if (params) for (const q of params) up.removeQueryParam(q, ctx.queryParamNamesAsSent(q));
  if (cookies && out !== 'cookie') {
    // Drop just those cookies (other cookies stay), as authn does without forwardOriginalToken.
    const before = up.set.get('cookie') ?? ctx.header('cookie') ?? '';
    let cookie = before;
    for (const n of cookies) cookie = removeCookie(cookie, n);
    if (cookie) {
      if (cookie !== before) up.setHeader('cookie', cookie);
    } else if (before) {
      removeHeader(up, out, 'cookie');
    }
  }
  // The actor headers and removeHeaders are precomputed per policy (compileUpstream).
  if (u.forwardActorToken && actor?.token) {
    // Opt-in, contrary to MCP's "no token passthrough": for backends that exchange themselves.
    for (const h of u.stripForwarding) removeHeader(up, out, h);
    if (isValidHeaderValue(actor.token)) up.setHeader(u.actorHeader, actor.token);
    for (const h of u.removeHeaders) removeHeader(up, out, h);
  } else {
    const strip = u.strip;
    for (let i = 0; i < strip.length; i++) removeHeader(up, out, strip[i]!);
  }
  up.setHeader(out, value);
}
