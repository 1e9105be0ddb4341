import { missingTuning, type ProcessView, type Tuning } from "../lib/node-tuning.ts";

/**
 * How the manager's Node process is started: the image's ENTRYPOINT (`Dockerfile`, target `manager`) and
 * `npm run bench:operator` put these flags on its command line. A manager started without them says so
 * at start-up and runs on untuned: it never re-executes itself (docs/operator.md "Memory").
 *
 * `--optimize-for-size`: V8 then grows the old generation conservatively (at most 1.3 times what a full
 * GC left alive, instead of up to 4 times on a machine with gigabytes of memory) and keeps the young
 * generation small. The manager's live heap at 10,000 identities is 50 to 80 MB, but with V8's defaults
 * the old generation grew to 230 MB between full GCs, the pages it had grown stayed mapped, and the
 * process reached 390 MB resident (docs/benchmarks.md). Unlike `--max-old-space-size` it sets no ceiling:
 * the caches grow with the cluster, and a cap would turn a large cluster into an out-of-memory crash loop.
 *
 * `--optimize-for-size` cannot be given through NODE_OPTIONS (Node refuses it there).
 */
export const MANAGER_TUNING: Tuning = {
  flags: ["--optimize-for-size"],
  env: {},
};

/** The start-up warning for a manager started without its flags, or undefined (pure). */
export function managerTuningWarning(p: Pick<ProcessView, "execArgv" | "env">): string | undefined {
  const missing = missingTuning(p, MANAGER_TUNING).flags;
  if (missing.length === 0) return undefined;
  return `started without ${missing.join(" ")}: the manager's heap grows further between full GCs (docs/operator.md "Memory"); start it as \`node ${MANAGER_TUNING.flags.join(" ")} …cli.js manager\` (the image does)`;
}
