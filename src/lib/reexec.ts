/**
 * Re-executing a command once, in place, with Node flags and environment that only take effect at
 * process start: V8 sizes its heap when the isolate starts, some V8 flags are refused in NODE_OPTIONS,
 * and glibc reads MALLOC_ARENA_MAX before the first allocation. `process.execve` keeps the PID, so
 * signals and container supervision are unaffected. Decisions are pure; `reexecWith` is the I/O.
 */

export interface ProcessView {
  execPath: string;
  execArgv: readonly string[];
  /** process.argv: [node, script, ...args]. */
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
}

export interface Tuning {
  /** Node/V8 flags, each `--name` or `--name=value`; one the user gave already (in any form) is kept. */
  flags: readonly string[];
  /** Environment variables set unless the user set them already. */
  env: Readonly<Record<string, string>>;
  /** Set in the re-executed process so that it can never loop. */
  marker: string;
}

/** `--max_semi_space_size=8` and `--max-semi-space-size 8` both name `max-semi-space-size` (pure). */
export function flagName(arg: string): string | undefined {
  if (!arg.startsWith("--")) return undefined;
  return arg.slice(2).split("=", 1)[0]?.replaceAll("_", "-").replace(/^no-/, "");
}

/**
 * The argv and environment to re-execute with, or undefined when there is nothing to add (every flag
 * and variable is set already, by a node flag, NODE_OPTIONS or an earlier re-execution).
 */
export function reexecPlan(
  p: ProcessView,
  tuning: Tuning,
): { args: string[]; env: Record<string, string> } | undefined {
  if (p.env[tuning.marker]) return undefined;
  const given = new Set(
    [...p.execArgv, ...(p.env.NODE_OPTIONS ?? "").split(/\s+/)].map(flagName).filter((n) => n !== undefined),
  );
  const flags = tuning.flags.filter((f) => !given.has(flagName(f) ?? f));
  const env = Object.fromEntries(Object.entries(tuning.env).filter(([k]) => p.env[k] === undefined));
  if (flags.length === 0 && Object.keys(env).length === 0) return undefined;
  return { args: [p.execPath, ...flags, ...p.execArgv, ...p.argv.slice(1)], env };
}

/** Re-executes the process with the tuning when needed (POSIX only; elsewhere it runs on as it is). */
export function reexecWith(tuning: Tuning): void {
  const plan = reexecPlan(process, tuning);
  if (!plan || typeof process.execve !== "function") return;
  process.execve(process.execPath, plan.args, { ...process.env, ...plan.env, [tuning.marker]: "1" });
}
