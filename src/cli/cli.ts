/**
 * The command dispatcher: `obo-authz COMMAND [options]`. Every command parses its flags from
 * its spec (specs.ts), answers `--help`, and returns its exit status; usage errors are
 * printed with a pointer to the command's help and exit 2. main.ts only runs this.
 */
import { closest, runWithSpec, usageLine } from './args.js';
import { runApiKey } from './apikey.js';
import { checkCommand } from './check.js';
import { healthCommand } from './health.js';
import { serveCommand } from './serve-command.js';
import { COMMAND_SPECS, VERSION } from './specs.js';
import { statusCommand } from './status.js';
import { testCommand } from './policy-test/command.js';
import { validateCommand } from './validate.js';
import { packageVersion } from './version.js';
import type { Io } from './io.js';

export function topLevelHelp(): string {
  const width = Math.max(...COMMAND_SPECS.map((s) => s.name.length));
  return [
    `obo-authz ${packageVersion()}: Envoy ext_authz (gRPC) with Istio authentication and authorization semantics and on-behalf-of token exchange`,
    '',
    'usage: obo-authz COMMAND [options]',
    '',
    'commands:',
    ...COMMAND_SPECS.map((s) => `  ${s.name.padEnd(width)}  ${s.summary}`),
    '',
    'synopsis:',
    ...COMMAND_SPECS.flatMap((s) => s.usage.filter((u) => !u.startsWith('--')).map(usageLine)),
    '',
    'Run `obo-authz COMMAND --help` for the options of a command. Exit status: 0 success (allowed, valid, passed),',
    '1 a negative answer (denied, a failed test case, not ready), 2 a usage, input or config error.',
  ].join('\n');
}

const COMMANDS: Record<string, (argv: readonly string[], io: Io) => number | Promise<number>> = {
  serve: serveCommand,
  check: checkCommand,
  validate: validateCommand,
  test: testCommand,
  status: statusCommand,
  health: healthCommand,
  apikey: (argv, io) => runApiKey([...argv], io),
  version: (argv, io) =>
    runWithSpec(VERSION, argv, io, () => {
      io.out(packageVersion());
      return 0;
    }),
};

/** Run one command line; never throws (an unexpected error is exit 2 with its message). */
export async function runCli(argv: readonly string[], io: Io): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === '--version' || cmd === '-v') return await COMMANDS['version']!(rest, io);
    if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
      if (cmd === 'help' && rest[0] && COMMANDS[rest[0]]) return await COMMANDS[rest[0]]!(['--help'], io);
      (cmd === undefined ? io.err : io.out)(topLevelHelp());
      return cmd === undefined ? 2 : 0;
    }
    const run = COMMANDS[cmd];
    if (!run) {
      const hint = closest(cmd, Object.keys(COMMANDS));
      io.err(`obo-authz: unknown command ${JSON.stringify(cmd)}${hint ? ` (did you mean ${hint}?)` : ''}\n(see obo-authz --help)`);
      return 2;
    }
    return await run(rest, io);
  } catch (e) {
    io.err(`obo-authz${cmd ? ` ${cmd}` : ''}: ${e instanceof Error ? e.message : String(e)}`);
    return 2;
  }
}
