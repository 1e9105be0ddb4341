import { CONDITION_VERIFIED } from "../api/constants.ts";
import type { AgentIdentity, Condition, ConditionStatus } from "../api/types.ts";
import { findCondition } from "./conditions.ts";
import { TRANSIENT_VERIFICATION_REASONS } from "./entra-errors.ts";

export interface VerificationPolicy {
  /** Re-verify a working identity this often (default 6 h). */
  intervalMs: number;
  /** Re-try a failed verification that needs a person after this long (default 10 min): never a tight loop. */
  retryMs: number;
  /**
   * Shortest wait after a transient failure (Entra could not fetch the issuer's discovery document or keys,
   * AADSTS50166/90061, or Entra was unreachable), default 5 s. The wait then grows with how long the
   * failure has lasted, up to `retryMs` (transientRetryDelay).
   */
  transientRetryMs?: number;
}

export const DEFAULT_VERIFICATION_POLICY: VerificationPolicy = {
  intervalMs: 6 * 3600_000,
  retryMs: 10 * 60_000,
  transientRetryMs: 5_000,
};

/** ±20%: identities that failed together (one outage) do not all come back in the same second. */
const JITTER = 0.2;

/** A number in [0, 1) from a string (FNV-1a): the same inputs give the same jitter after a restart. */
export function stableFraction(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash / 2 ** 32;
}

export interface TransientFailure {
  /** How long the failure had lasted when it was seen again (0 for the first one). */
  failingForMs: number;
  /** Entra's Retry-After, in ms from when it was answered; honoured, but never beyond `retryMs`. */
  retryAfterMs?: number;
  /** Picks the jitter; the same seed gives the same delay (see stableFraction). */
  seed: string;
}

/**
 * The wait before re-verifying after a transient failure: as long as the failure has lasted so far,
 * at least `transientRetryMs` and at most `retryMs`, jittered by ±20% (so, attempt after attempt, the
 * waits double: 5 s, 5 s, 10 s, 20 s, ...). Derived from the failure's duration (kept in the status),
 * not from a count in memory, it survives a restart or a change of leader. Entra's Retry-After is a
 * floor, capped at `retryMs` like everything else.
 */
export function transientRetryDelay(failure: TransientFailure, policy: VerificationPolicy): number {
  const maxMs = policy.retryMs;
  const baseMs = Math.min(policy.transientRetryMs ?? 5_000, maxMs);
  const grown = Math.min(Math.max(failure.failingForMs, baseMs), maxMs);
  const jittered = Math.round(grown * (1 - JITTER + 2 * JITTER * stableFraction(failure.seed)));
  const floor = Math.min(failure.retryAfterMs ?? 0, maxMs);
  return Math.max(1, Math.min(Math.max(jittered, floor), maxMs));
}

/**
 * When the current run of transient failures began, for a verification about to be written with
 * Verified status `next`. After a transient failure (`previous` has a transient reason), whichever its
 * status: `since` (status.lastVerification.transientSince, written with it), so a run that alternates
 * Unknown (Entra unreachable, 503/429) and False (AADSTS50166/90061) keeps growing its backoff instead of
 * starting over at every flip. Otherwise the condition's lastTransitionTime when its status is already
 * `next` (the status write keeps it then, src/operator/conditions.ts), else `nowMs`: a transient failure
 * after a lasting failure of the same status (False) counts from that one, its wait starts long as the
 * lasting failure's did. Never later than `nowMs` (clock skew between replicas).
 */
export function transientOnsetMs(
  previous: Condition | undefined,
  next: ConditionStatus,
  nowMs: number,
  since?: string,
): number {
  if (!previous) return nowMs;
  const sinceMs = Date.parse(since ?? "");
  if (TRANSIENT_VERIFICATION_REASONS.has(previous.reason ?? "") && Number.isFinite(sinceMs))
    return Math.min(sinceMs, nowMs);
  if (previous.status !== next) return nowMs;
  const at = Date.parse(previous.lastTransitionTime ?? "");
  return Number.isFinite(at) ? Math.min(at, nowMs) : nowMs;
}

/**
 * Entra's Retry-After (RFC 9110: delay-seconds or an HTTP-date) as ms from `nowMs`; undefined when absent
 * or unreadable. A date in the past is 0.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // An HTTP-date always names its weekday and GMT; a bare number with a sign or fraction is not valid.
  if (!/GMT$/.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isFinite(at) ? Math.max(0, at - nowMs) : undefined;
}

/** The seed of a verification's jitter: the inputs verified and when. */
export function jitterSeed(fingerprint: string, attemptTime: string): string {
  return `${fingerprint}@${attemptTime}`;
}

/**
 * When the next verification is due, in ms since the epoch; 0 means now. A changed fingerprint (spec,
 * issuer, ServiceAccount) is due at once; otherwise the interval after the last attempt, shorter after a
 * failure, and shortest after a transient one: transientRetryDelay for the failure's duration then
 * (from the status alone, so the same after a restart), or later when Entra's Retry-After asked for it
 * (`notBeforeMs`, kept in memory by the reconciler).
 */
export function verificationDueAt(
  identity: AgentIdentity,
  fingerprint: string,
  policy: VerificationPolicy,
  notBeforeMs = 0,
): number {
  const last = identity.status?.lastVerification;
  if (!last?.time || last.fingerprint !== fingerprint) return 0;
  const at = Date.parse(last.time);
  if (!Number.isFinite(at)) return 0;
  const verified = findCondition(identity.status?.conditions, CONDITION_VERIFIED);
  if (verified?.status === "True") return at + policy.intervalMs;
  if (verified && TRANSIENT_VERIFICATION_REASONS.has(verified.reason ?? "")) {
    const onset = transientOnsetMs(verified, verified.status, at, last.transientSince);
    const delay = transientRetryDelay(
      { failingForMs: at - onset, seed: jitterSeed(fingerprint, last.time) },
      policy,
    );
    return Math.max(at + delay, Math.min(notBeforeMs, at + policy.retryMs));
  }
  return at + policy.retryMs;
}
