import type { ParseArgsOptionDescriptor } from "./builtins.ts";

// The CommonJS view of node:util: an ESM import builds a namespace from every export, which loads
// modules that `agentid sidecar` never uses (about 1 MB of its memory).
const { parseArgs } = process.getBuiltinModule("node:util");

/** One option of a subcommand; `help` is what `--help` prints, `env` names the variable that also sets it. */
export interface OptionSpec {
  type: "string" | "boolean";
  help: string;
  default?: string | boolean;
  env?: string;
  short?: string;
  multiple?: boolean;
}

export type OptionValues = Record<string, string | boolean | string[] | undefined>;

export interface Command {
  name: string;
  summary: string;
  /** Longer text shown by `agentid <name> --help`. */
  description?: string;
  options: Record<string, OptionSpec>;
  run(values: OptionValues): Promise<number | undefined>;
}

/** A mistake in how the command was called: printed as one line, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

export function renderHelp(command: Command): string {
  const lines = [`Usage: agentid ${command.name} [options]`, "", command.summary];
  if (command.description) lines.push("", command.description);
  lines.push("", "Options:");
  const helpOption: OptionSpec = { type: "boolean", help: "Show this help and exit.", short: "h" };
  const entries: [string, OptionSpec][] = [...Object.entries(command.options), ["help", helpOption]];
  const flags = entries.map(([name, spec]) => {
    const short = spec.short ? `-${spec.short}, ` : "";
    return `  ${short}--${name}${spec.type === "string" ? " <value>" : ""}`;
  });
  const width = Math.max(...flags.map((f) => f.length)) + 2;
  entries.forEach(([, spec], i) => {
    const extras: string[] = [];
    if (spec.default !== undefined && spec.default !== false) extras.push(`default: ${String(spec.default)}`);
    if (spec.env) extras.push(`env: ${spec.env}`);
    const suffix = extras.length > 0 ? ` (${extras.join("; ")})` : "";
    lines.push(`${(flags[i] ?? "").padEnd(width)}${spec.help}${suffix}`);
  });
  return lines.join("\n");
}

/**
 * Parses argv for one command. Unknown flags, missing values and stray positionals raise UsageError.
 * Values come from the flag, else from the named environment variable, else from the default.
 */
export function parseCommandArgs(
  command: Command,
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): { help: boolean; values: OptionValues } {
  const options: Record<string, ParseArgsOptionDescriptor> = { help: { type: "boolean", short: "h" } };
  for (const [name, spec] of Object.entries(command.options)) {
    options[name] = {
      type: spec.type,
      ...(spec.short ? { short: spec.short } : {}),
      multiple: spec.multiple ?? false,
    };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: false });
  } catch (error) {
    throw new UsageError(`${(error as Error).message.split("\n")[0]} (see 'agentid ${command.name} --help')`);
  }
  const values: OptionValues = {};
  for (const [name, spec] of Object.entries(command.options)) {
    const given = parsed.values[name];
    if (given !== undefined) {
      values[name] = Array.isArray(given) ? given.map(String) : given;
      continue;
    }
    const fromEnv = spec.env ? env[spec.env] : undefined;
    if (fromEnv !== undefined && fromEnv !== "") {
      if (spec.type === "boolean") {
        if (!/^(true|false|1|0)$/i.test(fromEnv)) {
          throw new UsageError(`${spec.env} must be true or false, got '${fromEnv}'`);
        }
        values[name] = /^(true|1)$/i.test(fromEnv);
      } else {
        values[name] = spec.multiple ? fromEnv.split(",").map((s) => s.trim()) : fromEnv;
      }
      continue;
    }
    values[name] = spec.default;
  }
  return { help: parsed.values.help === true, values };
}

/** Reads a string option, or fails with a usage error naming the flag. */
export function stringOption(values: OptionValues, name: string): string | undefined {
  const value = values[name];
  if (value === undefined) return undefined;
  if (typeof value !== "string") throw new UsageError(`--${name} takes a value`);
  return value;
}

/** Reads a TCP port option (0 picks a free port). */
export function portOption(values: OptionValues, name: string): number | undefined {
  const raw = stringOption(values, name);
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) > 65535) {
    throw new UsageError(`--${name} must be a port number from 0 to 65535, got '${raw}'`);
  }
  return Number(raw);
}
