/**
 * Temporary folders for tests. Every folder made here is removed after its test file
 * (test/setup.ts), also when a test fails; test/global-setup.ts then checks that the whole
 * run left the OS temp folder as it found it.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made = new Set<string>();

/** A fresh folder `<os temp>/<prefix>XXXXXX`, removed after the current test file. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.add(dir);
  return dir;
}

/** Remove a folder made by tempDir() now (removing it twice is harmless). */
export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  made.delete(dir);
}

/** Remove every folder tempDir() made in this process (run by test/setup.ts after each file). */
export function removeTempDirs(): void {
  for (const dir of made) removeTempDir(dir);
}

/** The names in `dir` (the snapshot the temp-folder check compares). */
export function entriesOf(dir: string): Set<string> {
  return new Set(readdirSync(dir));
}

/** Names in `dir` now that were not in `before`, sorted. */
export function newEntries(dir: string, before: ReadonlySet<string>): string[] {
  return [...entriesOf(dir)].filter((n) => !before.has(n)).sort();
}
