/**
 * The small composable matcher objects a compiled AuthorizationPolicy rule is made of.
 *
 * A rule is (any `from` source) AND (any `to` operation) AND (every `when` condition);
 * a source or operation is the AND of its fields; a field is the OR of its values, and a
 * `notX` field is NOT(OR of its values) (Istio model.go / Envoy RBAC). A missing attribute
 * fails a positive field and therefore satisfies its `not` twin.
 *
 * Each Field tests one attribute of the request through a per-Check view (request-view.ts):
 * evaluation allocates nothing on the common paths. This file holds the fields on the
 * request and its peer; the `request.auth.*` fields on the identity are in auth-fields.ts.
 */
import { isSecretHeader } from '../observability/redact.js';
import { cidrContains, type Cidr } from '../match/ip.js';
import type { PathSet, StringSet } from '../match/strings.js';
import type { IpWhich, RequestView } from './request-view.js';

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

export const ABSENT = '(absent)';
/** A request value for --explain: quoted, or `(absent)`. */
export const q = (s: string | undefined): string => (s === undefined ? ABSENT : JSON.stringify(s));

export abstract class BaseField implements Field {
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

export function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
