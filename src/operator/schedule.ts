import { CONDITION_VERIFIED } from "../api/constants.ts";
import type { AgentIdentity } from "../api/types.ts";
import { backoffDelay, type Random } from "../kube/backoff.ts";
import { findCondition } from "./conditions.ts";
import { TRANSIENT_VERIFICATION_REASONS } from "./entra-errors.ts";

export interface VerificationPolicy {
  /** Re-verify a working identity this often (default 6 h). */
  intervalMs: number;
  /** Re-try a failed verification that needs a person after this long (default 10 min): never a tight loop. */
  retryMs: number;
  /**
   * First retry after a transient failure (Entra could not fetch the issuer's discovery document or keys,
   * AADSTS50166/90061, or Entra was unreachable): doubling from here, jittered ±20%, up to `retryMs`
   * (default 5 s). A failure that lasts (an issuer Entra can never reach) so ends at the long wait.
   */
  transientRetryMs?: number;
}

export const DEFAULT_VERIFICATION_POLICY: VerificationPolicy = {
  intervalMs: 6 * 3600_000,
  retryMs: 10 * 60_000,
  transientRetryMs: 5_000,
};

/** The delay before re-verifying after the `attempt`-th transient failure in a row (1 = the first). */
export function transientRetryDelay(attempt: number, policy: VerificationPolicy, random: Random): number {
  const maxMs = policy.retryMs;
  const baseMs = Math.min(policy.transientRetryMs ?? 5_000, maxMs);
  return backoffDelay(attempt, { baseMs, maxMs, factor: 2, jitter: 0.2 }, random);
}

/** The reconciler's memory of a run of transient failures: the inputs they were for and the delay chosen. */
export interface TransientStreak {
  fingerprint: string;
  attempts: number;
  delayMs: number;
}

/**
 * When the next verification is due, in ms since the epoch; 0 means now. A changed fingerprint (spec,
 * issuer, ServiceAccount) is due at once; otherwise the interval after the last attempt, shorter after a
 * failure, and shortest after a transient one: the delay the reconciler chose for its streak, or the first
 * backoff step when it has none (a new leader, a restart).
 */
export function verificationDueAt(
  identity: AgentIdentity,
  fingerprint: string,
  policy: VerificationPolicy,
  streak?: TransientStreak,
): number {
  const last = identity.status?.lastVerification;
  if (!last?.time || last.fingerprint !== fingerprint) return 0;
  const at = Date.parse(last.time);
  if (!Number.isFinite(at)) return 0;
  const verified = findCondition(identity.status?.conditions, CONDITION_VERIFIED);
  if (verified?.status === "True") return at + policy.intervalMs;
  if (verified && TRANSIENT_VERIFICATION_REASONS.has(verified.reason ?? "")) {
    const delay =
      streak?.fingerprint === fingerprint
        ? streak.delayMs
        : Math.min(policy.transientRetryMs ?? 5_000, policy.retryMs);
    return at + delay;
  }
  return at + policy.retryMs;
}
