/**
 * A credential file (or a folder of files, as a mounted Kubernetes Secret looks) that is
 * loaded once, then re-checked in the background and on use, and swapped when its
 * content changes. Kubernetes updates Secret volumes by swapping a `..data` symlink,
 * which file watchers miss, so we compare content digests rather than trust events.
 *
 * - Re-check at most every `intervalMs` (at most 30 s): a background timer (unref'd) plus
 *   a check on use driven by runtime.now(), so a rotation takes effect within one interval
 *   even when timers are delayed.
 * - A file that is missing, unreadable or invalid at reload is logged (never its content)
 *   and the last good value stays in force.
 * - Held in runtime.shared, so a config reload with the same file reuses it; dispose()
 *   clears the timer.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Runtime } from '../core/runtime.js';

export interface SourceFile {
  /** File name (no folder), '' for a single file. */
  readonly name: string;
  readonly content: string;
}

/** Parse the files into a value, or explain (without echoing any content) why not. */
export type SecretParser<T> = (files: readonly SourceFile[], path: string) => { ok: true; value: T } | { ok: false; error: string };

/** Largest credential file we read (a key file with thousands of entries fits easily). */
const MAX_FILE_BYTES = 4 << 20;
export const MAX_RELOAD_INTERVAL_MS = 30_000;
export const DEFAULT_RELOAD_INTERVAL_MS = 10_000;

function errCode(e: unknown): string {
  const c = (e as NodeJS.ErrnoException)?.code;
  return c ? c : 'read error';
}

/** Read a file, or every non-hidden regular file of a folder (following symlinks), sorted by name. */
export function readSource(path: string): { ok: true; files: SourceFile[]; folder: boolean } | { ok: false; error: string } {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    return { ok: false, error: `cannot read ${path}: ${errCode(e)}` };
  }
  try {
    if (!st.isDirectory()) {
      if (st.size > MAX_FILE_BYTES) return { ok: false, error: `${path} is larger than ${MAX_FILE_BYTES} bytes` };
      return { ok: true, files: [{ name: '', content: readFileSync(path, 'utf8') }], folder: false };
    }
    const files: SourceFile[] = [];
    // `..data`, `..2024_...` (Secret volume internals) and dotfiles are skipped.
    for (const n of readdirSync(path).filter((x) => !x.startsWith('.')).sort()) {
      const p = join(path, n);
      let fst;
      try {
        fst = statSync(p);
      } catch {
        continue; // a dangling symlink during a Secret swap
      }
      if (!fst.isFile()) continue;
      if (fst.size > MAX_FILE_BYTES) return { ok: false, error: `${p} is larger than ${MAX_FILE_BYTES} bytes` };
      files.push({ name: n, content: readFileSync(p, 'utf8') });
    }
    return { ok: true, files, folder: true };
  } catch (e) {
    return { ok: false, error: `cannot read ${path}: ${errCode(e)}` };
  }
}

function digestOf(files: readonly SourceFile[]): string {
  const h = createHash('sha256');
  for (const f of files) h.update(f.name).update('\0').update(f.content).update('\0');
  return h.digest('hex');
}

export class WatchedSecretFile<T> {
  private value: T | undefined;
  private digest = '';
  private lastCheck: number;
  private timer: NodeJS.Timeout | undefined;
  /** Last load/reload error ('' when the last attempt succeeded). */
  lastError = '';
  /** Number of successful loads with changed content (tests, metrics). */
  generation = 0;

  constructor(
    readonly path: string,
    private readonly parse: SecretParser<T>,
    private readonly runtime: Runtime,
    readonly intervalMs: number,
    private readonly what: string,
  ) {
    this.lastCheck = runtime.now();
    this.load(false);
    this.timer = setInterval(() => this.load(true), Math.min(intervalMs, MAX_RELOAD_INTERVAL_MS));
    this.timer.unref();
  }

  /** Re-read now. Returns the error (also kept in lastError) or '' on success. */
  load(log: boolean): string {
    this.lastCheck = this.runtime.now();
    const r = readSource(this.path);
    let error = '';
    if (!r.ok) error = r.error;
    else {
      const d = digestOf(r.files);
      if (d === this.digest && this.value !== undefined) {
        this.lastError = '';
        return '';
      }
      const p = this.parse(r.files, this.path);
      if (!p.ok) error = p.error;
      else {
        const first = this.value === undefined;
        this.value = p.value;
        this.digest = d;
        this.generation++;
        if (log && !first) this.runtime.logger.info({ file: this.path, kind: this.what }, 'credential file reloaded');
      }
    }
    if (error && log && error !== this.lastError) {
      this.runtime.logger.error({ file: this.path, kind: this.what, error }, 'credential file reload failed: keeping the last good content');
    }
    this.lastError = error;
    return error;
  }

  /** The current value (re-checking first when an interval has passed); undefined if never loaded. */
  get(): T | undefined {
    const now = this.runtime.now();
    if (now - this.lastCheck >= this.intervalMs || now < this.lastCheck) this.load(true);
    return this.value;
  }

  dispose(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.value = undefined;
  }
}

/**
 * The shared instance for `path` (one per file and interval across config reloads). At
 * compile the file is read again, so a config load always sees the file as it is now;
 * the returned error is a config error.
 */
export function sharedSecretFile<T>(
  runtime: Runtime,
  kind: string,
  path: string,
  intervalMs: number,
  parse: SecretParser<T>,
): { file: WatchedSecretFile<T>; error: string } {
  let created = false;
  const file = runtime.shared.get(`authn-secret-file:${kind}:${intervalMs}:${path}`, () => {
    created = true;
    return new WatchedSecretFile<T>(path, parse, runtime, intervalMs, kind);
  });
  const error = created ? file.lastError : file.load(false);
  return { file, error };
}
