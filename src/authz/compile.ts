/**
 * AuthorizationPolicy documents -> validated, compiled policies, indexed by namespace and
 * action. Validation reproduces what Istio rejects (pkg/config/validation:
 * ValidateAuthorizationPolicy, pkg/config/security: ValidateAttribute, CheckServiceAccount,
 * CheckValidPathTemplate), every error located by file/line/field through `k.v`. Where
 * Istio would accept a value and then silently drop the rule when generating Envoy config
 * (bad claim/header key syntax), we reject it at load instead: a policy never means less
 * (or, for DENY, more) than it says.
 */
import type { CompileContext } from '../config/kinds.js';
import type { KindDocument } from '../config/kinds.js';
import type { Path } from '../config/issues.js';
import { parseScope, type CompiledScope } from '../config/scope.js';
import { checkPathValue, PathSet, StringSet } from '../match/strings.js';
import { checkEach, checkPort, conditionField, err, parseConditionKey, type ConditionKey, type FieldContext } from './conditions.js';
import { PathField, PortField, StringField, type Field } from './matchers.js';
import { OPERATION_FIELDS, SOURCE_FIELDS, specSchema, type Action, type RawCondition, type RawOperation, type RawRule, type RawSource } from './policy-schema.js';

export type { Action } from './policy-schema.js';

/** One `from[i].source` or `to[i].operation`: its fields AND'ed. */
export interface Clause {
  readonly label: string;
  readonly fields: readonly Field[];
}

export interface CompiledRule {
  readonly index: number;
  /** null = no `from` (any source). */
  readonly from: readonly Clause[] | null;
  /** null = no `to` (any operation). */
  readonly to: readonly Clause[] | null;
  /** Conditions; each side (values / notValues) is its own Field. */
  readonly when: readonly Field[];
}

export interface CompiledPolicy {
  /** `namespace/name`. */
  readonly ref: string;
  readonly namespace: string;
  readonly name: string;
  readonly action: Action;
  /** istio.io/dry-run: "true" — evaluated and recorded as shadow, never enforced (ALLOW/DENY). */
  readonly dryRun: boolean;
  /** CUSTOM: provider.name. */
  readonly provider: string;
  readonly rules: readonly CompiledRule[];
  readonly scope: CompiledScope;
  /** True when selector/targetRefs narrow the scope (a per-request label check is needed). */
  readonly narrowed: boolean;
}

export const DRY_RUN_ANNOTATION = 'istio.io/dry-run';

interface Ctx extends FieldContext {
  readonly action: Action;
}

const SOURCE_KEY: Record<string, ConditionKey> = {
  principals: { kind: 'principal' },
  requestPrincipals: { kind: 'requestPrincipal' },
  namespaces: { kind: 'namespace' },
  serviceAccounts: { kind: 'serviceAccount' },
  trustDomains: { kind: 'trustDomain' },
  ipBlocks: { kind: 'ip', which: 'source' },
  remoteIpBlocks: { kind: 'ip', which: 'remote' },
};

/**
 * Fields CUSTOM policies may not use (Istio: "... is currently not supported with CUSTOM
 * action"): every source field but the IP blocks.
 */
const CUSTOM_FORBIDDEN_SOURCE: ReadonlySet<string> = new Set(SOURCE_FIELDS.filter((f) => !f.toLowerCase().endsWith('ipblocks')));
const CUSTOM_FORBIDDEN_KEYS = new Set(['source.namespace', 'source.serviceAccount', 'source.principal', 'source.trustDomain']);

function positive(f: string): string {
  return f.startsWith('not') ? f[3]!.toLowerCase() + f.slice(4) : f;
}

function compileSource(c: Ctx, src: RawSource, path: Path, label: string): Clause | null {
  const set = SOURCE_FIELDS.filter((f) => (src[f]?.length ?? 0) > 0);
  if (set.length === 0) {
    err(c, path, '`from.source` must not be empty (set at least one field, or omit `from` to match any source)');
    return null;
  }
  let ok = true;
  const hasSa = set.includes('serviceAccounts') || set.includes('notServiceAccounts');
  const hasPrincipalOrNs = set.some((f) => f === 'principals' || f === 'notPrincipals' || f === 'namespaces' || f === 'notNamespaces');
  if (hasSa && hasPrincipalOrNs) {
    err(c, [...path, set.includes('serviceAccounts') ? 'serviceAccounts' : 'notServiceAccounts'], 'cannot set serviceAccounts with namespaces or principals');
    ok = false;
  }
  for (const f of ['serviceAccounts', 'notServiceAccounts'] as const) {
    if ((src[f]?.length ?? 0) > 16) {
      err(c, [...path, f], 'may not have more than 16 values');
      ok = false;
    }
  }
  const fields: Field[] = [];
  for (const f of set) {
    if (c.action === 'CUSTOM' && CUSTOM_FORBIDDEN_SOURCE.has(f)) {
      err(c, [...path, f], `${f} is currently not supported with CUSTOM action`);
      ok = false;
      continue;
    }
    const field = conditionField(c, SOURCE_KEY[positive(f)]!, `${label}.${f}`, f.startsWith('not'), src[f]!, [...path, f]);
    if (field) fields.push(field);
    else ok = false;
  }
  return ok ? { label, fields } : null;
}

function compileOperation(c: Ctx, op: RawOperation, path: Path, label: string): Clause | null {
  const set = OPERATION_FIELDS.filter((f) => (op[f]?.length ?? 0) > 0);
  if (set.length === 0) {
    err(c, path, '`to.operation` must not be empty (set at least one field, or omit `to` to match any operation)');
    return null;
  }
  let ok = true;
  const fields: Field[] = [];
  for (const f of set) {
    const vals = op[f]!;
    const fpath = [...path, f];
    const negate = f.startsWith('not');
    const l = `${label}.${f}`;
    switch (positive(f)) {
      case 'hosts':
        // Case-insensitive, `*` = present, no port stripping (Istio HostMatcher).
        fields.push(new StringField(l, negate, vals, 'host', new StringSet(vals, { star: 'present', ignoreCase: true })));
        break;
      case 'methods':
        fields.push(new StringField(l, negate, vals, 'method', new StringSet(vals, { star: 'present' })));
        break;
      case 'ports':
        if (checkEach(c, fpath, vals, checkPort)) fields.push(new PortField(l, negate, vals, new Set(vals.map(Number))));
        else ok = false;
        break;
      case 'paths':
        if (checkEach(c, fpath, vals, checkPathValue)) fields.push(new PathField(l, negate, vals, new PathSet(vals)));
        else ok = false;
        break;
    }
  }
  return ok ? { label, fields } : null;
}

function compileConditions(c: Ctx, conds: RawCondition[], path: Path): Field[] | null {
  const out: Field[] = [];
  let ok = true;
  conds.forEach((cond, i) => {
    const cpath = [...path, i];
    const vals = cond.values ?? [];
    const notVals = cond.notValues ?? [];
    if (vals.length === 0 && notVals.length === 0) {
      err(c, cpath, `at least one of \`values\` or \`notValues\` must be set for key ${cond.key}`);
      ok = false;
      return;
    }
    const key = parseConditionKey(cond.key);
    if (typeof key === 'string') {
      err(c, [...cpath, 'key'], key);
      ok = false;
      return;
    }
    if (c.action === 'CUSTOM' && (CUSTOM_FORBIDDEN_KEYS.has(cond.key) || cond.key.startsWith('request.auth.'))) {
      err(c, [...cpath, 'key'], `${cond.key} is currently not supported with CUSTOM action`);
      ok = false;
      return;
    }
    if (key.kind === 'mcp') {
      c.k.v.warn([...cpath, 'key'], `${cond.key} is an obo-authz extension (MCP facts from the JSON-RPC body / MCP headers): Istio itself would not accept this key, so do not apply this document to an Istio cluster as is`);
    }
        const label = `when[${i}] ${cond.key}`;
    if (vals.length) {
      const f = conditionField(c, key, `${label} values`, false, vals, [...cpath, 'values']);
      if (f) out.push(f);
      else ok = false;
    }
    if (notVals.length) {
      const f = conditionField(c, key, `${label} notValues`, true, notVals, [...cpath, 'notValues']);
      if (f) out.push(f);
      else ok = false;
    }
  });
  return ok ? out : null;
}

function compileRule(c: Ctx, rule: RawRule, index: number): CompiledRule | null {
  const base: Path = ['spec', 'rules', index];
  let ok = true;
  let from: Clause[] | null = null;
  let to: Clause[] | null = null;
  if (rule.from !== undefined) {
    if (rule.from.length === 0) {
      err(c, [...base, 'from'], '`from` must not be empty (omit it to match any source)');
      ok = false;
    } else {
      from = [];
      rule.from.forEach((f, j) => {
        const cl = compileSource(c, f.source, [...base, 'from', j, 'source'], `from[${j}].source`);
        if (cl) from!.push(cl);
        else ok = false;
      });
    }
  }
  if (rule.to !== undefined) {
    if (rule.to.length === 0) {
      err(c, [...base, 'to'], '`to` must not be empty (omit it to match any operation)');
      ok = false;
    } else {
      to = [];
      rule.to.forEach((t, j) => {
        const cl = compileOperation(c, t.operation, [...base, 'to', j, 'operation'], `to[${j}].operation`);
        if (cl) to!.push(cl);
        else ok = false;
      });
    }
  }
  const when = compileConditions(c, rule.when ?? [], [...base, 'when']);
  if (!when) ok = false;
  return ok ? { index, from, to, when: when ?? [] } : null;
}

/** Istio parses the annotation with strconv.ParseBool; anything else is logged and ignored. */
function parseDryRun(k: KindDocument): boolean {
  const raw = k.metadata.annotations?.[DRY_RUN_ANNOTATION];
  if (raw === undefined) return false;
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(raw)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(raw)) return false;
  k.v.warn(['metadata', 'annotations', DRY_RUN_ANNOTATION], `invalid value ${JSON.stringify(raw)} (expected "true" or "false"); the policy is enforced`);
  return false;
}

/** Validate and compile one AuthorizationPolicy; undefined after reporting errors. */
export function compilePolicy(k: KindDocument, cc: CompileContext): CompiledPolicy | undefined {
  const errorsBefore = k.v.issues.filter((i) => i.severity === 'error').length;
  const rawSpec = k.spec ?? {};
  const spec = specSchema.parse(rawSpec, ['spec'], k.v);
  if (!spec) return undefined;
  const scope = parseScope(k, rawSpec as Record<string, unknown>, cc.settings);
  const action: Action = spec.action ?? 'ALLOW';
  const c: Ctx = { k, action };

  if (spec.provider !== undefined && action !== 'CUSTOM') {
    err(c, ['spec', 'provider'], `\`provider\` must only be used with action CUSTOM, found ${action}`);
  }
  const noRules = spec.rules === undefined || spec.rules.length === 0;
  if ((action === 'DENY' || action === 'CUSTOM') && noRules) {
    err(c, ['spec', 'rules'], `${action} action without \`rules\` is meaningless as it will never be triggered; add an empty rule \`{}\` if you want it triggered for every request`);
  }
  if (action === 'CUSTOM' && !noRules && !spec.provider?.name) {
    err(c, ['spec', 'provider', 'name'], '`provider.name` must not be empty');
  }
  const rules: CompiledRule[] = [];
  (spec.rules ?? []).forEach((r, i) => {
    const cr = compileRule(c, r, i);
    if (cr) rules.push(cr);
  });
  const dryRun = parseDryRun(k);
  if (dryRun && (action === 'AUDIT' || action === 'CUSTOM')) {
    k.v.warn(['metadata', 'annotations', DRY_RUN_ANNOTATION], `${DRY_RUN_ANNOTATION} only applies to ALLOW and DENY policies; ignored for ${action}`);
  }
  if (k.v.issues.filter((i) => i.severity === 'error').length > errorsBefore) return undefined;
  return Object.freeze({
    ref: k.ref,
    namespace: k.namespace,
    name: k.name,
    action,
    dryRun: dryRun && (action === 'ALLOW' || action === 'DENY'),
    provider: spec.provider?.name ?? '',
    rules: Object.freeze(rules),
    scope,
    narrowed: scope.matchLabels !== null || scope.targetRefs !== null,
  });
}
