/**
 * trustEndUserHeader: an API-key / shared-token caller trusted to do so names the end user
 * in a header; it shows in request.auth.claims[end_user], the decision log, dynamic_metadata
 * and --explain, never as the principal. Otherwise the header is stripped. Real gRPC Checks.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatIssue } from '../../src/config/issues.js';
import { startTestServer, httpRequest, type TestServer } from '../helpers/server.js';
import { tempDir } from '../helpers/tmp.js';
import { compileYaml } from '../helpers/config.js';
import { createTestRuntime } from '../helpers/runtime.js';

const TRUSTED_KEY = 'obo_trusted-platform-key-0123456789abcdef';
const OTHER_KEY = 'obo_other-caller-key-0123456789abcdef0000';
const SHARED = 'shared-token-for-ci-0123456789';
const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

let srv: TestServer;

beforeAll(async () => {
  const dir = tempDir('obo-authz-enduser-');
  writeFileSync(join(dir, 'platform.yaml'), `keys:\n- {name: agent-platform, hash: "${sha(TRUSTED_KEY)}"}\n`);
  writeFileSync(join(dir, 'others.yaml'), `keys:\n- {name: other-caller, hash: "${sha(OTHER_KEY)}"}\n`);
  writeFileSync(join(dir, 'shared'), `${SHARED}\n`);
  srv = await startTestServer({
    'c.yaml': `
apiVersion: obo-authz.dev/v1alpha1
kind: CredentialValidator
metadata: {name: platform, namespace: istio-system}
spec:
  type: APIKey
  trustEndUserHeader: true
  apiKey: {file: ${join(dir, 'platform.yaml')}, fromHeaders: [{name: X-Platform-Key}]}
---
apiVersion: obo-authz.dev/v1alpha1
kind: CredentialValidator
metadata: {name: others, namespace: istio-system}
spec:
  type: APIKey
  apiKey: {file: ${join(dir, 'others.yaml')}, fromHeaders: [{name: X-Api-Key}]}
---
apiVersion: obo-authz.dev/v1alpha1
kind: CredentialValidator
metadata: {name: ci, namespace: istio-system}
spec:
  type: SharedToken
  trustEndUserHeader: true
  endUserHeader: X-On-Behalf-Of
  sharedToken: {file: ${join(dir, 'shared')}, fromHeaders: [{name: X-Shared-Token}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: alice-only, namespace: istio-system}
spec:
  rules:
  - to: [{operation: {paths: [/alice]}}]
    when: [{key: "request.auth.claims[end_user]", values: [alice]}]
  - to: [{operation: {paths: [/any]}}]
`,
  });
});

afterAll(async () => {
  await srv?.close();
});

function send(path: string, headers: Record<string, string>) {
  return srv.check(httpRequest({ path, headers }));
}
const meta = (r: Awaited<ReturnType<typeof send>>, k: string) => (r.dynamic_metadata.fields[k] as { stringValue?: string } | undefined)?.stringValue;

describe('trustEndUserHeader', () => {
  it('a trusted API-key caller names the end user: a claim, the log, dynamic_metadata; the principal stays the caller', async () => {
    const r = await send('/alice', { 'x-platform-key': TRUSTED_KEY, 'x-end-user-id': 'alice' });
    expect(r.status.code).toBe(0);
    expect(meta(r, 'end_user')).toBe('alice');
    expect(meta(r, 'principal')).toBe('apikey.obo-authz.dev/istio-system/platform/agent-platform');
    // Forwarded as sent (not removed upstream).
    expect(r.ok_response!.headers_to_remove).not.toContain('x-end-user-id');
    const line = JSON.parse(srv.runtime.logs.filter((l) => l.includes('"component":"decision"')).at(-1)!);
    expect(line).toMatchObject({ end_user: 'alice', principal: 'apikey.obo-authz.dev/istio-system/platform/agent-platform' });
  });

  it('the claim decides: another end user is refused by the policy', async () => {
    const r = await send('/alice', { 'x-platform-key': TRUSTED_KEY, 'x-end-user-id': 'mallory' });
    expect(r.denied_response?.status.code).toBe(403);
  });

  it('an untrusted caller: the header is stripped and ignored', async () => {
    const r = await send('/alice', { 'x-api-key': OTHER_KEY, 'x-end-user-id': 'alice' });
    expect(r.denied_response?.status.code).toBe(403);
    expect(meta(r, 'end_user')).toBeUndefined();
    const ok = await send('/any', { 'x-api-key': OTHER_KEY, 'x-end-user-id': 'alice' });
    expect(ok.ok_response!.headers_to_remove).toContain('x-end-user-id');
  });

  it('an anonymous request: the header is stripped', async () => {
    const r = await send('/any', { 'x-end-user-id': 'alice' });
    expect(r.ok_response!.headers_to_remove).toContain('x-end-user-id');
    expect(r.ok_response!.headers_to_remove).toContain('x-on-behalf-of');
  });

  it('a shared token with its own header name; an unusable value is ignored', async () => {
    const r = await send('/alice', { 'x-shared-token': SHARED, 'x-on-behalf-of': 'alice' });
    expect(meta(r, 'end_user')).toBe('alice');
    expect(r.status.code).toBe(0);
    const bad = await send('/alice', { 'x-shared-token': SHARED, 'x-on-behalf-of': ` ${'a'.repeat(300)}` });
    expect(meta(bad, 'end_user')).toBeUndefined();
    expect(bad.denied_response?.status.code).toBe(403);
  });

  it('only APIKey and SharedToken validators may trust the header (config error naming the field)', () => {
    const r = compileYaml(
      `apiVersion: obo-authz.dev/v1alpha1
kind: CredentialValidator
metadata: {name: k8s, namespace: apps}
spec:
  type: KubernetesServiceAccount
  trustEndUserHeader: true
  kubernetes: {issuer: "https://kubernetes.default.svc", audiences: [x]}
`,
      createTestRuntime(),
      'cv.yaml',
    );
    expect(r.issues.map(formatIssue).find((l) => l.includes('cv.yaml:6:') && l.includes('document 1 (CredentialValidator/k8s): spec.trustEndUserHeader: only for type: APIKey or SharedToken'))).toBeDefined();
  });
});
