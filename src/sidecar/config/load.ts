import { bindConfig } from "./bind.ts";
import { envToFlat, flattenJson, mergeLayers } from "./flat.ts";
import type { ConfigResult } from "./types.ts";

// The CommonJS view of node:fs: its ESM namespace loads the promises API too (see server.ts).
const { existsSync, readFileSync } = process.getBuiltinModule("node:fs");

/**
 * Reads appsettings.json (if present) and the environment, and binds them. A named file that is
 * missing or not JSON is a problem like any other; the default `appsettings.json` is optional.
 */
export function loadConfig(env: NodeJS.ProcessEnv, appSettingsPath?: string): ConfigResult {
  const path = appSettingsPath ?? "appsettings.json";
  let fileLayer = new Map<string, string>();
  const fileProblems: string[] = [];
  if (existsSync(path)) {
    try {
      fileLayer = flattenJson(JSON.parse(readFileSync(path, "utf8")));
    } catch {
      // The parser's message quotes the text around the error, which may be a secret: leave it out.
      fileProblems.push(`${path}: not valid JSON`);
    }
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
