/**
 * AuthorizationPolicy fields on the authenticated identity: `requestPrincipals` /
 * `request.auth.principal`, `request.auth.audiences`, `request.auth.claims[...]` (and
 * `request.auth.presenter`, a plain string field in matchers.ts).
 */
import { someScopeToken } from '../core/scopes.js';
import { Kind, StringMatch, StringSet } from '../match/strings.js';
import { ABSENT, BaseField, q } from './matchers.js';
import type { RequestView } from './request-view.js';

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
    // `scope` and `permission`: the one scope parser the token endpoint uses too (core/scopes.ts).
    if (this.split) return someScopeToken(v, this.testRange);
    if (typeof v === 'string') return this.set.test(v);
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const el: unknown = v[i];
        if (typeof el === 'string' && this.set.test(el)) return true;
      }
    }
    return false;
  }
  private readonly testRange = (s: string, start: number, end: number): boolean => this.set.testRange(s, start, end);
  actual(r: RequestView): string {
    if (r.identity === null) return '(anonymous)';
    const v = this.claim(r);
    return v === undefined ? ABSENT : JSON.stringify(v);
  }
}
