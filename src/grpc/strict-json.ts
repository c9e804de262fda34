/**
 * Strict checking of a hand-written or captured message (a CheckRequest file) against our
 * protos before it is converted: a field that does not exist (a typo), a list where a map
 * is expected, a value of the wrong type are errors naming the field as written, instead of
 * being skipped — a mistyped `authorisation` header map would otherwise be evaluated as a
 * request without a token. Fields Envoy sends that obo-authz does not read are accepted.
 */
import protobuf from 'protobufjs';
import { closest } from '../config/suggest.js';
import { protoRoot } from './proto.js';

export class MessageFieldError extends Error {
  constructor(
    readonly field: string,
    readonly problem: string,
  ) {
    super(`${field}: ${problem}`);
    this.name = 'MessageFieldError';
  }
}

/**
 * Fields of Envoy's messages that our wire-compatible subset does not declare (obo-authz
 * does not read them), by message: accepted in a request file, reported as skipped.
 */
const ENVOY_ONLY: Readonly<Record<string, readonly string[]>> = {
  'envoy.config.core.v3.SocketAddress': ['resolver_name', 'ipv4_compat', 'network_namespace_filepath'],
  'envoy.config.core.v3.Address': ['envoy_internal_address'],
  'envoy.config.core.v3.Metadata': ['typed_filter_metadata'],
};

const camel = (name: string) => name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a map';
  return `a ${typeof v}`;
}

const INT_TYPES = new Set(['int32', 'uint32', 'sint32', 'fixed32', 'sfixed32', 'int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);

/** Check `input` against message `typeName`; throws MessageFieldError. Returns the skipped Envoy-only fields. */
export function checkMessage(typeName: string, input: unknown, root = ''): string[] {
  const skipped: string[] = [];
  checkType(protoRoot().lookupType(typeName), input, root, skipped);
  return skipped;
}

function checkType(type: protobuf.Type, v: unknown, path: string, skipped: string[]): void {
  const name = type.fullName.replace(/^\./, '');
  if (name === 'google.protobuf.Struct') {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new MessageFieldError(path, `expected a map (a JSON object), got ${typeOf(v)}`);
    return;
  }
  if (name === 'google.protobuf.Value') return;
  if (name === 'google.protobuf.Timestamp') {
    if (typeof v === 'string' && !Number.isNaN(Date.parse(v))) return;
    if (typeof v === 'string') throw new MessageFieldError(path, `invalid timestamp ${JSON.stringify(v)} (expected RFC 3339, such as "2026-01-01T00:00:00Z")`);
  }
  if (name === 'google.protobuf.BoolValue') {
    if (typeof v !== 'boolean') throw new MessageFieldError(path, `expected true or false, got ${typeOf(v)}`);
    return;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new MessageFieldError(path, `expected a map (${name.split('.').pop()}), got ${typeOf(v)}`);
  const names = type.fieldsArray.map((f) => camel(f.name));
  const envoyOnly = ENVOY_ONLY[name] ?? [];
  const oneofs = new Map<string, string>();
  for (const [key, val] of Object.entries(v as Record<string, unknown>)) {
    const at = path ? `${path}.${key}` : key;
    const f = type.fields[key] ?? type.fieldsArray.find((x) => camel(x.name) === key);
    if (!f) {
      if (envoyOnly.includes(key) || envoyOnly.map(camel).includes(key)) {
        skipped.push(at);
        continue;
      }
      const hint = closest(key, names);
      throw new MessageFieldError(at, `unknown field${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ''}; ${name.split('.').pop()} has ${names.join(', ')}`);
    }
    if (f.partOf) {
      const other = oneofs.get(f.partOf.name);
      if (other) throw new MessageFieldError(at, `only one of ${other} and ${key} may be set`);
      oneofs.set(f.partOf.name, key);
    }
    f.resolve();
    if (val === null) continue;
    checkField(f, val, at, skipped);
  }
}

function checkField(f: protobuf.Field, v: unknown, path: string, skipped: string[]): void {
  if (f instanceof protobuf.MapField) {
    if (Array.isArray(v)) {
      const headerHint = f.name === 'headers' ? ' (write {"authorization": "Bearer ..."}; a list of {key, value} entries belongs in headerMap.headers)' : '';
      throw new MessageFieldError(path, `expected a map of name to value, got a list${headerHint}`);
    }
    if (typeof v !== 'object' || v === null) throw new MessageFieldError(path, `expected a map of name to value, got ${typeOf(v)}`);
    for (const [k, val] of Object.entries(v as Record<string, unknown>)) checkScalar(f, val, `${path}[${JSON.stringify(k)}]`, skipped);
    return;
  }
  if (f.repeated) {
    if (!Array.isArray(v)) throw new MessageFieldError(path, `expected a list, got ${typeOf(v)}`);
    v.forEach((el, i) => checkScalar(f, el, `${path}[${i}]`, skipped));
    return;
  }
  checkScalar(f, v, path, skipped);
}

function checkScalar(f: protobuf.Field, v: unknown, path: string, skipped: string[]): void {
  if (f.resolvedType instanceof protobuf.Type) return checkType(f.resolvedType, v, path, skipped);
  if (f.resolvedType instanceof protobuf.Enum) {
    const e = f.resolvedType;
    if (typeof v === 'string' ? e.values[v] === undefined : typeof v !== 'number' || e.valuesById[v] === undefined) {
      throw new MessageFieldError(path, `expected one of ${Object.keys(e.values).join(', ')}, got ${JSON.stringify(v)}`);
    }
    return;
  }
  if (f.type === 'string') {
    if (typeof v !== 'string') throw new MessageFieldError(path, `expected a string, got ${typeOf(v)}${typeof v === 'object' ? '' : ` (${JSON.stringify(v)}: quote it)`}`);
  } else if (f.type === 'bool') {
    if (typeof v !== 'boolean') throw new MessageFieldError(path, `expected true or false, got ${typeOf(v)}`);
  } else if (f.type === 'bytes') {
    if (typeof v !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(v)) throw new MessageFieldError(path, 'expected base64 text');
  } else if (INT_TYPES.has(f.type)) {
    const n = typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n)) throw new MessageFieldError(path, `expected an integer, got ${typeOf(v)}${typeof v === 'string' ? ` ${JSON.stringify(v)}` : ''}`);
    if (f.type.startsWith('uint') && n < 0) throw new MessageFieldError(path, `must not be negative, got ${n}`);
    if (f.type === 'uint32' && n > 0xffffffff) throw new MessageFieldError(path, `too large: ${n}`);
  } else if (typeof v !== 'number' && !(typeof v === 'string' && Number.isFinite(Number(v)))) {
    throw new MessageFieldError(path, `expected a number, got ${typeOf(v)}`);
  }
}
