/**
 * compileTokenReviewSettings (src/kubernetes/tokenreview-settings.ts): the one compile of a
 * TokenReview settings block: defaults, in-cluster fallbacks, checks located at the block's
 * fields, one shared client per distinct settings.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createTestRuntime } from '../../helpers/runtime.js';
import { parseYamlText } from '../../../src/config/loader.js';
import { formatIssue } from '../../../src/config/issues.js';
import { obj, ValidationContext } from '../../../src/config/schema.js';
import { compileTokenReviewSettings, TOKENREVIEW_SETTINGS_FIELDS, type RawTokenReviewSettings } from '../../../src/kubernetes/tokenreview-settings.js';
import { IN_CLUSTER_CA_FILE, IN_CLUSTER_TOKEN_FILE, TOKENREVIEW_DEFAULTS } from '../../../src/kubernetes/tokenreview.js';

const FIXTURES = resolve(import.meta.dirname, '../../fixtures/exchange');
const NO_CLUSTER: NodeJS.ProcessEnv = {};

/** Parse `block` as the document's spec.tokenReview and compile it. */
function compile(block: string, env: NodeJS.ProcessEnv = NO_CLUSTER, audiences: string[] = ['obo-authz'], rt = createTestRuntime()) {
  const { documents } = parseYamlText(`apiVersion: x/v1\nkind: K\nmetadata: {name: n}\nspec:\n  tokenReview: ${block}\n`, 'k.yaml');
  const doc = documents[0]!;
  const v = new ValidationContext(doc);
  const spec = (doc.value['spec'] as Record<string, unknown>)['tokenReview'];
  const raw = obj<RawTokenReviewSettings>({ ...TOKENREVIEW_SETTINGS_FIELDS }).parse(spec, ['spec', 'tokenReview'], v);
  const client = raw ? compileTokenReviewSettings(raw, audiences, { v, path: ['spec', 'tokenReview'], resolvePath: (p) => resolve(FIXTURES, p) }, rt, env) : undefined;
  return { client, issues: v.issues.map(formatIssue), rt };
}

describe('compileTokenReviewSettings', () => {
  it('fills in the one set of defaults', () => {
    const { client, issues } = compile('{apiServer: "http://127.0.0.1:1"}');
    expect(issues).toEqual([]);
    expect(client!.opts).toEqual({ apiServer: 'http://127.0.0.1:1', audiences: ['obo-authz'], timeoutMs: TOKENREVIEW_DEFAULTS.timeoutMs, cacheTtlMs: TOKENREVIEW_DEFAULTS.cacheTtlMs });
    expect(TOKENREVIEW_DEFAULTS).toMatchObject({ timeoutMs: 1000, cacheTtlMs: 10_000 });
    expect(compile('{apiServer: "http://127.0.0.1:1", timeout: 250ms, cacheTtl: 0s}').client!.opts).toMatchObject({ timeoutMs: 250, cacheTtlMs: 0 });
  });

  it('resolves files against the document; an explicit apiServer takes no in-cluster file', () => {
    const { client, issues } = compile('{apiServer: "https://127.0.0.1:6443", caFile: apiserver-tls.crt, tokenFile: client-secret.txt}');
    expect(issues).toEqual([]);
    expect(client!.opts).toMatchObject({ caFile: resolve(FIXTURES, 'apiserver-tls.crt'), tokenFile: resolve(FIXTURES, 'client-secret.txt') });
    expect(client!.url).toBe('https://127.0.0.1:6443/apis/authentication.k8s.io/v1/tokenreviews');
  });

  // Run inside a pod, the mounted files exist and the block compiles: nothing to check there.
  it.skipIf(existsSync(IN_CLUSTER_CA_FILE) || existsSync(IN_CLUSTER_TOKEN_FILE))('in a pod: the API server from the environment and the mounted CA and token (errors when they are not mounted)', () => {
    const { client, issues } = compile('{}', { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' });
    expect(client).toBeUndefined();
    expect(issues).toEqual([
      'k.yaml:5:16: document 1 (K/n): spec.tokenReview.caFile: cannot read file "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"',
      'k.yaml:5:16: document 1 (K/n): spec.tokenReview.tokenFile: cannot read file "/var/run/secrets/kubernetes.io/serviceaccount/token"',
    ]);
  });

  it('outside a pod without apiServer: one error at apiServer', () => {
    const { client, issues } = compile('{timeout: 1s}');
    expect(client).toBeUndefined();
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatch(/spec\.tokenReview\.apiServer: required outside a Kubernetes pod \(KUBERNETES_SERVICE_HOST is not set\)$/);
  });

  it('checks the URL and the files, naming the field', () => {
    for (const [block, re] of [
      ['{apiServer: "ftp://k8s"}', /spec\.tokenReview\.apiServer: invalid value "ftp:\/\/k8s": must be an http\(s\) URL/],
      ['{apiServer: "https://k8s .local"}', /spec\.tokenReview\.apiServer: invalid value .*: must be an http\(s\) URL/],
      ['{apiServer: "not a url"}', /spec\.tokenReview\.apiServer: invalid value .*: must be an http\(s\) URL/],
      ['{apiServer: "https://k8s", caFile: missing.crt}', /spec\.tokenReview\.caFile: cannot read file "missing\.crt"/],
      ['{apiServer: "https://k8s", tokenFile: missing-token}', /spec\.tokenReview\.tokenFile: cannot read file "missing-token"/],
      ['{apiServer: "https://k8s", caFile: "."}', /spec\.tokenReview\.caFile: cannot read the CA file: EISDIR/],
      ['{apiServer: "https://k8s", timeout: 0ms}', /spec\.tokenReview\.timeout: must be at least 1ms/],
      ['{apiServer: "https://k8s", cacheTtl: 11m}', /spec\.tokenReview\.cacheTtl: must be at most 600000ms/],
      ['{apiServer: "https://k8s", audiences: [a]}', /spec\.tokenReview\.audiences: unknown field/],
    ] as const) {
      const { client, issues } = compile(block);
      expect(client, block).toBeUndefined();
      expect(issues.join('\n'), block).toMatch(re);
    }
  });

  it('one client per distinct settings, shared across reloads and kinds; none while the document has errors', () => {
    const rt = createTestRuntime();
    const a = compile('{apiServer: "http://127.0.0.1:1"}', NO_CLUSTER, ['obo-authz'], rt).client;
    expect(compile('{apiServer: "http://127.0.0.1:1", timeout: 1s}', NO_CLUSTER, ['obo-authz'], rt).client).toBe(a);
    expect(compile('{apiServer: "http://127.0.0.1:1"}', NO_CLUSTER, ['other'], rt).client).not.toBe(a);
    const { documents } = parseYamlText('apiVersion: x/v1\nkind: K\nmetadata: {name: n}\nspec: {}\n', 'k.yaml');
    const v = new ValidationContext(documents[0]!);
    v.error(['spec'], 'an earlier error');
    expect(compileTokenReviewSettings({ apiServer: 'http://127.0.0.1:1' }, [], { v, path: ['spec'], resolvePath: (p) => p }, rt, NO_CLUSTER)).toBeUndefined();
    rt.shared.disposeAll();
  });
});
