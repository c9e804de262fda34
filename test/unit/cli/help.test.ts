/** Every subcommand answers --help describing each of its flags; --version; usage errors exit 2 and say what to do. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { flagLabel, helpText } from '../../../src/cli/args.js';
import { COMMAND_SPECS } from '../../../src/cli/specs.js';
import { cli } from '../../helpers/cli.js';

const VERSION = JSON.parse(readFileSync('package.json', 'utf8')).version as string;

describe('obo-authz --help and --version', () => {
  it.each(COMMAND_SPECS.map((s) => [s.name, s] as const))('%s --help describes every flag and the exit status', async (name, spec) => {
    const r = await cli(...name.split(' '), '--help');
    expect(r.code).toBe(0);
    expect(r.out).toBe(helpText(spec));
    for (const f of spec.flags) {
      expect(f.description.length, `--${f.name} has a description`).toBeGreaterThan(10);
      const at = r.out.indexOf(`  ${flagLabel(f)}\n`);
      expect(at, `--${f.name} listed`).toBeGreaterThan(0);
      expect(r.out.slice(at).split('\n')[1], `--${f.name} described on the next line`).toMatch(/^ {6}\S/);
    }
    for (const [code] of spec.exitCodes) expect(r.out).toMatch(new RegExp(`^  ${code}  `, 'm'));
  });

  it('prints the package version for --version and `version`, and lists the commands for --help', async () => {
    expect(await cli('--version')).toMatchObject({ code: 0, out: VERSION });
    expect(await cli('version')).toMatchObject({ code: 0, out: VERSION });
    const h = await cli('--help');
    expect(h.code).toBe(0);
    for (const s of COMMAND_SPECS) expect(h.out).toContain(`  ${s.name}`);
    expect((await cli('help', 'validate')).out).toContain('obo-authz validate: check a config');
  });

  it('no command, an unknown command, an unknown or mistyped flag: exit 2 with a pointer to --help', async () => {
    expect((await cli()).code).toBe(2);
    const unknown = await cli('valdate', '--config', 'x');
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain('unknown command "valdate" (did you mean validate?)');
    const typo = await cli('check', '--requst', 'r.json', '--config', 'c');
    expect(typo.code).toBe(2);
    expect(typo.err).toContain('obo-authz check: unknown option --requst (did you mean --request?)');
    expect(typo.err).toContain('(see obo-authz check --help)');
    const noValue = await cli('check', '--config');
    expect(noValue.err).toContain('option --config needs a value (PATH)');
    const positional = await cli('check', 'extra', '--request', 'r.json', '--config', 'c');
    expect(positional.err).toContain('unexpected argument "extra"');
    const boolValue = await cli('validate', '--ci=yes', 'x');
    expect(boolValue.err).toContain('option --ci takes no value');
  });

  it('flag checks name the flag: --timeout, --format, --tls-* pairs, serve addresses and log level', async () => {
    expect((await cli('check', '--config', 'c', '--request', 'r', '--timeout', 'soon')).err).toContain('--timeout "soon": expected a duration');
    expect((await cli('validate', '--format', 'xml', 'x')).err).toContain('--format "xml": expected text, github or json');
    expect((await cli('check', '--server', 'h:1', '--request', 'r', '--tls-cert', 'c.pem', '--tls-ca', 'ca.pem')).err).toContain('--tls-cert and --tls-key go together');
    expect((await cli('status', '--tls-cert', 'c.pem', '--tls-key', 'k.pem')).err).toContain('--tls-cert needs --tls-ca');
    expect((await cli('serve', '--config', 'x', '--grpc-address', 'localhost')).err).toContain('--grpc-address "localhost": expected HOST:PORT');
    expect((await cli('serve', '--config', 'x', '--log-level', 'loud')).err).toContain('--log-level "loud"');
    expect((await cli('serve', '--config', 'x', '--tls-cert', 'c.pem')).err).toContain('--tls-cert and --tls-key go together');
    expect((await cli('check', '--request', 'r')).err).toContain('needs --config PATH (offline) or --server HOST:PORT');
    expect((await cli('test')).err).toContain('needs a test table');
    expect((await cli('test', '--run', '(', 'x')).err).toContain('--run "(": not a regular expression');
    for (const r of [await cli('check', '--request', 'r'), await cli('test')]) expect(r.code).toBe(2);
  });

  it('apikey create --help is the spec help, and a bad flag exits 2', async () => {
    const h = await cli('apikey', 'create', '--help');
    expect(h.code).toBe(0);
    expect(h.out).toContain('--expires DURATION');
    const bad = await cli('apikey', 'create', '--nmae', 'x');
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('unknown option --nmae (did you mean --name?)');
  });
});
