/** Config limits, files without documents, the settling watcher, and loading in the worker. */
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfigFiles } from '../../../src/config/loader.js';
import { DEFAULT_LIMITS } from '../../../src/config/limits.js';
import { watchConfig, type Watcher } from '../../../src/config/watch.js';
import { loadConfigAsync } from '../../../src/pipeline/load.js';
import { createTestRuntime } from '../../helpers/runtime.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitUntil } from '../../helpers/wait.js';

const POLICY = (name: string, rules = 1) =>
  `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ${name}, namespace: istio-system}\nspec:\n  action: ALLOW\n  rules:\n${'  - {}\n'.repeat(rules)}`;

function folder(files: Record<string, string>): string {
  const dir = tempDir('obo-limits-');
  for (const [n, t] of Object.entries(files)) writeFileSync(join(dir, n), t);
  return dir;
}
const messages = (dir: string, limits = DEFAULT_LIMITS) => loadConfigFiles([dir], limits).issues.map((i) => `${i.file.split('/').pop()}#${i.document}: ${i.message}`);

describe('config files and limits', () => {
  it('a file with no documents (empty, comments only, bare ---) is an error naming it', () => {
    const dir = folder({ 'a.yaml': '', 'b.yaml': '# only a comment\n', 'c.yaml': '---\n---\n', 'd.yaml': POLICY('ok') });
    const m = messages(dir);
    for (const f of ['a.yaml', 'b.yaml', 'c.yaml']) expect(m.some((x) => x.startsWith(`${f}#0: the file holds no YAML document`))).toBe(true);
    expect(m.some((x) => x.startsWith('d.yaml'))).toBe(false);
  });
  it('empty documents between documents are skipped', () => {
    const r = loadConfigFiles([folder({ 'a.yaml': `---\n${POLICY('a')}---\n---\n${POLICY('b')}---\n` })]);
    expect(r.issues).toEqual([]);
    expect(r.documents.map((d) => d.name)).toEqual(['a', 'b']);
  });
  it('each limit is an error naming the file, the document and the limit, and the document is left out', () => {
    const limits = { maxTotalBytes: 2000, maxDocuments: 3, maxNodesPerDocument: 40, maxRulesPerDocument: 5, maxRules: 8 };
    expect(messages(folder({ 'a.yaml': POLICY('a', 6) }), limits)).toEqual(['a.yaml#1: the document has 6 rules, more than 5 (limit)']);
    expect(messages(folder({ 'a.yaml': POLICY('a', 5), 'b.yaml': POLICY('b', 5) }), limits)).toEqual(['b.yaml#1: the config has more than 8 rules together (limit)']);
    expect(messages(folder({ 'a.yaml': [1, 2, 3, 4].map((i) => POLICY(`p${i}`)).join('---\n') }), limits)[0]).toBe('a.yaml#0: the config has more than 3 documents (limit)');
    expect(messages(folder({ 'a.yaml': `${POLICY('a')}  selector: {matchLabels: {${Array.from({ length: 30 }, (_, i) => `k${i}: v`).join(', ')}}}\n` }), limits)).toEqual([
      'a.yaml#1: the document has more than 40 values (limit)',
    ]);
    expect(messages(folder({ 'a.yaml': POLICY('a'), 'b.yaml': `# ${'x'.repeat(3000)}\n${POLICY('b')}` }), limits)).toEqual(['b.yaml#0: config files are larger than 2000 bytes together (limit)']);
  });
});

describe('watchConfig', () => {
  let w: Watcher | undefined;
  afterEach(() => w?.close());

  it('hands a change on only once the files stayed unchanged for the settle interval', async () => {
    const dir = folder({ 'a.yaml': POLICY('a') });
    const seen: number[] = [];
    const t0 = Date.now();
    w = watchConfig([dir], () => void seen.push(Date.now() - t0), { debounceMs: 20, pollMs: 50, settleMs: 400 });
    // keep writing for a while: nothing may be handed on meanwhile
    let lastWrite = 0;
    for (let i = 0; i < 6; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 100)); // the writer's own pace
      appendFileSync(join(dir, 'a.yaml'), `# write ${i}\n`);
      lastWrite = Date.now() - t0;
    }
    await waitUntil(() => seen.length > 0, { what: 'the settled change', timeoutMs: 5000 });
    expect(seen).toHaveLength(1);
    expect(seen[0]!).toBeGreaterThanOrEqual(lastWrite + 350);
  });
});

describe('loadConfigAsync', () => {
  it('validates in the worker, with issues located by line', async () => {
    const dir = folder({ 'a.yaml': `${POLICY('a')}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: b}\nspec:\n  action: NOPE\n` });
    const rt = createTestRuntime({ level: 'silent' });
    const r = await loadConfigAsync([dir], rt);
    expect(r.via).toBe('worker');
    expect(r.ok).toBe(false);
    const issue = r.issues.find((i) => i.field === 'spec.action');
    expect(issue).toMatchObject({ document: 2, line: 13, col: 11 });
  });
  it('compiles a valid config on this thread, and a load that takes too long is an error', async () => {
    const dir = folder({ 'a.yaml': POLICY('a') });
    const rt = createTestRuntime({ level: 'silent' });
    const ok = await loadConfigAsync([dir], rt);
    expect(ok.ok).toBe(true);
    const slow = await loadConfigAsync([dir], rt, { timeoutMs: 1 });
    expect(slow.ok).toBe(false);
    expect(slow.issues[0]!.message).toMatch(/took longer than 1 ms/);
  });
});
