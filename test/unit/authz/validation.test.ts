/** Config errors for everything Istio rejects, located by file:line:col and field path. */
import { describe, expect, it } from 'vitest';
import { authorize } from '../../../src/authz/index.js';
import { formatIssue } from '../../../src/config/issues.js';
import { compileYaml, mustCompile } from '../../helpers/config.js';
import { createTestRuntime } from '../../helpers/runtime.js';
import { makeState } from './harness.js';

function issues(yamlText: string, severity: 'error' | 'warning' = 'error'): string[] {
  const r = compileYaml(yamlText, createTestRuntime());
  return r.issues.filter((i) => i.severity === severity).map(formatIssue);
}

function ap(spec: string, meta = ''): string {
  return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
  namespace: foo${meta}
spec:
${spec
  .split('\n')
  .map((l) => `  ${l}`)
  .join('\n')}
`;
}

describe('AuthorizationPolicy validation: exact location', () => {
  it('reports a bad CIDR with file, line, column, document, kind/name and field path', () => {
    const y = ap(`rules:
- from:
  - source:
      ipBlocks: ["10.0.0.0/8", "10.0.0.300"]`);
    expect(issues(y)).toEqual([
      'test.yaml:10:34: document 1 (AuthorizationPolicy/p): spec.rules[0].from[0].source.ipBlocks[1]: bad IP address (10.0.0.300)',
    ]);
  });

  it('reports an unknown field with a suggestion', () => {
    const y = ap(`rules:
- to:
  - operation:
      path: ["/x"]`);
    expect(issues(y)).toEqual([
      'test.yaml:10:9: document 1 (AuthorizationPolicy/p): spec.rules[0].to[0].operation.path: unknown field "path" (known fields: hosts, notHosts, ports, notPorts, methods, notMethods, paths, notPaths)',
    ]);
  });

  it('reports an unknown condition key at its key', () => {
    const y = ap(`rules:
- when:
  - key: request.auth.claim[groups]
    values: [a]`);
    const out = issues(y);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatch(/^test\.yaml:9:12: document 1 \(AuthorizationPolicy\/p\): spec\.rules\[0\]\.when\[0\]\.key: unknown attribute: request\.auth\.claim\[groups\]/);
  });

  it('locates errors in the second document of a file', () => {
    const y = `${ap('rules: [{}]')}---\n${ap('action: DENY').replace('name: p', 'name: q')}`;
    expect(issues(y)).toEqual([
      'test.yaml:15:3: document 2 (AuthorizationPolicy/q): spec.rules: DENY action without `rules` is meaningless as it will never be triggered; add an empty rule `{}` if you want it triggered for every request',
    ]);
  });
});

// [spec, field path, message fragment]
const INVALID: [string, string, string][] = [
  ['action: DENY', 'spec.rules', 'DENY action without `rules`'],
  ['action: DENY\nrules: []', 'spec.rules', 'DENY action without `rules`'],
  ['action: CUSTOM\nprovider: {name: x}', 'spec.rules', 'CUSTOM action without `rules`'],
  ['action: CUSTOM\nrules: [{}]', 'spec.provider.name', '`provider.name` must not be empty'],
  ['action: ALLOW\nprovider: {name: x}\nrules: [{}]', 'spec.provider', 'must only be used with action CUSTOM'],
  ['action: REJECT\nrules: [{}]', 'spec.action', 'must be one of'],
  ['rules:\n- from: []', 'spec.rules[0].from', '`from` must not be empty'],
  ['rules:\n- to: []', 'spec.rules[0].to', '`to` must not be empty'],
  ['rules:\n- from:\n  - source: {}', 'spec.rules[0].from[0].source', '`from.source` must not be empty'],
  ['rules:\n- from:\n  - source: {principals: []}', 'spec.rules[0].from[0].source', '`from.source` must not be empty'],
  ['rules:\n- from:\n  - {}', 'spec.rules[0].from[0].source', 'required field is missing'],
  ['rules:\n- to:\n  - operation: {}', 'spec.rules[0].to[0].operation', '`to.operation` must not be empty'],
  ['rules:\n- to:\n  - {}', 'spec.rules[0].to[0].operation', 'required field is missing'],
  ['rules:\n- from:\n  - source: {principals: [""]}', 'spec.rules[0].from[0].source.principals[0]', 'must not be empty'],
  ['rules:\n- from:\n  - source: {notIpBlocks: ["1.2.3.4/33"]}', 'spec.rules[0].from[0].source.notIpBlocks[0]', 'bad CIDR range (1.2.3.4/33)'],
  ['rules:\n- from:\n  - source: {remoteIpBlocks: ["010.1.1.1"]}', 'spec.rules[0].from[0].source.remoteIpBlocks[0]', 'bad IP address'],
  ['rules:\n- from:\n  - source: {notRemoteIpBlocks: ["fe80::1%eth0"]}', 'spec.rules[0].from[0].source.notRemoteIpBlocks[0]', 'bad IP address'],
  ['rules:\n- from:\n  - source: {serviceAccounts: [a/b], principals: [x]}', 'spec.rules[0].from[0].source.serviceAccounts', 'cannot set serviceAccounts with namespaces or principals'],
  ['rules:\n- from:\n  - source: {notServiceAccounts: [a/b], namespaces: [x]}', 'spec.rules[0].from[0].source.notServiceAccounts', 'cannot set serviceAccounts with namespaces or principals'],
  ['rules:\n- from:\n  - source: {serviceAccounts: ["a/*"]}', 'spec.rules[0].from[0].source.serviceAccounts[0]', 'wildcard not allowed'],
  ['rules:\n- from:\n  - source: {serviceAccounts: ["a/b/c"]}', 'spec.rules[0].from[0].source.serviceAccounts[0]', "expected format 'serviceAccount' or 'namespace/serviceAccount'"],
  ['rules:\n- from:\n  - source: {serviceAccounts: ["/b"]}', 'spec.rules[0].from[0].source.serviceAccounts[0]', 'empty namespace'],
  ['rules:\n- from:\n  - source: {serviceAccounts: ["a/"]}', 'spec.rules[0].from[0].source.serviceAccounts[0]', 'empty serviceAccount'],
  [`rules:\n- from:\n  - source: {serviceAccounts: [${Array.from({ length: 17 }, (_, i) => `s${i}`).join(', ')}]}`, 'spec.rules[0].from[0].source.serviceAccounts', 'may not have more than 16 values'],
  ['rules:\n- to:\n  - operation: {ports: ["http"]}', 'spec.rules[0].to[0].operation.ports[0]', 'bad port (http)'],
  ['rules:\n- to:\n  - operation: {notPorts: ["65536"]}', 'spec.rules[0].to[0].operation.notPorts[0]', 'bad port (65536)'],
  ['rules:\n- to:\n  - operation: {ports: [8080]}', 'spec.rules[0].to[0].operation.ports[0]', 'quote it: "8080"'],
  ['rules:\n- to:\n  - operation: {paths: ["/a/{**}/{*}"]}', 'spec.rules[0].to[0].operation.paths[0]', '{**} must be the last operator'],
  ['rules:\n- to:\n  - operation: {paths: ["/a/{id}"]}', 'spec.rules[0].to[0].operation.paths[0]', "contains '{' or '}'"],
  ['rules:\n- to:\n  - operation: {notPaths: ["/a/x{*}"]}', 'spec.rules[0].to[0].operation.notPaths[0]', "contains '{' or '}'"],
  ['rules:\n- to:\n  - operation: {paths: ["/a/*/{*}"]}', 'spec.rules[0].to[0].operation.paths[0]', 'is not a valid literal'],
  ['rules:\n- to:\n  - operation: {paths: ["a/{*}"]}', 'spec.rules[0].to[0].operation.paths[0]', 'must start with "/"'],
  ['rules:\n- to:\n  - operation: {paths: ["/a//{*}"]}', 'spec.rules[0].to[0].operation.paths[0]', 'is not a valid literal'],
  ['rules:\n- when:\n  - key: request.headers[x]', 'spec.rules[0].when[0]', 'at least one of `values` or `notValues`'],
  ['rules:\n- when:\n  - values: [a]', 'spec.rules[0].when[0].key', 'required field is missing'],
  ['rules:\n- when:\n  - {key: "request.headers", values: [a]}', 'spec.rules[0].when[0].key', 'bad key (request.headers)'],
  ['rules:\n- when:\n  - {key: "request.headers[]", values: [a]}', 'spec.rules[0].when[0].key', 'bad key'],
  ['rules:\n- when:\n  - {key: "request.auth.claims[a]b", values: [a]}', 'spec.rules[0].when[0].key', 'bad key'],
  ['rules:\n- when:\n  - {key: source.ip, values: ["1.2.3"]}', 'spec.rules[0].when[0].values[0]', 'bad IP address'],
  ['rules:\n- when:\n  - {key: destination.ip, notValues: ["::1/129"]}', 'spec.rules[0].when[0].notValues[0]', 'bad CIDR range'],
  ['rules:\n- when:\n  - {key: destination.port, values: ["-1"]}', 'spec.rules[0].when[0].values[0]', 'bad port'],
  ['rules:\n- when:\n  - {key: source.serviceAccount, values: ["*"]}', 'spec.rules[0].when[0].values[0]', 'wildcard not allowed'],
  ['rules:\n- when:\n  - {key: request.auth.presenter, values: [""]}', 'spec.rules[0].when[0].values[0]', 'must not be empty'],
  ['rules:\n- when:\n  - {key: destination.namespace, values: [a]}', 'spec.rules[0].when[0].key', 'replaced by the metadata.namespace'],
  ['rules:\n- when:\n  - {key: "destination.labels[app]", values: [a]}', 'spec.rules[0].when[0].key', 'replaced by the workload selector'],
  ['rules:\n- when:\n  - {key: destination.user, values: [a]}', 'spec.rules[0].when[0].key', 'only supported in v1alpha1'],
  ['rules:\n- when:\n  - {key: "experimental.envoy.filters.a.b[c]", values: [a]}', 'spec.rules[0].when[0].key', 'not supported'],
  ['action: CUSTOM\nprovider: {name: x}\nrules:\n- from:\n  - source: {principals: [a]}', 'spec.rules[0].from[0].source.principals', 'not supported with CUSTOM action'],
  ['action: CUSTOM\nprovider: {name: x}\nrules:\n- from:\n  - source: {notRequestPrincipals: ["*"]}', 'spec.rules[0].from[0].source.notRequestPrincipals', 'not supported with CUSTOM action'],
  ['action: CUSTOM\nprovider: {name: x}\nrules:\n- when:\n  - {key: "request.auth.claims[a]", values: [b]}', 'spec.rules[0].when[0].key', 'not supported with CUSTOM action'],
  ['action: CUSTOM\nprovider: {name: x}\nrules:\n- when:\n  - {key: source.namespace, values: [b]}', 'spec.rules[0].when[0].key', 'not supported with CUSTOM action'],
  ['selector: {matchLabels: {app: a}}\ntargetRefs: [{kind: Gateway, name: g}]\nrules: [{}]', 'spec.selector', 'only one of selector or targetRef'],
  ['rules:\n- unknown: 1', 'spec.rules[0].unknown', 'unknown field'],
  ['rules:\n- null', 'spec.rules[0]', 'expected a mapping'],
];

describe('AuthorizationPolicy validation: every rejected form', () => {
  it.each(INVALID)('%s -> %s', (spec, field, fragment) => {
    const out = issues(ap(spec));
    const hit = out.find((l) => l.includes(`(AuthorizationPolicy/p): ${field}: `) && l.includes(fragment));
    expect(hit, `issues were:\n${out.join('\n')}`).toBeDefined();
  });
});

const VALID: string[] = [
  '{}',
  'rules: []',
  'rules: [{}]',
  'action: AUDIT',
  'action: DENY\nrules: [{}]',
  'action: CUSTOM\nprovider: {name: obo}\nrules: [{to: [{operation: {paths: ["/api/*"]}}]}]',
  'rules:\n- to:\n  - operation: {paths: ["/a/{*}/b/{**}", "/{**}/x", "/trailing/{*}/"], ports: ["0", "65535"]}',
  'rules:\n- from:\n  - source: {ipBlocks: ["::/0", "2001:db8::1", "1.2.3.4/32"], serviceAccounts: ["ns/sa", "sa"]}',
  'rules:\n- when:\n  - {key: "request.auth.claims[a][b][c]", values: [x]}\n  - {key: "request.headers[:authority]", notValues: [x]}\n  - {key: source.trustDomain, values: [td]}',
];

describe('AuthorizationPolicy validation: accepted forms', () => {
  it.each(VALID)('%s', (spec) => {
    expect(issues(ap(spec))).toEqual([]);
  });
});

describe('istio.io/dry-run annotation', () => {
  it('warns on a value ParseBool rejects and enforces the policy', () => {
    const w = issues(ap('rules: [{}]', '\n  annotations:\n    istio.io/dry-run: "yes"'), 'warning');
    expect(w).toHaveLength(1);
    expect(w[0]).toContain('metadata.annotations["istio.io/dry-run"]: warning: invalid value "yes"');
    // enforced: a DENY policy so annotated denies, where "true" would only record a shadow
    const rt = createTestRuntime();
    const decide = (value: string) => {
      const cfg = mustCompile(ap('action: DENY\nrules: [{}]', `\n  annotations:\n    istio.io/dry-run: "${value}"`), rt);
      const state = makeState(cfg, rt, { contextExtensions: { namespace: 'foo' } }, null);
      return { deny: authorize(state, cfg.authz), shadow: state.attribution.shadow };
    };
    expect(decide('yes').deny).toMatchObject({ reason: 'ERR_RBAC_DENIED', policy: 'foo/p' });
    expect(decide('true')).toEqual({ deny: null, shadow: [{ policy: 'foo/p', rule: 0, wouldDeny: true }] });
  });
  it('warns that dry-run has no effect on AUDIT', () => {
    const w = issues(ap('action: AUDIT\nrules: [{}]', '\n  annotations:\n    istio.io/dry-run: "true"'), 'warning');
    expect(w[0]).toContain('only applies to ALLOW and DENY policies');
  });
});

describe('docs/configuration/authorization.md', () => {
  it('the complete example compiles without issues', async () => {
    const { readFileSync } = await import('node:fs');
    const md = readFileSync(new URL('../../../docs/configuration/authorization.md', import.meta.url), 'utf8');
    const block = /## A complete example\s+```yaml\n([\s\S]*?)```/.exec(md)?.[1];
    expect(block).toBeDefined();
    const r = compileYaml(block!, createTestRuntime());
    expect(r.issues.map(formatIssue)).toEqual([]);
    expect(r.ok && r.config.authz.count).toBe(3);
  });
});
