/** Config documents the hardening tests share (YAML text), and a token-endpoint request. */
import { fixture, sq, type Idp } from '../unit/exchange/helpers.js';

/** A document of kind `kind` in istio-system (root namespace: applies to every workload). */
function doc(apiVersion: string, kind: string, name: string, spec: string): string {
  return `apiVersion: ${apiVersion}\nkind: ${kind}\nmetadata: {name: ${name}, namespace: istio-system}\nspec:\n${spec}`;
}
const ISTIO = 'security.istio.io/v1';
const OBO = 'obo-authz.dev/v1alpha1';

/** RequestAuthentication with one jwtRule per entry (inline JWKS); `extra` adds YAML to a rule. */
export function requestAuthentication(idp: Idp, ...extra: string[]): string {
  const rules = (extra.length ? extra : ['']).map((e) => `    - {issuer: ${idp.issuer}, jwks: ${sq(idp.jwks)}${e ? `, ${e}` : ''}}`);
  return doc(ISTIO, 'RequestAuthentication', 'idp', `  jwtRules:\n${rules.join('\n')}\n`);
}

export const DENY_ADMIN = doc(ISTIO, 'AuthorizationPolicy', 'deny-admin', '  action: DENY\n  rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]\n');

/** ALLOW for these paths; with `principals`, only for an authenticated request. */
export function allowPaths(paths: readonly string[], principals = false, name = 'allow-api'): string {
  const from = principals ? 'from: [{source: {requestPrincipals: ["*"]}}], ' : '';
  return doc(ISTIO, 'AuthorizationPolicy', name, `  action: ALLOW\n  rules: [{${from}to: [{operation: {paths: ${JSON.stringify(paths)}}}]}]\n`);
}

/** The built-in STS (fixture key); with `clientAudiences`, its token endpoint for client `agent` trusting `subject`. */
export function builtinSts(issuer: string, opts: { clientAudiences?: readonly string[]; subject?: Pick<Idp, 'issuer' | 'jwks'>; isDefault?: boolean } = {}): string {
  let spec = `${opts.isDefault ? '  default: true\n' : ''}  builtin:\n    issuer: ${issuer}\n    keys: [{kid: k1, file: ${fixture('sts-es256.pem')}, algorithm: ES256}]\n`;
  if (opts.clientAudiences) {
    spec +=
      `    tokenEndpoint:\n      clients: [{clientId: agent, clientSecretFile: ${fixture('client-secret.txt')}, audiences: ${JSON.stringify(opts.clientAudiences)}}]\n` +
      (opts.subject ? `      subjectIssuers: [{issuer: ${opts.subject.issuer}, jwks: ${sq(opts.subject.jwks)}}]\n` : '');
  }
  return doc(OBO, 'SecurityTokenService', 'builtin', spec);
}

/** A TokenExchangePolicy for context_extensions backend `backend`. */
export function exchangeFor(backend: string, audience: string, sts = 'builtin'): string {
  return doc(OBO, 'TokenExchangePolicy', `ex-${backend}`, `  match: {backends: [${backend}]}\n  target: {audience: ${audience}}\n  sts: ${sts}\n`);
}

export const yamlDocs = (...docs: string[]): string => docs.join('---\n');

/** The client secret of `agent` in the fixture (test/fixtures/exchange/client-secret.txt). */
export const AGENT_SECRET = 's3cr3t-client';

/** An RFC 8693 form from client `agent` for `subject` (client_secret_post). */
export function tokenForm(subject: string, extra: Record<string, string>): URLSearchParams {
  return new URLSearchParams({
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
    client_id: 'agent',
    client_secret: AGENT_SECRET,
    subject_token: subject,
    subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    ...extra,
  });
}
