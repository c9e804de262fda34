/**
 * `obo-authz apikey create --name N [--role R] [--groups a,b] [--scopes x,y] [--expires 30d] [--file PATH]`
 *
 * Generates a random key, prints it once on stdout (only the key, so
 * `KEY=$(obo-authz apikey create ...)` works) and writes its hash entry: appended to the
 * `keys:` list of PATH (created with mode 0600 if missing; comments are kept), or written
 * as PATH/<name>.yaml when PATH is a folder (one file per key, as a Secret mounts them).
 * Without --file the entry is printed on stderr to paste into a key file. The key itself
 * is never written anywhere.
 */
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { isMap, isSeq, parseDocument, stringify, YAMLSeq } from 'yaml';
import { generateApiKey, hashApiKey, KEY_NAME, parseApiKeyFiles } from '../authn/api-keys.js';
import { parseDuration } from '../config/schema.js';

export interface ApiKeyIo {
  out(s: string): void;
  err(s: string): void;
}

export const APIKEY_USAGE =
  '  obo-authz apikey create --name NAME [--role ROLE] [--groups G1,G2] [--scopes S1,S2] [--expires 30d] [--file PATH]';

function list(v: string | undefined): string[] | undefined {
  if (!v) return undefined;
  const l = v.split(',').map((s) => s.trim()).filter(Boolean);
  return l.length ? l : undefined;
}

function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, path);
}

/** Run `apikey <sub> ...`; returns the exit status (0 ok, 2 usage or file error). */
export function runApiKey(argv: string[], io: ApiKeyIo, now: () => number = Date.now): number {
  const [sub, ...rest] = argv;
  if (sub !== 'create') {
    io.err(`obo-authz: apikey: ${sub ? `unknown subcommand ${JSON.stringify(sub)}` : 'missing subcommand'}\nusage:\n${APIKEY_USAGE}`);
    return 2;
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      name: { type: 'string' },
      role: { type: 'string' },
      groups: { type: 'string' },
      scopes: { type: 'string' },
      expires: { type: 'string' },
      file: { type: 'string' },
    },
    strict: true,
  });
  const fail = (m: string) => {
    io.err(`obo-authz: apikey create: ${m}\nusage:\n${APIKEY_USAGE}`);
    return 2;
  };
  if (!values.name || !KEY_NAME.test(values.name)) return fail('--name is required: letters, digits and . _ @ : - (no /)');
  const entry: Record<string, unknown> = { name: values.name };
  if (values.role) entry['role'] = values.role;
  const groups = list(values.groups);
  if (groups) entry['groups'] = groups;
  const scopes = list(values.scopes);
  if (scopes) entry['scopes'] = scopes;
  if (values.expires) {
    const ms = parseDuration(values.expires);
    if (ms === undefined || ms <= 0) return fail(`invalid --expires ${JSON.stringify(values.expires)} (a duration such as 30d, 12h)`);
    entry['expires'] = new Date(now() + ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
  }
  entry['created'] = new Date(now()).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const key = generateApiKey();
  entry['hash'] = hashApiKey(key);

  const file = values.file;
  if (file) {
    try {
      if (existsSync(file) && statSync(file).isDirectory()) {
        const p = join(file, `${values.name}.yaml`);
        if (existsSync(p)) return fail(`${p} already exists`);
        const { name: _n, ...rest1 } = entry;
        writeAtomic(p, stringify({ name: values.name, ...rest1 }));
      } else if (existsSync(file)) {
        const text = readFileSync(file, 'utf8');
        const check = parseApiKeyFiles([{ name: '', content: text }], file);
        if (!check.ok) return fail(check.error);
        if (check.value.entries.some((e) => e.name === values.name)) return fail(`a key named ${JSON.stringify(values.name)} already exists in ${file}`);
        const doc = parseDocument(text);
        if (!isMap(doc.contents)) {
          // An empty file: start a fresh document.
          writeAtomic(file, stringify({ keys: [entry] }));
          io.err(`obo-authz: wrote the hash of key ${JSON.stringify(values.name)} to ${file}; the key is shown only now`);
          io.out(key);
          return 0;
        }
        let seq = doc.get('keys', true);
        if (!isSeq(seq)) {
          seq = new YAMLSeq();
          doc.set('keys', seq);
        }
        (seq as YAMLSeq).add(doc.createNode(entry));
        writeAtomic(file, doc.toString());
      } else {
        writeAtomic(file, stringify({ keys: [entry] }));
      }
    } catch (e) {
      return fail(`cannot write ${file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    io.err(`obo-authz: wrote the hash of key ${JSON.stringify(values.name)} to ${file}; the key is shown only now`);
  } else {
    io.err(`# add this entry to the keys: list of your API key file (the key is shown only now, on stdout)\n${stringify([entry]).trimEnd()}`);
  }
  io.out(key);
  return 0;
}
