/**
 * Timer delays. Node turns a delay over 2^31-1 ms into 1 ms (with a TimeoutOverflowWarning), so
 * a long timeout taken from a config (an Istio `jwtRules` timeout of `720h`) or from a request
 * (`x-envoy-expected-rq-timeout-ms`) would fire at once: every delay computed from outside data
 * goes through timerDelay().
 */

/** Node's longest timer delay (about 24.8 days). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** `ms` as a timer delay: at most MAX_TIMER_MS (a wait that long is no limit), never negative or NaN. */
export function timerDelay(ms: number): number {
  return ms > MAX_TIMER_MS ? MAX_TIMER_MS : ms > 0 ? ms : 0;
}
