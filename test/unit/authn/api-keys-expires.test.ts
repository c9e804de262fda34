/**
 * API key `expires` is an RFC 3339 date-time with `Z` or a UTC offset (review finding 3):
 * Date.parse used to accept other formats and read zone-less times as local time, so the
 * instant a key expired depended on the server's TZ. Anything else is a file error that
 * names the entry and field (never a value of the file).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseApiKeyFiles, parseRfc3339 } from '../../../src/authn/api-keys.js';
import { formatIssue } from '../../../src/config/issues.js';
import { runApiKey } from '../../../src/cli/apikey.js';
import { compileYaml } from '../../helpers/config.js';
import { createTestRuntime } from '../../helpers/runtime.js';
import { rememberSecret } from '../../helpers/secrets.js';

const HASH = `sha256:${'ab'.repeat(32)}`;
const dir = mkdtempSync(join(tmpdir(), 'obo-apikey-expires-'));
const rt = createTestRuntime({ now: Date.parse('2030-01-01T00:00:00Z') });
afterAll(() => {
  rt.shared.disposeAll();
  rmSync(dir, { recursive: true, force: true });
});

function parseFile(expires: string): ReturnType<typeof parseApiKeyFiles> {
  return parseApiKeyFiles([{ name: '', content: `keys:\n- name: k\n  hash: ${HASH}\n  expires: ${expires}\n` }], 'keys.yaml');
}

describe('API key expires: RFC 3339 with a zone only', () => {
  const accepted: [string, string][] = [
    ['"2026-01-01T00:00:00Z"', '2026-01-01T00:00:00.000Z'],
    ['2026-01-01T00:00:00Z', '2026-01-01T00:00:00.000Z'],
    ['"2026-01-01T01:00:00+01:00"', '2026-01-01T00:00:00.000Z'],
    ['"2025-12-31T19:30:00-04:30"', '2026-01-01T00:00:00.000Z'],
    ['"2026-01-01T00:00:00.5Z"', '2026-01-01T00:00:00.500Z'],
    ['"2026-01-01T00:00:00.123456789Z"', '2026-01-01T00:00:00.123Z'],
    ['"2026-01-01t00:00:00z"', '2026-01-01T00:00:00.000Z'],
    ['"2028-02-29T00:00:00Z"', '2028-02-29T00:00:00.000Z'],
    ['"0050-06-01T00:00:00Z"', '0050-06-01T00:00:00.000Z'],
  ];
  for (const [v, iso] of accepted) {
    it(`accepts ${v}`, () => {
      const r = parseFile(v);
      expect(r.ok, r.ok ? '' : r.error).toBe(true);
      expect(r.ok && new Date(r.value.entries[0]!.expiresAt!).toISOString()).toBe(iso);
    });
  }

  const rejected = [
    '"2026-01-01T00:00:00"', // no zone: Date.parse reads it as local time
    '"2026-01-01T00:00"',
    '"2026-01-01"', // a date alone
    '2026-01-01',
    '"2026-01-01 00:00:00Z"',
    '"Jan 1 2026"',
    '"Thu, 01 Jan 2026 00:00:00 GMT"',
    '"2026-01-01T00:00:00+0100"',
    '"2026-01-01T00:00:00+01"',
    '"2026-02-30T00:00:00Z"', // Date.parse rolls it over to March 2
    '"2027-02-29T00:00:00Z"',
    '"2026-13-01T00:00:00Z"',
    '"2026-01-01T24:00:00Z"',
    '"2026-01-01T00:60:00Z"',
    '"2026-01-01T00:00:00+24:00"',
    '"+010000-01-01T00:00:00Z"',
    '" 2026-01-01T00:00:00Z"',
    '1767225600',
    'soon',
  ];
  for (const v of rejected) {
    it(`rejects ${v}, naming the entry and field`, () => {
      const r = parseFile(v);
      expect(r.ok).toBe(false);
      expect(!r.ok && r.error).toMatch(/^keys\.yaml: keys\[0\]\.expires: expected an RFC 3339 date-time with "Z" or a UTC offset/);
    });
  }

  it('rejects an unquoted YAML 1.1 timestamp (it may carry no zone)', () => {
    const r = parseApiKeyFiles([{ name: '', content: `%YAML 1.1\n---\nkeys:\n- name: k\n  hash: ${HASH}\n  expires: 2026-01-01 10:00:00\n` }], 'keys.yaml');
    expect(!r.ok && r.error).toMatch(/keys\[0\]\.expires: .*quoted string/);
  });

  it('in a key folder the error names the file and field', () => {
    const r = parseApiKeyFiles([{ name: 'svc.yaml', content: `hash: ${HASH}\nexpires: "2026-01-01T00:00:00"\n` }], '/keys');
    expect(!r.ok && r.error).toMatch(/^\/keys\/svc\.yaml\.expires: expected an RFC 3339 date-time/);
  });

  it('parseRfc3339 does not depend on the local time zone', () => {
    expect(parseRfc3339('2026-01-01T00:00:00Z')).toBe(Date.UTC(2026, 0, 1));
    expect(parseRfc3339('2026-01-01T00:00:00')).toBeUndefined();
  });

  it('a zone-less expires is a config error at spec.apiKey.file', () => {
    writeFileSync(join(dir, 'k.yaml'), `keys:\n- {name: a, hash: "${HASH}", expires: "2026-06-30T00:00:00"}\n`);
    const r = compileYaml(
      'apiVersion: obo-authz.dev/v1alpha1\nkind: CredentialValidator\nmetadata: {name: v, namespace: shop}\nspec:\n  type: APIKey\n  apiKey: {file: k.yaml}\n',
      rt,
      join(dir, 'c.yaml'),
    );
    expect(r.ok).toBe(false);
    const errs = r.issues.filter((i) => i.severity === 'error').map(formatIssue).join('\n');
    expect(errs).toMatch(/spec\.apiKey\.file: .*keys\[0\]\.expires: expected an RFC 3339 date-time/);
  });
});

describe('apikey create --expires writes a value the reader accepts', () => {
  function cli(args: string[], now: number) {
    const out: string[] = [];
    const err: string[] = [];
    const code = runApiKey(args, { out: (s) => out.push(s), err: (s) => err.push(s) }, () => now);
    if (out[0]) rememberSecret(out[0]);
    return { code, out, err };
  }
  it('--expires 30d: RFC 3339 with Z, read back as the same instant', () => {
    const f = join(dir, 'cli.yaml');
    const now = Date.parse('2030-01-01T00:00:00.250Z');
    const r = cli(['create', '--name', 'a', '--expires', '30d', '--file', f], now);
    expect(r.code).toBe(0);
    const text = readFileSync(f, 'utf8');
    const m = /expires: "?([^"\n]+)"?/.exec(text);
    expect(m?.[1]).toBe('2030-01-31T00:00:00Z');
    expect(m![1]).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/);
    const p = parseApiKeyFiles([{ name: '', content: text }], f);
    expect(p.ok && p.value.entries[0]!.expiresAt).toBe(Date.parse('2030-01-31T00:00:00Z'));
  });
  it('an expiry past year 9999 (no RFC 3339 form) is refused, nothing is written', () => {
    const f = join(dir, 'far.yaml');
    const r = cli(['create', '--name', 'a', '--expires', '3000000d', '--file', f], Date.parse('2030-01-01T00:00:00Z'));
    expect(r.code).toBe(2);
    expect(r.out).toEqual([]);
    expect(r.err.join('\n')).toMatch(/invalid --expires "3000000d" \(too far in the future\)/);
    expect(() => readFileSync(f)).toThrow();
  });
});
