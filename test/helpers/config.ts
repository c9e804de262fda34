/** Compile YAML text in tests, failing loudly with the formatted issues. */
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
