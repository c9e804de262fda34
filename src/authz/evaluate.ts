/**
 * AuthorizationPolicy evaluation (Istio semantics):
 *   1. AUDIT policies that match are recorded (never change the decision);
 *   2. any matching DENY policy denies;
 *   3. no ALLOW policy applies -> allow; a matching ALLOW policy allows; otherwise deny.
 * CUSTOM policies are never evaluated: in a mesh they only select which requests Envoy
 * sends to this server, which is the provider. Dry-run (istio.io/dry-run) ALLOW and DENY
 * policies form separate shadow sets, like Envoy RBAC `shadow_rules`: their outcome is
 * recorded in state.attribution.shadow and never enforced.
 *
 * Policies are indexed by namespace (root-namespace policies apart) and action, so only
 * the policies of the workload's namespace and the root namespace are looked at. The hot
 * path allocates nothing unless something is recorded; --explain (state.trace) runs a
 * separate, string-building pass.
 */
import { scopeApplies } from '../config/scope.js';
import type { Workload } from '../core/context.js';
import { deny, type CheckState, type Deny } from '../core/state.js';
import type { Clause, CompiledPolicy, CompiledRule } from './compile.js';
import { fieldPasses, type Field } from './matchers.js';
import type { RequestView } from './request-view.js';

export interface PolicyBucket {
  readonly deny: readonly CompiledPolicy[];
  readonly allow: readonly CompiledPolicy[];
  readonly audit: readonly CompiledPolicy[];
  readonly custom: readonly CompiledPolicy[];
  readonly shadowDeny: readonly CompiledPolicy[];
  readonly shadowAllow: readonly CompiledPolicy[];
  /** Every policy of the bucket, sorted by ref (for --explain). */
  readonly all: readonly CompiledPolicy[];
}

export interface PolicyIndex {
  readonly rootNamespace: string;
  readonly root: PolicyBucket;
  readonly byNamespace: ReadonlyMap<string, PolicyBucket>;
  /** The request view the fields read, reset for every Check (evaluation is synchronous). */
  readonly view: RequestView;
}

function clausesMatch(clauses: readonly Clause[] | null, r: RequestView): boolean {
  if (clauses === null) return true;
  for (let i = 0; i < clauses.length; i++) {
    const fields = clauses[i]!.fields;
    let ok = true;
    for (let j = 0; j < fields.length; j++) {
      if (!fieldPasses(fields[j]!, r)) {
        ok = false;
        break;
      }
    }
    if (ok) return true;
  }
  return false;
}

export function ruleMatches(rule: CompiledRule, r: RequestView): boolean {
  if (!clausesMatch(rule.from, r)) return false;
  if (!clausesMatch(rule.to, r)) return false;
  const when = rule.when;
  for (let i = 0; i < when.length; i++) if (!fieldPasses(when[i]!, r)) return false;
  return true;
}

/** Index of the first matching rule, or -1. */
export function firstMatchingRule(p: CompiledPolicy, r: RequestView): number {
  const rules = p.rules;
  for (let i = 0; i < rules.length; i++) if (ruleMatches(rules[i]!, r)) return rules[i]!.index;
  return -1;
}

function applies(p: CompiledPolicy, w: Workload): boolean {
  return !p.narrowed || scopeApplies(p.scope, w);
}

/** The workload namespace's bucket (root-namespace policies live in index.root only). */
function namespaceBucket(index: PolicyIndex, w: Workload): PolicyBucket | undefined {
  return w.namespace === index.rootNamespace ? undefined : index.byNamespace.get(w.namespace);
}

export function evaluatePolicies(state: CheckState, index: PolicyIndex): Deny | null {
  const ctx = state.ctx;
  const w = ctx.workload;
  const r = index.view.reset(ctx, state.identity, state.mcp);
  const root = index.root;
  const ns = namespaceBucket(index, w);
  if (state.trace !== null) explain(state, index, r, root, ns);

  // AUDIT: recorded whatever the decision.
  for (let b = 0; b < 2; b++) {
    const list = (b === 0 ? root : ns)?.audit;
    if (!list) continue;
    for (let i = 0; i < list.length; i++) {
      const p = list[i]!;
      if (applies(p, w) && firstMatchingRule(p, r) >= 0) (state.attribution.audit ??= []).push(p.ref);
    }
  }

  // Dry-run (shadow) sets: evaluated and recorded, never enforced.
  if (root.shadowDeny.length + root.shadowAllow.length + (ns ? ns.shadowDeny.length + ns.shadowAllow.length : 0) > 0) {
    shadow(state, r, w, root, ns);
  }

  // DENY: any match denies.
  for (let b = 0; b < 2; b++) {
    const list = (b === 0 ? root : ns)?.deny;
    if (!list) continue;
    for (let i = 0; i < list.length; i++) {
      const p = list[i]!;
      if (!applies(p, w)) continue;
      const rule = firstMatchingRule(p, r);
      if (rule >= 0) {
        state.trace?.add('authz', `decision: deny by DENY policy ${p.ref} rule[${rule}]`);
        return deny('ERR_RBAC_DENIED', `denied by DENY AuthorizationPolicy ${p.ref} rule ${rule}`, { policy: p.ref, rule });
      }
    }
  }

  // ALLOW: none applies -> allow; first match allows; else deny.
  let applicable = 0;
  for (let b = 0; b < 2; b++) {
    const list = (b === 0 ? root : ns)?.allow;
    if (!list) continue;
    for (let i = 0; i < list.length; i++) {
      const p = list[i]!;
      if (!applies(p, w)) continue;
      applicable++;
      const rule = firstMatchingRule(p, r);
      if (rule >= 0) {
        state.attribution.policy = p.ref;
        state.attribution.rule = rule;
        state.trace?.add('authz', `decision: allow by ALLOW policy ${p.ref} rule[${rule}]`);
        return null;
      }
    }
  }
  if (applicable === 0) {
    state.trace?.add('authz', 'decision: allow (no DENY matched and no ALLOW policy applies to this workload)');
    return null;
  }
  state.trace?.add('authz', `decision: deny (${applicable} ALLOW ${applicable === 1 ? 'policy applies' : 'policies apply'} and none matched; see the failing fields above)`);
  return deny('ERR_RBAC_DENIED', `no ALLOW AuthorizationPolicy matched (${applicable} applicable)`);
}

function shadow(state: CheckState, r: RequestView, w: Workload, root: PolicyBucket, ns: PolicyBucket | undefined): void {
  const out = (state.attribution.shadow ??= []);
  for (const b of [root, ns]) {
    if (!b) continue;
    for (const p of b.shadowDeny) {
      if (!applies(p, w)) continue;
      const rule = firstMatchingRule(p, r);
      if (rule >= 0) out.push({ policy: p.ref, rule, wouldDeny: true });
    }
  }
  // Shadow ALLOW engine: allowed if any dry-run ALLOW policy matches, else denied.
  const allows: CompiledPolicy[] = [];
  for (const b of [root, ns]) if (b) for (const p of b.shadowAllow) if (applies(p, w)) allows.push(p);
  for (const p of allows) {
    const rule = firstMatchingRule(p, r);
    if (rule >= 0) {
      out.push({ policy: p.ref, rule, wouldDeny: false });
      return;
    }
  }
  for (const p of allows) out.push({ policy: p.ref, wouldDeny: true });
}

// ---------------------------------------------------------------------------------------
// --explain: every applicable policy, every rule, the first failing field of each
// non-matching rule. Only runs when state.trace is set.
// ---------------------------------------------------------------------------------------

function describeFailure(f: Field, r: RequestView): string {
  return `${f.label}: request has ${f.actual(r)}, which ${f.negate ? 'matches one of the excluded' : 'matches none of'} ${JSON.stringify(f.values)}`;
}

function explainClauses(kind: 'from' | 'to', clauses: readonly Clause[] | null, r: RequestView): string | null {
  if (clauses === null) return null;
  const fails: string[] = [];
  for (const cl of clauses) {
    const failing = cl.fields.find((f) => !fieldPasses(f, r));
    if (!failing) return null;
    fails.push(describeFailure(failing, r));
  }
  return fails.length === 1 ? fails[0]! : `no \`${kind}\` entry matched: ${fails.join('; ')}`;
}

/** null when the rule matches, else the first failing part. */
export function explainRule(rule: CompiledRule, r: RequestView): string | null {
  const from = explainClauses('from', rule.from, r);
  if (from) return from;
  const to = explainClauses('to', rule.to, r);
  if (to) return to;
  const failing = rule.when.find((f) => !fieldPasses(f, r));
  return failing ? describeFailure(failing, r) : null;
}

function scopeText(p: CompiledPolicy): string {
  if (p.scope.matchLabels) return `selector ${Object.entries(p.scope.matchLabels).map(([k, v]) => `${k}=${v}`).join(',')}`;
  if (p.scope.targetRefs) return `targetRefs ${p.scope.targetRefs.map((t) => `${t.kind}/${t.name}`).join(',')}`;
  return p.scope.isRoot ? 'root namespace: all workloads' : 'whole namespace';
}

function explainPolicy(state: CheckState, p: CompiledPolicy, r: RequestView): void {
  const t = state.trace!;
  const head = `${p.action}${p.dryRun ? ' (dry-run)' : ''} ${p.ref} [${scopeText(p)}]`;
  if (p.action === 'CUSTOM') {
    t.add('authz', `${head} provider "${p.provider}": not evaluated — in a mesh a CUSTOM policy only selects which requests Envoy sends to this server (the provider); the decision comes from this server's ALLOW/DENY policies`);
    return;
  }
  if (p.rules.length === 0) {
    t.add('authz', `${head}: no rules, matches nothing${p.action === 'ALLOW' ? ' (an ALLOW policy without rules denies every request)' : ''}`);
    return;
  }
  const first = firstMatchingRule(p, r);
  const outcome =
    first < 0
      ? 'no rule matched'
      : p.dryRun
        ? `rule[${first}] matched (dry-run: recorded as shadow, not enforced)`
        : `rule[${first}] matched -> ${p.action === 'DENY' ? 'deny' : p.action === 'ALLOW' ? 'allow' : 'audited'}`;
  t.add('authz', `${head}: ${outcome}`);
  for (const rule of p.rules) {
    const why = explainRule(rule, r);
    const empty = rule.from === null && rule.to === null && rule.when.length === 0;
    t.add('authz', `  rule[${rule.index}]: ${why === null ? (empty ? 'matched (empty rule matches every request)' : 'matched') : `no match: ${why}`}`);
  }
}

function explain(state: CheckState, index: PolicyIndex, r: RequestView, root: PolicyBucket, ns: PolicyBucket | undefined): void {
  const t = state.trace!;
  const w = state.ctx.workload;
  const all = [...root.all, ...(ns?.all ?? [])];
  const applicable = all.filter((p) => applies(p, w));
  const skipped = all.filter((p) => !applies(p, w));
  const id = state.identity;
  t.add(
    'authz',
    `AuthorizationPolicy: ${applicable.length} of ${all.length} policies in namespaces ${index.rootNamespace} (root)${ns ? ` and ${w.namespace}` : ''} apply to workload ns=${w.namespace}; request principal ${id ? JSON.stringify(id.principal) : '(anonymous)'}, peer ${JSON.stringify(state.ctx.source.principal || '(none)')}`,
  );
  for (const p of skipped) t.add('authz', `${p.action} ${p.ref}: not applicable (${scopeText(p)} does not match the workload)`);
  const order: CompiledPolicy['action'][] = ['CUSTOM', 'AUDIT', 'DENY', 'ALLOW'];
  for (const action of order) {
    for (const p of applicable) if (p.action === action && !p.dryRun) explainPolicy(state, p, r);
  }
  for (const p of applicable) if (p.dryRun) explainPolicy(state, p, r);
  if (!applicable.some((p) => p.action === 'ALLOW' && !p.dryRun)) t.add('authz', 'no enforced ALLOW policy applies: requests not denied are allowed');
}
