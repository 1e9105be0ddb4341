/**
 * The manager's young generation. With V8's defaults on a 64-bit machine the new space grows to 128 MB
 * while the informers fill their caches (every object survives a scavenge), although the live heap of a
 * manager with 1,000 identities is about 35 MB: the process then peaks near 280 MB resident. Two 8 MB
 * semi-spaces keep it near 165 MB at the same speed (bench/operator.ts, docs/operator.md "Memory").
 *
 * V8 sizes its heap when the isolate starts, so a flag set later (`v8.setFlagsFromString`) has no effect
 * on the new space. The manager therefore re-executes itself once, in place (same PID, so signals and
 * container supervision are unaffected), unless the flag was given already.
 */
export const MANAGER_SEMI_SPACE_FLAG = "--max-semi-space-size=8";

/** Set in the re-executed process so that it can never loop. */
export const REEXEC_MARKER = "AGENTID_MANAGER_REEXEC";

export interface ProcessView {
  execPath: string;
  execArgv: readonly string[];
  /** process.argv: [node, script, ...args]. */
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
}

/**
 * The argv to re-execute with, or undefined when the young generation is configured already (by
 * NODE_OPTIONS, a node flag, or an earlier re-execution).
 */
export function reexecArgs(p: ProcessView): string[] | undefined {
  if (p.env[REEXEC_MARKER]) return undefined;
  const given = [...p.execArgv, ...(p.env.NODE_OPTIONS ?? "").split(/\s+/)];
  if (given.some((a) => /^--max[-_]semi[-_]space[-_]size(=|$)/.test(a))) return undefined;
  return [p.execPath, MANAGER_SEMI_SPACE_FLAG, ...p.execArgv, ...p.argv.slice(1)];
}

/** Re-executes the process with the manager's heap flag when needed (POSIX only; elsewhere it runs on). */
export function ensureManagerHeapFlags(): void {
  const args = reexecArgs(process);
  if (!args || typeof process.execve !== "function") return;
  process.execve(process.execPath, args, { ...process.env, [REEXEC_MARKER]: "1" });
}
