/** Types of scripts/config-examples.mjs (imported by the docs test). */
export interface DocYamlBlock {
  readonly file: string;
  readonly line: number;
  /** `config` (a complete obo-authz config), `fragment`, `apikey-file` or `test-table`, from the fence. */
  readonly kind: string;
  readonly text: string;
}
export type ConfigExample = { readonly name: string; readonly dir: string; readonly files?: undefined } | { readonly name: string; readonly files: Record<string, string>; readonly dir?: undefined };
export function docFiles(root: string): string[];
export function docYamlBlocks(root: string): DocYamlBlock[];
export function configExamples(root: string): ConfigExample[];
