/**
 * A token read from a file (a projected Kubernetes service-account token, a client
 * secret) and re-read when it changes. Kubernetes rotates projected tokens by swapping
 * a symlink, which file watchers miss, so we stat (following symlinks) at most once per
 * `recheckMs` on use and re-read when mtime, size or inode changed.
 */
import { readFileSync, statSync } from 'node:fs';
import type { Runtime } from '../core/runtime.js';

export class FileTokenSource {
  private value: string | undefined;
  private sig = '';
  private lastCheck = -Infinity;
  constructor(
    readonly path: string,
    private readonly runtime: Runtime,
    private readonly recheckMs = 1000,
  ) {}

  /** The current file contents (trimmed), or undefined when the file cannot be read. */
  read(): string | undefined {
    const now = this.runtime.now();
    if (this.value !== undefined && now - this.lastCheck < this.recheckMs && now >= this.lastCheck) return this.value;
    this.lastCheck = now;
    try {
      const st = statSync(this.path);
      const sig = `${st.mtimeMs}:${st.size}:${st.ino}`;
      if (sig !== this.sig || this.value === undefined) {
        const v = readFileSync(this.path, 'utf8').trim();
        this.value = v || undefined;
        this.sig = sig;
      }
    } catch {
      // Keep serving the last good value if the file briefly disappears during a swap.
      if (this.value === undefined) return undefined;
    }
    return this.value;
  }

  dispose(): void {
    this.value = undefined;
  }
}
