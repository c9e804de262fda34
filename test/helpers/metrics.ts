/** Read one Prometheus series from a registry, as a test asserts an outcome by its metric. */
import type client from 'prom-client';

/**
 * The value of `series`, written as in the exposition text with labels in declaration order,
 * e.g. `obo_authz_jwt_verifications_total{issuer="https://a",result="cached"}`; 0 when absent.
 */
export async function metricValue(registry: client.Registry, series: string): Promise<number> {
  const text = await registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}
