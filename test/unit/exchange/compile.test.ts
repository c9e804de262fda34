import { describe, expect, it } from 'vitest';
import { compileYaml, mustCompile } from '../../helpers/config.js';
import { createTestRuntime } from '../../helpers/runtime.js';
import { formatIssue } from '../../../src/config/issues.js';
import { selectPolicy } from '../../../src/exchange/select.js';
import { checkRequest, fixture, makeIdp, makeState, sq } from './helpers.js';

const STS = `apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: sts, namespace: istio-system}
spec:
  builtin:
    issuer: https://sts.test
    keys: [{kid: k1, file: ${fixture('sts-es256.pem')}, algorithm: ES256}]
`;

function policy(name: string, ns: string, spec: string): string {
  return `---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: ${name}, namespace: ${ns}}
spec:
${spec}`;
}

function errors(yaml: string): string[] {
  const r = compileYaml(yaml, createTestRuntime());
  return r.issues.filter((i) => i.severity === 'error').map(formatIssue);
}
function warnings(yaml: string): string[] {
  const r = compileYaml(yaml, createTestRuntime());
  return r.issues.filter((i) => i.severity === 'warning').map(formatIssue);
}

describe('compile: validation errors name the field', () => {
  const cases: [string, string, RegExp][] = [
    ['unknown field', STS + policy('p', 'default', '  target: {audience: a}\n  sts: sts\n  bogus: 1\n'), /spec\.bogus: unknown field "bogus"/],
    ['missing STS reference', STS + policy('p', 'default', '  target: {audience: a}\n  sts: nope\n'), /spec\.sts: SecurityTokenService "nope" not found/],
    ['no audience or resource', STS + policy('p', 'default', '  target: {scopes: [a]}\n  sts: sts\n'), /spec\.target\.audience: one of audience or resource is required/],
    ['relative resource', STS + policy('p', 'default', '  target: {resource: not-a-uri}\n  sts: sts\n'), /spec\.target\.resource: resource "not-a-uri" must be an absolute URI/],
    ['bad mode', STS + policy('p', 'default', '  target: {audience: a}\n  sts: sts\n  mode: Sometimes\n'), /spec\.mode: must be one of/],
    ['Delegation without actor', STS + policy('p', 'default', '  target: {audience: a}\n  sts: sts\n  mode: Delegation\n  delegationPolicy: d\n'), /spec\.actor: required when mode is Delegation/],
    [
      'Delegation without DelegationPolicy',
      STS + policy('p', 'default', '  target: {audience: a}\n  sts: sts\n  mode: Delegation\n  actor: {header: x-actor-token, tokenReview: {apiServer: "http://127.0.0.1:1", audiences: [a]}}\n'),
      /spec\.delegationPolicy: required when mode is Delegation/,
    ],
    [
      'actor with two sources',
      STS + policy('p', 'default', '  target: {audience: a}\n  sts: sts\n  mode: Delegation\n  delegationPolicy: d\n  actor: {header: x, file: /tmp/x, tokenReview: {apiServer: "http://127.0.0.1:1"}}\n'),
      /spec\.actor: exactly one of header or file/,
    ],
    [
      'actor without validation',
      STS + policy('p', 'default', '  target: {audience: a}\n  sts: sts\n  mode: Delegation\n  delegationPolicy: d\n  actor: {header: x-actor-token}\n'),
      /spec\.actor: exactly one of jwt or tokenReview/,
    ],
    [
      'unknown DelegationPolicy',
      STS + policy('p', 'default', '  target: {audience: a}\n  sts: sts\n  mode: Delegation\n  delegationPolicy: missing\n  actor: {header: x-actor-token, tokenReview: {apiServer: "http://127.0.0.1:1"}}\n'),
      /spec\.delegationPolicy: DelegationPolicy "missing" not found/,
    ],
    ['bad output header', STS + policy('p', 'default', '  target: {audience: a}\n  sts: sts\n  upstream: {header: "bad header"}\n'), /spec\.upstream\.header: invalid header name/],
    ['forwardActorToken with Impersonation', STS + policy('p', 'default', '  target: {audience: a}\n  sts: sts\n  upstream: {forwardActorToken: true}\n'), /spec\.upstream\.forwardActorToken: only meaningful with mode Delegation/],
    [
      'builtin and remote at once',
      `apiVersion: obo-authz.dev/v1alpha1\nkind: SecurityTokenService\nmetadata: {name: s}\nspec:\n  remote: {tokenEndpoint: "https://x/token"}\n  builtin: {issuer: "https://x", keys: [{kid: a, file: ${fixture('sts-es256.pem')}, algorithm: ES256}]}\n`,
      /spec: exactly one of builtin or remote must be set/,
    ],
    [
      'ES256 with an RSA key',
      `apiVersion: obo-authz.dev/v1alpha1\nkind: SecurityTokenService\nmetadata: {name: s}\nspec:\n  builtin: {issuer: "https://x", keys: [{kid: a, file: ${fixture('sts-rs256.pem')}, algorithm: ES256}]}\n`,
      /spec\.builtin\.keys\[0\]\.file: ES256 needs an EC P-256 key/,
    ],
    [
      'RSA key too short',
      `apiVersion: obo-authz.dev/v1alpha1\nkind: SecurityTokenService\nmetadata: {name: s}\nspec:\n  builtin: {issuer: "https://x", keys: [{kid: a, file: ${fixture('rsa-1024.pem')}, algorithm: RS256}]}\n`,
      /RS256 needs an RSA key of at least 2048 bits/,
    ],
    [
      'public-only active key',
      `apiVersion: obo-authz.dev/v1alpha1\nkind: SecurityTokenService\nmetadata: {name: s}\nspec:\n  builtin: {issuer: "https://x", keys: [{kid: a, file: ${fixture('sts-es256-old.pub.pem')}, algorithm: ES256}]}\n`,
      /has no private key/,
    ],
    [
      'missing key file',
      `apiVersion: obo-authz.dev/v1alpha1\nkind: SecurityTokenService\nmetadata: {name: s}\nspec:\n  builtin: {issuer: "https://x", keys: [{kid: a, file: /nonexistent/key.pem, algorithm: ES256}]}\n`,
      /spec\.builtin\.keys\[0\]\.file: cannot read file/,
    ],
    [
      'private_key_jwt without key',
      `apiVersion: obo-authz.dev/v1alpha1\nkind: SecurityTokenService\nmetadata: {name: s}\nspec:\n  remote: {tokenEndpoint: "https://x/token", clientAuthentication: {method: private_key_jwt, clientId: c}}\n`,
      /clientAuthentication\.privateKeyFile: required for private_key_jwt/,
    ],
    [
      'client_secret_basic without secret',
      `apiVersion: obo-authz.dev/v1alpha1\nkind: SecurityTokenService\nmetadata: {name: s}\nspec:\n  remote: {tokenEndpoint: "https://x/token", clientAuthentication: {method: client_secret_basic, clientId: c}}\n`,
      /one of clientSecret or clientSecretFile is required/,
    ],
    [
      'reserved extra parameter',
      `apiVersion: obo-authz.dev/v1alpha1\nkind: SecurityTokenService\nmetadata: {name: s}\nspec:\n  remote: {tokenEndpoint: "https://x/token", extraParameters: {subject_token: x}}\n`,
      /extraParameters\.subject_token: this parameter is set by the exchange itself/,
    ],
    ['bad timeout', `apiVersion: obo-authz.dev/v1alpha1\nkind: SecurityTokenService\nmetadata: {name: s}\nspec:\n  remote: {tokenEndpoint: "https://x/token", timeout: soon}\n`, /spec\.remote\.timeout: invalid duration/],
    ['unknown DelegationPolicy field', `apiVersion: obo-authz.dev/v1alpha1\nkind: DelegationPolicy\nmetadata: {name: d}\nspec:\n  rules: [{actors: [{subject: "*"}], extra: 1}]\n`, /spec\.rules\[0\]\.extra: unknown field/],
  ];
  for (const [name, yaml, re] of cases) {
    it(name, () => {
      const errs = errors(yaml);
      expect(errs.some((e) => re.test(e)), errs.join('\n')).toBe(true);
    });
  }

  it('two default builtin STSs are an error; with none marked among several, none is served (warning)', () => {
    const two = `apiVersion: obo-authz.dev/v1alpha1\nkind: SecurityTokenService\nmetadata: {name: a}\nspec:\n  default: true\n  builtin: {issuer: "https://a", keys: [{kid: a, file: ${fixture('sts-es256.pem')}, algorithm: ES256}]}\n---\napiVersion: obo-authz.dev/v1alpha1\nkind: SecurityTokenService\nmetadata: {name: b}\nspec:\n  default: true\n  builtin: {issuer: "https://b", keys: [{kid: a, file: ${fixture('sts-es256.pem')}, algorithm: ES256}]}\n`;
    expect(errors(two).some((e) => /spec\.default: only one SecurityTokenService may be the default/.test(e))).toBe(true);
    const rt = createTestRuntime();
    const cfg = mustCompile(two.replace(/ {2}default: true\n/g, ''), rt);
    expect(cfg.exchange.builtinSts).toBeNull();
    expect(cfg.warnings.some((w) => /none is served over HTTP/.test(w.message))).toBe(true);
    const marked = mustCompile(two.replace(/ {2}default: true\n(?![\s\S]*default: true)/, ''), rt);
    expect(marked.exchange.builtinSts?.ref).toBe('default/a');
  });
});

describe('compile: token endpoint clients', () => {
  const te = (client: string) => `apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: s}
spec:
  builtin:
    issuer: https://sts.test
    keys: [{kid: k1, file: ${fixture('sts-es256.pem')}, algorithm: ES256}]
    tokenEndpoint:
      clients:
        - {clientId: other, clientSecret: x, audiences: [mcp-a]}
        - ${client}
      subjectIssuers: [{issuer: "https://sts.test"}]
`;

  it('audiences is required for every client (no "*" default: a client could mint for, and re-exchange into, any audience)', () => {
    const errs = errors(te('{clientId: c, clientSecretFile: ' + fixture('client-secret.txt') + '}'));
    const e = errs.find((x) => x.includes('spec.builtin.tokenEndpoint.clients[1].audiences'));
    expect(e, errs.join('\n')).toMatch(/required field is missing/);
    expect(e).toMatch(/no default/);
    expect(errs.filter((x) => x.includes('clients[0]'))).toEqual([]);
  });

  it('an empty audiences list is an error; an explicit "*" is accepted', () => {
    const errs = errors(te('{clientId: c, clientSecret: x, audiences: []}'));
    expect(errs.some((x) => /spec\.builtin\.tokenEndpoint\.clients\[1\]\.audiences: must list at least one/.test(x)), errs.join('\n')).toBe(true);
    const cfg = mustCompile(te('{clientId: c, clientSecret: x, audiences: ["*"]}'), createTestRuntime());
    expect(cfg.exchange.builtinSts!.tokenEndpoint!.clients.map((c) => [c.clientId, c.audiences])).toEqual([
      ['other', ['mcp-a']],
      ['c', ['*']],
    ]);
  });
});

describe('compile: selection', () => {
  const yaml =
    STS +
    policy('root', 'istio-system', '  target: {audience: root}\n  sts: sts\n') +
    policy('ns', 'shop', '  target: {audience: ns}\n  sts: sts\n') +
    policy('sel', 'shop', '  selector: {matchLabels: {app: cart}}\n  target: {audience: sel}\n  sts: sts\n') +
    policy('be', 'shop', '  match: {backends: [payments]}\n  target: {audience: be}\n  sts: sts\n') +
    policy('tr', 'shop', '  targetRefs: [{kind: Service, name: cart-svc}]\n  target: {audience: tr}\n  sts: sts\n') +
    policy('path', 'istio-system', '  match: {paths: ["/admin/*"], hosts: ["*.internal"]}\n  target: {audience: path}\n  sts: sts\n');

  const pick = (ext: Record<string, string>, path = '/mcp', host = 'mcp.example.com') => {
    const rt = createTestRuntime();
    const cfg = mustCompile(yaml, rt);
    const s = makeState(rt, cfg, checkRequest({ ext, path, host }), null);
    return selectPolicy(cfg.exchange, s)?.ref;
  };

  it('most specific scope wins: backend/selector > namespace > root', () => {
    expect(pick({ namespace: 'shop', backend: 'payments', 'label.app': 'web' })).toBe('shop/be');
    expect(pick({ namespace: 'shop', 'label.app': 'cart' })).toBe('shop/sel');
    expect(pick({ namespace: 'shop', 'label.app': 'web' })).toBe('shop/ns');
    expect(pick({ namespace: 'other' })).toBe('istio-system/root');
    expect(pick({ namespace: 'other' }, '/admin/x', 'A.Internal')).toBe('istio-system/path');
    expect(pick({ namespace: 'shop', service: 'cart-svc', 'label.app': 'web' })).toBe('shop/tr');
  });

  it('selector / targetRefs policies apply only on a positive match: a request without labels or service is not captured', () => {
    // Minting is a grant: a token for the selected workload's audience must not reach every
    // backend of the namespace just because the request carries no workload labels.
    expect(pick({ namespace: 'shop' })).toBe('shop/ns');
    expect(pick({ namespace: 'shop', service: 'other-svc' })).toBe('shop/ns');
    expect(pick({ namespace: 'shop', 'label.app': 'cart' })).toBe('shop/sel');
    expect(pick({ namespace: 'shop', service: 'cart-svc' })).toBe('shop/tr');
  });

  it('ties are broken by namespace/name with a validate warning', () => {
    const w = warnings(STS + policy('b-second', 'shop', '  target: {audience: x}\n  sts: sts\n') + policy('a-first', 'shop', '  target: {audience: y}\n  sts: sts\n'));
    expect(w.some((x) => /b-second.*shop\/a-first has the same specificity/.test(x)), w.join('\n')).toBe(true);
    // disjoint backends: no warning
    const none = warnings(STS + policy('x', 'shop', '  match: {backends: [a]}\n  target: {audience: x}\n  sts: sts\n') + policy('y', 'shop', '  match: {backends: [b]}\n  target: {audience: y}\n  sts: sts\n'));
    expect(none.filter((x) => /same specificity/.test(x))).toEqual([]);
    // targetRefs naming different services never both apply (strict scope): no warning ...
    const tr = (name: string, ref: string) => policy(name, 'shop', `  targetRefs: [${ref}]\n  target: {audience: ${name}}\n  sts: sts\n`);
    const svc = warnings(STS + tr('x', '{kind: Service, name: a}') + tr('y', '{kind: Service, name: b}'));
    expect(svc.filter((x) => /same specificity/.test(x))).toEqual([]);
    // ... but a gateway and a service can both be named by one request.
    const mixed = warnings(STS + tr('x', '{kind: Gateway, name: gw}') + tr('y', '{kind: Service, name: b}'));
    expect(mixed.some((x) => /shop\/x has the same specificity/.test(x)), mixed.join('\n')).toBe(true);
  });

  it('a header that is both a claim output and the exchange output is an error; forwardOriginalToken is overridden with a warning', async () => {
    const idp = await makeIdp('https://idp.example');
    const ra = (extra: string) => `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ra, namespace: istio-system}
spec:
  jwtRules:
    - issuer: https://idp.example
      jwks: ${sq(idp.jwks)}
${extra}
---
`;
    const clash = errors(ra('      outputClaimToHeaders: [{header: x-backend-token, claim: sub}]') + STS + policy('p', 'default', '  target: {audience: a}\n  sts: sts\n  upstream: {header: x-backend-token}\n'));
    expect(clash.some((e) => /spec\.upstream\.header: header "x-backend-token" is also an output header of RequestAuthentication/.test(e)), clash.join('\n')).toBe(true);
    const fwd = warnings(ra('      forwardOriginalToken: true') + STS + policy('p', 'default', '  target: {audience: a}\n  sts: sts\n'));
    expect(fwd.some((w) => /overrides forwardOriginalToken: true/.test(w)), fwd.join('\n')).toBe(true);
  });

  it('a reload with the same settings reuses the shared STS, caches and clients', () => {
    const rt = createTestRuntime();
    const y = STS + policy('p', 'default', '  target: {audience: a}\n  sts: sts\n');
    const a = mustCompile(y, rt);
    rt.shared.sweep();
    const b = mustCompile(y, rt);
    rt.shared.sweep();
    expect(b.exchange.builtinSts!.sts).toBe(a.exchange.builtinSts!.sts);
    expect(b.exchange.policies[0]!.cache).toBe(a.exchange.policies[0]!.cache);
  });
});
