import { existsSync, readFileSync } from "node:fs";
import { request } from "undici";
import { envToFlat, flattenJson, get, mergeLayers } from "./config/flat.ts";
import { resolveListen } from "./config/listen.ts";

/**
 * Where the local sidecar listens, from the same listen settings it reads (wildcards → loopback).
 * Only the listen address is read, so a probe container needs none of the sidecar's other settings.
 */
export function probeUrl(env: NodeJS.ProcessEnv, appSettingsPath = "appsettings.json"): string {
  let fileLayer = new Map<string, string>();
  if (existsSync(appSettingsPath)) {
    try {
      fileLayer = flattenJson(JSON.parse(readFileSync(appSettingsPath, "utf8")));
    } catch {
      // The sidecar itself reports a broken file; the probe falls back to the environment.
    }
  }
  const flat = mergeLayers(fileLayer, envToFlat(env));
  const listen = resolveListen(
    {
      kestrelUrl: get(flat, "Kestrel:Endpoints:Http:Url"),
      aspnetcoreUrls: env.ASPNETCORE_URLS,
      aspnetcoreHttpPorts: env.ASPNETCORE_HTTP_PORTS,
    },
    [],
    [],
  );
  let host = listen.host;
  if (host === "0.0.0.0") host = "127.0.0.1";
  else if (host === "::") host = "::1";
  return `http://${host.includes(":") ? `[${host}]` : host}:${listen.port}/readyz`;
}

/** Polls /readyz until it answers 200 or the deadline passes; for a postStart hook. */
export async function probe(url: string, timeoutMs: number, intervalMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const response = await request(url, { signal: AbortSignal.timeout(2000) });
      await response.body.dump();
      if (response.statusCode === 200) return true;
    } catch {
      // Not listening yet.
    }
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
