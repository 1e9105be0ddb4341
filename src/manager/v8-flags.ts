import { missingTuning, type ProcessView, type Tuning } from "../lib/node-tuning.ts";

/**
 * How the manager's Node process is started: the image's ENTRYPOINT (`Dockerfile`, target `manager`) and
 * `npm run bench:operator` put these flags on its command line. A manager started without them says so
 * at start-up and runs on untuned: it never re-executes itself (docs/operator.md "Memory").
 *
 * `--heap-growing-percent=30`: after each full GC V8 lets the old generation grow to 1.3 times what
 * survived, instead of up to 4 times on a machine with gigabytes of memory. The manager's live heap at
 * 10,000 identities is 50 to 80 MB, but with V8's defaults the old generation grew to 230 MB between full
 * GCs, the pages it had grown stayed mapped, and the process reached 390 MB resident (docs/benchmarks.md).
 * Unlike `--max-old-space-size` it sets no ceiling: the caches grow with the cluster, and a cap would turn
 * a large cluster into an out-of-memory crash loop.
 *
 * `--max-semi-space-size=2`: the young generation may grow to two 2 MB semi-spaces. The webhook answers
 * many admission reviews at once, each allocating about 30 KB that dies young; with 1 MB semi-spaces (what
 * `--optimize-for-size`, the flag used before, pins them to) V8 scavenged every 30 or so reviews, each time
 * copying the 50 in flight, and a review cost about 17 µs more CPU than now. The price: at 10,000
 * identities the peak was 197–214 MB against 183 MB (target 250 MB), and an idle manager keeps what it
 * grew (docs/benchmarks.md, "Admission webhook: 2026-12-06 11:40 UTC"). The operator's CPU fell by a
 * quarter (fewer scavenges).
 *
 * `--heap-growing-percent` cannot be given through NODE_OPTIONS (Node refuses it there).
 */
export const MANAGER_TUNING: Tuning = {
  flags: ["--max-semi-space-size=2", "--heap-growing-percent=30"],
  env: {},
};

/** The start-up warning for a manager started without its flags, or undefined (pure). */
export function managerTuningWarning(p: Pick<ProcessView, "execArgv" | "env">): string | undefined {
  const missing = missingTuning(p, MANAGER_TUNING).flags;
  if (missing.length === 0) return undefined;
  return `started without ${missing.join(" ")}: the manager's heap grows further between full GCs (docs/operator.md "Memory"); start it as \`node ${MANAGER_TUNING.flags.join(" ")} …cli.js manager\` (the image does)`;
}
