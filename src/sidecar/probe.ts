import { envToFlat, flattenJson, get, mergeLayers } from "./config/flat.ts";
import { resolveListen } from "./config/listen.ts";

const { existsSync, readFileSync } = process.getBuiltinModule("node:fs");

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

// Not `import … from "node:http"`: as an ES module it also loads Node's internal undici (see outbound.ts).
const httpGet = process.getBuiltinModule("node:http").get;

/** The status of a GET, the connection closed after it (no agent: a probe makes one call). */
function statusOf(url: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => req.destroy(new Error(`${url} did not answer in time`)), timeoutMs);
    const req = httpGet(url, { agent: false }, (res) => {
      res.resume();
      res.on("end", () => {
        clearTimeout(timer);
        resolve(res.statusCode ?? 0);
      });
      res.on("error", reject);
    });
    req.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/**
 * Polls /readyz until it answers 200 or the deadline passes; for a postStart hook. Every 25 ms: the pod's
 * app starts only when this returns, and a refused connection to loopback costs next to nothing.
 */
export async function probe(url: string, timeoutMs: number, intervalMs = 25): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await statusOf(url, 2000)) === 200) return true;
    } catch {
      // Not listening yet.
    }
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
