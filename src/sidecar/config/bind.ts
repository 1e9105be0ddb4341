import { bindApis, bindBool } from "./bind-apis.ts";
import { bindAzureAd, type Environment } from "./bind-azuread.ts";
import { children, type FlatConfig, get } from "./flat.ts";
import { resolveListen } from "./listen.ts";
import type { AgentLock, AllowOverrides, ConfigResult, DownstreamApi } from "./types.ts";
import { unreadWarnings } from "./unread.ts";
import { isGuid } from "./values.ts";

/** Microsoft's defaults (1.1.x): overrides on for authenticated routes, off for unauthenticated ones. */
const OVERRIDE_DEFAULTS: AllowOverrides = {
  GetAuthorizationHeader: true,
  GetAuthorizationHeaderUnauthenticated: false,
  CallDownstreamApi: true,
  CallDownstreamApiUnauthenticated: false,
};

const LOG_LEVELS: Record<string, string> = {
  trace: "trace",
  debug: "debug",
  information: "info",
  warning: "warn",
  error: "error",
  critical: "fatal",
  none: "silent",
};

/**
 * `Sidecar:AgentIdentity` (our addition): lock the sidecar to one agent. A configured `FmiPath` on any
 * API would hand out the blueprint's exchange token for any path, so it is refused at start-up under
 * the lock unless `Sidecar:AllowFmiPathOverride` is true.
 */
function bindAgentLock(
  flat: FlatConfig,
  apis: ReadonlyMap<string, DownstreamApi>,
  problems: string[],
  warnings: string[],
): AgentLock | undefined {
  const agentId = get(flat, "Sidecar:AgentIdentity")?.trim();
  const allowBlueprintToken = bindBool(flat, "Sidecar:AllowBlueprintToken", false, problems);
  const allowFmiPathOverride = bindBool(flat, "Sidecar:AllowFmiPathOverride", false, problems);
  if (!agentId) {
    for (const key of ["Sidecar:AllowBlueprintToken", "Sidecar:AllowFmiPathOverride"])
      if (get(flat, key) !== undefined) warnings.push(`${key} has no effect without Sidecar:AgentIdentity`);
    return undefined;
  }
  if (!isGuid(agentId)) {
    problems.push(`Sidecar:AgentIdentity '${agentId}' is not an agent identity's client id (a GUID)`);
    return undefined;
  }
  if (!allowFmiPathOverride) {
    for (const api of apis.values())
      if (api.acquireTokenOptions.fmiPath !== undefined)
        problems.push(
          `DownstreamApis:${api.name}:AcquireTokenOptions:FmiPath is refused while the sidecar is locked to an agent (Sidecar:AgentIdentity) unless Sidecar:AllowFmiPathOverride is true`,
        );
  }
  return { agentId, allowBlueprintToken, allowFmiPathOverride };
}

/**
 * Kestrel's endpoints may have any name (`Kestrel:Endpoints:<name>:Url`); `Http` is only the common
 * one. The sidecar serves one endpoint: `Http` if configured, else the first in name order (warned).
 */
function kestrelUrl(flat: FlatConfig, warnings: string[]): string | undefined {
  const names = children(flat, "Kestrel:Endpoints").filter((n) => get(flat, `Kestrel:Endpoints:${n}:Url`));
  if (names.length === 0) return undefined;
  const http = names.find((n) => n.toLowerCase() === "http");
  const chosen = http ?? [...names].sort()[0]!;
  if (names.length > 1)
    warnings.push(
      `Kestrel:Endpoints has ${names.length} endpoints (${names.join(", ")}); the sidecar listens on '${chosen}' only`,
    );
  return get(flat, `Kestrel:Endpoints:${chosen}:Url`);
}

/**
 * `AllowedHosts` as ASP.NET's host filtering reads it: `;`-separated names, `*.example.com` for any
 * subdomain. `*` (every host, in Microsoft's appsettings template) would turn the DNS-rebinding
 * protection off, so it adds nothing here and is warned about.
 */
function bindAllowedHosts(flat: FlatConfig, problems: string[], warnings: string[]): string[] {
  const raw = get(flat, "AllowedHosts");
  if (!raw) return [];
  const names: string[] = [];
  for (const part of raw.split(";").map((s) => s.trim().toLowerCase())) {
    if (part === "") continue;
    if (part === "*") {
      warnings.push(
        "AllowedHosts '*' is ignored: Host filtering stays on (localhost and loopback addresses); list the names callers use instead",
      );
      continue;
    }
    if (!/^(\*\.)?[a-z0-9.-]+$|^\[?[0-9a-f:.]+\]?$/.test(part)) {
      problems.push(`AllowedHosts: '${part}' is not a host name`);
      continue;
    }
    names.push(part.replace(/^\[|\]$/g, ""));
  }
  return names;
}

export interface BindEnvironment extends Environment {
  ASPNETCORE_ENVIRONMENT?: string;
  ASPNETCORE_URLS?: string;
  ASPNETCORE_HTTP_PORTS?: string;
}

/**
 * Binds and validates the whole configuration. Pure: file checks happen later, when credentials load,
 * so this can be tested with plain maps. Every problem is collected; none stops the others being found.
 */
export function bindConfig(flat: FlatConfig, env: BindEnvironment): ConfigResult {
  const problems: string[] = [];
  const warnings: string[] = [];
  const azureAd = bindAzureAd(flat, env, problems, warnings);
  const apis = bindApis(flat, problems, warnings);
  const allowOverrides = { ...OVERRIDE_DEFAULTS };
  for (const route of Object.keys(OVERRIDE_DEFAULTS) as (keyof AllowOverrides)[]) {
    allowOverrides[route] = bindBool(
      flat,
      `Sidecar:AllowOverrides:${route}`,
      OVERRIDE_DEFAULTS[route],
      problems,
    );
  }
  const allowOutboundRedirects = bindBool(flat, "Sidecar:AllowOutboundRedirects", false, problems);
  const agentLock = bindAgentLock(flat, apis, problems, warnings);
  const allowNonLoopbackCallers = bindBool(flat, "Sidecar:AllowNonLoopbackCallers", false, problems);
  const allowedHosts = bindAllowedHosts(flat, problems, warnings);
  const positive = (key: string, fallback: number): number => {
    const raw = get(flat, key);
    if (raw === undefined || raw.trim() === "") return fallback;
    if (!/^\d+$/.test(raw.trim()) || Number(raw) < 1) {
      problems.push(`${key} must be a positive whole number, got '${raw}'`);
      return fallback;
    }
    return Number(raw);
  };
  const longRunningObo = {
    maxSessions: positive("Sidecar:LongRunningObo:MaxSessions", 1000),
    idleMs: positive("Sidecar:LongRunningObo:IdleTimeoutSeconds", 24 * 3600) * 1000,
  };
  if (env.ASPNETCORE_ENVIRONMENT?.toLowerCase() === "development")
    warnings.push(
      "ASPNETCORE_ENVIRONMENT=Development has no effect here: unlike Microsoft's sidecar, it does not open the sidecar to non-loopback callers; set Sidecar__AllowNonLoopbackCallers=true (and AllowedHosts) to do that (docs/compatibility.md)",
    );
  warnings.push(...unreadWarnings(flat));
  const listen = resolveListen(
    {
      kestrelUrl: kestrelUrl(flat, warnings),
      aspnetcoreUrls: env.ASPNETCORE_URLS,
      aspnetcoreHttpPorts: env.ASPNETCORE_HTTP_PORTS,
    },
    problems,
    warnings,
  );
  const rawLevel = get(flat, "Logging:LogLevel:Default");
  let logLevel: string | undefined;
  if (rawLevel) {
    logLevel = LOG_LEVELS[rawLevel.trim().toLowerCase()];
    if (!logLevel) problems.push(`Logging:LogLevel:Default '${rawLevel}' is not a .NET log level`);
  }
  if (problems.length > 0) return { problems, warnings };
  return {
    problems,
    warnings,
    config: {
      ...azureAd,
      apis,
      allowOverrides,
      allowOutboundRedirects,
      ...(agentLock ? { agentLock } : {}),
      allowNonLoopbackCallers,
      allowedHosts,
      longRunningObo,
      listen,
      ...(logLevel ? { logLevel } : {}),
    },
  };
}
