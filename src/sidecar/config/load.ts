import { bindConfig } from "./bind.ts";
import { envToFlat, flattenJson, mergeLayers } from "./flat.ts";
import type { ConfigResult } from "./types.ts";

// The CommonJS view of node:fs: its ESM namespace loads the promises API too (see server.ts).
const { existsSync, readFileSync } = process.getBuiltinModule("node:fs");

type JsoncParse = (
  text: string,
  errors: { error: number; offset: number; length: number }[],
  options: { allowTrailingComma: boolean; disallowComments: boolean; allowEmptyContent: boolean },
) => unknown;

/**
 * appsettings.json as .NET reads it: JSON with `//` and `/* *\/` comments and trailing commas
 * (Microsoft's templates have both). jsonc-parser (VS Code's) is loaded only when a file is read.
 * Errors name the line and column, never the text there (it may be a secret).
 */
export function parseAppSettings(text: string): { value?: unknown; error?: string } {
  const { parse } = process.getBuiltinModule("node:module").createRequire(import.meta.url)(
    "jsonc-parser",
  ) as {
    parse: JsoncParse;
  };
  const errors: { error: number; offset: number; length: number }[] = [];
  const value = parse(text, errors, {
    allowTrailingComma: true,
    disallowComments: false,
    allowEmptyContent: true,
  });
  const first = errors[0];
  if (first) {
    const before = text.slice(0, first.offset).split("\n");
    return { error: `not valid JSON at line ${before.length}, column ${(before.at(-1)?.length ?? 0) + 1}` };
  }
  return { value: value ?? {} };
}

/**
 * Reads appsettings.json (if present) and the environment, and binds them. A named file that is
 * missing or not JSON is a problem like any other; the default `appsettings.json` is optional.
 */
export function loadConfig(env: NodeJS.ProcessEnv, appSettingsPath?: string): ConfigResult {
  const path = appSettingsPath ?? "appsettings.json";
  let fileLayer = new Map<string, string>();
  const fileProblems: string[] = [];
  if (existsSync(path)) {
    const parsed = parseAppSettings(readFileSync(path, "utf8"));
    if (parsed.error !== undefined) fileProblems.push(`${path}: ${parsed.error}`);
    else fileLayer = flattenJson(parsed.value);
  } else if (appSettingsPath !== undefined) {
    fileProblems.push(`${appSettingsPath}: file not found`);
  }
  const result = bindConfig(mergeLayers(fileLayer, envToFlat(env)), env);
  if (fileProblems.length === 0) return result;
  return { problems: [...fileProblems, ...result.problems], warnings: result.warnings };
}

export function formatProblems(problems: string[]): string {
  return `the sidecar configuration has ${problems.length} problem${problems.length === 1 ? "" : "s"}:\n${problems
    .map((p) => `  - ${p}`)
    .join("\n")}`;
}
