import type { Condition, ConditionStatus } from "../api/types.ts";

/** A condition without its bookkeeping: what a reconcile decides. */
export interface ConditionDecision {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
}

/**
 * Builds the condition list from decisions, keeping lastTransitionTime when the status did not change
 * (Kubernetes API conventions), so that an unchanged decision yields an identical list and no write.
 */
export function mergeConditions(
  previous: readonly Condition[] | undefined,
  decisions: readonly ConditionDecision[],
  generation: number,
  now: Date,
): Condition[] {
  return decisions.map((d) => {
    const old = previous?.find((c) => c.type === d.type);
    const lastTransitionTime =
      old && old.status === d.status ? old.lastTransitionTime : now.toISOString().replace(/\.\d{3}Z$/, "Z");
    return {
      type: d.type,
      status: d.status,
      reason: d.reason,
      message: d.message,
      observedGeneration: generation,
      lastTransitionTime,
    };
  });
}

export interface Transition {
  type: string;
  from?: ConditionStatus;
  to: ConditionStatus;
  reason: string;
  message: string;
}

/** Conditions whose status or reason changed: each becomes one event. */
export function conditionTransitions(
  previous: readonly Condition[] | undefined,
  next: readonly Condition[],
): Transition[] {
  const out: Transition[] = [];
  for (const c of next) {
    const old = previous?.find((p) => p.type === c.type);
    if (old && old.status === c.status && old.reason === c.reason) continue;
    out.push({
      type: c.type,
      ...(old ? { from: old.status } : {}),
      to: c.status,
      reason: c.reason,
      message: c.message,
    });
  }
  return out;
}

export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}
