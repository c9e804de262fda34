/**
 * The small composable matcher objects a compiled AuthorizationPolicy rule is made of.
 *
 * A rule is (any `from` source) AND (any `to` operation) AND (every `when` condition);
 * a source or operation is the AND of its fields; a field is the OR of its values, and a
 * `notX` field is NOT(OR of its values) (Istio model.go / Envoy RBAC). A missing attribute
 * fails a positive field and therefore satisfies its `not` twin.
 *
 * Each Field tests one attribute of the request through a per-Check view (`RequestView`)
 * that parses IPs and derives values (lower-cased host, trust domain) lazily, once per
 * Check, into preallocated slots: evaluation allocates nothing on the common paths.
 */
import type { RequestContext } from '../core/context.js';
import type { Identity } from '../core/identity.js';
import { isSecretHeader } from '../observability/redact.js';
import { cidrContains, parseIp, type Cidr } from '../match/ip.js';
import { Kind, PathSet, StringMatch, StringSet } from '../match/strings.js';

const SPIFFE = 'spiffe://';

class IpSlot {
  /** -1 = not parsed yet, 0 = absent/invalid, 4 or 6. */
  version: -1 | 0 | 4 | 6 = -1;
  readonly words = new Uint32Array(4);
}

/** Per-Check view of the request. One instance is reused (evaluation is synchronous). */
export class RequestView {
  ctx!: RequestContext;
  identity: Identity | null = null;
  private hostLower: string | null = null;
  private trustDomain: string | null = null;
  private readonly src = new IpSlot();
  private readonly remote = new IpSlot();
  private readonly dst = new IpSlot();

  reset(ctx: RequestContext, identity: Identity | null): this {
    this.ctx = ctx;
    this.identity = identity;
    this.hostLower = null;
    this.trustDomain = null;
    this.src.version = -1;
    this.remote.version = -1;
    this.dst.version = -1;
    return this;
  }

  host(): string | undefined {
    const h = this.ctx.host;
    if (h === '') return undefined;
    return (this.hostLower ??= h.toLowerCase());
  }

  /** Peer principal (URI SAN) or undefined when the connection carried none. */
  principal(): string | undefined {
    const p = this.ctx.source.principal;
    return p === '' ? undefined : p;
  }

  /** Trust domain of a `spiffe://<td>/...` peer principal. */
  peerTrustDomain(): string | undefined {
    if (this.trustDomain !== null) return this.trustDomain === '' ? undefined : this.trustDomain;
    const p = this.ctx.source.principal;
    let td = '';
    if (p.startsWith(SPIFFE)) {
      const end = p.indexOf('/', SPIFFE.length);
      td = end < 0 ? p.slice(SPIFFE.length) : p.slice(SPIFFE.length, end);
    }
    this.trustDomain = td;
    return td === '' ? undefined : td;
  }

  ip(which: IpWhich): IpSlot {
    const slot = which === 'source' ? this.src : which === 'remote' ? this.remote : this.dst;
    if (slot.version === -1) {
      const text = which === 'source' ? this.ctx.source.ip : which === 'remote' ? this.ctx.remoteIp : this.ctx.destination.ip;
      slot.version = parseIp(text, slot.words);
    }
    return slot;
  }
}

export type IpWhich = 'source' | 'remote' | 'destination';

/** One field of a source/operation, or one side (values / notValues) of a condition. */
export interface Field {
  /** Path-like label for --explain, e.g. `from[0].source.notPrincipals`. */
  readonly label: string;
  readonly negate: boolean;
  /** The values as written. */
  readonly values: readonly string[];
  /** Positive test: does the attribute match any value? (negation applied by the caller) */
  test(r: RequestView): boolean;
  /** The request's value, for --explain only (secret headers redacted). */
  actual(r: RequestView): string;
}

export function fieldPasses(f: Field, r: RequestView): boolean {
  return f.negate ? !f.test(r) : f.test(r);
}

const ABSENT = '(absent)';
const q = (s: string | undefined): string => (s === undefined ? ABSENT : JSON.stringify(s));

abstract class BaseField implements Field {
  constructor(
    readonly label: string,
    readonly negate: boolean,
    readonly values: readonly string[],
  ) {}
  abstract test(r: RequestView): boolean;
  abstract actual(r: RequestView): string;
}

export type StringAttr = 'host' | 'method' | 'principal' | 'presenter' | 'sni' | 'trustDomain';

function stringAttr(attr: StringAttr, r: RequestView): string | undefined {
  switch (attr) {
    case 'host':
      return r.host();
    case 'method': {
      const m = r.ctx.method;
      return m === '' ? undefined : m;
    }
    case 'principal':
      return r.principal();
    case 'presenter': {
      const p = r.identity?.presenter;
      return p ? p : undefined;
    }
    case 'sni': {
      const s = r.ctx.sni;
      return s === '' ? undefined : s;
    }
    case 'trustDomain':
      return r.peerTrustDomain();
  }
}

/** hosts, methods, principals, request.auth.presenter, connection.sni, trust domains. */
export class StringField extends BaseField {
  constructor(label: string, negate: boolean, values: readonly string[], private readonly attr: StringAttr, private readonly set: StringSet) {
    super(label, negate, values);
  }
  test(r: RequestView): boolean {
    return this.set.test(stringAttr(this.attr, r));
  }
  actual(r: RequestView): string {
    if (this.attr === 'presenter' && r.identity === null) return '(anonymous)';
    return q(stringAttr(this.attr, r));
  }
}

export class PathField extends BaseField {
  constructor(label: string, negate: boolean, values: readonly string[], private readonly set: PathSet) {
    super(label, negate, values);
  }
  test(r: RequestView): boolean {
    const p = r.ctx.path;
    return this.set.test(p === '' ? undefined : p);
  }
  actual(r: RequestView): string {
    return q(r.ctx.path || undefined);
  }
}

/** `request.headers[name]`: Envoy HeaderMatcher on the (comma-joined) header value. */
export class HeaderField extends BaseField {
  constructor(label: string, negate: boolean, values: readonly string[], private readonly name: string, private readonly set: StringSet) {
    super(label, negate, values);
  }
  test(r: RequestView): boolean {
    return this.set.test(r.ctx.header(this.name));
  }
  actual(r: RequestView): string {
    const v = r.ctx.header(this.name);
    if (v !== undefined && isSecretHeader(this.name)) return '(present, value redacted)';
    return q(v);
  }
}

/**
 * `request.experimental.inline.headers[name]`: like request.headers, but a value matches any
 * one element of a comma-separated header (Istio HeaderMatcherWithRegex; elements are not trimmed).
 */
export class InlineHeaderField extends BaseField {
  constructor(label: string, negate: boolean, values: readonly string[], private readonly name: string, private readonly set: StringSet) {
    super(label, negate, values);
  }
  test(r: RequestView): boolean {
    const v = r.ctx.header(this.name);
    if (v === undefined) return false;
    if (this.set.hasPresent) return true;
    let start = 0;
    for (;;) {
      const comma = v.indexOf(',', start);
      const end = comma < 0 ? v.length : comma;
      if (this.set.testRange(v, start, end)) return true;
      if (comma < 0) return false;
      start = comma + 1;
    }
  }
  actual(r: RequestView): string {
    const v = r.ctx.header(this.name);
    if (v !== undefined && isSecretHeader(this.name)) return '(present, value redacted)';
    return q(v);
  }
}

export class IpField extends BaseField {
  constructor(label: string, negate: boolean, values: readonly string[], private readonly which: IpWhich, private readonly cidrs: readonly Cidr[]) {
    super(label, negate, values);
  }
  test(r: RequestView): boolean {
    const slot = r.ip(this.which);
    if (slot.version === 0 || slot.version === -1) return false;
    const v = slot.version;
    const cs = this.cidrs;
    for (let i = 0; i < cs.length; i++) if (cidrContains(cs[i]!, v, slot.words)) return true;
    return false;
  }
  actual(r: RequestView): string {
    const text = this.which === 'source' ? r.ctx.source.ip : this.which === 'remote' ? r.ctx.remoteIp : r.ctx.destination.ip;
    return q(text || undefined);
  }
}

export class PortField extends BaseField {
  constructor(label: string, negate: boolean, values: readonly string[], private readonly ports: ReadonlySet<number>) {
    super(label, negate, values);
  }
  test(r: RequestView): boolean {
    const p = r.ctx.destination.port;
    return p > 0 && this.ports.has(p);
  }
  actual(r: RequestView): string {
    const p = r.ctx.destination.port;
    return p > 0 ? String(p) : ABSENT;
  }
}

/**
 * `namespaces` / `source.namespace`: Istio matches the regex `.*\/ns\/<ns>\/.*` (with `*`
 * in the value turned into `.*`) against the peer principal. Exact values need only a
 * substring search; wildcard values use one regex compiled at load.
 */
export class NamespaceField extends BaseField {
  private readonly needles: readonly string[];
  private readonly re: RegExp | null;
  constructor(label: string, negate: boolean, values: readonly string[]) {
    super(label, negate, values);
    this.needles = values.filter((v) => !v.includes('*')).map((v) => `/ns/${v}/`);
    const wild = values.filter((v) => v.includes('*'));
    this.re = wild.length
      ? new RegExp(`^.*/ns/(?:${wild.map((v) => v.split('*').map(escapeRegex).join('.*')).join('|')})/.*$`, 's')
      : null;
  }
  test(r: RequestView): boolean {
    const p = r.principal();
    if (p === undefined) return false;
    const n = this.needles;
    for (let i = 0; i < n.length; i++) if (p.includes(n[i]!)) return true;
    return this.re !== null && this.re.test(p);
  }
  actual(r: RequestView): string {
    return `principal ${q(r.principal())}`;
  }
}

/**
 * `serviceAccounts` / `source.serviceAccount`: `ns/sa`, or `sa` in the policy's namespace,
 * matched like Istio's serviceAccountRegex: `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?`.
 */
export class ServiceAccountField extends BaseField {
  private readonly re: RegExp;
  constructor(label: string, negate: boolean, values: readonly string[], policyNamespace: string) {
    super(label, negate, values);
    const alts = values.map((v) => {
      const slash = v.indexOf('/');
      const ns = slash < 0 ? policyNamespace : v.slice(0, slash);
      const sa = slash < 0 ? v : v.slice(slash + 1);
      return `${escapeRegex(ns)}/(?:.+/|)sa/${escapeRegex(sa)}`;
    });
    this.re = new RegExp(`^spiffe://.+/ns/(?:${alts.join('|')})(?:/.+)?$`, 's');
  }
  test(r: RequestView): boolean {
    const p = r.principal();
    return p !== undefined && this.re.test(p);
  }
  actual(r: RequestView): string {
    return `principal ${q(r.principal())}`;
  }
}

/**
 * `requestPrincipals` / `request.auth.principal`: each value is split at its LAST '/' into
 * issuer and subject parts matched separately against `iss` and `sub` (Istio
 * requestPrincipalGenerator).
 */
export class RequestPrincipalField extends BaseField {
  private readonly pairs: readonly { iss: StringSet; sub: StringSet }[];
  constructor(label: string, negate: boolean, values: readonly string[]) {
    super(label, negate, values);
    this.pairs = values.map(splitRequestPrincipal);
  }
  test(r: RequestView): boolean {
    const id = r.identity;
    if (id === null) return false;
    const iss = id.issuer === '' ? undefined : id.issuer;
    const sub = id.subject === '' ? undefined : id.subject;
    const ps = this.pairs;
    for (let i = 0; i < ps.length; i++) if (ps[i]!.iss.test(iss) && ps[i]!.sub.test(sub)) return true;
    return false;
  }
  actual(r: RequestView): string {
    const id = r.identity;
    if (id === null) return '(anonymous)';
    return `iss=${q(id.issuer || undefined)} sub=${q(id.subject || undefined)}`;
  }
}

const NON_EMPTY: StringSet = new StringSet(['*'], { star: 'nonEmpty' });
const one = (kind: 'exact' | 'prefix' | 'suffix', s: string): StringSet => {
  const m =
    kind === 'exact'
      ? new StringMatch(Kind.Exact, s, '', s)
      : kind === 'prefix'
        ? new StringMatch(Kind.Prefix, s, '', `${s}*`)
        : new StringMatch(Kind.Suffix, '', s, `*${s}`);
  return new StringSet([m.source], { star: 'nonEmpty' }, [m]);
};

/**
 * Istio's split of a request principal value (pilot/pkg/security/authz/model/generator.go):
 *   "*"              -> iss non-empty, sub non-empty
 *   "*X" with '/'    -> iss suffix (or non-empty if the issuer part is "*"), sub exact
 *   "*X" without '/' -> iss non-empty, sub suffix X
 *   "X*" with '/'    -> iss exact, sub prefix (or non-empty if the subject part is "*")
 *   "X*" without '/' -> iss prefix X, sub non-empty
 *   otherwise        -> iss exact, sub exact
 * An empty prefix/suffix part means any value, including empty, as Envoy's `prefix: ""`
 * would — but Istio never emits one, so "*" alone is handled first.
 */
export function splitRequestPrincipal(value: string): { iss: StringSet; sub: StringSet } {
  const idx = value.lastIndexOf('/');
  const found = idx >= 0;
  const iss = found ? value.slice(0, idx) : value;
  const sub = found ? value.slice(idx + 1) : '';
  if (value === '*') return { iss: NON_EMPTY, sub: NON_EMPTY };
  if (value.startsWith('*')) {
    if (found) return { iss: iss === '*' ? NON_EMPTY : one('suffix', iss.slice(1)), sub: one('exact', sub) };
    return { iss: NON_EMPTY, sub: one('suffix', value.slice(1)) };
  }
  if (value.endsWith('*')) {
    if (found) return { iss: one('exact', iss), sub: sub === '*' ? NON_EMPTY : one('prefix', sub.slice(0, -1)) };
    return { iss: one('prefix', value.slice(0, -1)), sub: NON_EMPTY };
  }
  return { iss: one('exact', iss), sub: one('exact', sub) };
}

/** `request.auth.audiences`: the `aud` claim as a list; any element matching any value. */
export class AudienceField extends BaseField {
  constructor(label: string, negate: boolean, values: readonly string[], private readonly set: StringSet) {
    super(label, negate, values);
  }
  test(r: RequestView): boolean {
    const id = r.identity;
    if (id === null) return false;
    const a = id.audiences;
    for (let i = 0; i < a.length; i++) if (this.set.test(a[i])) return true;
    return false;
  }
  actual(r: RequestView): string {
    return r.identity === null ? '(anonymous)' : JSON.stringify(r.identity.audiences);
  }
}

/** Claims Envoy's jwt_authn splits on spaces before AuthorizationPolicy sees them. */
const SPACE_DELIMITED = new Set(['scope', 'permission']);

/**
 * `request.auth.claims[a][b]...`: walk the nested claim; it matches when it is a string
 * matching a value, or a list with a string element matching a value. Top-level `scope` and
 * `permission` strings are matched token by token (space-split), as Envoy normalizes them.
 */
export class ClaimField extends BaseField {
  private readonly split: boolean;
  constructor(label: string, negate: boolean, values: readonly string[], private readonly path: readonly string[], private readonly set: StringSet) {
    super(label, negate, values);
    this.split = path.length === 1 && SPACE_DELIMITED.has(path[0]!);
  }
  private claim(r: RequestView): unknown {
    const id = r.identity;
    if (id === null) return undefined;
    let cur: unknown = id.claims;
    const p = this.path;
    for (let i = 0; i < p.length; i++) {
      if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
      cur = (cur as Record<string, unknown>)[p[i]!];
    }
    return cur;
  }
  test(r: RequestView): boolean {
    const v = this.claim(r);
    if (typeof v === 'string') return this.split ? this.testTokens(v) : this.set.test(v);
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const el: unknown = v[i];
        if (typeof el === 'string' && this.set.test(el)) return true;
      }
    }
    return false;
  }
  private testTokens(s: string): boolean {
    let i = 0;
    const n = s.length;
    while (i < n) {
      while (i < n && s.charCodeAt(i) === 32) i++;
      if (i >= n) break;
      let j = i;
      while (j < n && s.charCodeAt(j) !== 32) j++;
      if (this.set.testRange(s, i, j)) return true;
      i = j;
    }
    return false;
  }
  actual(r: RequestView): string {
    if (r.identity === null) return '(anonymous)';
    const v = this.claim(r);
    return v === undefined ? ABSENT : JSON.stringify(v);
  }
}

export function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
