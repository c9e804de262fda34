#!/usr/bin/env node
// Every obo-authz config the repository shows a user: the example folders, the policy
// ConfigMaps of deploy/, and every YAML block of the docs. The docs test validates them in
// process; .ci/run writes them out (`node scripts/config-examples.mjs OUTDIR`) and validates
// each folder with the installed `obo-authz validate --ci`.
//
// A ```yaml block in a doc is a complete obo-authz config unless its fence says otherwise:
//   ```yaml fragment     part of another tool's file (a Kubernetes or Envoy excerpt): must parse
//   ```yaml apikey-file  an API key file (CredentialValidator type APIKey): checked by the key-file reader
//   ```yaml test-table   an `obo-authz test` table: checked by the table reader
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseAllDocuments } from 'yaml';

/** Markdown files whose YAML blocks are documentation a user copies. */
export function docFiles(root) {
  const docs = readdirSync(join(root, 'docs'), { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.md'))
    .map((f) => join('docs', f));
  return ['README.md', 'deploy/README.md', 'envoy/README.md', ...docs.sort()];
}

/** Every fenced YAML block: file, 1-based line of its first content line, fence words, text. */
export function docYamlBlocks(root) {
  const blocks = [];
  for (const file of docFiles(root)) {
    const lines = readFileSync(join(root, file), 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const m = /^(\s*)```(ya?ml)\b\s*(.*)$/.exec(lines[i]);
      if (!m) continue;
      const indent = m[1].length;
      const body = [];
      let j = i + 1;
      for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]); j++) body.push(lines[j].slice(indent));
      blocks.push({ file, line: i + 2, kind: m[3].trim().split(/\s+/)[0] || 'config', text: `${body.join('\n')}\n` });
      i = j;
    }
  }
  return blocks;
}

/** The obo-authz config files a ConfigMap carries (data keys ending in .yaml/.yml). */
function configMapFiles(text) {
  const out = {};
  for (const d of parseAllDocuments(text)) {
    const v = d.toJS();
    if (v?.kind !== 'ConfigMap') continue;
    for (const [k, body] of Object.entries(v.data ?? {})) {
      if (!/\.ya?ml$/.test(k) || !/^\s*(#.*\n\s*)*apiVersion:\s*(security\.istio\.io|obo-authz\.dev)\//m.test(String(body))) continue;
      out[k] = String(body);
    }
  }
  return out;
}

/**
 * Every config example as {name, files} (file name -> text) or {name, dir} (a folder in the
 * repository): the example folders, deploy/'s ConfigMaps and Istio policy, the docs' blocks.
 */
export function configExamples(root) {
  // every folder of examples/ that holds config files at its top level
  const exampleDirs = readdirSync(join(root, 'examples'), { withFileTypes: true })
    .filter((d) => d.isDirectory() && readdirSync(join(root, 'examples', d.name)).some((f) => /\.ya?ml$/.test(f)))
    .map((d) => ({ name: `examples/${d.name}`, dir: join(root, 'examples', d.name) }));
  const out = [
    ...exampleDirs.sort((a, b) => a.name.localeCompare(b.name)),
    { name: 'envoy/config', dir: join(root, 'envoy/config') },
    { name: 'deploy/istio/authorization-policy.yaml', files: { 'policy.yaml': readFileSync(join(root, 'deploy/istio/authorization-policy.yaml'), 'utf8') } },
  ];
  for (const layout of ['shared', 'sidecar']) {
    const dir = join(root, 'deploy/kubernetes', layout);
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.yaml')).sort()) {
      const files = configMapFiles(readFileSync(join(dir, f), 'utf8'));
      if (Object.keys(files).length) out.push({ name: `deploy/kubernetes/${layout}/${f}`, files });
    }
  }
  for (const b of docYamlBlocks(root)) {
    if (b.kind === 'config') out.push({ name: `${b.file}:${b.line}`, files: { 'config.yaml': b.text } });
  }
  return out;
}

// CLI: write every example that is not a repository folder into OUTDIR, one folder each, and
// print one folder per line (repository folders as they are).
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const [outDir] = process.argv.slice(2);
  if (!outDir) {
    process.stderr.write('usage: node scripts/config-examples.mjs OUTDIR\n');
    process.exit(2);
  }
  const root = new URL('..', import.meta.url).pathname;
  configExamples(root).forEach((ex, i) => {
    if (ex.dir) {
      process.stdout.write(`${ex.dir}\t${ex.name}\n`);
      return;
    }
    const dir = join(outDir, String(i).padStart(3, '0'));
    mkdirSync(dir, { recursive: true });
    for (const [f, text] of Object.entries(ex.files)) writeFileSync(join(dir, f), text);
    process.stdout.write(`${dir}\t${relative(root, ex.name) || ex.name}\n`);
  });
}
