import { isEntraUnavailable } from "./network.ts";

export interface RetryPolicy {
  /** Total attempts, the first included. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** A Retry-After longer than this is not waited for: the error is returned at once. */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  attempts: 4,
  baseDelayMs: 200,
  maxDelayMs: 5000,
  maxRetryAfterMs: 30_000,
};

/** Delay before retry number `retry` (1-based): Retry-After if given, else jittered exponential (pure but for jitter). */
export function retryDelay(
  policy: RetryPolicy,
  retry: number,
  retryAfterMs?: number,
  random = Math.random,
): number {
  if (retryAfterMs !== undefined) return retryAfterMs;
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (retry - 1));
  return ceiling / 2 + random() * (ceiling / 2);
}

/** Runs `fn`, retrying only transient Entra failures (429, 5xx, unreachable), within the policy's bounds. */
export async function withRetry<T>(
  fn: () => Promise<T>,
  policy: RetryPolicy = DEFAULT_RETRY,
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      if (!isEntraUnavailable(error) || error.exhausted) throw error;
      // A leg nested in another (T1 inside the agent's request) gives up once; the outer one does not retry it.
      if (
        attempt >= policy.attempts ||
        (error.retryAfterMs !== undefined && error.retryAfterMs > policy.maxRetryAfterMs)
      ) {
        error.exhausted = true;
        throw error;
      }
      await sleep(retryDelay(policy, attempt, error.retryAfterMs));
    }
  }
}
