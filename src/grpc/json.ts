/**
 * proto3 JSON <-> the snake_case plain objects grpc-js uses, driven by reflection over our
 * protos: accepts both JSON names (camelCase) and proto names (snake_case) on input, and
 * writes canonical proto3 JSON on output (camelCase, enum names, Struct/BoolValue as JSON).
 */
import protobuf from 'protobufjs';
import { protoRoot } from './proto.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function camel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function fieldFor(type: protobuf.Type, key: string): protobuf.Field | undefined {
  return type.fields[key] ?? Object.values(type.fields).find((f) => camel(f.name) === key || f.options?.['json_name'] === key);
}

function structToJson(v: unknown): Json {
  const s = v as { fields?: Record<string, unknown> };
  const out: Record<string, Json> = {};
  for (const [k, val] of Object.entries(s.fields ?? {})) out[k] = valueToJson(val);
  return out;
}
function valueToJson(v: unknown): Json {
  const val = v as Record<string, unknown>;
  if ('stringValue' in val) return val['stringValue'] as string;
  if ('numberValue' in val) return val['numberValue'] as number;
  if ('boolValue' in val) return val['boolValue'] as boolean;
  if ('structValue' in val) return structToJson(val['structValue']);
  if ('listValue' in val) return ((val['listValue'] as { values?: unknown[] }).values ?? []).map(valueToJson);
  return null;
}
function jsonToValue(j: unknown): unknown {
  if (j === null || j === undefined) return { nullValue: 0 };
  if (typeof j === 'string') return { stringValue: j };
  if (typeof j === 'number') return { numberValue: j };
  if (typeof j === 'boolean') return { boolValue: j };
  if (Array.isArray(j)) return { listValue: { values: j.map(jsonToValue) } };
  return { structValue: jsonToStruct(j) };
}
function jsonToStruct(j: unknown): unknown {
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries((j ?? {}) as Record<string, unknown>)) fields[k] = jsonToValue(v);
  return { fields };
}

const WRAPPERS = new Set([
  'google.protobuf.BoolValue',
  'google.protobuf.StringValue',
  'google.protobuf.UInt32Value',
  'google.protobuf.Int32Value',
  'google.protobuf.UInt64Value',
  'google.protobuf.Int64Value',
  'google.protobuf.DoubleValue',
]);

function fullName(t: protobuf.ReflectionObject): string {
  return t.fullName.replace(/^\./, '');
}

/**
 * Normalize user JSON/YAML (proto3 JSON or snake_case) into the snake_case object shape of
 * `typeName`. Fields our protos do not declare are skipped, as the wire decoder skips them
 * (Envoy sends more than obo-authz reads); their paths are reported in `ignored`.
 */
export function fromProto3Json(typeName: string, input: unknown, ignored: string[] = []): Record<string, unknown> {
  const type = protoRoot().lookupType(typeName);
  return normalizeMessage(type, input, typeName, ignored) as Record<string, unknown>;
}

function normalizeMessage(type: protobuf.Type, input: unknown, path: string, ignored: string[] = []): unknown {
  const name = fullName(type);
  if (name === 'google.protobuf.Struct') return jsonToStruct(input);
  if (name === 'google.protobuf.Value') return jsonToValue(input);
  if (WRAPPERS.has(name)) return { value: input };
  if (name === 'google.protobuf.Timestamp' && typeof input === 'string') {
    const ms = Date.parse(input);
    if (Number.isNaN(ms)) throw new Error(`${path}: invalid timestamp ${JSON.stringify(input)}`);
    return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
  }
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new Error(`${path}: expected an object for ${name}`);
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(input as Record<string, unknown>)) {
    const f = fieldFor(type, k);
    if (!f) {
      ignored.push(`${path}.${k}`);
      continue;
    }
    f.resolve();
    out[f.name] = normalizeField(f, v, `${path}.${f.name}`, ignored);
  }
  return out;
}

function normalizeScalar(f: protobuf.Field, v: unknown, path: string, ignored: string[]): unknown {
  if (f.resolvedType instanceof protobuf.Type) return normalizeMessage(f.resolvedType, v, path, ignored);
  if (f.resolvedType instanceof protobuf.Enum) {
    if (typeof v === 'string') {
      const n = f.resolvedType.values[v];
      if (n === undefined) throw new Error(`${path}: unknown enum value ${JSON.stringify(v)}`);
      return n;
    }
    return v;
  }
  if (f.type === 'bytes' && typeof v === 'string') return Buffer.from(v, 'base64');
  if (['uint32', 'int32', 'sint32', 'fixed32', 'double', 'float'].includes(f.type) && typeof v === 'string') return Number(v);
  return v;
}

function normalizeField(f: protobuf.Field, v: unknown, path: string, ignored: string[]): unknown {
  if (f instanceof protobuf.MapField) {
    const out: Record<string, unknown> = {};
    for (const [k, val] of Object.entries((v ?? {}) as Record<string, unknown>)) out[k] = normalizeScalar(f, val, `${path}[${k}]`, ignored);
    return out;
  }
  if (f.repeated) {
    if (!Array.isArray(v)) throw new Error(`${path}: expected a list`);
    return v.map((el, i) => normalizeScalar(f, el, `${path}[${i}]`, ignored));
  }
  return normalizeScalar(f, v, path, ignored);
}

/** Canonical proto3 JSON of a snake_case object of `typeName` (as grpc-js produces or accepts). */
export function toProto3Json(typeName: string, obj: unknown): Json {
  const type = protoRoot().lookupType(typeName);
  return messageToJson(type, obj);
}

function messageToJson(type: protobuf.Type, obj: unknown): Json {
  const name = fullName(type);
  if (name === 'google.protobuf.Struct') return structToJson(obj);
  if (name === 'google.protobuf.Value') return valueToJson(obj);
  if (WRAPPERS.has(name)) return ((obj as { value?: Json }).value ?? null) as Json;
  const out: Record<string, Json> = {};
  const o = (obj ?? {}) as Record<string, unknown>;
  for (const f of type.fieldsArray) {
    const v = o[f.name];
    if (v === undefined || v === null) continue;
    f.resolve();
    const key = camel(f.name);
    if (f instanceof protobuf.MapField) {
      const m: Record<string, Json> = {};
      for (const [k, val] of Object.entries(v as Record<string, unknown>)) m[k] = scalarToJson(f, val);
      if (Object.keys(m).length) out[key] = m;
    } else if (f.repeated) {
      const arr = (v as unknown[]).map((el) => scalarToJson(f, el));
      if (arr.length) out[key] = arr;
    } else {
      const j = scalarToJson(f, v);
      // proto3 JSON omits scalar defaults (but keeps message fields that are set)
      if (!(f.resolvedType instanceof protobuf.Type) && (j === 0 || j === '' || j === false)) continue;
      out[key] = j;
    }
  }
  return out;
}

function scalarToJson(f: protobuf.Field, v: unknown): Json {
  if (f.resolvedType instanceof protobuf.Type) return messageToJson(f.resolvedType, v);
  if (f.resolvedType instanceof protobuf.Enum) {
    const n = typeof v === 'number' ? v : Number(v);
    return (f.resolvedType.valuesById[n] ?? n) as Json;
  }
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  return v as Json;
}
