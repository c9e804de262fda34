/** Compile YAML text in tests, failing loudly with the formatted issues. */
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
