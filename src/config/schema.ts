/**
 * A small structural validator for config documents. Each schema checks a value at a
 * path and reports precise issues (unknown fields are errors, as in Kubernetes strict
 * decoding). Semantic checks that need more than shape live in each kind's compiler and
 * report through the same ValidationContext.
 */
import type { ConfigIssue, Path } from './issues.js';
import { issueAt, type LoadedDocument } from './loader.js';

export class ValidationContext {
  readonly issues: ConfigIssue[] = [];
  constructor(readonly doc: LoadedDocument) {}
  error(path: Path, message: string): void {
    this.issues.push(issueAt(this.doc, path, message, 'error'));
  }
  /** An error located at the mapping key of `path` (unknown or duplicate fields). */
  errorAtKey(path: Path, message: string): void {
    this.issues.push(issueAt(this.doc, path, message, 'error', true));
  }
  warn(path: Path, message: string): void {
    this.issues.push(issueAt(this.doc, path, message, 'warning'));
  }
  get hasErrors(): boolean {
    return this.issues.some((i) => i.severity === 'error');
  }
}

export interface Schema<T> {
  /** Returns the parsed value, or undefined after reporting at least one issue. */
  parse(value: unknown, path: Path, ctx: ValidationContext): T | undefined;
  readonly typeName: string;
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'list';
  if (typeof v === 'object') return 'mapping';
  return typeof v;
}

export interface StringOpts {
  nonEmpty?: boolean;
  enum?: readonly string[];
  pattern?: RegExp;
  patternHint?: string;
}

export function str(opts: StringOpts = {}): Schema<string> {
  return {
    typeName: 'string',
    parse(v, path, ctx) {
      if (typeof v !== 'string') {
        ctx.error(path, `expected a string, got ${typeOf(v)}`);
        return undefined;
      }
      if (opts.nonEmpty && v.length === 0) {
        ctx.error(path, 'must not be empty');
        return undefined;
      }
      if (opts.enum && !opts.enum.includes(v)) {
        ctx.error(path, `must be one of ${opts.enum.map((e) => JSON.stringify(e)).join(', ')}; got ${JSON.stringify(v)}`);
        return undefined;
      }
      if (opts.pattern && !opts.pattern.test(v)) {
        ctx.error(path, `invalid value ${JSON.stringify(v)}${opts.patternHint ? `: ${opts.patternHint}` : ''}`);
        return undefined;
      }
      return v;
    },
  };
}

export interface NumberOpts {
  int?: boolean;
  min?: number;
  max?: number;
}

export function num(opts: NumberOpts = {}): Schema<number> {
  return {
    typeName: 'number',
    parse(v, path, ctx) {
      if (typeof v !== 'number' || !Number.isFinite(v)) {
        ctx.error(path, `expected a number, got ${typeOf(v)}`);
        return undefined;
      }
      if (opts.int && !Number.isInteger(v)) {
        ctx.error(path, `expected an integer, got ${v}`);
        return undefined;
      }
      if (opts.min !== undefined && v < opts.min) {
        ctx.error(path, `must be >= ${opts.min}, got ${v}`);
        return undefined;
      }
      if (opts.max !== undefined && v > opts.max) {
        ctx.error(path, `must be <= ${opts.max}, got ${v}`);
        return undefined;
      }
      return v;
    },
  };
}

export function bool(): Schema<boolean> {
  return {
    typeName: 'boolean',
    parse(v, path, ctx) {
      if (typeof v !== 'boolean') {
        ctx.error(path, `expected a boolean, got ${typeOf(v)}`);
        return undefined;
      }
      return v;
    },
  };
}

export function list<T>(item: Schema<T>, opts: { minItems?: number } = {}): Schema<T[]> {
  return {
    typeName: `list of ${item.typeName}`,
    parse(v, path, ctx) {
      if (!Array.isArray(v)) {
        ctx.error(path, `expected a list, got ${typeOf(v)}`);
        return undefined;
      }
      if (opts.minItems !== undefined && v.length < opts.minItems) {
        ctx.error(path, opts.minItems === 1 ? 'must not be empty' : `must have at least ${opts.minItems} items`);
        return undefined;
      }
      const out: T[] = [];
      let ok = true;
      v.forEach((el, i) => {
        const r = item.parse(el, [...path, i], ctx);
        if (r === undefined) ok = false;
        else out.push(r);
      });
      return ok ? out : undefined;
    },
  };
}

/** map<string, T> such as `matchLabels` or `outputClaimToHeaders` values. */
export function record<T>(value: Schema<T>): Schema<Record<string, T>> {
  return {
    typeName: `mapping of ${value.typeName}`,
    parse(v, path, ctx) {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) {
        ctx.error(path, `expected a mapping, got ${typeOf(v)}`);
        return undefined;
      }
      const out: Record<string, T> = {};
      let ok = true;
      for (const [k, el] of Object.entries(v as Record<string, unknown>)) {
        const r = value.parse(el, [...path, k], ctx);
        if (r === undefined) ok = false;
        else out[k] = r;
      }
      return ok ? out : undefined;
    },
  };
}

type FieldSchemas = Record<string, Schema<unknown>>;

export interface ObjectOpts {
  required?: readonly string[];
  /** Accept and ignore unknown fields (used for Kubernetes metadata). */
  allowUnknown?: boolean;
}

/** A mapping with known fields; unknown fields are errors; absent optional fields are omitted. */
export function obj<T>(fields: FieldSchemas, opts: ObjectOpts = {}): Schema<T> {
  const known = Object.keys(fields);
  return {
    typeName: 'mapping',
    parse(v, path, ctx) {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) {
        ctx.error(path, `expected a mapping, got ${typeOf(v)}`);
        return undefined;
      }
      const input = v as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      let ok = true;
      for (const k of Object.keys(input)) {
        if (!(k in fields)) {
          if (opts.allowUnknown) continue;
          ctx.errorAtKey([...path, k], `unknown field ${JSON.stringify(k)}${suggest(k, known)}`);
          ok = false;
          continue;
        }
        const val = input[k];
        if (val === null || val === undefined) continue; // YAML `key:` with no value = unset
        const r = fields[k]!.parse(val, [...path, k], ctx);
        if (r === undefined) ok = false;
        else out[k] = r;
      }
      for (const k of opts.required ?? []) {
        if (input[k] === undefined || input[k] === null) {
          ctx.error([...path, k], 'required field is missing');
          ok = false;
        }
      }
      return ok ? (out as T) : undefined;
    },
  };
}

function suggest(k: string, known: readonly string[]): string {
  const lk = k.toLowerCase();
  const hit = known.find((c) => c.toLowerCase() === lk || c.toLowerCase().replace(/_/g, '') === lk.replace(/_/g, ''));
  return hit ? ` (did you mean ${JSON.stringify(hit)}?)` : ` (known fields: ${known.join(', ')})`;
}

const DURATION_RE = /^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+$/;
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parse a Go/Kubernetes style duration ("750ms", "5s", "1m30s", "7d") into milliseconds. */
export function parseDuration(s: string): number | undefined {
  if (!DURATION_RE.test(s)) return undefined;
  let total = 0;
  for (const m of s.matchAll(DURATION_PART)) total += Number(m[1]) * UNIT_MS[m[2]!]!;
  return total;
}

/** A duration string, returned as milliseconds. */
export function duration(opts: { minMs?: number; maxMs?: number } = {}): Schema<number> {
  return {
    typeName: 'duration',
    parse(v, path, ctx) {
      if (typeof v !== 'string') {
        ctx.error(path, `expected a duration string such as "5s" or "750ms", got ${typeOf(v)}`);
        return undefined;
      }
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.error(path, `invalid duration ${JSON.stringify(v)} (use units ms, s, m, h, d, e.g. "1.5s")`);
        return undefined;
      }
      if (opts.minMs !== undefined && ms < opts.minMs) {
        ctx.error(path, `must be at least ${opts.minMs}ms, got ${JSON.stringify(v)}`);
        return undefined;
      }
      if (opts.maxMs !== undefined && ms > opts.maxMs) {
        ctx.error(path, `must be at most ${opts.maxMs}ms, got ${JSON.stringify(v)}`);
        return undefined;
      }
      return ms;
    },
  };
}

/** Accept any value (for free-form payloads such as extra STS parameters checked later). */
export function any(): Schema<unknown> {
  return { typeName: 'any', parse: (v) => v };
}

/** Kubernetes-style metadata: name required, namespace optional, labels/annotations maps; other fields ignored. */
export interface Metadata {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export const metadataSchema: Schema<Metadata> = obj<Metadata>(
  {
    name: str({ nonEmpty: true, pattern: DNS_SUBDOMAIN, patternHint: 'must be a lower-case RFC 1123 subdomain' }),
    namespace: str({ nonEmpty: true, pattern: DNS_LABEL, patternHint: 'must be a lower-case RFC 1123 label' }),
    labels: record(str()),
    annotations: record(str()),
  },
  { required: ['name'], allowUnknown: true },
);
