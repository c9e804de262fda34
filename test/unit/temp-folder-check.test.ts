/** The temp-folder check of test/global-setup.ts must be able to fail. */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { entriesOf, newEntries, tempDir } from '../helpers/tmp.js';

describe('temp-folder check', () => {
  it('names every entry made after the snapshot, and none once they are gone', () => {
    const dir = tempDir('obo-tmpcheck-');
    writeFileSync(join(dir, 'old'), '');
    const before = entriesOf(dir);
    expect(newEntries(dir, before)).toEqual([]);
    writeFileSync(join(dir, 'leaked.key'), 'private');
    mkdirSync(join(dir, 'obo-authz-test-x'));
    expect(newEntries(dir, before)).toEqual(['leaked.key', 'obo-authz-test-x']);
    rmSync(join(dir, 'leaked.key'));
    rmSync(join(dir, 'obo-authz-test-x'), { recursive: true });
    expect(newEntries(dir, before)).toEqual([]);
  });
});
