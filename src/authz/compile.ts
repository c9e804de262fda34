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
import { list, obj, str, type Schema } from '../config/schema.js';
import { parseScope, type CompiledScope } from '../config/scope.js';
import { parseCidr, type Cidr } from '../match/ip.js';
import {
  AudienceField,
  ClaimField,
  HeaderField,
  InlineHeaderField,
  IpField,
  NamespaceField,
  PathField,
  PortField,
  RequestPrincipalField,
  ServiceAccountField,
  StringField,
  type Field,
  type IpWhich,
} from './matchers.js';
import { checkPathValue, PathSet, StringSet } from '../match/strings.js';

export type Action = 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';

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

// ----- shape ---------------------------------------------------------------------------

interface RawSource {
  principals?: string[];
  notPrincipals?: string[];
  requestPrincipals?: string[];
  notRequestPrincipals?: string[];
  namespaces?: string[];
  notNamespaces?: string[];
  serviceAccounts?: string[];
  notServiceAccounts?: string[];
  trustDomains?: string[];
  notTrustDomains?: string[];
  ipBlocks?: string[];
  notIpBlocks?: string[];
  remoteIpBlocks?: string[];
  notRemoteIpBlocks?: string[];
}
interface RawOperation {
  hosts?: string[];
  notHosts?: string[];
  ports?: string[];
  notPorts?: string[];
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
}
interface RawCondition {
  key: string;
  values?: string[];
  notValues?: string[];
}
interface RawRule {
  from?: { source: RawSource }[];
  to?: { operation: RawOperation }[];
  when?: RawCondition[];
}
interface RawSpec {
  selector?: unknown;
  targetRef?: unknown;
  targetRefs?: unknown;
  action?: Action;
  provider?: { name?: string };
  rules?: RawRule[];
}

/** Values are non-empty strings (Istio CheckEmptyValues: "empty value not allowed"). */
const value = str({ nonEmpty: true });
/** Ports are strings in Istio's API; a bare YAML number gets a hint rather than a bare type error. */
const portValue: Schema<string> = {
  typeName: 'string',
  parse(v, path, ctx) {
    if (typeof v === 'number') {
      ctx.error(path, `expected a string, got number (quote it: "${v}")`);
      return undefined;
    }
    return value.parse(v, path, ctx);
  },
};
const values = list(value);

const SOURCE_FIELDS = [
  'principals',
  'notPrincipals',
  'requestPrincipals',
  'notRequestPrincipals',
  'namespaces',
  'notNamespaces',
  'serviceAccounts',
  'notServiceAccounts',
  'trustDomains',
  'notTrustDomains',
  'ipBlocks',
  'notIpBlocks',
  'remoteIpBlocks',
  'notRemoteIpBlocks',
] as const;
const OPERATION_FIELDS = ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;

const sourceSchema = obj<RawSource>(Object.fromEntries(SOURCE_FIELDS.map((f) => [f, values])));
const operationSchema = obj<RawOperation>(
  Object.fromEntries(OPERATION_FIELDS.map((f) => [f, f === 'ports' || f === 'notPorts' ? list(portValue) : values])),
);
const conditionSchema = obj<RawCondition>({ key: str({ nonEmpty: true }), values: list(portOrString()), notValues: list(portOrString()) }, { required: ['key'] });
const ruleSchema = obj<RawRule>({
  from: list(obj({ source: sourceSchema }, { required: ['source'] })),
  to: list(obj({ operation: operationSchema }, { required: ['operation'] })),
  when: list(conditionSchema),
});
const specSchema = obj<RawSpec>({
  // selector/targetRef(s) are validated by parseScope (src/config/scope.ts).
  selector: { typeName: 'mapping', parse: (v) => v },
  targetRef: { typeName: 'mapping', parse: (v) => v },
  targetRefs: { typeName: 'list', parse: (v) => v },
  action: str({ enum: ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'] }) as Schema<Action>,
  provider: obj({ name: str() }),
  rules: list(ruleSchema),
});

/** Condition values are strings; destination.port values written as numbers get the same hint as ports. */
function portOrString(): Schema<string> {
  return portValue;
}

// ----- semantic validation and compilation -------------------------------------------------

type ConditionKey =
  | { kind: 'header'; name: string }
  | { kind: 'inlineHeader'; name: string }
  | { kind: 'ip'; which: IpWhich }
  | { kind: 'namespace' }
  | { kind: 'serviceAccount' }
  | { kind: 'principal' }
  | { kind: 'trustDomain' }
  | { kind: 'requestPrincipal' }
  | { kind: 'audiences' }
  | { kind: 'presenter' }
  | { kind: 'claims'; path: string[] }
  | { kind: 'destinationPort' }
  | { kind: 'sni' };

const SIMPLE_KEYS: Record<string, ConditionKey> = {
  'source.ip': { kind: 'ip', which: 'source' },
  'remote.ip': { kind: 'ip', which: 'remote' },
  'destination.ip': { kind: 'ip', which: 'destination' },
  'source.namespace': { kind: 'namespace' },
  'source.serviceAccount': { kind: 'serviceAccount' },
  'source.principal': { kind: 'principal' },
  'source.trustDomain': { kind: 'trustDomain' },
  'request.auth.principal': { kind: 'requestPrincipal' },
  'request.auth.audiences': { kind: 'audiences' },
  'request.auth.presenter': { kind: 'presenter' },
  'destination.port': { kind: 'destinationPort' },
  'connection.sni': { kind: 'sni' },
};

/** `[a]` -> 'a'; `[a][b]` -> ['a','b'] when nested is allowed; otherwise an error string. */
function bracketNames(rest: string, nested: boolean): string[] | string {
  const names: string[] = [];
  let i = 0;
  if (rest.length === 0) return 'should have format a[b]';
  while (i < rest.length) {
    if (rest[i] !== '[') return 'should have format a[b]';
    const end = rest.indexOf(']', i);
    if (end < 0) return 'should have format a[b]';
    const name = rest.slice(i + 1, end);
    if (name.length === 0 || name.includes('[')) return 'should have format a[b]';
    names.push(name);
    i = end + 1;
  }
  if (!nested && names.length !== 1) return 'should have format a[b] with a single name';
  return names;
}

export function parseConditionKey(key: string): ConditionKey | string {
  const simple = SIMPLE_KEYS[key];
  if (simple) return simple;
  const prefixed: [string, (rest: string) => ConditionKey | string][] = [
    ['request.experimental.inline.headers', (rest) => {
      const n = bracketNames(rest, false);
      return typeof n === 'string' ? `bad key (${key}): ${n}` : { kind: 'inlineHeader', name: n[0]!.toLowerCase() };
    }],
    ['request.headers', (rest) => {
      const n = bracketNames(rest, false);
      return typeof n === 'string' ? `bad key (${key}): ${n}` : { kind: 'header', name: n[0]!.toLowerCase() };
    }],
    ['request.auth.claims', (rest) => {
      const n = bracketNames(rest, true);
      return typeof n === 'string' ? `bad key (${key}): ${n}, e.g. request.auth.claims[groups] or request.auth.claims[realm][roles]` : { kind: 'claims', path: n };
    }],
  ];
  for (const [prefix, parse] of prefixed) if (key.startsWith(prefix)) return parse(key.slice(prefix.length));
  if (key.startsWith('experimental.envoy.filters.')) {
    return `attribute ${key} (Envoy filter metadata) is not available to an ext_authz server and is not supported`;
  }
  if (key === 'destination.namespace') return `attribute ${key} is replaced by the metadata.namespace`;
  if (key.startsWith('destination.labels')) return `attribute ${key} is replaced by the workload selector`;
  if (key === 'destination.name' || key === 'destination.user') return `deprecated attribute ${key}: only supported in v1alpha1`;
  return `unknown attribute: ${key} (supported: ${[...Object.keys(SIMPLE_KEYS), 'request.headers[<name>]', 'request.auth.claims[<name>]...', 'request.experimental.inline.headers[<name>]'].join(', ')})`;
}

const PORT_RE = /^[0-9]+$/;

function checkPort(v: string): string | null {
  return PORT_RE.test(v) && Number(v) <= 65535 ? null : `bad port (${v}): must be an integer 0-65535`;
}

/** Istio CheckServiceAccount. */
function checkServiceAccount(v: string): string | null {
  if (v.includes('*')) return `wildcard not allowed in service accounts, found ${JSON.stringify(v)}`;
  const slashes = v.split('/').length - 1;
  if (slashes > 1) return `expected format 'serviceAccount' or 'namespace/serviceAccount', found ${JSON.stringify(v)}`;
  if (v.length > 320) return `value cannot exceed 320 characters, found ${JSON.stringify(v)}`;
  if (slashes === 1) {
    const [ns, sa] = v.split('/');
    if (!ns) return `expected format 'serviceAccount' or 'namespace/serviceAccount', found empty namespace ${JSON.stringify(v)}`;
    if (!sa) return `expected format 'serviceAccount' or 'namespace/serviceAccount', found empty serviceAccount ${JSON.stringify(v)}`;
  }
  return null;
}

interface Ctx {
  readonly k: KindDocument;
  readonly action: Action;
}

function err(c: Ctx, path: Path, msg: string): void {
  c.k.v.error(path, msg);
}

function checkEach(c: Ctx, path: Path, vals: readonly string[], check: (v: string) => string | null): boolean {
  let ok = true;
  vals.forEach((v, i) => {
    const m = check(v);
    if (m) {
      err(c, [...path, i], m);
      ok = false;
    }
  });
  return ok;
}

function cidrs(c: Ctx, path: Path, vals: readonly string[]): Cidr[] | null {
  const out: Cidr[] = [];
  let ok = true;
  vals.forEach((v, i) => {
    const r = parseCidr(v);
    if (typeof r === 'string') {
      err(c, [...path, i], r);
      ok = false;
    } else out.push(r);
  });
  return ok ? out : null;
}

/** Build the matcher for one condition/field kind, or null after reporting errors. */
function conditionField(c: Ctx, key: ConditionKey, label: string, negate: boolean, vals: string[], path: Path): Field | null {
  switch (key.kind) {
    case 'header':
      return new HeaderField(label, negate, vals, key.name, new StringSet(vals, { star: 'present' }));
    case 'inlineHeader':
      return new InlineHeaderField(label, negate, vals, key.name, new StringSet(vals, { star: 'present' }));
    case 'ip': {
      const cs = cidrs(c, path, vals);
      return cs ? new IpField(label, negate, vals, key.which, cs) : null;
    }
    case 'namespace':
      return new NamespaceField(label, negate, vals);
    case 'serviceAccount':
      return checkEach(c, path, vals, checkServiceAccount) ? new ServiceAccountField(label, negate, vals, c.k.namespace) : null;
    case 'principal':
      return new StringField(label, negate, vals, 'principal', new StringSet(vals, { star: 'nonEmpty', prefix: 'spiffe://' }));
    case 'trustDomain':
      return new StringField(label, negate, vals, 'trustDomain', new StringSet(vals, { star: 'nonEmpty' }));
    case 'requestPrincipal':
      return new RequestPrincipalField(label, negate, vals);
    case 'audiences':
      return new AudienceField(label, negate, vals, new StringSet(vals, { star: 'nonEmpty' }));
    case 'presenter':
      return new StringField(label, negate, vals, 'presenter', new StringSet(vals, { star: 'nonEmpty' }));
    case 'claims':
      return new ClaimField(label, negate, vals, key.path, new StringSet(vals, { star: 'nonEmpty' }));
    case 'destinationPort':
      return checkEach(c, path, vals, checkPort) ? new PortField(label, negate, vals, new Set(vals.map(Number))) : null;
    case 'sni':
      return new StringField(label, negate, vals, 'sni', new StringSet(vals, { star: 'nonEmpty' }));
  }
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

/** Fields CUSTOM policies may not use (Istio: "... is currently not supported with CUSTOM action"). */
const CUSTOM_FORBIDDEN_SOURCE = new Set([
  'principals',
  'notPrincipals',
  'requestPrincipals',
  'notRequestPrincipals',
  'namespaces',
  'notNamespaces',
  'serviceAccounts',
  'notServiceAccounts',
  'trustDomains',
  'notTrustDomains',
]);
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
