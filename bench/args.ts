/**
 * The benches' command lines: `--name value` numbers and `--flag` switches, with `--help` and a clear
 * refusal of anything else (a misspelt option must not silently run the default, minutes-long benchmark).
 */
export interface BenchOptions {
  /** One paragraph printed by --help and after a refusal. */
  usage: string;
  /** Options that take a value (`--rounds 4`). */
  values: readonly string[];
  /** Switches (`--no-build`). */
  switches?: readonly string[];
}

/** The first problem with argv, or undefined (pure). */
export function argsProblem(argv: readonly string[], options: BenchOptions): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    const name = arg.startsWith("--") ? arg.slice(2) : undefined;
    if (name === undefined) return `unexpected argument ${arg}`;
    if (options.switches?.includes(name)) continue;
    if (!options.values.includes(name)) return `unknown option ${arg}`;
    if (i + 1 >= argv.length) return `${arg} needs a value`;
    i++;
  }
  return undefined;
}

/** Exits with the usage on --help (0) or on a bad command line (2); returns otherwise. */
export function checkBenchArgs(options: BenchOptions, argv = process.argv.slice(2)): void {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(`${options.usage}\n`);
    process.exit(0);
  }
  const problem = argsProblem(argv, options);
  if (problem) {
    process.stderr.write(`${problem}\n${options.usage}\n`);
    process.exit(2);
  }
}

/** The number after `--name`, or the fallback; a value that is not a positive number is an error. */
export function numberFlag(name: string, fallback: number, argv = process.argv): number {
  const i = argv.indexOf(`--${name}`);
  const value = i >= 0 ? Number(argv[i + 1]) : fallback;
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number`);
  return value;
}

/**
 * The comma-separated numbers after `--name`, or the fallback; each must be a number in (0, max], given
 * once, else an error that says so (a misplaced percent sign or a stray comma must not run a different benchmark).
 */
export function numberListFlag(
  name: string,
  fallback: readonly number[],
  max: number,
  argv = process.argv,
): number[] {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return [...fallback];
  const text = argv[i + 1] ?? "";
  const values = text.split(",").map((part) => (part.trim() === "" ? Number.NaN : Number(part)));
  const bad = values.some((v) => !Number.isFinite(v) || v <= 0 || v > max);
  if (bad || new Set(values).size < values.length) {
    throw new Error(
      `--${name} must be comma-separated numbers, each above 0, at most ${max} and given once (got ${JSON.stringify(text)})`,
    );
  }
  return values;
}
