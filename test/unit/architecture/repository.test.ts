/**
 * The repository stands on its own: nothing in it points to a file outside it (a clone has
 * only what is committed), and no source file grows past the size a reader can hold.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const tracked = execFileSync('git', ['ls-files', '-z'], { encoding: 'utf8' }).split('\0').filter(Boolean);
const text = (f: string) => {
  try {
    return readFileSync(f, 'utf8');
  } catch {
    return '';
  }
};

describe('the repository', () => {
  it('never refers to a design document or a folder outside the repository', () => {
    const outside = /\.\.\/shared\b|\bDESIGN\.md\b/;
    const self = 'test/unit/architecture/repository.test.ts';
    const hits = tracked.filter((f) => f !== self && !f.endsWith('.lock') && outside.test(text(f)));
    expect(hits).toEqual([]);
  });

  it('keeps every file under src/ at 400 lines or fewer', () => {
    const big = tracked
      .filter((f) => f.startsWith('src/') && f.endsWith('.ts'))
      .map((f) => [f, text(f).split('\n').length - (text(f).endsWith('\n') ? 1 : 0)] as const)
      .filter(([, n]) => n > 400);
    expect(big).toEqual([]);
  });
});
