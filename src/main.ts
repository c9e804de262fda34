#!/usr/bin/env node
/** obo-authz CLI entry (the package's `bin`): runs one command line, see src/cli/cli.ts. */
import { runCli } from './cli/cli.js';
import { processIo } from './cli/io.js';

const argv = process.argv.slice(2);
runCli(argv, processIo).then(
  (code) => {
    process.exitCode = code;
    // `serve` returns only once shut down. Other commands exit as soon as stdout/stderr are
    // flushed, without waiting for timers a library may have left (JWKS refreshes, keep-alive).
    if (argv[0] === 'serve') process.exit(code);
    else setTimeout(() => process.exit(code), 50).unref();
  },
  () => process.exit(2),
);
