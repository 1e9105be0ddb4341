import type { Tuning } from "../lib/reexec.ts";

/**
 * How the sidecar's Node process should be started: the injected container's command line and
 * environment carry these, and a sidecar started without them re-executes itself once with them
 * (src/lib/reexec.ts) unless tuning is off (`--tuning off`). Each one is measured by
 * `npm run bench:sidecar` (docs/sidecar.md "Memory"):
 *
 * - `--max-semi-space-size=2`: V8 otherwise grows the young generation to 16 MB per semi-space under
 *   load, resident memory that the sidecar's short-lived request garbage does not need. At 1 MB a
 *   scavenge ran every few milliseconds under load and some runs fell into promoting in-flight
 *   requests, the old generation then growing past 120 MB.
 * - `--optimize-for-size`: V8 favours memory over speed where it has the choice; chiefly, the old
 *   generation grows in smaller steps (about 3.5 MB less under load, at about a fifth more CPU per
 *   request for the sidecar and the bare fastify baseline alike).
 * - `--no-maglev`: no mid-tier optimising compiler. Its compilations under load were most of the growth
 *   from idle to loaded; the hot path is short and still reaches TurboFan.
 * - `MALLOC_ARENA_MAX=1`: glibc otherwise gives each thread a malloc arena of its own, which keeps
 *   freed compiler memory resident.
 * - `MALLOC_MMAP_THRESHOLD_=16384`: compiler zones of 16 KB and more are mapped and unmapped rather than
 *   left fragmenting the heap after the compilation ends.
 *
 * `--optimize-for-size`, `--no-maglev` and the malloc variables cannot be given through NODE_OPTIONS
 * (Node refuses the first two there; glibc reads the others before any JavaScript runs).
 */
export const SIDECAR_TUNING: Tuning = {
  flags: ["--max-semi-space-size=2", "--optimize-for-size", "--no-maglev"],
  env: { MALLOC_ARENA_MAX: "1", MALLOC_MMAP_THRESHOLD_: "16384" },
  marker: "AGENTID_SIDECAR_REEXEC",
};

/** The tuning as one line, for `--help` and the docs. */
export function describeTuning(t: Tuning = SIDECAR_TUNING): string {
  return [...Object.entries(t.env).map(([k, v]) => `${k}=${v}`), "node", ...t.flags].join(" ");
}
