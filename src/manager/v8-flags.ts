import { type ProcessView, reexecPlan, reexecWith, type Tuning } from "../lib/reexec.ts";

/**
 * The manager's young generation. With V8's defaults on a 64-bit machine the new space grows to 128 MB
 * while the informers fill their caches (every object survives a scavenge), although the live heap of a
 * manager with 1,000 identities is about 35 MB: the process then peaks near 280 MB resident. Two 8 MB
 * semi-spaces keep it near 165 MB at the same speed (bench/operator.ts, docs/operator.md "Memory").
 *
 * V8 sizes its heap when the isolate starts, so a flag set later (`v8.setFlagsFromString`) has no effect
 * on the new space. The manager therefore re-executes itself once, in place (src/lib/reexec.ts), unless
 * the flag was given already.
 */
export const MANAGER_SEMI_SPACE_FLAG = "--max-semi-space-size=8";

/** Set in the re-executed process so that it can never loop. */
export const REEXEC_MARKER = "AGENTID_MANAGER_REEXEC";

const MANAGER_TUNING: Tuning = { flags: [MANAGER_SEMI_SPACE_FLAG], env: {}, marker: REEXEC_MARKER };

/**
 * The argv to re-execute with, or undefined when the young generation is configured already (by
 * NODE_OPTIONS, a node flag, or an earlier re-execution).
 */
export function reexecArgs(p: ProcessView): string[] | undefined {
  return reexecPlan(p, MANAGER_TUNING)?.args;
}

/** Re-executes the process with the manager's heap flag when needed (POSIX only; elsewhere it runs on). */
export function ensureManagerHeapFlags(): void {
  reexecWith(MANAGER_TUNING);
}
