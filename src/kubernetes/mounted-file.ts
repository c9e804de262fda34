/**
 * A file, or a folder of files, as Kubernetes mounts them (Secret and ConfigMap volumes,
 * projected service-account tokens), loaded once and re-read when its content changes. Used
 * for every credential we read from disk: API-key and shared-token files, projected actor
 * tokens, the TokenReview caller's own token.
 *
 * Kubernetes updates these volumes by swapping a `..data` symlink (and rotates projected
 * tokens the same way), which file watchers miss. So we compare content digests instead of
 * trusting events:
 * - On use, re-read at most every `intervalMs` (driven by runtime.now(), so tests control it);
 *   a file never loaded yet is retried on every use (a projected token that appears after
 *   start is used at once).
 * - With `background`, also re-read on a timer (unref'd, at most every 30 s), so a rotation
 *   takes effect and is logged even without traffic.
 * - A file that is missing, unreadable or invalid at a re-read is logged (never its content)
 *   and the last good value stays in force.
 * - Held in runtime.shared (sharedMountedFile), so a config reload with the same file reuses
 *   it; dispose() clears the timer.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Runtime } from '../core/runtime.js';
import type { StatusReport, StatusReporter } from '../core/status.js';

export interface SourceFile {
  /** File name (no folder), '' for a single file. */
  readonly name: string;
  readonly content: string;
}

/** Parse the files into a value, or explain (without echoing any content) why not. */
export type FileParser<T> = (files: readonly SourceFile[], path: string) => { ok: true; value: T } | { ok: false; error: string };

export interface MountedFileOptions {
  /** What the file holds, for log lines (`api-keys`, `token`); never its content. */
  readonly what: string;
  /** Re-read at most this often when used (ms). */
  readonly intervalMs: number;
  /** Also re-read on a timer every min(intervalMs, 30 s). */
  readonly background: boolean;
  /**
   * The secrets in the files (a shared token, API-key hashes), registered with the runtime's
   * secret registry on every load — with those of the load before, so a just-rotated secret
   * echoed by someone is still redacted from the logs.
   */
  readonly secrets?: (files: readonly SourceFile[]) => readonly string[];
}

/** Largest file we read (a key file with thousands of entries fits easily). */
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

export class MountedFile<T> implements StatusReporter {
  private value: T | undefined;
  private loaded = false;
  private digest = '';
  private lastCheck: number;
  private timer: NodeJS.Timeout | undefined;
  /** Last load/reload error ('' when the last attempt succeeded). */
  lastError = '';
  /** Number of successful loads with changed content (tests, metrics). */
  generation = 0;
  /** When the content in force was read (ms since epoch; null = never), for GET /status. */
  private loadedAt: number | null = null;
  private registered: readonly string[] = [];

  constructor(
    readonly path: string,
    private readonly parse: FileParser<T>,
    private readonly runtime: Runtime,
    readonly opts: MountedFileOptions,
  ) {
    this.lastCheck = runtime.now();
    this.load(false);
    if (opts.background) {
      this.timer = setInterval(() => this.load(true), Math.min(opts.intervalMs, MAX_RELOAD_INTERVAL_MS));
      this.timer.unref();
    }
  }

  /** Re-read now. Returns the error (also kept in lastError) or '' on success. */
  load(log: boolean): string {
    this.lastCheck = this.runtime.now();
    const r = readSource(this.path);
    let error = '';
    if (!r.ok) error = r.error;
    else {
      const d = digestOf(r.files);
      if (d === this.digest && this.loaded) {
        this.lastError = '';
        return '';
      }
      const p = this.parse(r.files, this.path);
      if (!p.ok) error = p.error;
      else {
        const first = !this.loaded;
        if (this.opts.secrets) {
          const now = this.opts.secrets(r.files);
          this.runtime.secrets?.register(`mounted-file:${this.path}`, [...now, ...this.registered]);
          this.registered = now;
        }
        this.value = p.value;
        this.loaded = true;
        this.digest = d;
        this.generation++;
        this.loadedAt = this.lastCheck;
        if (log && !first) this.runtime.logger.info({ file: this.path, kind: this.opts.what }, 'credential file reloaded');
      }
    }
    if (error && log && error !== this.lastError) {
      const fields = { file: this.path, kind: this.opts.what, error };
      if (this.loaded) this.runtime.logger.error(fields, 'credential file reload failed: keeping the last good content');
      else this.runtime.logger.error(fields, 'credential file cannot be loaded (retried on every use)');
    }
    this.lastError = error;
    return error;
  }

  statusReport(): StatusReport {
    const details = { kind: this.opts.what, loadedAt: this.loadedAt, lastCheckAt: this.lastCheck, lastError: this.lastError || null, reloads: this.generation };
    return { kind: 'file', name: this.path, ok: this.lastError === '' && this.loaded, details };
  }

  /** The current value (re-read first when due); undefined while the file has never loaded. */
  get(): T | undefined {
    const now = this.runtime.now();
    if (!this.loaded || now - this.lastCheck >= this.opts.intervalMs || now < this.lastCheck) this.load(true);
    return this.value;
  }

  dispose(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.value = undefined;
    this.loaded = false;
  }
}

/**
 * The shared instance for `path` (one per file, parser kind and options across config
 * reloads). At compile the file is read again, so a config load always sees the file as it is
 * now; the returned error is the caller's to report (a config error for a credential file
 * that must exist).
 */
export function sharedMountedFile<T>(runtime: Runtime, path: string, parse: FileParser<T>, opts: MountedFileOptions): { file: MountedFile<T>; error: string } {
  let created = false;
  const file = runtime.shared.get(`kubernetes:mounted-file:${opts.what}:${opts.intervalMs}:${opts.background}:${path}`, () => {
    created = true;
    return new MountedFile<T>(path, parse, runtime, opts);
  });
  const error = created ? file.lastError : file.load(false);
  return { file, error };
}
