/** Reading a remote response body with a byte cap: never buffers an unbounded body. */

/** Default cap on a remote response body (STS, TokenReview API): 1 MiB. */
export const MAX_RESPONSE_BYTES = 1 << 20;

/** A response body exceeded the byte cap: an unusable response, not an outage. */
export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`response body larger than ${limit} bytes`);
    this.name = 'BodyTooLargeError';
  }
}

/**
 * Read a fetch Response body as UTF-8, streaming, and stop (cancelling the stream) as
 * soon as it exceeds `limit` bytes.
 */
export async function readCapped(res: Response, limit = MAX_RESPONSE_BYTES): Promise<string> {
  const body = res.body;
  if (!body) return '';
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      throw new BodyTooLargeError(limit);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}
