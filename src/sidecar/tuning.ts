import { missingTuning as missingOf, type ProcessView, type Tuning } from "../lib/node-tuning.ts";

/**
 * How the sidecar's Node process should be started: the injected container's command line and
 * environment carry these (the webhook renders them, the image sets the variables with `ENV`), and a
 * sidecar started without them says so at start-up (`missingTuning`) and runs on untuned: it never
 * re-executes itself. Each one is measured by
 * `npm run bench:sidecar` (docs/sidecar.md "Memory"):
 *
 * - `--optimize-for-size`: V8 favours memory over speed where it has the choice. It bounds the young
 *   generation itself (its new space stays at 1 MB, where V8 otherwise grows each semi-space to 16 MB
 *   under load: resident memory the sidecar's short-lived request garbage does not need), and the old
 *   generation grows in smaller steps. It also overrides any `--max-semi-space-size`
 *   (`v8.getHeapSpaceStatistics()` shows the same 1 MB with one), so that flag is not given.
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
  flags: ["--optimize-for-size", "--no-maglev"],
  env: { MALLOC_ARENA_MAX: "1", MALLOC_MMAP_THRESHOLD_: "16384" },
};

/** The flags and variables of the sidecar's tuning this process was not started with (pure). */
export function missingTuning(
  p: Pick<ProcessView, "execArgv" | "env">,
  t: Tuning = SIDECAR_TUNING,
): { flags: string[]; env: string[] } {
  return missingOf(p, t);
}

/** The start-up warning for a process started without (part of) the tuning, or undefined (pure). */
export function tuningWarning(
  p: Pick<ProcessView, "execArgv" | "env">,
  t: Tuning = SIDECAR_TUNING,
): string | undefined {
  const missing = missingTuning(p, t);
  if (missing.flags.length === 0 && missing.env.length === 0) return undefined;
  const what = [...missing.env.map((k) => `${k}=${t.env[k]}`), ...missing.flags].join(" ");
  return `started without ${what}: the sidecar uses more memory (about 28 MB more under load, docs/sidecar.md "Memory and speed"); start it as \`${describeTuning(t)} …cli.js sidecar\` (the injected container does)`;
}

/** The tuning as one line, for `--help` and the docs. */
export function describeTuning(t: Tuning = SIDECAR_TUNING): string {
  return [...Object.entries(t.env).map(([k, v]) => `${k}=${v}`), "node", ...t.flags].join(" ");
}
