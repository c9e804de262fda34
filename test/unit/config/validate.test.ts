/**
 * Config errors name the file, line, column, document and field
 * (`file:line:col: document N (Kind/name): field.path: message`).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runValidate } from '../../../src/cli/validate.js';
import { formatIssue } from '../../../src/config/issues.js';
import { compileYaml } from '../../helpers/config.js';
import { createTestRuntime } from '../../helpers/runtime.js';
import { tempDir } from '../../helpers/tmp.js';

const SETTINGS = 'apiVersion: obo-authz.dev/v1alpha1\nkind: Settings\nmetadata:\n  name: s\n';

const CASES: { name: string; yaml: string; expected: string }[] = [
  {
    name: 'YAML syntax error',
    yaml: 'apiVersion: v1\nkind: [unclosed\n',
    expected: 'f.yaml:3:1: document 1 (?/?): (syntax): YAML syntax error:',
  },
  {
    name: 'unknown kind',
    yaml: 'apiVersion: obo-authz.dev/v1alpha1\nkind: Sttings\nmetadata: {name: s}\n',
    expected: 'f.yaml:2:7: document 1 (Sttings/s): kind: unknown kind "Sttings"',
  },
  {
    name: 'wrong apiVersion for a kind',
    yaml: 'apiVersion: security.istio.io/v2\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {}\n',
    expected: 'f.yaml:1:13: document 1 (AuthorizationPolicy/p): apiVersion: AuthorizationPolicy must have apiVersion security.istio.io/v1 or security.istio.io/v1beta1',
  },
  {
    name: 'missing apiVersion',
    yaml: 'kind: Settings\nmetadata: {name: s}\n',
    expected: 'f.yaml:1:1: document 1 (Settings/s): apiVersion: required field is missing',
  },
  {
    name: 'missing metadata',
    yaml: 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nspec: {}\n',
    expected: 'f.yaml:1:1: document 1 (AuthorizationPolicy/?): metadata: required field is missing',
  },
  {
    name: 'invalid metadata.name',
    yaml: 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: Bad_Name\nspec: {}\n',
    expected: 'f.yaml:4:9: document 1 (AuthorizationPolicy/Bad_Name): metadata.name: invalid value "Bad_Name": must be a lower-case RFC 1123 subdomain',
  },
  {
    name: 'unknown top-level field',
    yaml: `${SETTINGS}spec: {}\nspecs: {}\n`,
    expected: 'f.yaml:6:1: document 1 (Settings/s): specs: unknown top-level field "specs"',
  },
  {
    name: 'unknown Settings field with a suggestion',
    yaml: `${SETTINGS}spec:\n  rootnamespace: x\n`,
    expected: 'f.yaml:6:3: document 1 (Settings/s): spec.rootnamespace: unknown field "rootnamespace" (did you mean "rootNamespace"?)',
  },
  {
    name: 'bad duration',
    yaml: `${SETTINGS}spec:\n  shutdownGracePeriod: 5 seconds\n`,
    expected: 'f.yaml:6:24: document 1 (Settings/s): spec.shutdownGracePeriod: invalid duration "5 seconds"',
  },
  {
    name: 'negative trustedProxyHops',
    yaml: `${SETTINGS}spec:\n  trustedProxyHops: -1\n`,
    expected: 'f.yaml:6:21: document 1 (Settings/s): spec.trustedProxyHops: must be >= 0, got -1',
  },
  {
    name: 'wrong type',
    yaml: `${SETTINGS}spec:\n  reasonHeader: "yes"\n`,
    expected: 'f.yaml:6:17: document 1 (Settings/s): spec.reasonHeader: expected a boolean, got string',
  },
  {
    name: 'jwksUnavailableStatus not 401/503',
    yaml: `${SETTINGS}spec:\n  jwksUnavailableStatus: 500\n`,
    expected: 'f.yaml:6:26: document 1 (Settings/s): spec.jwksUnavailableStatus: must be 401 or 503, got 500',
  },
  {
    name: 'two Settings documents',
    yaml: `${SETTINGS}---\n${SETTINGS.replace('name: s', 'name: t')}`,
    expected: 'f.yaml:7:7: document 2 (Settings/t): kind: only one Settings document is allowed',
  },
  {
    name: 'duplicate documents',
    yaml: 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {action: ALLOW}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: default}\nspec: {action: ALLOW}\n',
    expected: 'f.yaml:8:18: document 2 (AuthorizationPolicy/p): metadata.name: duplicate AuthorizationPolicy default/p',
  },
  {
    name: 'a syntax error still names the document (duplicate key)',
    yaml: 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: dup\nspec:\n  action: ALLOW\n  action: DENY\n',
    expected: 'f.yaml:7:3: document 1 (AuthorizationPolicy/dup): (syntax): YAML syntax error: Map keys must be unique',
  },
  {
    name: 'an alias bomb is an error, not a crash',
    yaml: ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 7 }, (_, i) => `a${i + 1}: &a${i + 1} [${Array(10).fill(`*a${i}`).join(', ')}]`), 'kind: Settings', ''].join('\n'),
    expected: 'f.yaml:1:1: document 1 (Settings/?): (syntax): cannot expand document:',
  },
  {
    name: 'a document that is not a mapping',
    yaml: '- just\n- a list\n',
    expected: 'f.yaml:1:1: document 1 (?/?): (document): a config document must be a mapping',
  },
];

describe('config validation errors', () => {
  it.each(CASES)('$name', ({ yaml, expected }) => {
    const r = compileYaml(yaml, createTestRuntime(), 'f.yaml');
    expect(r.ok).toBe(false);
    const lines = r.issues.filter((i) => i.severity === 'error').map(formatIssue);
    expect(lines.some((l) => l.startsWith(expected)), `got:\n${lines.join('\n')}`).toBe(true);
  });

  it('accepts a policy that reuses one anchor 120 times', () => {
    const yaml = [
      'apiVersion: security.istio.io/v1',
      'kind: AuthorizationPolicy',
      'metadata: {name: many}',
      'spec:',
      '  rules:',
      '  - to: [{operation: {paths: &p ["/a", "/b"]}}]',
      ...Array.from({ length: 120 }, () => '  - to: [{operation: {paths: *p}}]'),
      '',
    ].join('\n');
    const r = compileYaml(yaml, createTestRuntime(), 'f.yaml');
    expect(r.issues.filter((i) => i.severity === 'error').map(formatIssue)).toEqual([]);
  });

  it('has at least ten distinct error cases', () => {
    expect(new Set(CASES.map((c) => c.expected)).size).toBeGreaterThanOrEqual(10);
  });

  it('validate prints every error with file:line:col and exits 2; a valid folder exits 0', () => {
    const dir = tempDir('obo-validate-');
    writeFileSync(join(dir, 'a.yaml'), `${SETTINGS}spec:\n  trustedProxyHops: -1\n  bogus: 1\n`);
    const out: string[] = [];
    const err: string[] = [];
    const code = runValidate([dir], { out: (s) => out.push(s), err: (s) => err.push(s) });
    expect(code).toBe(2);
    expect(err.join('\n')).toContain(`${join(dir, 'a.yaml')}:6:21: document 1 (Settings/s): spec.trustedProxyHops:`);
    expect(err.join('\n')).toContain(`${join(dir, 'a.yaml')}:7:3: document 1 (Settings/s): spec.bogus: unknown field "bogus"`);
    expect(err.at(-1)).toBe('2 errors');

    const good = tempDir('obo-validate-');
    writeFileSync(join(good, 'a.yaml'), `${SETTINGS}spec: {rootNamespace: mesh-root}\n`);
    expect(runValidate([good], { out: (s) => out.push(s), err: (s) => err.push(s) })).toBe(0);
    expect(out.at(-1)).toMatch(/^ok: 1 file\(s\): 1 Settings/);
  });

  it('a missing path and an empty folder are errors', () => {
    const err: string[] = [];
    expect(runValidate(['/nonexistent/obo'], { out: () => undefined, err: (s) => err.push(s) })).toBe(2);
    expect(err[0]).toContain('/nonexistent/obo:1:1: document 0 (?/?): (file): cannot read config path: ENOENT');
    const empty = tempDir('obo-empty-');
    expect(runValidate([empty], { out: () => undefined, err: (s) => err.push(s) })).toBe(2);
    expect(err.join('\n')).toContain('no *.yaml or *.yml files found');
  });
});
