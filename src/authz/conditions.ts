/**
 * AuthorizationPolicy attributes: the condition keys (`when[].key`, Istio's
 * pkg/config/security ValidateAttribute) and how each kind of attribute becomes a Field
 * (matchers.ts, auth-fields.ts) once its values are validated. Source and operation fields
 * reuse the same builders (compile.ts). A new condition key is a row in SIMPLE_KEYS (or a
 * prefixed key in parseConditionKey), a ConditionKey kind, and its case in conditionField.
 */
import type { Path } from '../config/issues.js';
import type { KindDocument } from '../config/kinds.js';
import { parseCidr, type Cidr } from '../match/ip.js';
import { StringSet } from '../match/strings.js';
import { AudienceField, ClaimField, RequestPrincipalField } from './auth-fields.js';
import { HeaderField, InlineHeaderField, IpField, NamespaceField, PortField, ServiceAccountField, StringField, type Field } from './matchers.js';
import { MCP_KEYS, McpField, type McpAttr } from './mcp-fields.js';
import type { IpWhich } from './request-view.js';

export type ConditionKey =
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
  | { kind: 'sni' }
  | { kind: 'mcp'; attr: McpAttr };

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
  if (Object.prototype.hasOwnProperty.call(MCP_KEYS, key)) return { kind: 'mcp', attr: MCP_KEYS[key]! };
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
  return `unknown attribute: ${key} (supported: ${[...Object.keys(SIMPLE_KEYS), 'request.headers[<name>]', 'request.auth.claims[<name>]...', 'request.experimental.inline.headers[<name>]', ...Object.keys(MCP_KEYS)].join(', ')})`;
}

const PORT_RE = /^[0-9]+$/;

export function checkPort(v: string): string | null {
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

/** The document being compiled (issues go to its `v`). */
export interface FieldContext {
  readonly k: KindDocument;
}

export function err(c: FieldContext, path: Path, msg: string): void {
  c.k.v.error(path, msg);
}

export function checkEach(c: FieldContext, path: Path, vals: readonly string[], check: (v: string) => string | null): boolean {
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

function cidrs(c: FieldContext, path: Path, vals: readonly string[]): Cidr[] | null {
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
export function conditionField(c: FieldContext, key: ConditionKey, label: string, negate: boolean, vals: string[], path: Path): Field | null {
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
    case 'mcp':
      return new McpField(label, negate, vals, key.attr, new StringSet(vals, { star: 'nonEmpty' }));
  }
}
