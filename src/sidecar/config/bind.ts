import { bindApis, bindBool } from "./bind-apis.ts";
import { bindAzureAd, type Environment } from "./bind-azuread.ts";
import { type FlatConfig, get } from "./flat.ts";
import { resolveListen } from "./listen.ts";
import type { AllowOverrides, ConfigResult } from "./types.ts";

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

export interface BindEnvironment extends Environment {
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
  const listen = resolveListen(
    {
      kestrelUrl: get(flat, "Kestrel:Endpoints:Http:Url"),
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
      listen,
      ...(logLevel ? { logLevel } : {}),
    },
  };
}
