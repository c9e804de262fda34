/**
 * Loading a config without blocking Checks: the files are read, parsed and validated in a
 * worker thread (compile-worker.ts), and a valid config is then compiled on this thread in
 * slices (compileDocumentsSliced), so a reload of a big config never holds a Check past its
 * deadline. Until the new config is swapped in, Checks are answered by the one in force.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Runtime } from '../core/runtime.js';
import type { ConfigIssue } from '../config/issues.js';
import { DEFAULT_LIMITS, type ConfigLimits } from '../config/limits.js';
import type { LoadedDocument } from '../config/loader.js';
import { compileDocumentsSliced, loadConfig, pathsFailure, type CompileResult } from './compile.js';

/** A document as the worker hands it over: a plain value, and the position of its start only. */
export type PlainDocument = Omit<LoadedDocument, 'locate'> & { readonly start: { line: number; col: number } };

export interface WorkerAnswer {
  readonly ok: boolean;
  readonly issues: ConfigIssue[];
  readonly files: string[];
  readonly documents: PlainDocument[];
}

export interface LoadOptions {
  readonly limits?: ConfigLimits;
  /** A load that takes longer is abandoned (an error; the config in force stays). */
  readonly timeoutMs?: number;
  /** Heap of the worker (MiB): a config that needs more is an error, not a process crash. */
  readonly maxHeapMb?: number;
}

export type LoadResult = CompileResult & { readonly via: 'worker' | 'thread' };

/** The worker script: next to this module when built; from a TypeScript checkout, its build in dist/. */
function workerScript(): URL | null {
  const here = import.meta.url;
  if (here.endsWith('.js')) return new URL('./compile-worker.js', here);
  const built = new URL('../../dist/src/pipeline/compile-worker.js', here);
  return existsSync(fileURLToPath(built)) ? built : null;
}

/** A document from the worker: its errors were found there, so positions point at its start. */
function toLoaded(d: PlainDocument): LoadedDocument {
  return { ...d, locate: () => d.start };
}

function runWorker(script: URL, paths: readonly string[], opts: LoadOptions): Promise<WorkerAnswer | string> {
  return new Promise((resolve) => {
    const worker = new Worker(script, {
      workerData: { paths: [...paths], limits: opts.limits ?? DEFAULT_LIMITS },
      resourceLimits: { maxOldGenerationSizeMb: opts.maxHeapMb ?? 768 },
      stdout: true,
      stderr: true,
    });
    let done = false;
    const finish = (v: WorkerAnswer | string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      void worker.terminate();
      resolve(v);
    };
    const timer = setTimeout(() => finish(`loading the config took longer than ${opts.timeoutMs ?? 60_000} ms`), opts.timeoutMs ?? 60_000);
    timer.unref();
    worker.once('message', (m: WorkerAnswer) => finish(m));
    worker.once('error', (e: Error & { code?: string }) =>
      finish(e.code === 'ERR_WORKER_OUT_OF_MEMORY' ? `loading the config needs more than ${opts.maxHeapMb ?? 768} MiB` : `cannot load config: ${e.name}: ${e.message.split('\n')[0]}`),
    );
    worker.once('exit', (code) => finish(`the config worker stopped (exit ${code})`));
  });
}

/**
 * Load and compile `paths` without holding the event loop: parse and validation in a
 * worker, the compile of a valid config in slices. Never throws.
 */
export async function loadConfigAsync(paths: readonly string[], runtime: Runtime, opts: LoadOptions = {}): Promise<LoadResult> {
  const script = workerScript();
  if (!script) return { ...loadConfig(paths, runtime, {}, opts.limits), via: 'thread' };
  const a = await runWorker(script, paths, opts);
  if (typeof a === 'string') return { ...pathsFailure(paths, a), via: 'worker' };
  if (!a.ok) return { ok: false, issues: a.issues, via: 'worker' };
  try {
    return { ...(await compileDocumentsSliced(a.documents.map(toLoaded), runtime, a.files)), via: 'worker' };
  } catch (e) {
    runtime.shared.abortGeneration();
    return { ...pathsFailure(paths, `cannot load config: ${e instanceof Error ? `${e.name}: ${e.message.split('\n')[0]}` : String(e)}`), via: 'worker' };
  }
}
