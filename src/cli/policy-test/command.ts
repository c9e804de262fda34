/**
 * `obo-authz test PATH...`: run test tables (table.ts) against their config, offline, in
 * one process. Prints each failing case with the fields that differ (expected / got), a
 * summary with the rate, and exits 0 (all passed), 1 (a case failed) or 2 (unusable input).
 */
import { readdirSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { formatIssue } from '../../config/issues.js';
import { loadConfig } from '../../pipeline/compile.js';
import { listFlag, runWithSpec, stringFlag, UsageError, type Parsed } from '../args.js';
import { explainText } from '../check.js';
import { offlineRuntime, type Io } from '../io.js';
import { TEST } from '../specs.js';
import { loadTestKey, tableFetch, TokenMinter, type TestKey } from './keys.js';
import { runCase, type CaseResult } from './run.js';
import { formatTableIssue, loadTable, type LoadedTable } from './table.js';

export interface TestOptions {
  readonly configPaths?: readonly string[];
  readonly run?: RegExp;
  readonly ci?: boolean;
  readonly verbose?: boolean;
  readonly format?: 'text' | 'json';
}

export interface TableResult {
  readonly file: string;
  readonly config: readonly string[];
  readonly hash: string;
  readonly cases: CaseResult[];
}

/** Table files named by PATHs: a file as is, a folder's *.yaml / *.yml (sorted, not recursive). */
export function tableFiles(paths: readonly string[]): string[] {
  const out: string[] = [];
  for (const p of paths) {
    let st;
    try {
      st = statSync(p);
    } catch {
      throw new UsageError(`${p}: no such file or folder`);
    }
    if (!st.isDirectory()) out.push(p);
    else {
      const names = readdirSync(p).filter((n) => /\.ya?ml$/i.test(n) && !n.startsWith('.')).sort();
      if (names.length === 0) throw new UsageError(`${p}: no *.yaml or *.yml test tables in this folder`);
      out.push(...names.map((n) => join(p, n)));
    }
  }
  return out;
}

/** Run one loaded table. Throws (with a message) when its keys or config cannot be used. */
async function runTable(t: LoadedTable, opts: TestOptions, io: Io): Promise<TableResult> {
  const spec = t.spec;
  const own = spec.config === undefined ? [] : Array.isArray(spec.config) ? spec.config : [spec.config];
  const configPaths = opts.configPaths?.length ? [...opts.configPaths] : own.map((c) => (isAbsolute(c) ? c : resolve(dirname(t.file), c)));
  if (configPaths.length === 0) throw new Error(`${t.file}: config: name the config under test (or pass --config)`);
  const keys = new Map<string, TestKey>();
  for (const [name, k] of Object.entries(spec.keys ?? {})) keys.set(name, loadTestKey(name, k, t.file));
  const fixed = spec.now !== undefined ? Date.parse(spec.now) : undefined;
  const now = fixed !== undefined ? () => fixed : () => Date.now();
  const runtime = offlineRuntime('silent', { now, fetch: tableFetch([...keys.values()]) });
  try {
    const r = loadConfig(configPaths, runtime, { outsideCluster: opts.ci === true });
    if (!r.ok) throw new Error(`${t.file}: the config under test is invalid:\n${r.issues.filter((i) => i.severity === 'error').map(formatIssue).join('\n')}`);
    const ctx = { config: r.config, runtime, minter: new TokenMinter(keys, now), tableFile: t.file, defaults: spec.defaults?.request };
    const cases: CaseResult[] = [];
    for (const [i, c] of spec.cases.entries()) {
      if (opts.run && !opts.run.test(c.name)) continue;
      let res = await runCase(c, i, ctx);
      // The trace of a failure is worth a second evaluation; passing cases run without it.
      if (res.status === 'fail' && opts.verbose) res = await runCase(c, i, ctx, true);
      cases.push(res);
      if (opts.format !== 'json') report(t, res, opts.verbose === true, io);
    }
    return { file: t.file, config: configPaths, hash: r.config.hash, cases };
  } finally {
    runtime.shared.disposeAll();
  }
}

const show = (v: unknown) => (typeof v === 'string' && v.startsWith('(') ? v : JSON.stringify(v));

function report(t: LoadedTable, r: CaseResult, verbose: boolean, io: Io): void {
  const where = `${t.file}:${t.caseLine(r.index)}`;
  if (r.status === 'pass') {
    if (verbose) io.out(`ok    ${where} ${r.name}`);
    return;
  }
  if (r.status === 'skip') {
    if (verbose) io.out(`skip  ${where} ${r.name}`);
    return;
  }
  io.out(`${r.status === 'error' ? 'ERROR' : 'FAIL '} ${where} ${r.name}`);
  if (r.error) io.out(`      ${r.error}`);
  for (const d of r.differences) io.out(`      ${d.field}: expected ${show(d.expected)}, got ${show(d.actual)}`);
  if (verbose && r.decision?.trace) io.out(explainText(r.decision).replace(/^/gm, '      '));
}

/** Run every table; returns the exit status. */
export async function runTests(paths: readonly string[], opts: TestOptions, io: Io): Promise<number> {
  const files = tableFiles(paths);
  const tables: LoadedTable[] = [];
  let bad = false;
  for (const f of files) {
    const { table, issues } = loadTable(f);
    for (const i of issues) io.err(formatTableIssue(i));
    if (table) tables.push(table);
    else bad = true;
  }
  if (bad) return 2;
  const started = performance.now();
  const results: TableResult[] = [];
  for (const t of tables) {
    try {
      results.push(await runTable(t, opts, io));
    } catch (e) {
      io.err(e instanceof Error ? e.message : String(e));
      return 2;
    }
  }
  const ms = performance.now() - started;
  const all = results.flatMap((r) => r.cases);
  const count = (s: CaseResult['status']) => all.filter((c) => c.status === s).length;
  const summary = { passed: count('pass'), failed: count('fail'), errors: count('error'), skipped: count('skip') };
  const ran = all.length - summary.skipped;
  const rate = ms > 0 ? Math.round((ran / ms) * 1000) : 0;
  if (opts.format === 'json') {
    const strip = (c: CaseResult) => ({ name: c.name, status: c.status, differences: c.differences, ...(c.error ? { error: c.error } : {}) });
    io.out(JSON.stringify({ ...summary, ms: Math.round(ms), casesPerSecond: rate, tables: results.map((r) => ({ ...r, cases: r.cases.map(strip) })) }, null, 2));
  } else {
    const parts = [`${summary.passed} passed`, `${summary.failed} failed`, ...(summary.errors ? [`${summary.errors} could not run`] : []), ...(summary.skipped ? [`${summary.skipped} skipped`] : [])];
    io.out(`${ran} case(s) in ${results.length} table(s): ${parts.join(', ')} (${Math.round(ms)} ms, ${rate} cases/s)`);
  }
  if (ran === 0 && opts.run) {
    io.err(`no case matches --run ${opts.run.source}`);
    return 2;
  }
  return summary.failed + summary.errors > 0 ? 1 : 0;
}

async function test(p: Parsed, io: Io): Promise<number> {
  if (p.positionals.length === 0) throw new UsageError('needs a test table or a folder of tables (PATH...)');
  const format = stringFlag(p.values, 'format')!;
  if (format !== 'text' && format !== 'json') throw new UsageError(`--format ${JSON.stringify(format)}: expected text or json`);
  const run = stringFlag(p.values, 'run');
  let re: RegExp | undefined;
  try {
    re = run !== undefined ? new RegExp(run) : undefined;
  } catch (e) {
    throw new UsageError(`--run ${JSON.stringify(run)}: not a regular expression (${e instanceof Error ? e.message : String(e)})`);
  }
  return runTests(p.positionals, { configPaths: listFlag(p.values, 'config'), ...(re ? { run: re } : {}), ci: p.values['ci'] === true, verbose: p.values['verbose'] === true, format }, io);
}

export function testCommand(argv: readonly string[], io: Io): Promise<number> {
  return runWithSpec(TEST, argv, io, test);
}
