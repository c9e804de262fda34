/**
 * Docs that are right: every YAML block in the docs is complete and valid — a config block
 * is loaded as `validate --ci` would (pod-only files are warnings, everything else an
 * error), a `fragment` (another tool's file) must parse, an `apikey-file` must be a valid
 * key file; the example folders and deploy/'s ConfigMaps validate; every relative link
 * points at a file that exists; docs/cli.md names every flag of every command.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { configExamples, docFiles, docYamlBlocks } from '../../scripts/config-examples.mjs';
import { parseApiKeyFiles } from '../../src/authn/api-keys.js';
import { formatIssue } from '../../src/config/issues.js';
import { parseYamlText } from '../../src/config/loader.js';
import { compileDocuments, loadConfig, type CompileResult } from '../../src/pipeline/compile.js';
import { flagLabel } from '../../src/cli/args.js';
import { COMMAND_SPECS } from '../../src/cli/specs.js';
import { formatTableIssue, loadTable } from '../../src/cli/policy-test/table.js';
import { createTestRuntime } from '../helpers/runtime.js';
import { tempDir } from '../helpers/tmp.js';

const ROOT = process.cwd();

/** Compile as validate --ci does, with no network (a doc's IdP is never contacted). */
function validateCi(files: Record<string, string> | undefined, dir: string | undefined): CompileResult {
  const runtime = createTestRuntime({
    fetch: async () => {
      throw new Error('docs test: no network');
    },
  });
  try {
    if (dir) return loadConfig([dir], runtime, { outsideCluster: true });
    const docs = [];
    const issues = [];
    for (const [name, text] of Object.entries(files!)) {
      const r = parseYamlText(text, join('/docs-example', name));
      docs.push(...r.documents);
      issues.push(...r.issues);
    }
    return compileDocuments(docs, runtime, Object.keys(files!), issues, { outsideCluster: true });
  } finally {
    runtime.shared.disposeAll();
  }
}

const errorsOf = (r: CompileResult) => r.issues.filter((i) => i.severity === 'error').map(formatIssue);

describe('config examples (docs, examples/, envoy/, deploy/)', () => {
  const examples = configExamples(ROOT);

  it('are found: the example folders, deploy ConfigMaps and every config block of the docs', () => {
    const names = examples.map((e) => e.name);
    expect(names).toContain('examples/quickstart');
    expect(names).toContain('envoy/config');
    expect(names.some((n) => n.startsWith('deploy/kubernetes/shared/'))).toBe(true);
    expect(names.filter((n) => n.startsWith('docs/')).length).toBeGreaterThanOrEqual(20);
  });

  it.each(examples.map((e) => [e.name, e] as const))('%s is a complete, valid config (validate --ci)', (_name, e) => {
    const r = validateCi(e.files, e.dir);
    expect(errorsOf(r)).toEqual([]);
    expect(r.ok).toBe(true);
  });

  it('the repository folders are valid without --ci too (nothing in them is pod-only)', () => {
    for (const d of ['examples/quickstart', 'envoy/config']) {
      const runtime = createTestRuntime();
      const r = loadConfig([d], runtime);
      runtime.shared.disposeAll();
      expect(errorsOf(r), d).toEqual([]);
    }
  });

  it('the check is not blind: the errors the docs once had are caught', () => {
    const broken: [string, string][] = [
      ['unquoted flow YAML', 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec:\n  rules:\n  - when: [{key: request.auth.claims[role], values: [admin]}]\n'],
      ['a placeholder block', 'apiVersion: obo-authz.dev/v1alpha1\nkind: CredentialValidator\nmetadata: {name: k}\nspec:\n  type: APIKey\n  apiKey: {...}\n'],
      ['mode: JWKS with a tokenReview block', 'apiVersion: obo-authz.dev/v1alpha1\nkind: CredentialValidator\nmetadata: {name: k}\nspec:\n  type: KubernetesServiceAccount\n  kubernetes:\n    mode: JWKS\n    issuer: https://k\n    audiences: [a]\n    tokenReview: {timeout: 1s}\n'],
      ['a fragment without apiVersion', 'kind: DelegationPolicy\nspec:\n  rules: []\n'],
      ['a reference to a document the block does not hold', 'apiVersion: obo-authz.dev/v1alpha1\nkind: TokenExchangePolicy\nmetadata: {name: t}\nspec:\n  target: {audience: a}\n  sts: missing\n'],
    ];
    for (const [label, text] of broken) expect(validateCi({ 'config.yaml': text }, undefined).ok, label).toBe(false);
  });
});

describe('other YAML blocks in the docs', () => {
  const blocks = docYamlBlocks(ROOT);

  it('are marked config, fragment, apikey-file or test-table', () => {
    for (const b of blocks) expect(['config', 'fragment', 'apikey-file', 'test-table'], `${b.file}:${b.line}`).toContain(b.kind);
  });

  it.each(blocks.filter((b) => b.kind === 'test-table').map((b) => [`${b.file}:${b.line}`, b] as const))('%s (an obo-authz test table) is valid', (_w, b) => {
    const dir = tempDir('obo-docs-table-');
    writeFileSync(join(dir, 'table.yaml'), b.text);
    expect(loadTable(join(dir, 'table.yaml')).issues.map(formatTableIssue)).toEqual([]);
  });

  it.each(blocks.filter((b) => b.kind === 'fragment').map((b) => [`${b.file}:${b.line}`, b] as const))('%s (a fragment) parses', (_w, b) => {
    for (const d of parseAllDocuments(b.text)) expect(d.errors.map((e) => e.message)).toEqual([]);
  });

  it.each(blocks.filter((b) => b.kind === 'apikey-file').map((b) => [`${b.file}:${b.line}`, b] as const))('%s (an API key file) is valid', (_w, b) => {
    const r = parseApiKeyFiles([{ name: '', content: b.text }], 'apikeys.yaml');
    expect(r.ok ? '' : r.error).toBe('');
  });
});

describe('links and the command reference', () => {
  it('every relative link in the docs points at a file that exists', () => {
    const broken: string[] = [];
    for (const f of [...docFiles(ROOT), 'examples/demo-keys/README.md']) {
      const text = readFileSync(f, 'utf8');
      for (const m of text.matchAll(/\]\(([^)\s#]+)(#[^)]*)?\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target) || !/^[\w./-]+$/.test(target)) continue; // URLs; `[x](a|b)` in prose is no link
        if (!existsSync(resolve(dirname(f), target))) broken.push(`${f}: ${target}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('docs/cli.md describes every command and every flag', () => {
    const doc = readFileSync('docs/cli.md', 'utf8');
    for (const s of COMMAND_SPECS) {
      expect(doc, s.name).toContain(`obo-authz ${s.name}`);
      for (const f of s.flags) expect(doc, `${s.name} ${flagLabel(f)}`).toContain(`--${f.name}`);
    }
  });
});
