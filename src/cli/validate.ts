/**
 * `obo-authz validate [--ci] [--format text|github|json] PATH...`: every problem as
 * file:line:col: document N (Kind/name): field.path: message (or as GitHub annotations, or
 * JSON). Exit 0 valid, 1 valid with warnings under --fail-on-warnings, 2 invalid.
 */
import { loadConfig } from '../pipeline/compile.js';
import { formatIssue, type ConfigIssue } from '../config/issues.js';
import { listFlag, runWithSpec, stringFlag, UsageError, type Parsed } from './args.js';
import { offlineRuntime, type Io } from './io.js';
import { VALIDATE } from './specs.js';

export { offlineRuntime, type Io } from './io.js';

export interface ValidateOptions {
  /** Outside the cluster: pod-only files and in-cluster API servers are warnings. */
  readonly ci?: boolean;
  readonly format?: 'text' | 'github' | 'json';
  readonly failOnWarnings?: boolean;
}

/** A GitHub Actions workflow command (escaped as the runner expects). */
function githubAnnotation(i: ConfigIssue): string {
  const esc = (s: string) => s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
  const prop = (s: string) => esc(s).replace(/:/g, '%3A').replace(/,/g, '%2C');
  const title = `${i.kind || '?'}/${i.name || '?'} ${i.field}`;
  return `::${i.severity} file=${prop(i.file)},line=${i.line},col=${i.col},title=${prop(title)}::${esc(`document ${i.document}: ${i.field}: ${i.message}`)}`;
}

export function runValidate(paths: readonly string[], io: Io, opts: ValidateOptions = {}): number {
  const runtime = offlineRuntime();
  const format = opts.format ?? 'text';
  try {
    const r = loadConfig(paths, runtime, { outsideCluster: opts.ci === true });
    const errors = r.issues.filter((i) => i.severity === 'error').length;
    const warnings = r.issues.length - errors;
    const code = !r.ok ? 2 : warnings > 0 && opts.failOnWarnings ? 1 : 0;
    if (format === 'json') {
      io.out(JSON.stringify({ ok: r.ok, hash: r.ok ? r.config.hash : null, files: r.ok ? r.config.files : [], errors, warnings, issues: r.issues }, null, 2));
      return code;
    }
    for (const i of r.issues) (format === 'github' ? io.out : io.err)(format === 'github' ? githubAnnotation(i) : formatIssue(i));
    if (!r.ok) {
      io.err(`${errors} error${errors === 1 ? '' : 's'}`);
      return 2;
    }
    const counts = Object.entries(r.config.counts)
      .map(([k, v]) => `${v} ${k}`)
      .join(', ');
    const warned = warnings > 0 ? `, ${warnings} warning${warnings === 1 ? '' : 's'}` : '';
    io.out(`ok: ${r.config.files.length} file(s)${counts ? `: ${counts}` : ''} (config ${r.config.hash}${warned})`);
    return code;
  } finally {
    runtime.shared.disposeAll();
  }
}

function validate(p: Parsed, io: Io): number {
  const paths = [...listFlag(p.values, 'config'), ...p.positionals];
  if (paths.length === 0) throw new UsageError('needs a config PATH (or --config PATH)');
  const format = stringFlag(p.values, 'format')!;
  if (format !== 'text' && format !== 'github' && format !== 'json') throw new UsageError(`--format ${JSON.stringify(format)}: expected text, github or json`);
  return runValidate(paths, io, { ci: p.values['ci'] === true, format, failOnWarnings: p.values['fail-on-warnings'] === true });
}

export function validateCommand(argv: readonly string[], io: Io): Promise<number> {
  return runWithSpec(VALIDATE, argv, io, validate);
}
