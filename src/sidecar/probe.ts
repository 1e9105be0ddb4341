import { request } from "undici";
import { loadConfig } from "./config/load.ts";

/** Where the local sidecar listens, from the same configuration it reads (wildcards → loopback). */
export function probeUrl(env: NodeJS.ProcessEnv, appSettingsPath?: string): string {
  const { config } = loadConfig(env, appSettingsPath);
  const listen = config?.listen ?? { host: "127.0.0.1", port: 5000 };
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
