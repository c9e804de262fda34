// `obo-authz serve` with HTTP listener limits given on the command line (the bench compares
// the token endpoint with and without them): node bench/lib/limits-server.mjs CONFIG_DIR '<json>'
import { createRuntime, startServer } from '../../dist/src/cli/serve.js';

const [configDir, limitsJson] = process.argv.slice(2);
const runtime = createRuntime('info');
const server = await startServer({
  configPaths: [configDir],
  grpcAddress: '127.0.0.1:0',
  httpAddress: '127.0.0.1:0',
  runtime,
  httpLimits: JSON.parse(limitsJson ?? '{}'),
});
process.on('SIGTERM', () => server.close().then(() => process.exit(0)));
