/**
 * The config worker (a worker thread): reads the config files, parses the YAML and runs the
 * whole validation (a compile against a throw-away runtime with no network), so that neither
 * a big file nor a hostile one ever blocks the thread that answers Checks. It hands back the
 * issues (located by file, line, column, document and field) and, when the config is valid,
 * the documents as plain values; the main thread then compiles them in slices
 * (pipeline/load.ts).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SharedResources } from '../core/runtime.js';
import type { ConfigLimits } from '../config/limits.js';
import { createLogger } from '../observability/logger.js';
import { Metrics } from '../observability/metrics.js';
import { loadAndCompile } from './compile.js';
import type { WorkerAnswer } from './load.js';

const { paths, limits } = workerData as { paths: string[]; limits: ConfigLimits };

// Nothing here may reach the network: the JWKS sources a compile starts fail at once and are
// dropped with the worker.
const runtime = {
  now: () => Date.now(),
  fetch: () => Promise.reject(new Error('config validation does not fetch')),
  logger: createLogger({ level: 'silent' }),
  metrics: new Metrics(),
  shared: new SharedResources(),
};

const { loaded, result } = loadAndCompile(paths, runtime, {}, limits);
runtime.shared.disposeAll();
const answer: WorkerAnswer = {
  ok: result.ok,
  issues: result.issues,
  files: loaded?.files ?? [],
  documents: result.ok && loaded
    ? loaded.documents.map((d) => ({ file: d.file, index: d.index, apiVersion: d.apiVersion, kind: d.kind, name: d.name, namespace: d.namespace, value: d.value, start: d.locate([]) }))
    : [],
};
parentPort!.postMessage(answer);
