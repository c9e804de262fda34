/** Structured JSON logs (pino). Credentials are redacted before they get here (redact.ts); pino's redact is a second net. */
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export function createLogger(opts: { level?: string; destination?: DestinationStream; redact?: boolean } = {}): Logger {
  const level = opts.level ?? process.env['OBO_AUTHZ_LOG_LEVEL'] ?? 'info';
  if (opts.redact === false) {
    // For the decision log only: its entries are built field by field from identifiers
    // (decision-log.ts) and never hold a credential, so pino's path redaction (a measurable
    // share of per-Check CPU) is not needed there.
    return pino(
      {
        name: 'obo-authz',
        level,
        base: { service: 'obo-authz' },
        timestamp: pino.stdTimeFunctions.isoTime,
        formatters: { level: (label) => ({ level: label }) },
      },
      opts.destination,
    );
  }
  return pino(
    {
      name: 'obo-authz',
      level,
      base: { service: 'obo-authz' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
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
      },
    },
    opts.destination,
  );
}
