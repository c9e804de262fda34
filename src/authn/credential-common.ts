/**
 * Pieces shared by the non-JWT credential validators: where a credential is read from,
 * constant-time digest comparison, the 401 answers (fixed bodies, `www-authenticate`
 * per scheme) and the uniform Identity shape, plus claim forwarding to upstream headers.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Path } from '../config/issues.js';
import type { KindDocument } from '../config/kinds.js';
import { duration, list, obj, str } from '../config/schema.js';
import type { CredentialKind, Identity } from '../core/identity.js';
import { deny, type CheckState, type Deny } from '../core/state.js';
import type { ReasonCode } from '../core/reasons.js';
import { claimHeaderValue } from './claims.js';
import { isJwtShaped } from '../jwt/jwt-format.js';
import { MAX_RELOAD_INTERVAL_MS } from '../kubernetes/mounted-file.js';

/** Fixed deny bodies: never the credential, never request data. */
export interface CredentialLocation {
  /** Lower-case header name. */
  readonly name: string;
  /** Scheme prefix such as `Bearer ` (compared case-insensitively, RFC 9110 §11.1); '' = whole value. */
  readonly prefix: string;
  /** `header:<name>` (Identity.location; the exchange stage removes it upstream). */
  readonly label: string;
}

export const BEARER_LOCATION: CredentialLocation = Object.freeze({ name: 'authorization', prefix: 'Bearer ', label: 'header:authorization' });

export interface RawHeaderLocation {
  name?: string;
  prefix?: string;
}

const HEADER_NAME = /^[-_A-Za-z0-9]+$/;
/** A header name as the validator kinds take it. */
export const headerName = () => str({ nonEmpty: true, pattern: HEADER_NAME, patternHint: 'must be a header name ([-_A-Za-z0-9]+)' });
/** `fromHeaders`: where a validator reads its credential (default `Authorization: Bearer`). */
export const locationsSchema = list(obj<RawHeaderLocation>({ name: headerName(), prefix: str() }, { required: ['name'] }), { minItems: 1 });
/** How often a credential file is re-checked. */
export const reloadIntervalSchema = () => duration({ minMs: 100, maxMs: MAX_RELOAD_INTERVAL_MS });

/** A header listed twice in `fromHeaders` is an error at its second place. */
export function checkLocations(k: KindDocument, base: Path, raw: readonly RawHeaderLocation[] | undefined): void {
  const seen = new Set<string>();
  (raw ?? []).forEach((h, i) => {
    const n = (h.name ?? '').toLowerCase();
    if (seen.has(n)) k.v.error([...base, 'fromHeaders', i, 'name'], `header ${JSON.stringify(h.name)} is listed twice`);
    seen.add(n);
  });
}

export function toLocations(raw: readonly RawHeaderLocation[] | undefined): readonly CredentialLocation[] {
  if (!raw || raw.length === 0) return Object.freeze([BEARER_LOCATION]);
  return Object.freeze(
    raw.map((h) => {
      const name = (h.name ?? '').toLowerCase();
      return Object.freeze({ name, prefix: h.prefix ?? (name === 'authorization' ? 'Bearer ' : ''), label: `header:${name}` });
    }),
  );
}

/** The `Authorization: Bearer` location, where JWTs and other bearer values meet. */
export function isSharedBearer(l: CredentialLocation): boolean {
  return l.name === 'authorization' && l.prefix.trim().toLowerCase() === 'bearer';
}

export interface FoundCredential {
  readonly value: string;
  readonly location: CredentialLocation;
}

/**
 * The first credential at the locations whose shape this validator owns. `want`: 'opaque'
 * takes only non-JWT-shaped values at the shared bearer location (JWT-shaped ones belong
 * to the jwtRules); 'jwt' takes only JWT-shaped values; elsewhere 'opaque' takes anything.
 */
export function findCredential(state: CheckState, locations: readonly CredentialLocation[], want: 'opaque' | 'jwt'): FoundCredential | null {
  for (const l of locations) {
    const raw = state.ctx.header(l.name);
    if (raw === undefined) continue;
    let v = raw.trim();
    if (l.prefix) {
      // `Bearer ` = the scheme, case-insensitive, then whitespace; a prefix without a
      // trailing space (`Token:`) is matched as is, case-insensitively.
      const p = l.prefix.trimEnd();
      if (v.slice(0, p.length).toLowerCase() !== p.toLowerCase()) continue;
      const rest = v.slice(p.length);
      if (p.length !== l.prefix.length && !/^\s/.test(rest)) continue;
      v = rest.trim();
    }
    if (v === '') continue;
    if (want === 'jwt' && !isJwtShaped(v)) continue;
    if (want === 'opaque' && isSharedBearer(l) && isJwtShaped(v)) continue;
    return { value: v, location: l };
  }
  return null;
}

export function sha256Bytes(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/**
 * Index of the digest in `digests` equal to `d`, or -1. Every entry is compared with
 * timingSafeEqual and the loop never exits early, so timing reveals nothing about which
 * (or whether any) entry matched.
 */
export function constantTimeFind(digests: readonly Buffer[], d: Buffer): number {
  let hit = -1;
  for (let i = 0; i < digests.length; i++) {
    const eq = timingSafeEqual(digests[i]!, d);
    hit = eq && hit < 0 ? i : hit;
  }
  return hit;
}

/** RFC 9110 quoted-string content. */
function quote(s: string): string {
  return s.replace(/[\\"]/g, (m) => `\\${m}`).replace(/[\r\n\0]/g, '');
}

/** Realm as for JWT denies: `<scheme>://<host><path>` without the query. */
export function realmOf(state: CheckState): string {
  const c = state.ctx;
  return quote(`${c.scheme}://${c.host}${c.path}`);
}

/**
 * The challenge for a credential location: `Bearer realm=...` at `Authorization`, else
 * `APIKey realm=..., header="<name>"` (no registered scheme exists for a custom header).
 */
export function challengeFor(state: CheckState, l: CredentialLocation, invalid: boolean): string {
  const err = invalid ? ', error="invalid_token"' : '';
  if (l.name === 'authorization') return `${l.prefix.trim() || 'Bearer'} realm="${realmOf(state)}"${err}`;
  return `APIKey realm="${realmOf(state)}", header="${quote(l.name)}"${err}`;
}

/** A 401 for a presented credential (invalid or expired); `ref` is the validator. */
export function credentialDeny(
  state: CheckState,
  reason: Extract<ReasonCode, 'ERR_INVALID_CREDENTIAL' | 'ERR_CREDENTIAL_EXPIRED'>,
  message: string,
  l: CredentialLocation,
  ref: string,
): Deny {
  return deny(reason, message, { status: 401, headers: [['www-authenticate', challengeFor(state, l, true)]], policy: ref });
}

export function makeIdentity(o: {
  kind: CredentialKind;
  issuer: string;
  subject: string;
  claims: Record<string, unknown>;
  admittedBy: string;
  audiences?: readonly string[];
  token?: string;
  location?: string;
  expiresAt?: number;
}): Identity {
  const claims = { ...o.claims, iss: o.issuer, sub: o.subject };
  return Object.freeze({
    kind: o.kind,
    principal: `${o.issuer}/${o.subject}`,
    issuer: o.issuer,
    subject: o.subject,
    audiences: Object.freeze([...(o.audiences ?? [])]),
    presenter: '',
    claims: Object.freeze(claims),
    ...(o.token !== undefined ? { token: o.token } : {}),
    ...(o.location !== undefined ? { location: o.location } : {}),
    ...(o.expiresAt !== undefined ? { expiresAt: o.expiresAt } : {}),
    admittedBy: o.admittedBy,
  });
}

/** `forwardClaims`: admitted claims as upstream headers; inbound copies always removed. */
export interface ClaimForwarding {
  readonly prefix: string;
  readonly claims: readonly { readonly claim: string; readonly header: string }[];
}

export const DEFAULT_CLAIM_PREFIX = 'x-authz-claim-';

/** `kubernetes.io.namespace` -> `kubernetes-io-namespace` (header-safe, lower case). */
export function claimHeaderName(prefix: string, claim: string): string {
  return `${prefix}${claim.toLowerCase().replace(/[^-a-z0-9_]+/g, '-')}`;
}

/** Remove every inbound header with the prefix or a configured name (a client must not forge them). */
export function sanitizeClaimHeaders(state: CheckState, f: ClaimForwarding | null): void {
  if (!f) return;
  for (const name of state.ctx.headers.keys()) if (name.startsWith(f.prefix)) state.upstream.removeHeader(name);
  for (const c of f.claims) state.upstream.removeHeader(c.header);
}

/**
 * Look a claim up as a `.` path where claim names may themselves contain dots:
 * `kubernetes.io.namespace` finds `{"kubernetes.io": {"namespace": ...}}` (the whole name
 * first, then every split point, left to right).
 */
export function lookupClaim(claims: Readonly<Record<string, unknown>>, name: string, depth = 0): unknown {
  if (Object.prototype.hasOwnProperty.call(claims, name)) return claims[name];
  if (depth > 8) return undefined;
  for (let i = name.indexOf('.'); i > 0; i = name.indexOf('.', i + 1)) {
    const head = name.slice(0, i);
    if (!Object.prototype.hasOwnProperty.call(claims, head)) continue;
    const v = claims[head];
    if (v === null || typeof v !== 'object' || Array.isArray(v)) continue;
    const r = lookupClaim(v as Record<string, unknown>, name.slice(i + 1), depth + 1);
    if (r !== undefined) return r;
  }
  return undefined;
}

/**
 * Header value for a forwarded claim: strings as is, lists of strings joined by `,`,
 * numbers and booleans as text, other objects as base64 of their JSON (as Envoy does).
 */
export function forwardedValue(v: unknown): string | undefined {
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.length ? v.join(',') : undefined;
  return claimHeaderValue(v);
}

export function applyClaimHeaders(state: CheckState, f: ClaimForwarding | null, id: Identity): void {
  if (!f) return;
  for (const c of f.claims) {
    const v = forwardedValue(lookupClaim(id.claims, c.claim));
    if (v !== undefined) state.upstream.setHeader(c.header, v);
  }
}
