import { CONDITION_VERIFIED } from "../api/constants.ts";
import type { AgentIdentity } from "../api/types.ts";
import { findCondition } from "./conditions.ts";

export interface VerificationPolicy {
  /** Re-verify a working identity this often (default 6 h). */
  intervalMs: number;
  /** Re-try a failed or unreachable verification after this long (default 10 min): never a tight loop. */
  retryMs: number;
}

export const DEFAULT_VERIFICATION_POLICY: VerificationPolicy = {
  intervalMs: 6 * 3600_000,
  retryMs: 10 * 60_000,
};

/**
 * When the next verification is due, in ms since the epoch; 0 means now. A changed fingerprint (spec,
 * issuer, ServiceAccount) is due at once; otherwise the interval after the last attempt, shorter after a failure.
 */
export function verificationDueAt(
  identity: AgentIdentity,
  fingerprint: string,
  policy: VerificationPolicy,
): number {
  const last = identity.status?.lastVerification;
  if (!last?.time || last.fingerprint !== fingerprint) return 0;
  const at = Date.parse(last.time);
  if (!Number.isFinite(at)) return 0;
  const verified = findCondition(identity.status?.conditions, CONDITION_VERIFIED);
  return at + (verified?.status === "True" ? policy.intervalMs : policy.retryMs);
}
