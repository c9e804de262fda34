/**
 * Watch config paths and reload on change. Kubernetes ConfigMap volumes update by swapping
 * a `..data` symlink inside the folder, and editors replace files by rename, so we watch
 * folders (the file's parent for a file path) and debounce; a poll catches anything the
 * platform's watcher misses.
 *
 * A change is handed on only once the files have settled: unchanged (size, mtime, ctime,
 * inode of every file, and the set of files) across `settleMs`. A file rewritten in place
 * passes through states that are valid configs with fewer policies (truncated, the leading
 * documents written, one file of a folder written), and loading one of them would make the
 * service more permissive for a moment; the safe way to edit is still an atomic rename
 * (docs/operations.md).
 */
import { watch, statSync, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import { listConfigFiles } from './loader.js';

export interface Watcher {
  close(): void;
}

/** What the files look like now: any write, truncation, rename or removal changes it. */
export function configSignature(paths: readonly string[]): string {
  let files: string[];
  try {
    const l = listConfigFiles(paths);
    files = l.files;
    if (l.issues.length > 0) files = [...files, ...l.issues.map((i) => `!${i.file}:${i.message}`)];
  } catch {
    return 'unlistable';
  }
  return files
    .map((f) => {
      if (f.startsWith('!')) return f;
      try {
        const s = statSync(f, { bigint: true });
        return `${f}:${s.size}:${s.mtimeNs}:${s.ctimeNs}:${s.ino}`;
      } catch {
        return `${f}:gone`;
      }
    })
    .join('|');
}

export interface WatchOptions {
  readonly debounceMs?: number;
  readonly pollMs?: number;
  /** How long the files must stay unchanged before a reload (default: the poll interval). */
  readonly settleMs?: number;
  /** What the files looked like when last loaded (default: now); a difference triggers a load. */
  readonly initialSignature?: string;
}

/**
 * Calls `onChange(signature)` when the files changed and then settled; the signature is what
 * they looked like, so the caller can check that what it loaded is still what is on disk.
 * A call that is still running when the files change again is not overlapped: the next one
 * follows it.
 */
export function watchConfig(paths: readonly string[], onChange: (signature: string) => unknown, opts: WatchOptions = {}): Watcher {
  const debounceMs = opts.debounceMs ?? 200;
  const pollMs = opts.pollMs ?? 2000;
  const settleMs = opts.settleMs ?? pollMs;
  const watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  let last = opts.initialSignature ?? configSignature(paths);
  let busy = false;
  let closed = false;
  /** The signature being waited on, and since when the files have looked like it. */
  let settling: string | undefined;
  let since = 0;
  const check = () => {
    timer = undefined;
    if (closed || busy) return;
    const sig = configSignature(paths);
    if (sig === last) {
      settling = undefined;
      return;
    }
    const now = Date.now();
    if (sig !== settling) {
      // Changed (again): wait until it has stayed like this for settleMs.
      settling = sig;
      since = now;
      arm(settleMs);
      return;
    }
    if (now - since < settleMs) {
      arm(settleMs - (now - since));
      return;
    }
    settling = undefined;
    last = sig;
    busy = true;
    Promise.resolve()
      .then(() => onChange(sig))
      .catch(() => undefined) // onChange (applyConfig) reports its own failures
      .finally(() => {
        busy = false;
        if (!closed) arm(debounceMs);
      });
  };
  const arm = (ms: number) => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(check, ms);
    timer.unref();
  };
  const fire = () => {
    // An event during a settle period: look again soon (a new signature restarts the period).
    if (!busy) arm(debounceMs);
  };
  const dirs = new Set<string>();
  for (const p of paths) {
    try {
      dirs.add(statSync(p).isDirectory() ? p : dirname(p));
    } catch {
      dirs.add(dirname(p));
    }
  }
  for (const d of dirs) {
    try {
      const w = watch(d, { persistent: false }, fire);
      w.on('error', () => undefined);
      watchers.push(w);
    } catch {
      // folder missing: the poll below still notices when it appears
    }
  }
  const poll = setInterval(() => {
    if (!timer) fire();
  }, pollMs);
  poll.unref();
  if (last !== configSignature(paths)) fire();
  return {
    close() {
      closed = true;
      for (const w of watchers) w.close();
      clearInterval(poll);
      if (timer) clearTimeout(timer);
    },
  };
}
