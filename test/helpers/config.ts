/** Compile YAML text in tests, failing loudly with the formatted issues. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileDocuments, type CompiledConfig, type CompileResult } from '../../src/pipeline/compile.js';
import { formatIssue } from '../../src/config/issues.js';
import { parseYamlText } from '../../src/config/loader.js';
import type { Runtime } from '../../src/core/runtime.js';

export function compileYaml(yamlText: string, runtime: Runtime, file = 'test.yaml'): CompileResult {
  const { documents, issues } = parseYamlText(yamlText, file);
  return compileDocuments(documents, runtime, [file], issues);
}

export function mustCompile(yamlText: string, runtime: Runtime, file = 'test.yaml'): CompiledConfig {
  const r = compileYaml(yamlText, runtime, file);
  if (!r.ok) throw new Error(`config did not compile:\n${r.issues.map(formatIssue).join('\n')}`);
  return r.config;
}

/**
 * A built-in STS (signing with the quick start's demo key) and a TokenExchangePolicy that
 * exchanges requests to /api for audience `backend`, both in namespace default.
 */
export function exchangeOnApiYaml(stsIssuer: string): string {
  return `apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: sts, namespace: default}
spec:
  builtin:
    issuer: ${stsIssuer}
    keys: [{kid: demo-sts-es256-1, file: ${join(process.cwd(), 'examples/quickstart/keys/demo-sts.private.jwk.json')}, algorithm: ES256}]
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: api, namespace: default}
spec:
  match: {paths: [/api]}
  target: {audience: backend}
  sts: sts
`;
}

/**
 * The quick start's config files (examples/quickstart) for startTestServer, the STS key's
 * relative path made absolute (the files are written to a temp folder); `settings` replaces
 * 00-settings.yaml.
 */
export function quickstartFiles(settings?: string): Record<string, string> {
  const read = (name: string) => readFileSync(join('examples/quickstart', name), 'utf8');
  const key = join(process.cwd(), 'examples/quickstart/keys/demo-sts.private.jwk.json');
  return {
    '00-settings.yaml': settings ?? read('00-settings.yaml'),
    '10-request-authentication.yaml': read('10-request-authentication.yaml'),
    '20-authorization-policy.yaml': read('20-authorization-policy.yaml'),
    '30-token-exchange.yaml': read('30-token-exchange.yaml').replace('file: keys/demo-sts.private.jwk.json', `file: ${key}`),
  };
}
