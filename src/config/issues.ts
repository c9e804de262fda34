/** Config errors and warnings, always located by file, line, column, document and field path. */

export type Path = ReadonlyArray<string | number>;

export interface ConfigIssue {
  readonly severity: 'error' | 'warning';
  readonly file: string;
  readonly line: number;
  readonly col: number;
  /** 1-based index of the YAML document in its file. */
  readonly document: number;
  readonly kind: string;
  readonly name: string;
  /** Dotted field path such as `spec.jwtRules[0].issuer`. */
  readonly field: string;
  readonly message: string;
}

export function formatPath(path: Path): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(p)) out += out ? `.${p}` : p;
    else out += `[${JSON.stringify(p)}]`;
  }
  return out || '(document)';
}

/** `file:line:col: document N (Kind/name): field.path: message`. */
export function formatIssue(i: ConfigIssue): string {
  const prefix = i.severity === 'warning' ? 'warning: ' : '';
  return `${i.file}:${i.line}:${i.col}: document ${i.document} (${i.kind || '?'}/${i.name || '?'}): ${i.field}: ${prefix}${i.message}`;
}

export class ConfigError extends Error {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    super(issues.filter((i) => i.severity === 'error').map(formatIssue).join('\n') || 'invalid configuration');
    this.name = 'ConfigError';
    this.issues = issues;
  }
}
