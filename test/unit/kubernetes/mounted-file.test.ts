/**
 * MountedFile (src/kubernetes/mounted-file.ts): the one file-watched source behind credential
 * files and token files. Re-read on use when due (injected clock), retried on every use until
 * first loaded, re-read on a timer with `background`, last good value kept on a bad re-read,
 * shared across config reloads.
 */
import { mkdirSync, renameSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createTestRuntime } from '../../helpers/runtime.js';
import { removeTempDir, tempDir } from '../../helpers/tmp.js';
import { MountedFile, readSource, sharedMountedFile, type FileParser } from '../../../src/kubernetes/mounted-file.js';
import { parseTokenFile, readTokenFile, sharedTokenFile, tokenFile } from '../../../src/kubernetes/file-token.js';

const NOW = 1_900_000_000_000;
let dir = '';
beforeEach(() => {
  dir = tempDir('mounted-');
});
afterEach(() => {
  vi.useRealTimers();
  removeTempDir(dir);
});

/** Lines `name=value`; a line without `=` is invalid. */
const parseLines: FileParser<Record<string, string>> = (files) => {
  const out: Record<string, string> = {};
  for (const f of files) {
    for (const line of f.content.split('\n').filter(Boolean)) {
      const i = line.indexOf('=');
      if (i < 0) return { ok: false, error: `${f.name || 'file'}: a line without "="` };
      out[line.slice(0, i)] = line.slice(i + 1);
    }
  }
  return { ok: true, value: out };
};

describe('MountedFile', () => {
  it('re-reads on use once the interval has passed; keeps the last good value on a bad or missing file', () => {
    const rt = createTestRuntime({ now: NOW });
    const p = join(dir, 'keys');
    writeFileSync(p, 'a=1\n');
    const f = new MountedFile(p, parseLines, rt, { what: 'test', intervalMs: 5000, background: false });
    expect(f.get()).toEqual({ a: '1' });
    writeFileSync(p, 'a=2\n');
    rt.advance(4999);
    expect(f.get()).toEqual({ a: '1' });
    rt.advance(1);
    expect(f.get()).toEqual({ a: '2' });
    expect(f.generation).toBe(2);
    writeFileSync(p, 'broken\n');
    rt.advance(5000);
    expect(f.get()).toEqual({ a: '2' });
    expect(f.lastError).toMatch(/a line without "="/);
    expect(rt.logs.some((l) => l.includes('credential file reload failed: keeping the last good content'))).toBe(true);
    unlinkSync(p);
    rt.advance(5000);
    expect(f.get()).toEqual({ a: '2' });
    expect(f.lastError).toMatch(/ENOENT/);
    writeFileSync(p, 'a=3\n');
    rt.advance(5000);
    expect(f.get()).toEqual({ a: '3' });
    expect(f.lastError).toBe('');
    expect(rt.logs.some((l) => l.includes('credential file reloaded'))).toBe(true);
    // The clock going backwards also re-reads.
    writeFileSync(p, 'a=4\n');
    rt.advance(-1);
    expect(f.get()).toEqual({ a: '4' });
    f.dispose();
    expect(f.get()).toEqual({ a: '4' }); // a disposed file loads again on use, as a new one would
  });

  it('a file never loaded is retried on every use, without waiting for the interval', () => {
    const rt = createTestRuntime({ now: NOW });
    const p = join(dir, 'late');
    const f = new MountedFile(p, parseLines, rt, { what: 'test', intervalMs: 60_000, background: false });
    expect(f.get()).toBeUndefined();
    expect(f.lastError).toMatch(/ENOENT/);
    writeFileSync(p, 'x=y\n');
    expect(f.get()).toEqual({ x: 'y' });
    // The first error is the caller's to report (a config error or warning at compile);
    // retries log only a different error.
    expect(rt.logs.filter((l) => l.includes('credential file cannot be loaded')).length).toBe(0);
    const q = join(dir, 'other');
    const g = new MountedFile(q, parseLines, rt, { what: 'test', intervalMs: 60_000, background: false });
    writeFileSync(q, 'broken\n');
    expect(g.get()).toBeUndefined();
    expect(g.lastError).toMatch(/a line without "="/);
    expect(rt.logs.filter((l) => l.includes('credential file cannot be loaded')).length).toBe(1);
  });

  it('a folder is read as its non-hidden regular files, sorted; a Secret volume swap of ..data is picked up', () => {
    const rt = createTestRuntime({ now: NOW });
    const v1 = join(dir, '..2024_01');
    const v2 = join(dir, '..2024_02');
    mkdirSync(v1);
    mkdirSync(v2);
    writeFileSync(join(v1, 'b'), 'b=1\n');
    writeFileSync(join(v1, 'a'), 'a=1\n');
    writeFileSync(join(v2, 'a'), 'a=2\n');
    symlinkSync(v1, join(dir, '..data'));
    symlinkSync(join('..data', 'a'), join(dir, 'a'));
    symlinkSync(join('..data', 'b'), join(dir, 'b'));
    const r = readSource(dir);
    expect(r.ok && r.folder && r.files.map((x) => x.name)).toEqual(['a', 'b']);
    const f = new MountedFile(dir, parseLines, rt, { what: 'test', intervalMs: 1000, background: false });
    expect(f.get()).toEqual({ a: '1', b: '1' });
    symlinkSync(v2, join(dir, '..data.tmp'));
    renameSync(join(dir, '..data.tmp'), join(dir, '..data'));
    rt.advance(1000);
    // `b` now dangles (skipped), `a` reads the new content.
    expect(f.get()).toEqual({ a: '2' });
  });

  it('background: re-read on the timer without any use', () => {
    vi.useFakeTimers();
    const rt = createTestRuntime({ now: NOW });
    const p = join(dir, 'keys');
    writeFileSync(p, 'a=1\n');
    const f = new MountedFile(p, parseLines, rt, { what: 'test', intervalMs: 2000, background: true });
    writeFileSync(p, 'a=2\n');
    expect(f.generation).toBe(1);
    vi.advanceTimersByTime(2000);
    expect(f.generation).toBe(2);
    f.dispose();
    writeFileSync(p, 'a=3\n');
    vi.advanceTimersByTime(10_000);
    expect(f.generation).toBe(2);
    const quiet = new MountedFile(p, parseLines, rt, { what: 'test', intervalMs: 2000, background: false });
    writeFileSync(p, 'a=4\n');
    vi.advanceTimersByTime(10_000);
    expect(quiet.generation).toBe(1);
  });

  it('sharedMountedFile: one instance per file and options across reloads, re-read at each compile', () => {
    const rt = createTestRuntime({ now: NOW });
    const p = join(dir, 'keys');
    writeFileSync(p, 'a=1\n');
    const opts = { what: 'test', intervalMs: 10_000, background: false };
    const one = sharedMountedFile(rt, p, parseLines, opts);
    expect(one.error).toBe('');
    writeFileSync(p, 'nope\n');
    const two = sharedMountedFile(rt, p, parseLines, opts);
    expect(two.file).toBe(one.file);
    expect(two.error).toMatch(/a line without "="/);
    expect(sharedMountedFile(rt, p, parseLines, { ...opts, intervalMs: 5000 }).file).not.toBe(one.file);
    rt.shared.disposeAll();
  });
});

describe('token files', () => {
  it('trimmed content; empty = no token; a folder is not a token file', () => {
    const rt = createTestRuntime({ now: NOW });
    const p = join(dir, 'token');
    writeFileSync(p, '  abc.def.ghi \n');
    const f = tokenFile(rt, p);
    expect(readTokenFile(f)).toBe('abc.def.ghi');
    writeFileSync(p, '\n');
    rt.advance(1000);
    expect(readTokenFile(f)).toBeUndefined();
    expect(parseTokenFile([{ name: 'token', content: 'x' }], dir)).toEqual({ ok: false, error: `${dir} is a folder, not a token file` });
    expect(readTokenFile(tokenFile(rt, dir))).toBeUndefined();
    expect(sharedTokenFile(rt, p)).toBe(sharedTokenFile(rt, p));
    rt.shared.disposeAll();
  });
});
