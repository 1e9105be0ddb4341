/**
 * Exponential backoff with jitter, as pure functions. Randomness is injected so that tests can pin it;
 * callers pass `Math.random`.
 */

export interface BackoffPolicy {
  /** Delay before the first retry, in ms. */
  baseMs: number;
  /** Ceiling for the un-jittered delay, in ms. */
  maxMs: number;
  /** Growth per attempt (2 doubles). */
  factor: number;
  /**
   * Fraction of the delay that is randomised, 0..1. With 0.2 the delay lands uniformly in
   * [0.8 d, 1.2 d], so replicas that failed together do not retry together.
   */
  jitter: number;
}

export type Random = () => number;

export function validatePolicy(policy: BackoffPolicy): BackoffPolicy {
  const { baseMs, maxMs, factor, jitter } = policy;
  if (!(Number.isFinite(baseMs) && baseMs >= 0))
    throw new RangeError(`backoff baseMs must be >= 0, got ${baseMs}`);
  if (!(Number.isFinite(maxMs) && maxMs >= baseMs)) {
    throw new RangeError(`backoff maxMs must be >= baseMs (${baseMs}), got ${maxMs}`);
  }
  if (!(Number.isFinite(factor) && factor >= 1))
    throw new RangeError(`backoff factor must be >= 1, got ${factor}`);
  if (!(Number.isFinite(jitter) && jitter >= 0 && jitter <= 1)) {
    throw new RangeError(`backoff jitter must be within 0..1, got ${jitter}`);
  }
  return policy;
}

/** Spreads `ms` uniformly over [ms·(1−fraction), ms·(1+fraction)]. */
export function jittered(ms: number, fraction: number, random: Random): number {
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.max(0, Math.round(ms * (1 + fraction * (2 * r - 1))));
}

/**
 * The delay before retry number `attempt` (1 = first retry): base·factor^(attempt−1), capped at maxMs,
 * then jittered. The cap applies before the jitter so that retries at the ceiling still spread out.
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: Random): number {
  if (!Number.isInteger(attempt) || attempt < 1)
    throw new RangeError(`attempt must be an integer >= 1, got ${attempt}`);
  // Exponent capped so the power never overflows to Infinity for long failure streaks.
  const exponent = Math.min(attempt - 1, 64);
  const raw = Math.min(policy.baseMs * policy.factor ** exponent, policy.maxMs);
  return jittered(raw, policy.jitter, random);
}

/** A stateful helper for one retry loop: `next()` gives the next delay, `reset()` after a success. */
export interface Backoff {
  next(): number;
  reset(): void;
  attempts(): number;
}

export function createBackoff(policy: BackoffPolicy, random: Random = Math.random): Backoff {
  validatePolicy(policy);
  let attempt = 0;
  return {
    next() {
      attempt += 1;
      return backoffDelay(attempt, policy, random);
    },
    reset() {
      attempt = 0;
    },
    attempts() {
      return attempt;
    },
  };
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects: loops check the signal themselves). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
