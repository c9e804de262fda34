/**
 * Command-line specs: every subcommand declares its flags once (name, value, default,
 * environment variable, description), and the parser, `--help` and the docs test all read
 * that one declaration. Parsing is node:util parseArgs in strict mode; its errors are
 * rewritten to name the command and the flag, with a "did you mean" when one is close.
 */
import { parseArgs } from 'node:util';
import { closest } from '../config/suggest.js';
import type { Io } from './io.js';

export { closest };

export interface FlagSpec {
  readonly name: string;
  readonly type: 'string' | 'boolean';
  readonly multiple?: boolean;
  /** Placeholder of the value in help text (`PATH`, `HOST:PORT`). */
  readonly value?: string;
  /** Default as shown in help (and used when the flag and its env variable are absent). */
  readonly default?: string;
  /** Environment variable read when the flag is absent. */
  readonly env?: string;
  readonly description: string;
}

export interface CommandSpec {
  /** `check`, or `apikey create` for a nested command. */
  readonly name: string;
  readonly summary: string;
  readonly usage: readonly string[];
  readonly description?: string;
  readonly flags: readonly FlagSpec[];
  /** Positional arguments, when the command takes any. */
  readonly positionals?: { readonly name: string; readonly description: string };
  readonly exitCodes: readonly (readonly [number, string])[];
  readonly examples?: readonly string[];
}

export type FlagValues = Record<string, string | boolean | string[] | undefined>;

export interface Parsed {
  readonly values: FlagValues;
  readonly positionals: string[];
}

/** A usage error: exit 2, the message and a pointer to `--help`. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly command = '',
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

export const HELP = Symbol('help');

/** Parse `argv` for `spec`; returns HELP for `--help` / `-h`. Throws UsageError. */
export function parseCommand(spec: CommandSpec, argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Parsed | typeof HELP {
  if (argv.includes('--help') || argv.includes('-h')) return HELP;
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = {};
  for (const f of spec.flags) options[f.name] = { type: f.type, ...(f.multiple ? { multiple: true } : {}) };
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: spec.positionals !== undefined });
  } catch (e) {
    throw new UsageError(rewriteParseError(e, spec), spec.name);
  }
  const values: FlagValues = { ...parsed.values } as FlagValues;
  for (const f of spec.flags) {
    if (values[f.name] !== undefined) continue;
    const fromEnv = f.env ? env[f.env] : undefined;
    if (fromEnv !== undefined && fromEnv !== '') values[f.name] = f.type === 'boolean' ? /^(1|true|yes)$/i.test(fromEnv) : f.multiple ? [fromEnv] : fromEnv;
    else if (f.default !== undefined && f.type === 'string' && !f.multiple) values[f.name] = f.default;
    else if (f.type === 'boolean') values[f.name] = false;
  }
  return { values, positionals: parsed.positionals };
}

function rewriteParseError(e: unknown, spec: CommandSpec): string {
  const msg = e instanceof Error ? e.message : String(e);
  const code = (e as { code?: string }).code;
  const flag = /'(-{1,2}[^']+)'/.exec(msg)?.[1] ?? '';
  const names = spec.flags.map((f) => f.name);
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const hint = closest(flag.replace(/^-+/, '').split('=')[0]!, names);
    return `unknown option ${flag}${hint ? ` (did you mean --${hint}?)` : ''}`;
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const name = flag.replace(/^-+/, '').split(/[ =]/)[0]!;
    const f = spec.flags.find((x) => x.name === name);
    return f?.type === 'boolean' ? `option --${name} takes no value` : `option --${name} needs a value${f?.value ? ` (${f.value})` : ''}`;
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    const arg = /'([^']+)'/.exec(msg)?.[1] ?? '';
    return `unexpected argument ${JSON.stringify(arg)}${spec.positionals ? '' : ' (this command takes only options)'}`;
  }
  return msg;
}

/** The string value of a flag ('' never: absent is undefined). */
export function stringFlag(v: FlagValues, name: string): string | undefined {
  const x = v[name];
  return typeof x === 'string' ? x : undefined;
}

export function listFlag(v: FlagValues, name: string): string[] {
  const x = v[name];
  return Array.isArray(x) ? x : typeof x === 'string' ? [x] : [];
}

function wrap(text: string, width: number, indent: string): string[] {
  const out: string[] = [];
  for (const para of text.split('\n')) {
    let line = '';
    for (const word of para.split(/\s+/).filter(Boolean)) {
      if (line && line.length + 1 + word.length > width) {
        out.push(indent + line);
        line = word;
      } else line = line ? `${line} ${word}` : word;
    }
    out.push(indent + line);
  }
  return out;
}

/** One usage line as printed: `  obo-authz <line>`, a continuation (indented in the spec) aligned under it. */
export function usageLine(u: string): string {
  return u.startsWith(' ') ? `            ${u.trimStart()}` : `  obo-authz ${u}`;
}

/** `--name VALUE` as shown in help and docs. */
export function flagLabel(f: FlagSpec): string {
  return `--${f.name}${f.type === 'string' ? ` ${f.value ?? 'VALUE'}` : ''}`;
}

/** The full `--help` text of a command: usage, description, every flag described, exit codes. */
export function helpText(spec: CommandSpec): string {
  const lines: string[] = [`obo-authz ${spec.name}: ${spec.summary}`, '', 'usage:', ...spec.usage.map(usageLine)];
  if (spec.description) lines.push('', ...wrap(spec.description, 96, ''));
  if (spec.positionals) lines.push('', 'arguments:', `  ${spec.positionals.name}`, ...wrap(spec.positionals.description, 88, '      '));
  lines.push('', 'options:');
  for (const f of spec.flags) {
    const extra = [f.multiple ? 'repeatable' : '', f.default !== undefined ? `default ${f.default}` : '', f.env ? `env ${f.env}` : ''].filter(Boolean).join('; ');
    lines.push(`  ${flagLabel(f)}`, ...wrap(`${f.description}${extra ? ` (${extra})` : ''}`, 88, '      '));
  }
  lines.push('  --help, -h', '      Show this help.');
  lines.push('', 'exit status:', ...spec.exitCodes.map(([c, m]) => `  ${c}  ${m}`));
  if (spec.examples?.length) lines.push('', 'examples:', ...spec.examples.map((e) => `  ${e}`));
  return lines.join('\n');
}

type Runner = (p: Parsed, io: Io) => number | Promise<number>;

/** Parse `argv` for `spec`, answer --help, turn usage errors into exit 2. */
export async function runWithSpec(spec: CommandSpec, argv: readonly string[], io: Io, run: Runner): Promise<number> {
  try {
    const p = parseCommand(spec, argv);
    if (p === HELP) {
      io.out(helpText(spec));
      return 0;
    }
    return await run(p, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`obo-authz ${spec.name}: ${e.message}\n(see obo-authz ${spec.name} --help)`);
      return 2;
    }
    throw e;
  }
}
