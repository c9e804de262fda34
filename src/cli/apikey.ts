/**
 * `obo-authz apikey create --name N [--role R] [--groups a,b] [--scopes x,y] [--expires 30d] [--file PATH]`
 *
 * Generates a random key, prints it once on stdout (only the key, so
 * `KEY=$(obo-authz apikey create ...)` works) and writes its hash entry: appended to the
 * `keys:` list of PATH (created with mode 0600 if missing; comments are kept; an existing
 * file keeps its mode, owner and group, and a symlink stays a symlink), or written as
 * PATH/<name>.yaml when PATH is a folder (one file per key, as a Secret mounts them).
 * Without --file the entry is printed on stderr to paste into a key file. The key itself
 * is never written anywhere.
 */
import { closeSync, existsSync, fchmodSync, fchownSync, fsyncSync, openSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { isMap, isSeq, parseDocument, stringify, YAMLSeq } from 'yaml';
import { generateApiKey, hashApiKey, KEY_NAME, parseApiKeyFiles, parseRfc3339 } from '../authn/api-keys.js';
import { parseDuration } from '../config/schema.js';
import { HELP, helpText, parseCommand, UsageError } from './args.js';
import { APIKEY_CREATE } from './specs.js';

export interface ApiKeyIo {
  out(s: string): void;
  err(s: string): void;
}

/** 9999-12-31T23:59:59Z: the last time with a four-digit RFC 3339 year. */
const MAX_EXPIRES_MS = Date.UTC(9999, 11, 31, 23, 59, 59);

export const APIKEY_USAGE = `  obo-authz ${APIKEY_CREATE.usage[0]}`;

function list(v: string | undefined): string[] | undefined {
  if (!v) return undefined;
  const l = v.split(',').map((s) => s.trim()).filter(Boolean);
  return l.length ? l : undefined;
}

/**
 * The temporary file next to `path`: a dotfile (`.<name>.tmp-<pid>`), so a copy left by a
 * crash is skipped by the key-folder reader (kubernetes/mounted-file.ts readSource skips dotfiles)
 * and never read as a key entry.
 */
function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}`);
}

/** fchown; false when not permitted (EPERM / EINVAL), other errors are thrown. */
function tryChown(fd: number, uid: number, gid: number): boolean {
  try {
    fchownSync(fd, uid, gid);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EPERM' || code === 'EINVAL') return false;
    throw e;
  }
}

/**
 * Replace `path` atomically (write a temporary file, fsync, rename). An existing file is
 * written through a symlink (the link stays, its target is replaced) and keeps its mode and,
 * where the process may (root), its owner and group; a new file is created with mode 0600.
 */
function writeAtomic(path: string, text: string): void {
  let target = path;
  let mode = 0o600;
  let owner: { uid: number; gid: number } | undefined;
  if (existsSync(path)) {
    target = realpathSync(path);
    const st = statSync(target);
    mode = st.mode & 0o7777;
    owner = { uid: st.uid, gid: st.gid };
  }
  const tmp = tempPathFor(target);
  rmSync(tmp, { force: true });
  const fd = openSync(tmp, 'wx', 0o600);
  let closed = false;
  let renamed = false;
  try {
    if (owner && (owner.uid !== process.getuid?.() || owner.gid !== process.getgid?.())) {
      // Root keeps owner and group; otherwise at least the group when we are a member of it.
      // Where neither is allowed the file gets our uid/gid, as with any editor.
      if (!tryChown(fd, owner.uid, owner.gid) && owner.gid !== process.getgid?.()) tryChown(fd, -1, owner.gid);
    }
    // After fchown (which may clear set-id bits) and regardless of the umask.
    fchmodSync(fd, mode);
    const buf = Buffer.from(text, 'utf8');
    for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
    closeSync(fd);
    closed = true;
    renameSync(tmp, target);
    renamed = true;
  } finally {
    if (!closed) closeSync(fd);
    if (!renamed) rmSync(tmp, { force: true });
  }
}

/** Run `apikey <sub> ...`; returns the exit status (0 ok, 2 usage or file error). */
export function runApiKey(argv: string[], io: ApiKeyIo, now: () => number = Date.now): number {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h') {
    io.out(helpText(APIKEY_CREATE));
    return 0;
  }
  if (sub !== 'create') {
    io.err(`obo-authz: apikey: ${sub ? `unknown subcommand ${JSON.stringify(sub)}` : 'missing subcommand'}\nusage:\n${APIKEY_USAGE}`);
    return 2;
  }
  let parsed;
  try {
    parsed = parseCommand(APIKEY_CREATE, rest);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.err(`obo-authz apikey create: ${e.message}\n(see obo-authz apikey create --help)`);
    return 2;
  }
  if (parsed === HELP) {
    io.out(helpText(APIKEY_CREATE));
    return 0;
  }
  const values = parsed.values as Partial<Record<'name' | 'role' | 'groups' | 'scopes' | 'expires' | 'file', string>>;
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
    const at = now() + ms;
    const expires = Number.isFinite(at) && at <= MAX_EXPIRES_MS ? new Date(at).toISOString().replace(/\.\d{3}Z$/, 'Z') : '';
    // What the key-file reader accepts (RFC 3339 with Z); a date past year 9999 has no such form.
    if (parseRfc3339(expires) === undefined) return fail(`invalid --expires ${JSON.stringify(values.expires)} (too far in the future)`);
    entry['expires'] = expires;
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
