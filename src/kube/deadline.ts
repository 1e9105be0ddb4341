/**
 * The signal of one API request: the caller's signal (a leadership term, a stop) and, for ordinary
 * requests, a whole-request timeout, released the moment the request ends.
 *
 * Deliberately not `AbortSignal.any([caller, AbortSignal.timeout(ms)])`: per request that keeps a timer
 * for the full timeout (30 s) after the request finished, plus WeakRefs and FinalizationRegistry entries
 * on the caller's long-lived signal that only a full (mark-compact) GC releases. V8's scavenger keeps the
 * targets of WeakRefs alive, so each request's signals, listeners and response state were promoted to
 * the old generation: at 10,000 identities (40,000 requests) that was most of the manager's memory
 * (docs/benchmarks.md, "Operator, 10,000 identities").
 */
export interface RequestDeadline {
  /** What to hand the HTTP client; undefined when there is neither a caller signal nor a timeout. */
  readonly signal: AbortSignal | undefined;
  /** The request is over: clears the timer and stops following the caller's signal. Idempotent. */
  done(): void;
}

export function requestDeadline(
  caller: AbortSignal | undefined,
  timeoutMs: number | undefined,
): RequestDeadline {
  if (timeoutMs === undefined) return { signal: caller, done: () => {} };
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new DOMException("The operation was aborted due to timeout", "TimeoutError")),
    timeoutMs,
  );
  // Like AbortSignal.timeout, a pending request timer does not keep the process alive by itself.
  timer.unref();
  const follow = () => controller.abort(caller?.reason);
  if (caller?.aborted) follow();
  else caller?.addEventListener("abort", follow, { once: true });
  return {
    signal: controller.signal,
    done() {
      clearTimeout(timer);
      caller?.removeEventListener("abort", follow);
    },
  };
}
