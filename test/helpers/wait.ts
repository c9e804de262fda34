import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Waiting on background work (a refresh, a file watcher, a reload) without fixed sleeps:
 * poll a condition until it holds, and fail with what was awaited once the timeout passes.
 * It keeps real time while a test fakes the global timers (node:timers/promises is not faked).
 */
export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  opts: { what?: string; timeoutMs?: number; intervalMs?: number } = {},
): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const intervalMs = opts.intervalMs ?? 10;
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() >= end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what ?? 'a condition'}`);
    await sleep(intervalMs);
  }
}
