/**
 * `apikey create --file` replaces the key file safely (review finding 2): an existing file
 * keeps its mode, owner and group; a symlinked file stays a symlink (its target is
 * updated); the temporary file is a dotfile next to the target, so a copy left by a crash
 * is never read from a key folder; a failed write leaves no temporary file behind.
 */
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { generateApiKey, hashApiKey, parseApiKeyFiles } from '../../../src/authn/api-keys.js';
import { readSource } from '../../../src/kubernetes/mounted-file.js';
import { runApiKey } from '../../../src/cli/apikey.js';
import { rememberSecret } from '../../helpers/secrets.js';

/** Every rename the CLI does (from, to); `fail` makes the next one throw EIO (a crash before rename). */
const h = vi.hoisted(() => ({ renames: [] as [string, string][], fail: false }));
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const renameSync: typeof fs.renameSync = (from, to) => {
    h.renames.push([String(from), String(to)]);
    if (h.fail) throw Object.assign(new Error('simulated failure'), { code: 'EIO' });
    fs.renameSync(from, to);
  };
  return { ...fs, default: { ...fs, renameSync }, renameSync };
});

const dir = mkdtempSync(join(tmpdir(), 'obo-apikey-write-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  h.renames.length = 0;
  h.fail = false;
});

function cli(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = runApiKey(args, { out: (s) => out.push(s), err: (s) => err.push(s) }, () => Date.parse('2030-01-01T00:00:00Z'));
  if (out[0]) rememberSecret(out[0]);
  return { code, out, err };
}

function names(text: string): string[] {
  const r = parseApiKeyFiles([{ name: '', content: text }], 'k');
  if (!r.ok) throw new Error(r.error);
  return r.value.entries.map((e) => e.name);
}

const isRoot = process.getuid?.() === 0;

describe('apikey create --file: replacing the key file', () => {
  it('an existing file keeps its mode (not reset to 0600)', () => {
    const f = join(dir, 'mode.yaml');
    writeFileSync(f, 'keys: []\n');
    chmodSync(f, 0o640);
    expect(cli(['create', '--name', 'a', '--file', f]).code).toBe(0);
    expect(statSync(f).mode & 0o7777).toBe(0o640);
    expect(names(readFileSync(f, 'utf8'))).toEqual(['a']);
  });

  it('a read-only (0400) existing file keeps 0400 and still gets the entry', () => {
    const f = join(dir, 'ro.yaml');
    writeFileSync(f, 'keys: []\n');
    chmodSync(f, 0o400);
    expect(cli(['create', '--name', 'a', '--file', f]).code).toBe(0);
    expect(statSync(f).mode & 0o7777).toBe(0o400);
    expect(names(readFileSync(f, 'utf8'))).toEqual(['a']);
  });

  it.skipIf(!isRoot)('as root, an existing file keeps its owner and group', () => {
    const f = join(dir, 'owner.yaml');
    writeFileSync(f, 'keys: []\n');
    chmodSync(f, 0o640);
    chownSync(f, 1234, 5678);
    expect(cli(['create', '--name', 'a', '--file', f]).code).toBe(0);
    const st = statSync(f);
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([1234, 5678, 0o640]);
  });

  it('a symlinked key file stays a symlink; its target gets the entry and keeps its mode', () => {
    mkdirSync(join(dir, 'real'));
    const target = join(dir, 'real', 'keys.yaml');
    writeFileSync(target, '# by hand\nkeys: []\n');
    chmodSync(target, 0o644);
    const link = join(dir, 'link.yaml');
    symlinkSync(target, link);
    const r = cli(['create', '--name', 'linked', '--file', link]);
    expect(r.code, r.err.join('\n')).toBe(0);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readFileSync(target, 'utf8')).toContain('# by hand');
    expect(readFileSync(target, 'utf8')).toContain(hashApiKey(r.out[0]!));
    expect(statSync(target).mode & 0o7777).toBe(0o644);
    // The temporary file was written next to the real file, not next to the link.
    expect(h.renames).toEqual([[join(dir, 'real', `.keys.yaml.tmp-${process.pid}`), target]]);
  });

  it('a new file is created with mode 0600', () => {
    const f = join(dir, 'new.yaml');
    expect(cli(['create', '--name', 'a', '--file', f]).code).toBe(0);
    expect(statSync(f).mode & 0o7777).toBe(0o600);
  });

  it('the temporary file is a dotfile next to the target (file and folder mode)', () => {
    const f = join(dir, 'tmpname.yaml');
    writeFileSync(f, 'keys: []\n');
    expect(cli(['create', '--name', 'a', '--file', f]).code).toBe(0);
    mkdirSync(join(dir, 'folder'));
    expect(cli(['create', '--name', 'svc', '--file', join(dir, 'folder')]).code).toBe(0);
    expect(h.renames).toHaveLength(2);
    for (const [from, to] of h.renames) {
      expect(dirname(from)).toBe(dirname(to));
      expect(basename(from)).toBe(`.${basename(to)}.tmp-${process.pid}`);
    }
    expect(statSync(join(dir, 'folder', 'svc.yaml')).mode & 0o7777).toBe(0o600);
  });

  it('a failed replace exits 2, leaves the original untouched and no temporary file behind', () => {
    const f = join(dir, 'fail', 'keys.yaml');
    mkdirSync(dirname(f));
    writeFileSync(f, 'keys: []\n');
    h.fail = true;
    const r = cli(['create', '--name', 'a', '--file', f]);
    expect(r.code).toBe(2);
    expect(r.out).toEqual([]);
    expect(r.err.join('\n')).toMatch(/cannot write .*: EIO/);
    expect(readFileSync(f, 'utf8')).toBe('keys: []\n');
    expect(readdirSync(dirname(f))).toEqual(['keys.yaml']);
  });

  it('a temporary file left in a key folder by a crash is not read as a key', () => {
    const folder = join(dir, 'crash');
    mkdirSync(folder);
    const key = generateApiKey();
    rememberSecret(key);
    const entry = `name: leftover\nhash: ${hashApiKey(key)}\n`;
    // Where a crashed `apikey create` would leave it.
    writeFileSync(join(folder, `.leftover.yaml.tmp-${process.pid}`), entry);
    writeFileSync(join(folder, 'ok.yaml'), `hash: ${hashApiKey(generateApiKey())}\n`);
    const src = readSource(folder);
    expect(src.ok && src.files.map((x) => x.name)).toEqual(['ok.yaml']);
  });
});
