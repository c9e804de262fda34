/**
 * The test-table format of `obo-authz test` (docs/testing.md): a YAML document naming the
 * config under test, signing keys to mint tokens with, and cases (a request, the expected
 * decision). Read strictly with the config schema helpers: an unknown or mistyped field is an
 * error at file:line:col naming the field, as in a config file.
 */
import { readFileSync } from 'node:fs';
import type { ConfigIssue } from '../../config/issues.js';
import { parseYamlText } from '../../config/loader.js';
import { any, bool, list, num, obj, record, str, ValidationContext, type Schema } from '../../config/schema.js';

export interface TokenSpec {
  readonly key: string;
  readonly claims?: Record<string, unknown>;
  /** Header that carries it (default authorization). */
  readonly header?: string;
  /** Prefix before it (default "Bearer " in authorization, else none). */
  readonly prefix?: string;
  /** Lifetime from `now`, may be negative for an expired token (default 1h). */
  readonly expiresIn?: string;
}

export interface PeerSpec {
  readonly address?: string;
  readonly port?: number;
  readonly principal?: string;
  readonly labels?: Record<string, string>;
}

export interface RequestSpec {
  /** A CheckRequest file (relative to the table) or an inline CheckRequest, as `check --request` reads them. */
  readonly checkRequest?: unknown;
  readonly method?: string;
  readonly path?: string;
  readonly host?: string;
  readonly scheme?: string;
  readonly headers?: Record<string, string>;
  readonly token?: TokenSpec;
  readonly tokens?: TokenSpec[];
  readonly source?: PeerSpec;
  readonly destination?: PeerSpec;
  readonly contextExtensions?: Record<string, string>;
  readonly sni?: string;
}

export interface UpstreamExpect {
  /** Set upstream with this value; "*" = set with any value. */
  readonly headers?: Record<string, string>;
  /** Not set upstream. */
  readonly absent?: string[];
  /** Listed in headers_to_remove. */
  readonly removed?: string[];
  /** A JWT set upstream (default in authorization, "Bearer " stripped) whose payload holds these claims. */
  readonly token?: { header?: string; claims: Record<string, unknown> };
}

export interface ExpectSpec {
  readonly decision?: 'allow' | 'deny';
  readonly status?: number;
  readonly reason?: string;
  readonly policy?: string;
  readonly rule?: number;
  readonly body?: string;
  readonly principal?: string;
  readonly actor?: string;
  /** Headers of the deny response (www-authenticate ...); "*" = present. */
  readonly headers?: Record<string, string>;
  readonly upstream?: UpstreamExpect;
}

export interface CaseSpec {
  readonly name: string;
  readonly request?: RequestSpec;
  readonly expect: ExpectSpec;
  readonly skip?: boolean;
}

export interface KeySpec {
  readonly file?: string;
  readonly jwk?: unknown;
  readonly issuer?: string;
  readonly audience?: string | string[];
  readonly kid?: string;
  readonly alg?: string;
  readonly jwksUri?: string;
}

export interface TableSpec {
  readonly config?: string | string[];
  readonly now?: string;
  readonly keys?: Record<string, KeySpec>;
  readonly defaults?: { request?: RequestSpec };
  readonly cases: CaseSpec[];
}

export interface LoadedTable {
  readonly file: string;
  readonly spec: TableSpec;
  /** Where a case is written (for messages). */
  readonly caseLine: (index: number) => number;
}

function oneOf<A, B>(a: Schema<A>, b: Schema<B>, typeName: string): Schema<A | B> {
  return {
    typeName,
    parse(v, path, ctx) {
      const probe = new ValidationContext(ctx.doc);
      const r = a.parse(v, path, probe);
      return r !== undefined ? r : b.parse(v, path, ctx);
    },
  };
}

const strOrList = oneOf(str(), list(str()), 'string or list of strings');
const LIFETIME = /^-?(\d+(\.\d+)?(ms|s|m|h|d))+$/;

const tokenSchema = obj<TokenSpec>(
  {
    key: str({ nonEmpty: true }),
    claims: record(any()),
    header: str({ nonEmpty: true }),
    prefix: str(),
    expiresIn: str({ pattern: LIFETIME, patternHint: 'a duration such as 1h or 90s, negative for an expired token (-1h)' }),
  },
  { required: ['key'] },
);

const peerSchema = obj<PeerSpec>({ address: str(), port: num({ int: true, min: 0, max: 65535 }), principal: str(), labels: record(str()) });

export const requestSchema = obj<RequestSpec>({
  checkRequest: oneOf(str({ nonEmpty: true }), record(any()), 'file name or CheckRequest'),
  method: str({ nonEmpty: true }),
  path: str({ pattern: /^\//, patternHint: 'must start with "/"' }),
  host: str(),
  scheme: str(),
  headers: record(str()),
  token: tokenSchema,
  tokens: list(tokenSchema),
  source: peerSchema,
  destination: peerSchema,
  contextExtensions: record(str()),
  sni: str(),
});

const expectSchema = obj<ExpectSpec>({
  decision: str({ enum: ['allow', 'deny'] }),
  status: num({ int: true, min: 100, max: 599 }),
  reason: str({ pattern: /^(OK|ERR_[A-Z_]+)$/, patternHint: 'a reason code such as OK or ERR_RBAC_DENIED' }),
  policy: str(),
  rule: num({ int: true, min: 0 }),
  body: str(),
  principal: str(),
  actor: str(),
  headers: record(str()),
  upstream: obj<UpstreamExpect>({
    headers: record(str()),
    absent: list(str()),
    removed: list(str()),
    token: obj({ header: str({ nonEmpty: true }), claims: record(any()) }, { required: ['claims'] }),
  }),
});

const tableSchema = obj<TableSpec>(
  {
    config: strOrList,
    now: str({ pattern: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/, patternHint: 'an RFC 3339 time such as 2026-01-01T00:00:00Z' }),
    keys: record(
      obj<KeySpec>({
        file: str({ nonEmpty: true }),
        jwk: any(),
        issuer: str({ nonEmpty: true }),
        audience: strOrList,
        kid: str({ nonEmpty: true }),
        alg: str({ enum: ['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA'] }),
        jwksUri: str({ pattern: /^https?:\/\//, patternHint: 'an http(s) URL' }),
      }),
    ),
    defaults: obj({ request: requestSchema }),
    cases: list(obj<CaseSpec>({ name: str({ nonEmpty: true }), request: requestSchema, expect: expectSchema, skip: bool() }, { required: ['name', 'expect'] }), { minItems: 1 }),
  },
  { required: ['cases'] },
);

/** A table problem as `file:line:col: field: message`. */
export function formatTableIssue(i: ConfigIssue): string {
  return `${i.file}:${i.line}:${i.col}: ${i.field}: ${i.severity === 'warning' ? 'warning: ' : ''}${i.message}`;
}

/** Read and check one table file; issues are located errors (an empty list = usable). */
export function loadTable(file: string): { table?: LoadedTable; issues: ConfigIssue[] } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    return { issues: [{ severity: 'error', file, line: 1, col: 1, document: 0, kind: '', name: '', field: '(file)', message: `cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}` }] };
  }
  const { documents, issues } = parseYamlText(text, file);
  if (issues.length > 0) return { issues };
  if (documents.length !== 1) {
    return { issues: [{ severity: 'error', file, line: 1, col: 1, document: 0, kind: '', name: '', field: '(file)', message: documents.length === 0 ? 'the file holds no test table' : 'expected one YAML document (one test table)' }] };
  }
  const doc = documents[0]!;
  const v = new ValidationContext(doc);
  const spec = tableSchema.parse(doc.value, [], v);
  const noExpectation = (spec?.cases ?? []).findIndex((c) => Object.keys(c.expect).length === 0);
  if (noExpectation >= 0) v.error(['cases', noExpectation, 'expect'], 'name at least one expectation (decision, status, reason, policy, upstream ...)');
  (spec?.cases ?? []).forEach((c, i) => {
    const r = c.request ?? {};
    if (r.token && r.tokens) v.error(['cases', i, 'request', 'tokens'], 'use token or tokens, not both');
    for (const t of [...(r.token ? [r.token] : []), ...(r.tokens ?? [])]) {
      if (!spec?.keys?.[t.key]) v.error(['cases', i, 'request', r.token ? 'token' : 'tokens'], `no key ${JSON.stringify(t.key)} in keys${spec?.keys ? ` (known: ${Object.keys(spec.keys).join(', ')})` : ''}`);
    }
  });
  for (const [name, k] of Object.entries(spec?.keys ?? {})) {
    if ((k.file === undefined) === (k.jwk === undefined)) v.error(['keys', name], 'set exactly one of file or jwk');
  }
  if (!spec || v.issues.length > 0) return { issues: v.issues };
  return { table: { file, spec, caseLine: (i) => doc.locate(['cases', i]).line }, issues: [] };
}

