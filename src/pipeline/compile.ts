/**
 * YAML documents -> validated kinds -> CompiledConfig (immutable). Compile once,
 * evaluate many: nothing on the Check path ever sees YAML.
 */
import { createHash } from 'node:crypto';
import { dirname, isAbsolute, resolve } from 'node:path';
import { compileAuthnSteps, type AuthnConfig } from '../authn/index.js';
import { compileAuthzSteps, type AuthzConfig } from '../authz/index.js';
import { compileExchange, type ExchangeConfig } from '../exchange/compile.js';
import { compileLogins, type LoginConfig } from '../login/index.js';
import { compileMcp, type McpConfig } from '../mcp/index.js';
import type { Runtime } from '../core/runtime.js';
import { checkHttpTransport } from './http-limits.js';
import { ConfigError, type ConfigIssue } from '../config/issues.js';
import { KIND_VERSIONS, type CompileContext, type KindDocument, type KindName } from '../config/kinds.js';
import { DEFAULT_LIMITS, type ConfigLimits } from '../config/limits.js';
import { loadConfigFiles, type LoadedDocument, type LoadResult } from '../config/loader.js';
import { metadataSchema, ValidationContext } from '../config/schema.js';
import { DEFAULT_SETTINGS, parseSettings, type Settings } from '../config/settings.js';

export interface CompiledConfig {
  readonly settings: Settings;
  /** OIDCLogin documents: browser login, run before authn. */
  readonly login: LoginConfig;
  readonly authn: AuthnConfig;
  readonly authz: AuthzConfig;
  readonly exchange: ExchangeConfig;
  readonly mcp: McpConfig;
  /** Content hash of the documents (config_info metric, logs). */
  readonly hash: string;
  readonly files: readonly string[];
  readonly warnings: readonly ConfigIssue[];
  readonly counts: Readonly<Partial<Record<KindName, number>>>;
}

export interface CompileOptions {
  /** validate --ci: files and API servers that exist only in obo-authz's pod are warnings. */
  readonly outsideCluster?: boolean;
}

export type CompileResult =
  | { ok: true; config: CompiledConfig; issues: ConfigIssue[] }
  | { ok: false; issues: ConfigIssue[] };

const TOP_LEVEL = new Set(['apiVersion', 'kind', 'metadata', 'spec', 'status']);

function classify(doc: LoadedDocument, defaultNamespace: string | undefined): KindDocument | { v: ValidationContext } {
  const v = new ValidationContext(doc);
  const val = doc.value;
  for (const k of Object.keys(val)) {
    if (!TOP_LEVEL.has(k)) v.errorAtKey([k], `unknown top-level field ${JSON.stringify(k)} (expected apiVersion, kind, metadata, spec)`);
  }
  if (!doc.apiVersion) v.error(['apiVersion'], 'required field is missing');
  if (!doc.kind) v.error(['kind'], 'required field is missing');
  if (!doc.apiVersion || !doc.kind) return { v };
  const versions = (KIND_VERSIONS as Record<string, readonly string[] | undefined>)[doc.kind];
  if (!versions) {
    v.error(['kind'], `unknown kind ${JSON.stringify(doc.kind)} (known: ${Object.keys(KIND_VERSIONS).join(', ')})`);
    return { v };
  }
  if (!versions.includes(doc.apiVersion)) {
    v.error(['apiVersion'], `${doc.kind} must have apiVersion ${versions.join(' or ')}, got ${JSON.stringify(doc.apiVersion)}`);
    return { v };
  }
  if (val['metadata'] === undefined) {
    v.error(['metadata'], 'required field is missing (metadata.name is required)');
    return { v };
  }
  const metadata = metadataSchema.parse(val['metadata'], ['metadata'], v);
  if (!metadata) return { v };
  const namespace = metadata.namespace ?? defaultNamespace ?? DEFAULT_SETTINGS.defaultNamespace;
  return {
    doc,
    kind: doc.kind as KindName,
    metadata,
    namespace,
    name: metadata.name,
    ref: `${namespace}/${metadata.name}`,
    spec: val['spec'],
    v,
  };
}

/**
 * Checks that span two stages' configs: a header that is both a claim/payload output of a
 * jwtRule and the exchange output is a config error; an applying exchange overrides
 * `forwardOriginalToken: true` (a warning). Checked against the jwtRules that can apply to
 * the exchange policy's namespace: asking for a request without labels yields every jwtRule
 * that can apply to any workload the policy covers (a superset, which is what an error
 * check wants).
 */
function crossCheckAuthnExchange(authn: AuthnConfig, exchange: ExchangeConfig, docs: readonly KindDocument[]): void {
  for (const p of exchange.policies) {
    const k = docs.find((d) => d.ref === p.ref);
    if (!k) continue;
    const rules = authn.requestAuthentications.rulesFor({ namespace: p.scope.namespace, labels: {}, hasLabels: false, gateway: '', service: '', backend: '' });
    const forwarded = new Set<string>();
    for (const r of rules) {
      const outs = [...r.outputClaimToHeaders.map((c) => c.header), ...(r.outputPayloadToHeader ? [r.outputPayloadToHeader.toLowerCase()] : [])];
      if (outs.includes(p.upstream.header)) {
        k.v.error(['spec', 'upstream', 'header'], `header ${JSON.stringify(p.upstream.header)} is also an output header of RequestAuthentication ${r.id}`);
      }
      if (r.forwardOriginalToken) forwarded.add(r.id);
    }
    if (forwarded.size > 0) {
      k.v.warn(['spec', 'upstream'], `overrides forwardOriginalToken: true of ${[...forwarded].join(', ')}: upstream gets only the exchanged token`);
    }
  }
}

/** Compile loaded documents. Never throws for bad input: every problem becomes an issue. */
export function compileDocuments(
  documents: readonly LoadedDocument[],
  runtime: Runtime,
  files: readonly string[] = [],
  preIssues: readonly ConfigIssue[] = [],
  opts: CompileOptions = {},
): CompileResult {
  const steps = compileSteps(documents, runtime, files, preIssues, opts);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * compileDocuments in slices of at most about `sliceMs` of work, with the event loop free in
 * between: Checks that arrive during a reload are answered (by the config in force) instead of
 * waiting behind the whole compile.
 */
export async function compileDocumentsSliced(
  documents: readonly LoadedDocument[],
  runtime: Runtime,
  files: readonly string[] = [],
  preIssues: readonly ConfigIssue[] = [],
  opts: CompileOptions = {},
  sliceMs = 5,
): Promise<CompileResult> {
  const steps = compileSteps(documents, runtime, files, preIssues, opts);
  let start = performance.now();
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (performance.now() - start >= sliceMs) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      start = performance.now();
    }
  }
}

/** The compile, as steps: it yields between pieces of work (a document, a stage). */
function* compileSteps(
  documents: readonly LoadedDocument[],
  runtime: Runtime,
  files: readonly string[],
  preIssues: readonly ConfigIssue[],
  opts: CompileOptions,
): Generator<void, CompileResult, void> {
  const issues: ConfigIssue[] = [...preIssues];
  const contexts: ValidationContext[] = [];

  // Settings first: defaultNamespace decides every other document's namespace.
  let settings: Settings = DEFAULT_SETTINGS;
  const settingsDocs = documents.filter((d) => d.kind === 'Settings');
  if (settingsDocs.length > 1) {
    const v = new ValidationContext(settingsDocs[1]!);
    v.error(['kind'], `only one Settings document is allowed (first one is in ${settingsDocs[0]!.file} document ${settingsDocs[0]!.index})`);
    contexts.push(v);
  }
  const kinds: KindDocument[] = [];
  if (settingsDocs[0]) {
    const k = classify(settingsDocs[0], undefined);
    contexts.push(k.v);
    if ('doc' in k) {
      const s = parseSettings(k.spec, k.v);
      if (s) settings = s;
    }
  }
  const seen = new Map<string, KindDocument>();
  for (const d of documents) {
    if (d.kind === 'Settings') continue;
    yield;
    const k = classify(d, settings.defaultNamespace);
    contexts.push(k.v);
    if (!('doc' in k)) continue;
    const key = `${k.kind}:${k.ref}`;
    const prev = seen.get(key);
    if (prev) {
      k.v.error(['metadata', 'name'], `duplicate ${k.kind} ${k.ref} (also defined in ${prev.doc.file} document ${prev.doc.index})`);
      continue;
    }
    seen.set(key, k);
    kinds.push(k);
  }

  const byKind = (name: KindName) => kinds.filter((k) => k.kind === name);
  const cc: CompileContext = {
    settings,
    runtime,
    resolvePath(doc, p) {
      return isAbsolute(p) ? p : resolve(dirname(doc.file), p);
    },
    ...(opts.outsideCluster ? { outsideCluster: true } : {}),
  };
  yield;
  runtime.shared.beginGeneration();
  const login = compileLogins(byKind('OIDCLogin'), cc);
  yield;
  const authn = yield* compileAuthnSteps(
    { requestAuthentications: byKind('RequestAuthentication'), credentialValidators: byKind('CredentialValidator') },
    cc,
  );
  yield;
  const authz = yield* compileAuthzSteps(byKind('AuthorizationPolicy'), cc);
  yield;
  const exchange = compileExchange(
    {
      tokenExchangePolicies: byKind('TokenExchangePolicy'),
      securityTokenServices: byKind('SecurityTokenService'),
      delegationPolicies: byKind('DelegationPolicy'),
    },
    cc,
  );
  const mcp = compileMcp(byKind('MCPServer'), cc);
  crossCheckAuthnExchange(authn, exchange, byKind('TokenExchangePolicy'));
  checkHttpTransport(settings, kinds, exchange);
  for (const c of contexts) issues.push(...c.issues);
  if (issues.some((i) => i.severity === 'error')) {
    runtime.shared.abortGeneration();
    return { ok: false, issues };
  }

  // Content only (the documents in load order), not where the files are: `validate` in CI
  // and the server reading the same files from its mount report the same hash.
  const hash = createHash('sha256');
  for (const d of documents) {
    yield;
    hash.update(`${JSON.stringify(d.value)}\0`);
  }
  const counts: Partial<Record<KindName, number>> = {};
  for (const k of kinds) counts[k.kind] = (counts[k.kind] ?? 0) + 1;
  if (settingsDocs.length) counts.Settings = 1;
  const config: CompiledConfig = Object.freeze({
    settings,
    login,
    authn,
    authz,
    exchange,
    mcp,
    hash: hash.digest('hex').slice(0, 16),
    files: Object.freeze([...files]),
    warnings: Object.freeze(issues.filter((i) => i.severity === 'warning')),
    counts: Object.freeze(counts),
  });
  return { ok: true, config, issues };
}

/**
 * Load and compile config paths (files or folders). Never throws: an unexpected failure
 * (a bug, or the file system changing under us) becomes an error issue, so a reload can
 * never take the server down and the last good config stays in force.
 */
export function loadConfig(paths: readonly string[], runtime: Runtime, opts: CompileOptions = {}, limits: ConfigLimits = DEFAULT_LIMITS): CompileResult {
  return loadAndCompile(paths, runtime, opts, limits).result;
}

/** loadConfig, also returning the documents read (the compile worker hands them over). */
export function loadAndCompile(
  paths: readonly string[],
  runtime: Runtime,
  opts: CompileOptions = {},
  limits: ConfigLimits = DEFAULT_LIMITS,
): { loaded: LoadResult | null; result: CompileResult } {
  let loaded: LoadResult | null = null;
  try {
    loaded = loadConfigFiles(paths, limits);
    if (loaded.files.length === 0 && loaded.issues.length === 0) return { loaded, result: pathsFailure(paths, 'no *.yaml or *.yml files found') };
    return { loaded, result: compileDocuments(loaded.documents, runtime, loaded.files, loaded.issues, opts) };
  } catch (e) {
    runtime.shared.abortGeneration();
    return { loaded, result: pathsFailure(paths, `cannot load config: ${e instanceof Error ? `${e.name}: ${e.message.split('\n')[0]}` : String(e)}`) };
  }
}

/** A failure about the config paths as a whole (no document to point at). */
export function pathsFailure(paths: readonly string[], message: string): CompileResult {
  return {
    ok: false,
    issues: [{ severity: 'error', file: paths.join(','), line: 1, col: 1, document: 0, kind: '', name: '', field: '(file)', message }],
  };
}

export function compileOrThrow(paths: readonly string[], runtime: Runtime): CompiledConfig {
  const r = loadConfig(paths, runtime);
  if (!r.ok) throw new ConfigError(r.issues);
  return r.config;
}
