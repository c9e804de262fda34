/** Recognising an outbound call that was cut short (deadline, abort signal, timeout). */
export function isAbort(e: unknown): boolean {
  return e instanceof Error && (e.name === 'AbortError' || e.name === 'TimeoutError');
}
