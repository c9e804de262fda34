/**
 * The whole test run must leave the OS temp folder as it found it: its entries are listed
 * before the first test file starts, and the run fails (exit status 1) when any new entry
 * is still there after the last one: a test folder, a generated key, a file written by the
 * code under test. Vitest's own cache folder there (removed by Vitest after this check) is
 * not counted.
 */
import { tmpdir } from 'node:os';
import { basename } from 'node:path';
import type { TestProject } from 'vitest/node';
import { entriesOf, newEntries } from './helpers/tmp.js';

export default function setup(project: TestProject): () => void {
  const dir = tmpdir();
  const before = entriesOf(dir);
  before.add(basename(project.tmpDir));
  return function teardown() {
    const left = newEntries(dir, before);
    if (left.length === 0) return;
    process.exitCode = 1;
    throw new Error(`the test run left ${left.length} new entr${left.length === 1 ? 'y' : 'ies'} in the OS temp folder ${dir}: ${left.join(', ')}`);
  };
}
