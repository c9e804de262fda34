/** Structured JSON logs (pino). Credentials are redacted before they get here (redact.ts); pino's redact is a second net. */
import { pino, type Logger, type DestinationStream, type LoggerOptions } from 'pino';

export type { Logger };

const REDACT: LoggerOptions['redact'] = {
  paths: [
    '*.authorization',
    '*.token',
    '*.subject_token',
    '*.actor_token',
    '*.access_token',
    '*.client_secret',
    'headers.authorization',
    'headers.cookie',
    'headers["x-actor-token"]',
  ],
  censor: '[REDACTED]',
};

/**
 * `redact: false` is for the decision log only: its entries are built field by field from
 * identifiers (decision-log.ts) and never hold a credential, so pino's path redaction (a
 * measurable share of per-Check CPU) is not needed there.
 */
export function createLogger(opts: { level?: string; destination?: DestinationStream; redact?: boolean } = {}): Logger {
  const options: LoggerOptions = {
    name: 'obo-authz',
    level: opts.level ?? process.env['OBO_AUTHZ_LOG_LEVEL'] ?? 'info',
    base: { service: 'obo-authz' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  if (opts.redact !== false) options.redact = REDACT;
  return pino(options, opts.destination);
}
