/**
 * The declaration of every subcommand: flags, defaults, environment variables, exit
 * status. `--help`, the parser and docs/cli.md (checked by a test) all come from here.
 */
import type { CommandSpec, FlagSpec } from './args.js';

const CONFIG: FlagSpec = {
  name: 'config',
  type: 'string',
  multiple: true,
  value: 'PATH',
  description: 'A YAML file or a folder of *.yaml / *.yml files (multi-document). Several paths are loaded together as one config.',
};

const TLS_CLIENT: FlagSpec[] = [
  { name: 'tls-ca', type: 'string', value: 'FILE', description: "PEM CA certificate to trust for the server's certificate: connect with TLS." },
  { name: 'tls-cert', type: 'string', value: 'FILE', description: 'PEM client certificate, for a server that requires one (--tls-client-ca on serve). Needs --tls-key and --tls-ca.' },
  { name: 'tls-key', type: 'string', value: 'FILE', description: 'PEM private key of --tls-cert.' },
  { name: 'tls-server-name', type: 'string', value: 'NAME', description: "Name to expect in the server's certificate when it differs from the host in --server." },
];

export const SERVE: CommandSpec = {
  name: 'serve',
  summary: 'run the ext_authz gRPC server and the HTTP endpoints',
  usage: [
    'serve --config PATH [--config PATH ...] [--grpc-address HOST:PORT] [--http-address HOST:PORT] [--health-address HOST:PORT]',
    '    [--http-authz-address HOST:PORT]',
    '    [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]] [--log-level LEVEL] [--decision-log FILE]',
  ],
  description:
    'Serves envoy.service.auth.v3.Authorization/Check and grpc.health.v1.Health on the gRPC address, and /healthz, /readyz, /metrics, /status and the built-in STS on the HTTP address. ' +
    'Config files are watched: a valid change is swapped in atomically, an invalid one is logged and the last good config stays in force. ' +
    'A --config path that does not exist is logged as an error at start-up; the server then reports NOT_SERVING until the path appears with a valid config. ' +
    'Port 0 picks a free port; the chosen addresses are logged in one JSON line with grpcAddress and httpAddress. ' +
    'SIGTERM: health turns NOT_SERVING, Checks are answered for the grace period, in-flight Checks drain, exit 0.',
  flags: [
    { ...CONFIG, default: './config when it exists' },
    { name: 'grpc-address', type: 'string', value: 'HOST:PORT', default: '0.0.0.0:9001', description: 'gRPC listener: ext_authz Check and gRPC health.' },
    { name: 'http-address', type: 'string', value: 'HOST:PORT', default: '0.0.0.0:9002', description: 'HTTP listener: /healthz, /readyz, /metrics, /status, built-in STS endpoints. TLS like the gRPC listener when --tls-cert is set.' },
    {
      name: 'health-address',
      type: 'string',
      value: 'HOST:PORT',
      env: 'OBO_AUTHZ_HEALTH_ADDRESS',
      description: 'Extra plain-HTTP listener serving only /healthz and /readyz (no TLS, no client certificate), for health checks when the other listeners use TLS. Off unless set; the container image sets 127.0.0.1:9003.',
    },
    {
      name: 'http-authz-address',
      type: 'string',
      value: 'HOST:PORT',
      description: 'HTTP authorization listener for Envoy http_service, Istio envoyExtAuthzHttp, nginx auth_request and Traefik ForwardAuth (docs/http-transport.md); HTTP/1.1 and h2c, TLS like the gRPC listener. Off unless set here or in Settings.httpAuthz.address.',
    },
    { name: 'tls-cert', type: 'string', value: 'FILE', description: 'PEM server certificate: TLS on the gRPC and HTTP listeners. Needs --tls-key.' },
    { name: 'tls-key', type: 'string', value: 'FILE', description: 'PEM private key of --tls-cert.' },
    { name: 'tls-client-ca', type: 'string', value: 'FILE', description: 'PEM CA: require client certificates signed by it on both listeners (mutual TLS). Needs --tls-cert.' },
    { name: 'log-level', type: 'string', value: 'LEVEL', default: 'info', env: 'OBO_AUTHZ_LOG_LEVEL', description: 'debug, info, warn, error or silent.' },
    { name: 'decision-log', type: 'string', value: 'FILE', description: 'Write decision lines (JSON lines) to FILE instead of stdout with the other logs.' },
  ],
  exitCodes: [
    [0, 'stopped by SIGTERM or SIGINT after draining'],
    [2, 'usage error, no config given, a listener address that cannot be bound (in use, not permitted), unreadable TLS files'],
  ],
  examples: ['obo-authz serve --config /etc/obo-authz', 'obo-authz serve --config base/ --config team-a.yaml --grpc-address 127.0.0.1:9001'],
};

export const CHECK: CommandSpec = {
  name: 'check',
  summary: 'evaluate one CheckRequest offline, or send it to a server',
  usage: ['check --config PATH [--config PATH ...] --request FILE [--explain]', 'check --server HOST:PORT [--tls-ca FILE [--tls-cert FILE --tls-key FILE]] --request FILE [--timeout 5s]'],
  description:
    'FILE holds an envoy.service.auth.v3.CheckRequest as Envoy sends it, in proto3 JSON (camelCase) or with proto field names (snake_case), as JSON or YAML (docs/cli.md#request-files). ' +
    'It is read strictly: an unknown or mistyped field, a list where a map is expected, or a value of the wrong type is an error naming the field (exit 2). ' +
    'Prints the CheckResponse as proto3 JSON on stdout.',
  flags: [
    CONFIG,
    { name: 'server', type: 'string', value: 'HOST:PORT', description: 'Send the request to this gRPC address instead of evaluating it offline.' },
    { name: 'request', type: 'string', value: 'FILE', description: 'The CheckRequest file (required).' },
    { name: 'explain', type: 'boolean', description: 'Print a trace of every stage on stderr: which rule matched or failed, and why (offline: full trace; --server: the decision metadata).' },
    { name: 'timeout', type: 'string', value: 'DURATION', default: '5s', description: 'Deadline of the Check (sent as grpc-timeout with --server).' },
    ...TLS_CLIENT,
  ],
  exitCodes: [
    [0, 'allowed'],
    [1, 'denied'],
    [2, 'usage error, invalid request file or config, or the server cannot be reached'],
  ],
  examples: ['obo-authz check --config examples/quickstart --request examples/quickstart/requests/allowed.json --explain', 'obo-authz check --server 127.0.0.1:9001 --request req.json'],
};

export const VALIDATE: CommandSpec = {
  name: 'validate',
  summary: 'check a config without serving it',
  usage: ['validate [--ci] [--format text|github|json] [--fail-on-warnings] PATH... | --config PATH...'],
  description:
    'Loads and compiles the config as serve would and prints every problem as file:line:col: document N (Kind/name): field.path: message. ' +
    'With --ci, what exists only where obo-authz runs is a warning naming the field instead of an error: referenced files that are not there (mounted Secrets, projected tokens, the pod service-account CA and token) and the in-cluster API server (KUBERNETES_SERVICE_HOST). ' +
    'Everything else is checked as strictly as at start-up. The config hash printed on success is the one the server reports in obo_authz_config_info and /status.',
  positionals: { name: 'PATH...', description: 'Config files or folders, the same as --config.' },
  flags: [
    CONFIG,
    { name: 'ci', type: 'boolean', description: 'Outside the cluster: missing files and in-cluster API servers are warnings, not errors.' },
    { name: 'format', type: 'string', value: 'FORMAT', default: 'text', description: 'text (one line per problem), github (GitHub Actions ::error/::warning annotations) or json (one object with ok, hash and issues).' },
    { name: 'fail-on-warnings', type: 'boolean', description: 'Exit 1 when the config is valid but has warnings.' },
  ],
  exitCodes: [
    [0, 'valid (warnings may have been printed)'],
    [1, 'valid, but with warnings and --fail-on-warnings'],
    [2, 'invalid config, or a usage error'],
  ],
  examples: ['obo-authz validate --ci deploy/config', 'obo-authz validate --ci --format github --config base/ --config overlays/prod/'],
};

export const TEST: CommandSpec = {
  name: 'test',
  summary: 'run test tables of requests and expected decisions against a config, offline',
  usage: ['test [--config PATH ...] [--run REGEX] [--ci] [--verbose] [--format text|json] PATH...'],
  description:
    'Each PATH is a test table (YAML) or a folder of them (*.yaml / *.yml, not recursive). A table names its config (or --config overrides it), test keys to mint tokens with, and cases: a request and the expected status, reason, policy, upstream headers (docs/testing.md). ' +
    'All cases run in one process against the compiled config, with no network: JWKS of the table keys are served from the table.',
  positionals: { name: 'PATH...', description: 'Test table files or folders of tables.' },
  flags: [
    { ...CONFIG, description: 'Evaluate every table against this config instead of the one each table names.' },
    { name: 'run', type: 'string', value: 'REGEX', description: 'Only run cases whose name matches REGEX.' },
    { name: 'ci', type: 'boolean', description: 'Load the config as validate --ci does (missing files and in-cluster API servers are warnings).' },
    { name: 'verbose', type: 'boolean', description: 'Print every case, and the --explain trace of each failing one.' },
    { name: 'format', type: 'string', value: 'FORMAT', default: 'text', description: 'text or json (one object per table with every case and its differences).' },
  ],
  exitCodes: [
    [0, 'every case passed'],
    [1, 'at least one case failed'],
    [2, 'usage error, an invalid table or config'],
  ],
  examples: ['obo-authz test examples/quickstart/tests', 'obo-authz test --config deploy/config policy-tests/'],
};

export const STATUS: CommandSpec = {
  name: 'status',
  summary: "show a running server's config and its dependencies (JWKS, STS, credential files)",
  usage: ['status [--server HOST:PORT] [--tls-ca FILE [--tls-cert FILE --tls-key FILE]] [--json]'],
  description:
    'Reads GET /status from the HTTP address of a running server: serving state, config hash and load time, and per issuer its JWKS keys, last fetch and last error; per STS the last exchange outcome; per credential file its last reload. ' +
    'The answer to "did my change take?": compare the hash with the one validate prints.',
  flags: [
    { name: 'server', type: 'string', value: 'HOST:PORT', default: '127.0.0.1:9002', description: "The server's HTTP address (--http-address of serve)." },
    ...TLS_CLIENT,
    { name: 'json', type: 'boolean', description: 'Print the /status document as JSON instead of a table.' },
    { name: 'timeout', type: 'string', value: 'DURATION', default: '5s', description: 'How long to wait for the answer.' },
  ],
  exitCodes: [
    [0, 'serving, and every issuer has keys and every dependency answered its last call'],
    [1, 'not serving, or a dependency is failing (shown in the output)'],
    [2, 'usage error, or the server cannot be reached'],
  ],
  examples: ['obo-authz status --server 127.0.0.1:9002', 'obo-authz status --server obo-authz.obo-authz:9002 --tls-ca ca.pem'],
};

export const HEALTH: CommandSpec = {
  name: 'health',
  summary: 'probe /readyz of a local server (container health checks)',
  usage: ['health [--server HOST:PORT]'],
  description:
    'Plain-HTTP GET /readyz. The container image runs it as its HEALTHCHECK against the --health-address listener, which stays plain HTTP when the other listeners use TLS.',
  flags: [
    { name: 'server', type: 'string', value: 'HOST:PORT', default: '127.0.0.1:9002', env: 'OBO_AUTHZ_HEALTH_ADDRESS', description: 'Address of a plain-HTTP listener serving /readyz.' },
    { name: 'timeout', type: 'string', value: 'DURATION', default: '3s', description: 'How long to wait for the answer.' },
  ],
  exitCodes: [
    [0, 'ready (a valid config is loaded and the server is not draining)'],
    [1, 'not ready'],
    [2, 'usage error, or nothing answers plain HTTP at the address'],
  ],
};

export const APIKEY_CREATE: CommandSpec = {
  name: 'apikey create',
  summary: 'generate an API key and store only its hash',
  usage: ['apikey create --name NAME [--role ROLE] [--groups G1,G2] [--scopes S1,S2] [--expires 30d] [--file PATH]'],
  description:
    'Prints the new key once on stdout (only the key, so KEY=$(obo-authz apikey create ...) works) and writes its SHA-256 hash entry for a CredentialValidator of type APIKey. The key itself is never written anywhere.',
  flags: [
    { name: 'name', type: 'string', value: 'NAME', description: 'Required: the key name, the subject of requests made with it (letters, digits and . _ @ : -).' },
    { name: 'role', type: 'string', value: 'ROLE', description: 'The role claim.' },
    { name: 'groups', type: 'string', value: 'G1,G2', description: 'The groups claim, comma-separated.' },
    { name: 'scopes', type: 'string', value: 'S1,S2', description: 'The scope claim, comma-separated.' },
    { name: 'expires', type: 'string', value: 'DURATION', description: 'Lifetime (30d, 12h); written as an RFC 3339 UTC time.' },
    {
      name: 'file',
      type: 'string',
      value: 'PATH',
      description: 'Append the entry to this key file (created with mode 0600), or write PATH/NAME.yaml when PATH is a folder. Without it the entry is printed on stderr.',
    },
  ],
  exitCodes: [
    [0, 'key created'],
    [2, 'usage error, or the file cannot be written'],
  ],
};

export const VERSION: CommandSpec = {
  name: 'version',
  summary: 'print the version (also: obo-authz --version)',
  usage: ['version', '--version'],
  flags: [],
  exitCodes: [[0, 'always']],
};

/** Every command, in the order of the top-level help. */
export const COMMAND_SPECS: readonly CommandSpec[] = [SERVE, CHECK, VALIDATE, TEST, STATUS, HEALTH, APIKEY_CREATE, VERSION];
