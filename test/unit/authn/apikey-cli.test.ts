/** `obo-authz apikey create`: the key is printed once, only its hash is written, and it works. */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hashApiKey, parseApiKeyFiles } from '../../../src/authn/api-keys.js';
import { runApiKey } from '../../../src/cli/apikey.js';
import { evaluate } from '../../../src/pipeline/pipeline.js';
import { mustCompile } from '../../helpers/config.js';
import { createTestRuntime } from '../../helpers/runtime.js';
import { rememberSecret } from '../../helpers/secrets.js';

const dir = mkdtempSync(join(tmpdir(), 'obo-apikey-cli-'));
const rt = createTestRuntime({ now: Date.parse('2030-01-01T00:00:00Z') });
afterAll(() => {
  rt.shared.disposeAll();
  rmSync(dir, { recursive: true, force: true });
});

function cli(args: string[], now = Date.parse('2030-01-01T00:00:00Z')) {
  const out: string[] = [];
  const err: string[] = [];
  const code = runApiKey(args, { out: (s) => out.push(s), err: (s) => err.push(s) }, () => now);
  if (out[0]) rememberSecret(out[0]);
  return { code, out, err };
}

function check(key: string, file = 'keys.yaml') {
  const cfg = mustCompile(
    `apiVersion: obo-authz.dev/v1alpha1\nkind: CredentialValidator\nmetadata: {name: k, namespace: default}\nspec:\n  type: APIKey\n  required: true\n  apiKey: {file: ${file}}\n`,
    rt,
    join(dir, `c-${Math.random()}.yaml`),
  );
  return evaluate({ attributes: { request: { http: { method: 'GET', path: '/', host: 'h', headers: { authorization: `Bearer ${key}` } } } } }, cfg, rt);
}

describe('apikey create', () => {
  it('prints only the key on stdout and appends its hash entry to the file', async () => {
    const r = cli(['create', '--name', 'agent-1', '--role', 'reader', '--groups', 'a,b', '--scopes', 'read,list', '--expires', '30d', '--file', join(dir, 'keys.yaml')]);
    expect(r.code).toBe(0);
    expect(r.out).toHaveLength(1);
    const key = r.out[0]!;
    expect(key).toMatch(/^obo_[A-Za-z0-9_-]{43}$/);
    const text = readFileSync(join(dir, 'keys.yaml'), 'utf8');
    expect(text).not.toContain(key);
    expect(text).toContain(hashApiKey(key));
    expect(r.err.join('\n')).not.toContain(key);
    const parsed = parseApiKeyFiles([{ name: '', content: text }], 'keys.yaml');
    expect(parsed.ok && parsed.value.entries[0]).toMatchObject({ name: 'agent-1', role: 'reader', groups: ['a', 'b'], scopes: ['read', 'list'], expiresAt: Date.parse('2030-01-31T00:00:00Z') });
    const d = await check(key);
    expect(d.allow, d.message).toBe(true);
    expect(d.identity?.principal).toBe('apikey.obo-authz.dev/default/k/agent-1');
  });
  it('a second key keeps the first; a duplicate name is refused', async () => {
    writeFileSync(join(dir, 'keys.yaml'), `# managed by hand\n${readFileSync(join(dir, 'keys.yaml'), 'utf8')}`);
    const r = cli(['create', '--name', 'agent-2', '--file', join(dir, 'keys.yaml')]);
    expect(r.code).toBe(0);
    const text = readFileSync(join(dir, 'keys.yaml'), 'utf8');
    expect(text).toContain('# managed by hand');
    expect(text).toContain('name: agent-1');
    expect((await check(r.out[0]!)).allow).toBe(true);
    const dup = cli(['create', '--name', 'agent-2', '--file', join(dir, 'keys.yaml')]);
    expect(dup.code).toBe(2);
    expect(dup.out).toEqual([]);
  });
  it('the expiry is enforced', async () => {
    const r = cli(['create', '--name', 'short', '--expires', '1h', '--file', join(dir, 'keys.yaml')], Date.parse('2029-12-31T00:00:00Z'));
    const d = await check(r.out[0]!);
    expect(d.reason).toBe('ERR_CREDENTIAL_EXPIRED');
  });
  it('writes one file per key into a folder', async () => {
    mkdirSync(join(dir, 'secret'));
    const r = cli(['create', '--name', 'svc', '--role', 'svc', '--file', join(dir, 'secret')]);
    expect(r.code).toBe(0);
    expect(readFileSync(join(dir, 'secret', 'svc.yaml'), 'utf8')).toContain(hashApiKey(r.out[0]!));
    const d = await check(r.out[0]!, 'secret');
    expect(d.identity?.subject).toBe('svc');
  });
  it('without --file the entry goes to stderr, the key to stdout', () => {
    const r = cli(['create', '--name', 'x']);
    expect(r.code).toBe(0);
    expect(r.err.join('\n')).toContain(hashApiKey(r.out[0]!));
  });
  it('usage errors exit 2', () => {
    expect(cli(['create']).code).toBe(2);
    expect(cli(['create', '--name', 'a/b']).code).toBe(2);
    expect(cli(['create', '--name', 'a', '--expires', 'soon']).code).toBe(2);
    expect(cli(['rotate']).code).toBe(2);
  });
});
