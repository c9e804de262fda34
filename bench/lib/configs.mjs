// Scenario configs, generated per run (the keys are generated per run too). Everything is
// ordinary obo-authz configuration: Istio RequestAuthentication / AuthorizationPolicy
// verbatim, plus the obo-authz kinds for token exchange.
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const ISSUER = 'https://idp.bench.example';
export const AUDIENCE = 'obo-bench';

/** Settings shared by all bench configs; `extra` is merged into spec (YAML lines). */
export function settingsYaml(extra = '') {
  return `apiVersion: obo-authz.dev/v1alpha1
kind: Settings
metadata:
  name: settings
spec:
  rootNamespace: istio-system
  defaultNamespace: default
  # the bench kills its servers at the end: no need for the production grace period
  shutdownGracePeriod: 0s
${extra}`;
}

export function requestAuthenticationYaml(jwksJson, { name = 'bench-idp', namespace = 'istio-system' } = {}) {
  return `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: ${name}
  namespace: ${namespace}
spec:
  jwtRules:
    - issuer: ${ISSUER}
      audiences: ["${AUDIENCE}"]
      jwks: '${jwksJson}'
      outputClaimToHeaders:
        - header: x-user-sub
          claim: sub
`;
}

/**
 * Ten AuthorizationPolicies in one namespace, shaped like a real workload's: two DENY
 * policies that do not match, seven ALLOW policies for other routes and callers, and the
 * one the benchmark request matches (`allow-mcp`: a user token from the bench IdP, POST
 * /mcp, scope mcp:tools). A request without a token (or with a bad one) matches no ALLOW
 * policy: 403 RBAC: access denied.
 */
export function tenPolicies(ns, suffix = '') {
  const p = (name, action, rules) =>
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ${name}${suffix}
  namespace: ${ns}
spec:
  action: ${action}
  rules:
${rules}`;
  return [
    p('deny-admin', 'DENY', `    - to:
        - operation:
            paths: ["/admin", "/admin/*"]
`),
    p('deny-blocked-ips', 'DENY', `    - from:
        - source:
            ipBlocks: ["192.0.2.0/24", "198.51.100.0/24"]
`),
    p('allow-health', 'ALLOW', `    - to:
        - operation:
            methods: ["GET"]
            paths: ["/healthz", "/readyz"]
`),
    p('allow-metrics', 'ALLOW', `    - from:
        - source:
            principals: ["cluster.local/ns/monitoring/sa/prometheus"]
      to:
        - operation:
            paths: ["/metrics"]
`),
    p('allow-docs', 'ALLOW', `    - to:
        - operation:
            methods: ["GET", "HEAD"]
            paths: ["/docs/*"]
`),
    p('allow-weather', 'ALLOW', `    - from:
        - source:
            requestPrincipals: ["${ISSUER}/*"]
      to:
        - operation:
            paths: ["/api/weather/*"]
      when:
        - key: request.auth.claims[scope]
          values: ["weather.read"]
`),
    p('allow-admin-group', 'ALLOW', `    - to:
        - operation:
            paths: ["/admin-api/*"]
      when:
        - key: request.auth.claims[groups]
          values: ["admins"]
`),
    p('allow-internal-host', 'ALLOW', `    - to:
        - operation:
            hosts: ["internal.example.com", "*.internal.example.com"]
`),
    p('allow-tools-list', 'ALLOW', `    - from:
        - source:
            namespaces: ["agents"]
      to:
        - operation:
            paths: ["/tools/{*}/list"]
`),
    p('allow-mcp', 'ALLOW', `    - from:
        - source:
            requestPrincipals: ["${ISSUER}/*"]
      to:
        - operation:
            methods: ["POST"]
            paths: ["/mcp", "/mcp/*"]
      when:
        - key: request.auth.claims[scope]
          values: ["mcp:tools"]
`),
  ];
}

export function writeConfig(dir, files) {
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), Array.isArray(text) ? text.join('---\n') : text);
  return dir;
}

export function nsName(i) {
  return `ns-${String(i).padStart(3, '0')}`;
}

/** 1,000 policies: the same ten in each of 100 namespaces. */
export function thousandPolicies() {
  const out = [];
  for (let i = 0; i < 100; i++) out.push(...tenPolicies(nsName(i)));
  return out;
}

/**
 * Token exchange for scenarios 4 and 5: requests routed to the `mcp-tools` backend
 * (context_extensions backend) get the user's token exchanged (impersonation) at a remote
 * STS on loopback (bench/sts-stub.mjs) for audience `mcp-tools`; the exchanged token
 * replaces Authorization upstream. Schema: docs/configuration/token-exchange.md.
 */
export function exchangeYaml(tokenEndpoint, { namespace = 'bench' } = {}) {
  return `apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata:
  name: bench-sts
  namespace: ${namespace}
spec:
  remote:
    tokenEndpoint: ${tokenEndpoint}
    clientAuthentication:
      method: client_secret_post
      clientId: obo-authz-bench
      clientSecret: bench-secret
    timeout: 900ms
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata:
  name: mcp-tools
  namespace: ${namespace}
spec:
  match:
    backends: ["mcp-tools"]
  mode: Impersonation
  sts: bench-sts
  target:
    audience: mcp-tools
    scopes: ["mcp.tools"]
`;
}

/**
 * The MCP scenario (scenario 8, issue 13): an MCPServer and the policies of its namespace. The same
 * POST /mcp Check is allowed either by the `request.mcp.tool` rule, which reads the JSON-RPC
 * body Envoy sent (`with_request_body`), or — for the baseline without a body — by a header
 * rule placed first, which never reads it. Everything else (token, MCP resource matching,
 * RFC 8707 audience check, policy count) is the same.
 */
export function mcpBenchYaml(ns = 'mcpbench') {
  const userPostMcp = `from: [{source: {requestPrincipals: ["${ISSUER}/*"]}}]
      to: [{operation: {methods: ["POST"], paths: ["/mcp"]}}]
      when:`;
  return `apiVersion: obo-authz.dev/v1alpha1
kind: MCPServer
metadata:
  name: tools
  namespace: ${ns}
spec:
  resource: https://mcp.example.com/mcp
  authorizationServers: ["${ISSUER}"]
  scopesSupported: [mcp:tools]
  audience:
    also: ["${AUDIENCE}"]
---
${tenPolicies(ns).filter((d) => !/name: allow-mcp\n/.test(d)).join('---\n')}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-mcp-tools
  namespace: ${ns}
spec:
  action: ALLOW
  rules:
    - ${userPostMcp}
        - key: request.headers[x-bench-nobody]
          values: ["1"]
    - ${userPostMcp}
        - key: request.mcp.tool
          values: ["search", "read_*"]
        - key: request.auth.claims[scope]
          values: ["mcp:tools"]
`;
}

/**
 * The documents the soak test and the token-endpoint flood bench share: a RequestAuthentication
 * trusting `issuer` (inline JWKS, no audience check) and a built-in STS signing with a fresh
 * P-256 key written to `dir` (optionally serving its token endpoint to client `agent`).
 */
export function hardeningDocs(dir, issuer, jwksJson, { stsIssuer, tokenEndpoint } = {}) {
  const keyFile = join(dir, 'sts.pem');
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }));
  let sts = `apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: builtin, namespace: istio-system}
spec:
  default: true
  builtin:
    issuer: ${stsIssuer}
    keys: [{kid: sts-1, file: ${keyFile}, algorithm: ES256}]
    tokenLifetime: 10m
`;
  if (tokenEndpoint) {
    writeFileSync(join(dir, 'client-secret'), `${tokenEndpoint.secret}\n`);
    sts += `    tokenEndpoint:
      clients: [{clientId: agent, clientSecretFile: ${join(dir, 'client-secret')}, audiences: ${JSON.stringify(tokenEndpoint.audiences)}}]
      subjectIssuers: [{issuer: ${issuer}, jwks: '${jwksJson}'}]
`;
  }
  const ra = `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: idp, namespace: istio-system}
spec:
  jwtRules: [{issuer: ${issuer}, jwks: '${jwksJson}'}]
`;
  const settings = `apiVersion: obo-authz.dev/v1alpha1
kind: Settings
metadata: {name: settings}
spec:
  shutdownGracePeriod: 0s
  decisionLog: {allowSampleRate: 0.01}
`;
  return { settings, ra, sts };
}
