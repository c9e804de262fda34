/** grpc.health.v1.Health/Watch streams SERVING, then NOT_SERVING when draining starts. */
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('health Watch', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ 's.yaml': 'apiVersion: obo-authz.dev/v1alpha1\nkind: Settings\nmetadata: {name: s}\n' });
  });
  afterAll(async () => t?.close());

  it('streams the current status and every change', async () => {
    const stream = (t.health as unknown as Record<string, Function>)['Watch']!({ service: '' }) as grpc.ClientReadableStream<{ status: number }>;
    const seen: number[] = [];
    const two = new Promise<void>((resolve) =>
      stream.on('data', (m: { status: number }) => {
        seen.push(m.status);
        if (seen.length === 1) t.server.state.startDraining();
        if (seen.length === 2) resolve();
      }),
    );
    stream.on('error', () => undefined);
    await two;
    stream.cancel();
    expect(seen).toEqual([1, 2]);
    expect(await t.healthStatus('')).toBe(2);
    const ready = await fetch(`http://${t.server.httpAddress}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.text()).toBe('draining\n');
  });
});
