/**
 * Which TokenExchangePolicy applies to a request: its `match` (hosts, paths, backends; Istio
 * string forms from match/strings.ts), the order of the policies (most specific scope first,
 * ties by namespace/name, with a `validate` warning where two may match the same requests),
 * and the selection on the Check path.
 */
import type { KindDocument } from '../config/kinds.js';
import { obj } from '../config/schema.js';
import { scopeAppliesStrict, type CompiledScope } from '../config/scope.js';
import type { CheckState } from '../core/state.js';
import { StringSet } from '../match/strings.js';
import { strs } from './compile-helpers.js';

export interface RawMatch {
  hosts?: string[];
  paths?: string[];
  backends?: string[];
}

export const matchSchema = obj<RawMatch>({ hosts: strs, paths: strs, backends: strs });

/** `spec.match`; null = any. Values are Istio strings: exact, `x*`, `*x`, `*` = non-empty. */
export interface MatchSpec {
  /** Compared case-insensitively. */
  readonly hosts: StringSet | null;
  readonly paths: StringSet | null;
  /** `context_extensions.backend`. */
  readonly backends: StringSet | null;
}

const STAR = { star: 'nonEmpty' } as const;

export function compileMatch(m: RawMatch = {}): MatchSpec {
  return {
    hosts: m.hosts && m.hosts.length > 0 ? new StringSet(m.hosts, { ...STAR, ignoreCase: true }) : null,
    paths: m.paths && m.paths.length > 0 ? new StringSet(m.paths, STAR) : null,
    backends: m.backends && m.backends.length > 0 ? new StringSet(m.backends, STAR) : null,
  };
}

/** Does the policy's request match (hosts / paths / backends) hold? Scope is checked separately. */
export function matchApplies(m: MatchSpec, host: string, path: string, backend: string): boolean {
  if (m.backends && !m.backends.test(backend)) return false;
  if (m.hosts && !m.hosts.test(host.toLowerCase())) return false;
  if (m.paths && !m.paths.test(path)) return false;
  return true;
}

/** What selection needs of a compiled policy. */
export interface Selectable {
  readonly ref: string;
  readonly scope: CompiledScope;
  /** selector / targetRefs / backend match = 2 > namespace > root namespace. */
  readonly specificity: number;
  readonly match: MatchSpec;
}

/**
 * The policy that applies to this request: the first (most specific) whose scope and match
 * hold. Scope is checked strictly: a policy narrowed by `selector` / `targetRefs` mints
 * tokens for one workload's backend, so it applies only on a positive label / gateway /
 * service match — never to a request that carries no labels (unlike AuthorizationPolicy,
 * where "no labels -> applies" is the stricter choice).
 */
export function selectPolicy<P extends Selectable>(cfg: { readonly policies: readonly P[] }, state: CheckState): P | null {
  const ctx = state.ctx;
  for (const p of cfg.policies) {
    if (!scopeAppliesStrict(p.scope, ctx.workload)) continue;
    if (!matchApplies(p.match, ctx.host, ctx.path, ctx.workload.backend)) continue;
    return p;
  }
  return null;
}

/** Sort most specific first, ties by namespace/name; warn where a tie may match the same requests. */
export function orderPolicies<P extends Selectable>(policies: P[], docs: readonly KindDocument[]): readonly P[] {
  policies.sort((a, b) => b.specificity - a.specificity || (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
  warnTies(policies, docs);
  return Object.freeze(policies);
}

function disjoint(a: StringSet | null, b: StringSet | null, ci = false): boolean {
  if (!a || !b) return false;
  const exact = (l: readonly string[]) => l.every((x) => !x.includes('*'));
  if (!exact(a.sources) || !exact(b.sources)) return false;
  const sb = new Set(b.sources.map((x) => (ci ? x.toLowerCase() : x)));
  return !a.sources.some((x) => sb.has(ci ? x.toLowerCase() : x));
}

function mayOverlap(a: Selectable, b: Selectable): boolean {
  if (a.specificity !== b.specificity) return false;
  if (!a.scope.isRoot && !b.scope.isRoot && a.scope.namespace !== b.scope.namespace) return false;
  if (disjoint(a.match.backends, b.match.backends) || disjoint(a.match.hosts, b.match.hosts, true) || disjoint(a.match.paths, b.match.paths)) return false;
  // Selection is strict (scopeAppliesStrict): a selector applies only to a request whose
  // labels match, and targetRefs only to a request naming that gateway/service. So policies
  // with conflicting labels, or whose targetRefs name different gateways (or different
  // services) only, never both apply to one request.
  if (a.scope.matchLabels && b.scope.matchLabels) {
    for (const key of Object.keys(a.scope.matchLabels)) {
      const o = b.scope.matchLabels[key];
      if (o !== undefined && o !== a.scope.matchLabels[key]) return false;
    }
  }
  if (a.scope.targetRefs && b.scope.targetRefs) {
    const gw = (t: { kind: string }) => t.kind === 'Gateway' || t.kind === 'GatewayClass';
    const together = a.scope.targetRefs.some((x) => b.scope.targetRefs!.some((y) => gw(x) !== gw(y) || x.name === y.name));
    if (!together) return false;
  }
  return true;
}

function warnTies(sorted: readonly Selectable[], docs: readonly KindDocument[]): void {
  for (let i = 0; i < sorted.length; i++) {
    for (let j = i + 1; j < sorted.length; j++) {
      if (mayOverlap(sorted[i]!, sorted[j]!)) {
        const d = docs.find((x) => x.ref === sorted[j]!.ref);
        d?.v.warn(
          ['metadata', 'name'],
          `TokenExchangePolicy ${sorted[i]!.ref} has the same specificity and may match the same requests; it wins (ties are broken by namespace/name)`,
        );
        break;
      }
    }
  }
}
