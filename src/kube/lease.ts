/**
 * Pure rules of Lease-based leader election, the same as client-go's `tryAcquireOrRenew`. No I/O: the
 * elector in leader.ts reads the Lease, asks `decide`, and writes what it answers.
 *
 * Expiry is judged by our own clock from when we last saw the record change (client-go's
 * `observedTime`), never by comparing the holder's `renewTime` with our clock, so clock skew between
 * replicas cannot hand the lease to two holders.
 */

export interface LeaderRecord {
  holderIdentity: string;
  leaseDurationSeconds: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions: number;
}

export interface LeaseObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; [key: string]: unknown };
  spec?: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number | null;
    acquireTime?: string | null;
    renewTime?: string | null;
    leaseTransitions?: number | null;
    [key: string]: unknown;
  };
}

/** coordination.k8s.io MicroTime: RFC 3339 with exactly six fractional digits. */
export function formatMicroTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

export function recordOf(lease: LeaseObject): LeaderRecord {
  const spec = lease.spec ?? {};
  const record: LeaderRecord = {
    holderIdentity: spec.holderIdentity ?? "",
    leaseDurationSeconds: spec.leaseDurationSeconds ?? 0,
    leaseTransitions: spec.leaseTransitions ?? 0,
  };
  if (spec.acquireTime) record.acquireTime = spec.acquireTime;
  if (spec.renewTime) record.renewTime = spec.renewTime;
  return record;
}

/** Compares records the way client-go compares raw records: any field change resets the observation time. */
export function sameRecord(a: LeaderRecord | undefined, b: LeaderRecord | undefined): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export interface Observation {
  record: LeaderRecord;
  /** Our clock (ms) when this record was first seen. */
  observedAtMs: number;
}

export type Decision =
  | { action: "create"; record: LeaderRecord }
  | { action: "update"; record: LeaderRecord }
  | { action: "wait"; holder: string };

export interface DecideInput {
  /** The Lease as read now; undefined when it does not exist. */
  current: LeaderRecord | undefined;
  /** What we saw last time (to know how long the current record has stood unchanged). */
  previous: Observation | undefined;
  nowMs: number;
  identity: string;
  leaseDurationSeconds: number;
}

/** The observation after reading `current` at `nowMs`: the old one if nothing changed, else a fresh one. */
export function observe(
  previous: Observation | undefined,
  current: LeaderRecord,
  nowMs: number,
): Observation {
  return previous && sameRecord(previous.record, current)
    ? previous
    : { record: current, observedAtMs: nowMs };
}

export function decide(input: DecideInput): Decision {
  const { current, nowMs, identity, leaseDurationSeconds } = input;
  const now = formatMicroTime(nowMs);
  if (!current) {
    return {
      action: "create",
      record: {
        holderIdentity: identity,
        leaseDurationSeconds,
        acquireTime: now,
        renewTime: now,
        leaseTransitions: 0,
      },
    };
  }
  const observation = observe(input.previous, current, nowMs);
  const heldByUs = current.holderIdentity === identity;
  const held = current.holderIdentity !== "";
  // The holder's own duration decides how long we wait, not ours: replicas may be configured differently.
  const expiresAtMs = observation.observedAtMs + Math.max(current.leaseDurationSeconds, 0) * 1000;
  if (held && !heldByUs && nowMs < expiresAtMs) return { action: "wait", holder: current.holderIdentity };
  return {
    action: "update",
    record: {
      holderIdentity: identity,
      leaseDurationSeconds,
      acquireTime: heldByUs && current.acquireTime ? current.acquireTime : now,
      renewTime: now,
      leaseTransitions: heldByUs ? current.leaseTransitions : current.leaseTransitions + 1,
    },
  };
}

/** What a leader writes on a clean stop: no holder, so the next replica takes over at once. */
export function releasedRecord(current: LeaderRecord, nowMs: number): LeaderRecord {
  const now = formatMicroTime(nowMs);
  return {
    holderIdentity: "",
    leaseDurationSeconds: 1,
    acquireTime: now,
    renewTime: now,
    leaseTransitions: current.leaseTransitions,
  };
}

/** The Lease body for a create or an optimistic-concurrency update (resourceVersion from the read). */
export function leaseBody(
  namespace: string,
  name: string,
  record: LeaderRecord,
  base?: LeaseObject,
): LeaseObject & { spec: Record<string, unknown> } {
  // An empty holder is written as "" (as client-go does); readers treat it like an absent one.
  const spec: Record<string, unknown> = { ...(base?.spec ?? {}), ...record };
  return {
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: { ...(base?.metadata ?? {}), name, namespace },
    spec,
  };
}
