/**
 * ASP.NET Core-style flat configuration: every value lives under a ':'-separated key, matched
 * case-insensitively, with environment variables ('__' for ':') layered over appsettings.json, as
 * Microsoft's sidecar reads them.
 */
export interface FlatConfig {
  /** Lower-cased key → the key as first written and its value. */
  readonly entries: ReadonlyMap<string, { key: string; value: string }>;
}

/** Sections an environment variable may configure; other variables are not configuration. */
const ENV_SECTIONS = ["azuread", "downstreamapis", "sidecar", "kestrel", "logging"];

export function flattenJson(
  value: unknown,
  prefix = "",
  out = new Map<string, string>(),
): Map<string, string> {
  if (Array.isArray(value)) {
    value.forEach((item, i) => {
      flattenJson(item, prefix ? `${prefix}:${i}` : String(i), out);
    });
  } else if (value !== null && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) flattenJson(v, prefix ? `${prefix}:${k}` : k, out);
  } else if (value !== null && value !== undefined && prefix) {
    // .NET writes JSON booleans as "True"/"False"; the binder parses both casings, and so do we.
    out.set(prefix, String(value));
  }
  return out;
}

export function envToFlat(env: NodeJS.ProcessEnv): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) continue;
    const key = name.replaceAll("__", ":");
    const section = key.split(":", 1)[0]?.toLowerCase() ?? "";
    if (ENV_SECTIONS.includes(section) && key.includes(":")) out.set(key, value);
    // ASP.NET's host filtering reads the top-level AllowedHosts.
    else if (key.toLowerCase() === "allowedhosts") out.set(key, value);
  }
  return out;
}

/** Later layers win, as in ASP.NET Core (appsettings.json first, then environment variables). */
export function mergeLayers(...layers: ReadonlyMap<string, string>[]): FlatConfig {
  const entries = new Map<string, { key: string; value: string }>();
  for (const layer of layers) {
    for (const [key, value] of layer) entries.set(key.toLowerCase(), { key, value });
  }
  return { entries };
}

export function get(config: FlatConfig, key: string): string | undefined {
  return config.entries.get(key.toLowerCase())?.value;
}

/** Distinct child names directly under `prefix`, in the casing first seen, in numeric order if numeric. */
export function children(config: FlatConfig, prefix: string): string[] {
  const lower = `${prefix.toLowerCase()}:`;
  const seen = new Map<string, string>();
  for (const [k, { key }] of config.entries) {
    if (!k.startsWith(lower)) continue;
    const name = key.slice(lower.length).split(":", 1)[0] ?? "";
    if (name !== "" && !seen.has(name.toLowerCase())) seen.set(name.toLowerCase(), name);
  }
  const names = [...seen.values()];
  if (names.every((n) => /^\d+$/.test(n))) names.sort((a, b) => Number(a) - Number(b));
  return names;
}

/** True when anything at all is configured at or below `key`. */
export function has(config: FlatConfig, key: string): boolean {
  const lower = key.toLowerCase();
  if (config.entries.has(lower)) return true;
  for (const k of config.entries.keys()) if (k.startsWith(`${lower}:`)) return true;
  return false;
}
