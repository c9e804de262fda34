/**
 * A global net for the "no secret in any log" rule: every TestRuntime registers its
 * captured log lines here, tests register the secrets they use (tokens, API keys, client
 * secrets), and test/setup.ts scans every captured line after each test file.
 */
const logSinks: string[][] = [];
const secrets = new Set<string>();

export function registerLogSink(lines: string[]): void {
  logSinks.push(lines);
}

/** Remember a secret that must never appear in logs (also any JWT's signature part). */
export function rememberSecret(s: string | undefined | null): void {
  if (!s || s.length < 8) return;
  secrets.add(s);
  const parts = s.split('.');
  if (parts.length === 3 && parts[2]!.length >= 16) secrets.add(parts[2]!);
}

/** JWT-shaped strings: three base64url segments, the first starting with `eyJ` ({"...). */
const JWT_SHAPE = /eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{16,}/;

export function findLeaks(): string[] {
  const leaks: string[] = [];
  for (const lines of logSinks) {
    for (const line of lines) {
      if (JWT_SHAPE.test(line)) leaks.push(`JWT-shaped string in log line: ${line.slice(0, 200)}`);
      for (const s of secrets) if (line.includes(s)) leaks.push(`secret (${s.length} chars) in log line: ${line.slice(0, 120)}`);
    }
  }
  return leaks;
}
