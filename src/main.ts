#!/usr/bin/env node
/** obo-authz CLI entry: serve | check | validate. Exit codes: 0 ok/allowed, 1 denied, 2 usage or config error. */
import { existsSync, statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { APIKEY_USAGE, runApiKey } from './cli/apikey.js';
import { runCheck } from './cli/check.js';
import { startServer, createRuntime } from './cli/serve.js';
import { runValidate, type Io } from './cli/validate.js';
import { parseDuration } from './config/schema.js';

const USAGE = `usage:
  obo-authz serve --config PATH [--config PATH ...] [--grpc-address HOST:PORT] [--http-address HOST:PORT]
                  [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]] [--log-level LEVEL]
                  [--decision-log FILE]
  obo-authz check (--config PATH ... | --server HOST:PORT [--tls-ca FILE]) --request FILE [--explain] [--timeout 1s]
  obo-authz validate --config PATH [--config PATH ...]
${APIKEY_USAGE}

PATH is a YAML file or a folder of *.yaml / *.yml files.`;

const io: Io = {
  out: (s) => process.stdout.write(`${s}\n`),
  err: (s) => process.stderr.write(`${s}\n`),
};

function usage(msg?: string): number {
  if (msg) io.err(`obo-authz: ${msg}`);
  io.err(USAGE);
  return 2;
}

async function serve(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string', multiple: true },
      'grpc-address': { type: 'string' },
      'http-address': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-client-ca': { type: 'string' },
      'log-level': { type: 'string' },
      'decision-log': { type: 'string' },
    },
    strict: true,
  });
  let configPaths = values.config ?? [];
  if (configPaths.length === 0) {
    if (existsSync('config') && statSync('config').isDirectory()) configPaths = ['config'];
    else return usage('serve needs --config PATH (no ./config folder found; there is no built-in config)');
  }
  if (!!values['tls-cert'] !== !!values['tls-key']) return usage('--tls-cert and --tls-key go together');
  if (values['tls-client-ca'] && !values['tls-cert']) return usage('--tls-client-ca needs --tls-cert and --tls-key');
  const runtime = createRuntime(values['log-level']);
  const server = await startServer({
    configPaths,
    grpcAddress: values['grpc-address'] ?? '0.0.0.0:9001',
    httpAddress: values['http-address'] ?? '0.0.0.0:9002',
    runtime,
    decisionLogPath: values['decision-log'],
    tls: values['tls-cert'] ? { cert: values['tls-cert'], key: values['tls-key']!, clientCa: values['tls-client-ca'] } : undefined,
  });
  if (!server.state.config) {
    runtime.logger.error('no valid configuration at start-up: health reports NOT_SERVING and checks are denied with 503 until a valid config is written');
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      runtime.logger.info({ signal }, 'signal received');
      server.shutdown().then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

async function check(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string', multiple: true },
      server: { type: 'string' },
      request: { type: 'string' },
      explain: { type: 'boolean', default: false },
      timeout: { type: 'string', default: '5s' },
      'tls-ca': { type: 'string' },
    },
    strict: true,
  });
  if (!values.request) return usage('check needs --request FILE');
  if (!values.server && !values.config?.length) return usage('check needs --config PATH or --server HOST:PORT');
  if (values.server && values.config?.length) return usage('check takes --config or --server, not both');
  const timeoutMs = parseDuration(values.timeout);
  if (timeoutMs === undefined) return usage(`invalid --timeout ${JSON.stringify(values.timeout)}`);
  return runCheck(
    { configPaths: values.config ?? [], server: values.server, request: values.request, explain: values.explain, timeoutMs, tlsCa: values['tls-ca'] },
    io,
  );
}

function validate(argv: string[]): number {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string', multiple: true } }, strict: true });
  if (!values.config?.length) return usage('validate needs --config PATH');
  return runValidate(values.config, io);
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'serve':
        return await serve(rest);
      case 'check':
        return await check(rest);
      case 'validate':
        return validate(rest);
      case 'apikey':
        return runApiKey(rest, io);
      case '--help':
      case '-h':
      case 'help':
        io.out(USAGE);
        return 0;
      default:
        return usage(cmd ? `unknown command ${JSON.stringify(cmd)}` : 'missing command');
    }
  } catch (e) {
    if (e instanceof TypeError && 'code' in e && String((e as { code?: string }).code).startsWith('ERR_PARSE_ARGS')) return usage(e.message);
    io.err(`obo-authz: ${e instanceof Error ? e.message : String(e)}`);
    return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    if (process.argv[2] !== 'serve') setTimeout(() => process.exit(code), 50).unref();
    else process.exit(code);
  },
  () => process.exit(2),
);
