/**
 * Authorization stage (phase 3): Istio AuthorizationPolicy (security.istio.io/v1 and
 * v1beta1) with Istio's semantics. compileAuthz validates and compiles every policy once
 * into small matcher objects indexed by namespace and action; authorize() returns a Deny
 * (ERR_RBAC_DENIED, body `RBAC: access denied`, with the deciding policy/rule) or null, and
 * records the allowing policy/rule, AUDIT matches and dry-run (shadow) outcomes in
 * state.attribution. See docs/configuration/authorization.md.
 */
import type { CompileContext } from '../config/kinds.js';
import type { KindDocument } from '../config/kinds.js';
import { splitByNamespace } from '../config/scope.js';
import type { CheckState, Deny } from '../core/state.js';
import { compilePolicy, type CompiledPolicy } from './compile.js';
import { evaluatePolicies, type PolicyBucket, type PolicyIndex } from './evaluate.js';
import { RequestView } from './request-view.js';

export type { Action, Clause, CompiledPolicy, CompiledRule } from './compile.js';
export { DRY_RUN_ANNOTATION } from './compile.js';
export { parseConditionKey } from './conditions.js';
export { explainRule, firstMatchingRule, ruleMatches, type PolicyBucket, type PolicyIndex } from './evaluate.js';
export { RequestView } from './request-view.js';

export interface AuthzConfig extends PolicyIndex {
  readonly count: number;
  /** Every compiled policy, sorted by `namespace/name`. */
  readonly policies: readonly CompiledPolicy[];
}

function bucket(policies: readonly CompiledPolicy[]): PolicyBucket {
  const enforced = (a: CompiledPolicy['action']) => Object.freeze(policies.filter((p) => p.action === a && !p.dryRun));
  return Object.freeze({
    deny: enforced('DENY'),
    allow: enforced('ALLOW'),
    audit: enforced('AUDIT'),
    custom: enforced('CUSTOM'),
    shadowDeny: Object.freeze(policies.filter((p) => p.action === 'DENY' && p.dryRun)),
    shadowAllow: Object.freeze(policies.filter((p) => p.action === 'ALLOW' && p.dryRun)),
    all: Object.freeze([...policies]),
  });
}

export function compileAuthz(policies: readonly KindDocument[], cc: CompileContext): AuthzConfig {
  const steps = compileAuthzSteps(policies, cc);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * compileAuthz as steps, yielding after each policy: the server compiles a reload in slices
 * between Checks (pipeline/compile.ts compileDocumentsSliced).
 */
export function* compileAuthzSteps(policies: readonly KindDocument[], cc: CompileContext): Generator<void, AuthzConfig, void> {
  const compiled: CompiledPolicy[] = [];
  for (const k of policies) {
    const p = compilePolicy(k, cc);
    if (p) compiled.push(p);
    yield;
  }
  // Deterministic order (and so deterministic attribution): by namespace/name.
  compiled.sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
  const rootNamespace = cc.settings.rootNamespace;
  const split = splitByNamespace(compiled, rootNamespace);
  const byNamespace = new Map<string, PolicyBucket>();
  for (const [ns, l] of split.byNamespace) byNamespace.set(ns, bucket(l));
  return Object.freeze({
    count: compiled.length,
    policies: Object.freeze(compiled),
    rootNamespace,
    root: bucket(split.root),
    byNamespace,
    view: new RequestView(),
  });
}

export function authorize(state: CheckState, cfg: AuthzConfig): Deny | null {
  return evaluatePolicies(state, cfg);
}
