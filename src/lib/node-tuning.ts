/**
 * Node flags and environment that only take effect at process start (V8 sizes its heap when the isolate
 * starts, Node refuses some V8 flags in NODE_OPTIONS, glibc reads MALLOC_ARENA_MAX before the first
 * allocation). agentid's processes never re-execute themselves to apply them: their start commands carry
 * them (the injected sidecar container, the images' ENTRYPOINT), and a process started without them says
 * so (pure decisions here; the warnings live beside each tuning).
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
}

/** `--max_semi_space_size=8` and `--max-semi-space-size 8` both name `max-semi-space-size` (pure). */
export function flagName(arg: string): string | undefined {
  if (!arg.startsWith("--")) return undefined;
  return arg.slice(2).split("=", 1)[0]?.replaceAll("_", "-").replace(/^no-/, "");
}

/**
 * The flags and variables of a tuning this process was not started with (pure). A flag counts as given in
 * any form (`--no-maglev`, `--maglev`, `--optimize_for_size`, through NODE_OPTIONS), so a user's own
 * choice is respected and not reported; so does a variable set to any value.
 */
export function missingTuning(
  p: Pick<ProcessView, "execArgv" | "env">,
  t: Tuning,
): { flags: string[]; env: string[] } {
  const given = new Set(
    [...p.execArgv, ...(p.env.NODE_OPTIONS ?? "").split(/\s+/)].map(flagName).filter((n) => n !== undefined),
  );
  return {
    flags: t.flags.filter((f) => !given.has(flagName(f) ?? f)),
    env: Object.keys(t.env).filter((k) => p.env[k] === undefined),
  };
}
