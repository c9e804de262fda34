/**
 * Client side of `check --server` and `status --server`: the TLS flags, and connection
 * failures turned into a sentence that says what to do (trust the CA with --tls-ca, present
 * a client certificate, use TLS or not) instead of a bare gRPC or socket error.
 */
import { readFileSync } from 'node:fs';
import { stringFlag, UsageError, type FlagValues } from './args.js';

export interface ClientTls {
  readonly ca: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly serverName?: string;
}

function readFlagFile(flag: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new UsageError(`--${flag} ${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

/** The --tls-* flags as client TLS settings; undefined = plaintext. */
export function clientTls(v: FlagValues): ClientTls | undefined {
  const ca = stringFlag(v, 'tls-ca');
  const cert = stringFlag(v, 'tls-cert');
  const key = stringFlag(v, 'tls-key');
  const serverName = stringFlag(v, 'tls-server-name');
  if (!!cert !== !!key) throw new UsageError('--tls-cert and --tls-key go together');
  if ((cert || serverName) && !ca) throw new UsageError(`${cert ? '--tls-cert' : '--tls-server-name'} needs --tls-ca (the CA that signed the server's certificate)`);
  if (!ca) return undefined;
  return {
    ca: readFlagFile('tls-ca', ca),
    ...(cert ? { cert: readFlagFile('tls-cert', cert), key: readFlagFile('tls-key', key!) } : {}),
    ...(serverName ? { serverName } : {}),
  };
}

/** A connection failure to `server` as one sentence with the fix, from any client's error text. */
export function explainConnectError(server: string, detail: string, tls: boolean): string {
  const d = detail.toLowerCase();
  const has = (...xs: string[]) => xs.some((x) => d.includes(x.toLowerCase()));
  if (has('ECONNREFUSED', 'connection refused')) return `nothing listens at ${server} (connection refused): is the server running, and is this its address?`;
  if (has('ENOTFOUND', 'EAI_AGAIN', 'name resolution', 'DNS resolution failed')) return `cannot resolve the host of ${server}`;
  if (has('self-signed', 'self signed', 'unable to verify', 'unable to get local issuer', 'certificate verify failed', 'UNABLE_TO_VERIFY', 'SELF_SIGNED', 'unknown ca')) {
    return `TLS: the server's certificate is not signed by a CA you trust: pass the CA that signed it with --tls-ca FILE (${detail})`;
  }
  if (has('altnames', 'ERR_TLS_CERT_ALTNAME', 'does not match certificate', 'hostname mismatch')) {
    return `TLS: the server's certificate does not name ${server.replace(/:\d+$/, '')}: pass the name it carries with --tls-server-name NAME (${detail})`;
  }
  if (has('certificate required', 'handshake failure', 'peer did not return a certificate', 'bad certificate')) {
    return `TLS: the server requires a client certificate: pass --tls-cert FILE --tls-key FILE (with --tls-ca) (${detail})`;
  }
  if (tls && has('wrong version number', 'packet length too long', 'EPROTO', 'http_request')) {
    return `TLS: ${server} does not speak TLS: leave out --tls-ca to connect without TLS (${detail})`;
  }
  if (!tls && has('Connection dropped', 'protocol error', 'socket hang up', 'ECONNRESET', 'premature close', 'Received RST_STREAM', 'parse error', 'Failed to connect')) {
    return `the connection to ${server} was dropped: if the server uses TLS (serve --tls-cert), pass its CA with --tls-ca FILE (${detail})`;
  }
  if (has('DEADLINE_EXCEEDED', 'timed out', 'timeout')) return `no answer from ${server} before the timeout: is the address right, and is the server up? (${detail})`;
  return `cannot talk to ${server}: ${detail}`;
}
