/** validate as a CI gate: pod-only files and in-cluster API servers as warnings (--ci), exit codes, formats, the content hash. */
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../../helpers/cli.js';
import { startTestServer } from '../../helpers/server.js';
import { tempDir } from '../../helpers/tmp.js';

const dir = tempDir('obo-validate-ci-');
const savedHost = process.env['KUBERNETES_SERVICE_HOST'];
beforeAll(() => delete process.env['KUBERNETES_SERVICE_HOST']); // outside a pod, as in CI
afterAll(() => {
  if (savedHost !== undefined) process.env['KUBERNETES_SERVICE_HOST'] = savedHost;
});

const POD_ONLY = `apiVersion: obo-authz.dev/v1alpha1
kind: CredentialValidator
metadata: {name: agent-keys, namespace: mcp}
spec:
  type: APIKey
  apiKey: {file: /var/run/secrets/obo-test-nowhere/keys.yaml}
---
apiVersion: obo-authz.dev/v1alpha1
kind: CredentialValidator
metadata: {name: in-cluster, namespace: mcp}
spec:
  type: KubernetesServiceAccount
  kubernetes:
    mode: TokenReview
    issuer: https://kubernetes.default.svc.cluster.local
    audiences: [mcp]
---
apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: obo-sts, namespace: istio-system}
spec:
  builtin:
    issuer: https://obo-authz.example.com
    keys: [{kid: k1, file: /etc/obo-test-nowhere/keys/sts.pem, algorithm: ES256}]
---
apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: corp-sts, namespace: istio-system}
spec:
  remote:
    tokenEndpoint: https://login.example.com/oauth2/token
    clientAuthentication: {clientId: obo-authz, clientSecretFile: /etc/obo-test-nowhere/secret}
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: mcp-tools, namespace: mcp}
spec:
  target: {audience: https://mcp-tools.example.com}
  mode: Delegation
  sts: obo-sts
  actor:
    header: x-actor-token
    tokenReview: {audiences: [obo-authz]}
  delegationPolicy: agents
---
apiVersion: obo-authz.dev/v1alpha1
kind: DelegationPolicy
metadata: {name: agents, namespace: mcp}
spec:
  rules: [{actors: [{subject: "system:serviceaccount:agents:*"}]}]
`;

function folder(name: string, files: Record<string, string>): string {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  for (const [f, t] of Object.entries(files)) writeFileSync(join(d, f), t);
  return d;
}

describe('validate --ci', () => {
  const pod = folder('pod', { 'config.yaml': POD_ONLY });

  it('without --ci, pod-only files and the in-cluster API server are errors (exit 2)', async () => {
    const r = await cli('validate', pod);
    expect(r.code).toBe(2);
    expect(r.err).toContain('(CredentialValidator/agent-keys): spec.apiKey.file: cannot read');
    expect(r.err).toContain('(CredentialValidator/in-cluster): spec.kubernetes.tokenReview.apiServer: required outside a Kubernetes pod');
    expect(r.err).toContain('(SecurityTokenService/obo-sts): spec.builtin.keys[0].file: cannot read file');
  });

  it('with --ci they are warnings naming document and field, everything else is still checked, exit 0', async () => {
    const r = await cli('validate', '--ci', pod);
    expect(r.code, r.err).toBe(0);
    const warn = (doc: string, field: string) => expect(r.err).toMatch(new RegExp(`document \\d+ \\(${doc}\\): ${field.replace(/[[\]]/g, '\\$&')}: warning: `));
    warn('CredentialValidator/agent-keys', 'spec.apiKey.file');
    warn('CredentialValidator/in-cluster', 'spec.kubernetes.tokenReview.apiServer');
    warn('SecurityTokenService/obo-sts', 'spec.builtin.keys[0].file');
    warn('SecurityTokenService/corp-sts', 'spec.remote.clientAuthentication.clientSecretFile');
    warn('TokenExchangePolicy/mcp-tools', 'spec.actor.tokenReview.apiServer');
    expect(r.err).toContain('is not here (checked outside the cluster): it must exist where obo-authz runs');
    expect(r.out).toMatch(/^ok: 1 file\(s\): .* \(config [0-9a-f]{16}, \d+ warnings\)$/);
    // a real error next to pod-only files still fails
    const broken = folder('broken', { 'config.yaml': `${POD_ONLY}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: bad, namespace: mcp}\nspec: {action: DENY}\n` });
    const b = await cli('validate', '--ci', broken);
    expect(b.code).toBe(2);
    expect(b.err).toContain('(AuthorizationPolicy/bad)');
  });

  it('--fail-on-warnings exits 1; --format github prints annotations on stdout; --format json one document', async () => {
    expect((await cli('validate', '--ci', '--fail-on-warnings', pod)).code).toBe(1);
    expect((await cli('validate', '--fail-on-warnings', 'examples/quickstart')).code).toBe(0);
    const gh = await cli('validate', '--ci', '--format', 'github', pod);
    expect(gh.code).toBe(0);
    expect(gh.out).toMatch(/^::warning file=[^,]*config\.yaml,line=6,col=\d+,title=CredentialValidator\/agent-keys spec\.apiKey\.file::document 1: spec\.apiKey\.file: file /m);
    const js = await cli('validate', '--format', 'json', pod);
    expect(js.code).toBe(2);
    const doc = JSON.parse(js.out) as { ok: boolean; errors: number; issues: { field: string; severity: string }[] };
    expect(doc.ok).toBe(false);
    expect(doc.issues.some((i) => i.field === 'spec.apiKey.file' && i.severity === 'error')).toBe(true);
  });

  it('an empty YAML file is an error', async () => {
    const d = folder('empty', { 'a.yaml': '# only a comment\n', 'b.yaml': readFileSync('examples/quickstart/00-settings.yaml', 'utf8') });
    const r = await cli('validate', d);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${join(d, 'a.yaml')}:1:1: document 0 (?/?): (file): the file holds no YAML document (it is empty or only comments)`);
  });
});

describe('the config hash is over content only', () => {
  it('validate prints the same hash for the same files in another folder, and the server reports it in config_info and /status', async () => {
    const copy = join(dir, 'somewhere', 'else', 'quickstart');
    cpSync('examples/quickstart', copy, { recursive: true });
    const a = await cli('validate', 'examples/quickstart');
    const b = await cli('validate', copy);
    const hash = /config ([0-9a-f]{16})/.exec(a.out)?.[1];
    expect(hash).toBeDefined();
    expect(b.out).toContain(`config ${hash}`);
    const files = Object.fromEntries(['00-settings.yaml', '10-request-authentication.yaml', '20-authorization-policy.yaml'].map((f) => [f, readFileSync(join(copy, f), 'utf8')]));
    const t = await startTestServer(files);
    try {
      const sub = folder('subset', files);
      const v = await cli('validate', sub);
      const h = /config ([0-9a-f]{16})/.exec(v.out)![1]!;
      const metrics = await (await fetch(`http://${t.server.httpAddress}/metrics`)).text();
      expect(metrics).toContain(`obo_authz_config_info{hash="${h}"} 1`);
      const status = (await (await fetch(`http://${t.server.httpAddress}/status`)).json()) as { config: { hash: string } };
      expect(status.config.hash).toBe(h);
    } finally {
      await t.close();
      rmSync(t.dir, { recursive: true, force: true });
    }
  });
});
