import type { Reporter, TestModule } from "vitest/node";

/** How many files the summary lists: enough to see where the run's time goes. */
const SHOWN = 10;

/**
 * Prints the slowest test files at the end of a run, so that `npm test` staying under its budget
 * (10 minutes warm on 2 cores) can be watched as suites grow: the time a file spends importing plus
 * running its tests and hooks, as vitest measured it.
 */
export default class SlowestFilesReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const rows = testModules
      .map((m) => {
        const d = m.diagnostic();
        return { file: m.relativeModuleId, project: m.project.name, ms: d.collectDuration + d.duration };
      })
      .sort((a, b) => b.ms - a.ms)
      .slice(0, SHOWN);
    if (rows.length === 0) return;
    const lines = rows.map(
      (r) => `  ${(r.ms / 1000).toFixed(1).padStart(6)} s  ${r.project.padEnd(12)} ${r.file}`,
    );
    console.log(`\nSlowest test files (import + tests + hooks):\n${lines.join("\n")}\n`);
  }
}
