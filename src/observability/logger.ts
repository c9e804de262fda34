/**
 * Structured JSON logs (pino). Credentials are redacted before they get here (redact.ts);
 * pino's path redaction is a second net, and every string field is passed through the
 * configured-secret redactor and capped in length (an attacker-sized value, such as a
 * 500,000-character `kid`, never makes a huge line).
 */
import { pino, type Logger, type DestinationStream, type LoggerOptions } from 'pino';
import { capText, LOG_STRING_MAX, type SecretRedactor } from './redact.js';
import type { LineWriter } from './line-writer.js';

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

/** Deepest level of a logged object whose strings are scrubbed and capped; deeper values are replaced. */
const MAX_DEPTH = 6;
/** Array elements and object keys kept per level. */
const MAX_ITEMS = 64;

/** A copy of `v` with every string scrubbed of configured secrets and capped. */
export function boundLogValue(v: unknown, redactor: SecretRedactor | undefined, depth = 0): unknown {
  if (typeof v === 'string') return capText(redactor ? redactor.scrub(v) : v, LOG_STRING_MAX);
  if (v === null || typeof v !== 'object') return v;
  if (depth >= MAX_DEPTH) return '[too deep]';
  if (v instanceof Error) return boundLogValue({ type: v.name, message: v.message }, redactor, depth);
  if (Array.isArray(v)) {
    const out = v.slice(0, MAX_ITEMS).map((x) => boundLogValue(x, redactor, depth + 1));
    if (v.length > MAX_ITEMS) out.push(`[+${v.length - MAX_ITEMS} more]`);
    return out;
  }
  const out: Record<string, unknown> = {};
  let n = 0;
  for (const k of Object.keys(v)) {
    if (n++ >= MAX_ITEMS) {
      out['[more]'] = `+${Object.keys(v).length - MAX_ITEMS} keys`;
      break;
    }
    out[capText(k, 128)] = boundLogValue((v as Record<string, unknown>)[k], redactor, depth + 1);
  }
  return out;
}

/** A pino destination writing through a LineWriter (the one ordered writer of its descriptor). */
export function lineDestination(w: LineWriter): DestinationStream & { flush(cb?: (err?: Error) => void): void } {
  return {
    write(s: string) {
      w.write(s);
    },
    flush(cb?: (err?: Error) => void) {
      w.flush().then(
        () => cb?.(),
        (e: Error) => cb?.(e),
      );
    },
  };
}

/**
 * `redact: false` is for the decision log only: its entries are built field by field from
 * identifiers (decision-log.ts) and never hold a credential, so pino's path redaction (a
 * measurable share of per-Check CPU) is not needed there.
 */
export function createLogger(
  opts: { level?: string; destination?: DestinationStream; redact?: boolean; redactor?: SecretRedactor } = {},
): Logger {
  const redactor = opts.redactor;
  const options: LoggerOptions = {
    name: 'obo-authz',
    level: opts.level ?? process.env['OBO_AUTHZ_LOG_LEVEL'] ?? 'info',
    base: { service: 'obo-authz' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: {
      level: (label) => ({ level: label }),
      log: (o) => boundLogValue(o, redactor) as Record<string, unknown>,
    },
  };
  // The message is ours, but a caller may build it from outside text: scrubbed too.
  if (redactor) options.hooks = { streamWrite: (s) => redactor.scrub(s) };
  if (opts.redact !== false) options.redact = REDACT;
  return pino(options, opts.destination);
}
