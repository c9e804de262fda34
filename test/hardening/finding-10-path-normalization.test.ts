/**
 * Finding 10 (issue 17): paths were trusted to be normalized by the proxy. `/api/../admin/x`,
 * `/api/%2e%2e/admin/x` and `/api/..%2fadmin` were allowed by `ALLOW /api/*` despite
 * `DENY /admin/*` when the proxy in front did not normalize. Now a path that is not in the
 * canonical form of Settings.pathNormalization (default DECODE_AND_MERGE_SLASHES) is refused
 * with 400 and its own reason code; NONE keeps literal matching for proxies that forward as is.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpRequest, startTestServer, type TestServer } from '../helpers/server.js';
import { allowPaths, DENY_ADMIN, yamlDocs } from './configs.js';

const POLICIES = yamlDocs(DENY_ADMIN, allowPaths(['/api/*']));

const ATTACKS = ['/api/../admin/x', '/api/%2e%2e/admin/x', '/api/..%2fadmin', '/api/%2E%2E%2Fadmin/x', '/api\\..\\admin/x', '/api//../admin/x', '/api/%61/../../admin/x'];

function reasonOf(r: Awaited<ReturnType<TestServer['check']>>): string | undefined {
  const f = r.dynamic_metadata?.fields?.['reason'] as { stringValue?: string } | undefined;
  return f?.stringValue;
}

describe('finding 10: paths the proxy did not normalize are refused, never matched literally', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ 'p.yaml': POLICIES });
  });
  afterAll(async () => s.close());

  it('canonical paths are decided by the policies', async () => {
    const ok = await s.check(httpRequest({ path: '/api/x?q=1' }));
    expect(ok.status.code).toBe(0);
    const admin = await s.check(httpRequest({ path: '/admin/x' }));
    expect(admin.denied_response?.status.code).toBe(403);
  });

  for (const path of ATTACKS) {
    it(`${JSON.stringify(path)} is refused with 400 ERR_PATH_NOT_CANONICAL`, async () => {
      const r = await s.check(httpRequest({ path }));
      expect(r.status.code).not.toBe(0);
      expect(r.denied_response?.status.code).toBe(400);
      expect(reasonOf(r)).toBe('ERR_PATH_NOT_CANONICAL');
    });
  }

  it('a path with %00 is refused under every mode but NONE', async () => {
    const r = await s.check(httpRequest({ path: '/api/x%00' }));
    expect(r.denied_response?.status.code).toBe(400);
  });
});

describe('finding 10: the mode follows the proxy (Istio pathNormalization)', () => {
  const settings = (mode: string) => `
apiVersion: obo-authz.dev/v1alpha1
kind: Settings
metadata: {name: settings}
spec:
  pathNormalization: {normalization: ${mode}}
`;
  it('BASE: `//` and %2F are what the proxy forwards, dot segments are not', async () => {
    const s = await startTestServer({ 'p.yaml': POLICIES, 's.yaml': settings('BASE') });
    try {
      expect((await s.check(httpRequest({ path: '/api//x' }))).status.code).toBe(0);
      expect((await s.check(httpRequest({ path: '/api/a%2Fb' }))).status.code).toBe(0);
      expect((await s.check(httpRequest({ path: '/api/../admin/x' }))).denied_response?.status.code).toBe(400);
      expect((await s.check(httpRequest({ path: '/api/%61dmin' }))).denied_response?.status.code).toBe(400);
    } finally {
      await s.close();
    }
  });
  it('MERGE_SLASHES: `//` is refused, %2F is forwarded as is', async () => {
    const s = await startTestServer({ 'p.yaml': POLICIES, 's.yaml': settings('MERGE_SLASHES') });
    try {
      expect((await s.check(httpRequest({ path: '/api//x' }))).denied_response?.status.code).toBe(400);
      expect((await s.check(httpRequest({ path: '/api/a%2Fb' }))).status.code).toBe(0);
    } finally {
      await s.close();
    }
  });
  it('NONE: matched literally (the proxy forwards paths unchanged and so does the backend)', async () => {
    const s = await startTestServer({ 'p.yaml': POLICIES, 's.yaml': settings('NONE') });
    try {
      expect((await s.check(httpRequest({ path: '/api/../admin/x' }))).status.code).toBe(0);
    } finally {
      await s.close();
    }
  });
  it('an unknown mode is a config error naming the field', async () => {
    const { compileYaml } = await import('../helpers/config.js');
    const { createTestRuntime } = await import('../helpers/runtime.js');
    const r = compileYaml(settings('LOOSE'), createTestRuntime());
    expect(r.ok).toBe(false);
    expect(r.issues.map((i) => i.field)).toContain('spec.pathNormalization.normalization');
  });
});
