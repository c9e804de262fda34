/** MCPServer, request.mcp.* and TokenExchangePolicy.tools config: every error names file, document and field; --explain shows MCP facts. */
import { describe, expect, it } from 'vitest';
import { formatIssue } from '../../../src/config/issues.js';
import { evaluate } from '../../../src/pipeline/pipeline.js';
import { compileYaml, mustCompile } from '../../helpers/config.js';
import { createTestRuntime } from '../../helpers/runtime.js';
import { checkRequestFor, DEFAULT_BODY } from '../../helpers/mcp.js';

const rt = createTestRuntime();
const HEAD = `apiVersion: obo-authz.dev/v1alpha1
kind: MCPServer
metadata: {name: tools, namespace: apps}
spec:
`;

function issues(spec: string): string[] {
  const r = compileYaml(`${HEAD}${spec}`, rt, 'mcp.yaml');
  return r.issues.map(formatIssue);
}

describe('MCPServer validation', () => {
  const cases: [string, string, string][] = [
    ['resource missing', '  authorizationServers: [https://as.example]\n', 'mcp.yaml:5:3: document 1 (MCPServer/tools): spec.resource: required field is missing'],
    ['authorizationServers missing', '  resource: https://mcp.example/mcp\n', 'spec.authorizationServers: required field is missing'],
    ['resource with a fragment', '  resource: "https://mcp.example/mcp#x"\n  authorizationServers: [https://as.example]\n', 'mcp.yaml:5:13: document 1 (MCPServer/tools): spec.resource: must not contain a fragment'],
    ['resource without a scheme', '  resource: mcp.example/mcp\n  authorizationServers: [https://as.example]\n', 'spec.resource: must be an absolute http(s) URI'],
    ['an authorization server that is not a URL', '  resource: https://mcp.example/mcp\n  authorizationServers: [https://as.example, as2]\n', 'spec.authorizationServers[1]: must be an absolute http(s) URL'],
    ['an empty list of authorization servers', '  resource: https://mcp.example/mcp\n  authorizationServers: []\n', 'spec.authorizationServers: must not be empty'],
    ['a scope with a quote', '  resource: https://mcp.example/mcp\n  authorizationServers: [https://as.example]\n  scopes: {tools: [{names: [x], scopes: [\'a"b\']}]}\n', 'must be a scope token'],
    ['a tool rule without scopes', '  resource: https://mcp.example/mcp\n  authorizationServers: [https://as.example]\n  scopes: {tools: [{names: [x]}]}\n', 'spec.scopes.tools[0].scopes: required field is missing'],
    ['an unknown field', '  resource: https://mcp.example/mcp\n  authorizationServers: [https://as.example]\n  scope: [a]\n', 'spec.scope: unknown field "scope"'],
    ['a bad bearer method', '  resource: https://mcp.example/mcp\n  authorizationServers: [https://as.example]\n  bearerMethodsSupported: [cookie]\n', 'spec.bearerMethodsSupported[0]:'],
    ['a body limit of 0', '  resource: https://mcp.example/mcp\n  authorizationServers: [https://as.example]\n  maxBodyBytes: 0\n', 'spec.maxBodyBytes: must be >= 1'],
    ['a bad policyDenial', '  resource: https://mcp.example/mcp\n  authorizationServers: [https://as.example]\n  policyDenial: Teapot\n', 'spec.policyDenial:'],
    ['selector and targetRefs', '  selector: {matchLabels: {app: x}}\n  targetRefs: [{kind: Service, name: s}]\n  resource: https://mcp.example/mcp\n  authorizationServers: [https://as.example]\n', 'spec.selector: only one of selector or targetRef/targetRefs may be set'],
  ];
  for (const [name, spec, expected] of cases) {
    it(name, () => {
      const got = issues(spec);
      expect(got.some((l) => l.includes(expected) && l.startsWith('mcp.yaml:') && l.includes('document 1 (MCPServer/tools)')), got.join('\n')).toBe(true);
    });
  }

  it('warns on offline_access and a non-canonical resource', () => {
    const got = issues('  resource: HTTPS://MCP.example/mcp\n  authorizationServers: [https://as.example]\n  scopesSupported: [offline_access]\n');
    expect(got.filter((l) => l.includes('warning:')).length).toBe(2);
  });

  it('a valid document compiles, with the path-inserted metadata URL (RFC 9728 §3.1)', () => {
    const cfg = mustCompile(`${HEAD}  resource: https://mcp.example/api/mcp\n  authorizationServers: [https://as.example]\n`, rt);
    const s = cfg.mcp.all[0]!;
    expect([s.wellKnownPath, s.metadataUrl]).toEqual(['/.well-known/oauth-protected-resource/api/mcp', 'https://mcp.example/.well-known/oauth-protected-resource/api/mcp']);
    const root = mustCompile(`${HEAD}  resource: https://mcp.example/\n  authorizationServers: [https://as.example]\n`, rt).mcp.all[0]!;
    expect(root.wellKnownPath).toBe('/.well-known/oauth-protected-resource');
  });
});

describe('request.mcp.* keys and TokenExchangePolicy.tools', () => {
  it('validate warns that Istio itself would not accept request.mcp.* keys, and rejects unknown ones', () => {
    const r = compileYaml(
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: apps}
spec:
  rules: [{when: [{key: request.mcp.tool, values: [x]}, {key: request.mcp.tools, values: [y]}]}]
`,
      rt,
      'ap.yaml',
    );
    const got = r.issues.map(formatIssue);
    expect(got.find((l) => l.includes('when[0].key: warning: request.mcp.tool is an obo-authz extension'))).toBeDefined();
    expect(got.find((l) => l.includes('when[1].key: unknown attribute: request.mcp.tools'))).toBeDefined();
  });

  const tx = (tools: string) =>
    compileYaml(
      `apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: sts, namespace: apps}
spec: {remote: {tokenEndpoint: "https://sts.example/token"}}
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: t, namespace: apps}
spec:
  target: {audience: a}
  sts: sts
  tools: ${tools}
`,
      rt,
      'tx.yaml',
    ).issues.map(formatIssue);

  it('a tools entry that narrows nothing, or names no tool, is an error naming the field', () => {
    expect(tx('[{names: [x]}]').find((l) => l.includes('tx.yaml:12:11: document 2 (TokenExchangePolicy/t): spec.tools[0]: set at least one of audience, resource or scopes'))).toBeDefined();
    expect(tx('[{scopes: [y]}]').find((l) => l.includes('document 2 (TokenExchangePolicy/t): spec.tools[0].names: required field is missing'))).toBeDefined();
    expect(tx('[{names: [x], resource: not-a-uri}]').find((l) => l.includes('spec.tools[0].resource: resource "not-a-uri" must be an absolute URI'))).toBeDefined();
  });
});

describe('--explain', () => {
  it('shows the MCP server, the batch element and the body problem a decision needed', async () => {
    const cfg = mustCompile(
      `${HEAD}  resource: https://mcp.example/mcp
  authorizationServers: [https://as.example]
  requireToken: false
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: apps}
spec:
  rules: [{when: [{key: request.mcp.tool, values: [search]}]}]
`,
      rt,
    );
    const req = (body: string | undefined) => {
      const r = checkRequestFor(new URL('https://mcp.example/mcp'), 'POST', {}, body, DEFAULT_BODY);
      if (r === 'too-large') throw new Error('x');
      r.attributes!.context_extensions = { namespace: 'apps' };
      return r;
    };
    const ok = await evaluate(req('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"}}'), cfg, rt, { explain: true });
    expect(ok.allow).toBe(true);
    const text = ok.trace!.entries.map((e) => `[${e.stage}] ${e.message}`).join('\n');
    expect(text).toContain('[mcp] request is on MCPServer apps/tools');
    const bad = await evaluate(req('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete"}}'), cfg, rt, { explain: true });
    expect(bad.trace!.entries.map((e) => e.message).join('\n')).toContain('when[0] request.mcp.tool values: request has "delete"');
    const missing = await evaluate(req(undefined), cfg, rt, { explain: true });
    expect(missing.reason).toBe('ERR_MCP_BODY_MISSING');
    expect(missing.trace!.entries.map((e) => e.message).join('\n')).toContain('(MCP body missing: the Check carried no body)');
  });
});
