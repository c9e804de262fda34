/**
 * Watch config paths and reload on change. Kubernetes ConfigMap volumes update by swapping
 * a `..data` symlink inside the folder, and editors replace files by rename, so we watch
 * folders (the file's parent for a file path) and debounce; a poll catches anything the
 * platform's watcher misses.
 */
import { watch, statSync, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import { listConfigFiles } from './loader.js';

export interface Watcher {
  close(): void;
}

function signature(paths: readonly string[]): string {
  let files: string[];
  try {
    files = listConfigFiles(paths).files;
  } catch {
    return 'unlistable';
  }
  return files
    .map((f) => {
      try {
        const s = statSync(f);
        return `${f}:${s.size}:${s.mtimeMs}:${s.ino}`;
      } catch {
        return `${f}:gone`;
      }
    })
    .join('|');
}

export function watchConfig(paths: readonly string[], onChange: () => void, opts: { debounceMs?: number; pollMs?: number } = {}): Watcher {
  const debounceMs = opts.debounceMs ?? 200;
  const watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  let last = signature(paths);
  const fire = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      const sig = signature(paths);
      if (sig === last) return;
      last = sig;
      try {
        onChange();
      } catch {
        // onChange (applyConfig) reports its own failures; never let a reload kill the process
      }
    }, debounceMs);
    timer.unref();
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
  const poll = setInterval(fire, opts.pollMs ?? 2000);
  poll.unref();
  return {
    close() {
      for (const w of watchers) w.close();
      clearInterval(poll);
      if (timer) clearTimeout(timer);
    },
  };
}
