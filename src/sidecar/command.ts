import { type Command, type OptionValues, portOption, stringOption, UsageError } from "../lib/command.ts";
import { describeTuning, tuningWarning } from "./tuning.ts";

// CommonJS views of the built-ins: their ESM namespaces load modules the sidecar never uses
// (node:fs's promises API, for one), memory the sidecar keeps for its lifetime.
const { readFileSync } = process.getBuiltinModule("node:fs");
const { enableCompileCache } = process.getBuiltinModule("node:module");

function positiveInt(values: OptionValues, name: string): number | undefined {
  const raw = stringOption(values, name);
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < 1)
    throw new UsageError(`--${name} must be a positive integer, got '${raw}'`);
  return Number(raw);
}

export const sidecarCommand: Command = {
  name: "sidecar",
  summary: "Run the token sidecar: Microsoft's Entra SDK auth sidecar API on loopback",
  description: [
    "Reads Microsoft's configuration names (AzureAd__*, DownstreamApis__*, Sidecar__*, Kestrel__Endpoints__Http__Url,",
    "ASPNETCORE_URLS, ASPNETCORE_HTTP_PORTS) from the environment and an optional appsettings.json, validates all of",
    "it and exits 1 listing every problem. Listens on 127.0.0.1:5000 unless configured otherwise. SIGTERM drains",
    "in-flight requests and exits 0. See docs/sidecar.md for every key.",
    `Start it as \`${describeTuning()} …\` (less memory; see docs/sidecar.md); it warns when started without.`,
  ].join("\n"),
  options: {
    config: {
      type: "string",
      help: "appsettings.json to read (optional when the default file is absent)",
      default: "appsettings.json",
      env: "AGENTID_SIDECAR_CONFIG",
    },
    "ca-file": {
      type: "string",
      help: "PEM file of extra CA certificates to trust for Entra and downstream APIs (added to the system roots)",
      env: "AGENTID_SIDECAR_CA_FILE",
    },
    "metrics-port": {
      type: "string",
      help: "serve Prometheus metrics at /metrics on this separate port (off unless set)",
      env: "AGENTID_SIDECAR_METRICS_PORT",
    },
    "metrics-host": {
      type: "string",
      help: "address the metrics port binds",
      default: "0.0.0.0",
      env: "AGENTID_SIDECAR_METRICS_HOST",
    },
    "log-level": {
      type: "string",
      help: "fatal|error|warn|info|debug|trace|silent; overrides Logging__LogLevel__Default",
      env: "AGENTID_SIDECAR_LOG_LEVEL",
    },
    "cache-max-entries": {
      type: "string",
      help: "most tokens kept in memory; least recently used go first",
      default: "10000",
      env: "AGENTID_SIDECAR_CACHE_MAX_ENTRIES",
    },
    "downstream-timeout": {
      type: "string",
      help: "seconds to wait for a downstream API before answering 504",
      default: "30",
      env: "AGENTID_SIDECAR_DOWNSTREAM_TIMEOUT",
    },
    "entra-timeout": {
      type: "string",
      help: "seconds to wait for one request to Entra",
      default: "10",
      env: "AGENTID_SIDECAR_ENTRA_TIMEOUT",
    },
    probe: {
      type: "boolean",
      help: "do not serve: wait until the local sidecar answers ready, exit 0 (or 1 on timeout); for a postStart hook",
    },
    "probe-timeout": { type: "string", help: "seconds --probe waits", default: "60" },
  },
  async run(values) {
    const configPath = stringOption(values, "config");
    const explicitConfig = configPath !== "appsettings.json" ? configPath : undefined;
    if (values.probe === true) {
      const { probe, probeUrl } = await import("./probe.ts");
      const url = probeUrl(process.env, explicitConfig);
      const ok = await probe(url, (positiveInt(values, "probe-timeout") ?? 60) * 1000);
      if (!ok) console.error(`agentid sidecar --probe: ${url} did not answer ready in time`);
      return ok ? 0 : 1;
    }
    // The logger (pino) is loaded only here: the --probe above runs as the pod's postStart hook, and the
    // app waits for it.
    const { createLogger, isLogLevel } = await import("../lib/log.ts");
    const level = stringOption(values, "log-level");
    if (level !== undefined && !isLogLevel(level))
      throw new UsageError(`--log-level '${level}' is not a log level`);
    const caFile = stringOption(values, "ca-file");
    let extraCaPem: string | undefined;
    if (caFile) {
      try {
        extraCaPem = readFileSync(caFile, "utf8");
      } catch {
        throw new UsageError(`--ca-file ${caFile} cannot be read`);
      }
    }
    const metricsPort = portOption(values, "metrics-port");
    // Compiled (and type-stripped) modules are cached on disk: a restarted sidecar is ready sooner and
    // smaller. Silently off where the temp directory is read-only; NODE_DISABLE_COMPILE_CACHE=1 turns it off.
    enableCompileCache();
    const { startSidecar, SidecarConfigError } = await import("./start.ts");
    const logger = createLogger({ name: "sidecar", ...(level && isLogLevel(level) ? { level } : {}) });
    const untuned = tuningWarning(process);
    if (untuned) logger.warn(untuned);
    let running: Awaited<ReturnType<typeof startSidecar>>;
    try {
      running = await startSidecar({
        env: process.env,
        ...(explicitConfig ? { appSettingsPath: explicitConfig } : {}),
        logger,
        ...(extraCaPem ? { extraCaPem } : {}),
        ...(metricsPort !== undefined
          ? { metricsPort, metricsHost: stringOption(values, "metrics-host") ?? "0.0.0.0" }
          : {}),
        cacheMaxEntries: positiveInt(values, "cache-max-entries") ?? 10_000,
        downstreamTimeoutMs: (positiveInt(values, "downstream-timeout") ?? 30) * 1000,
        entraTimeoutMs: (positiveInt(values, "entra-timeout") ?? 10) * 1000,
      });
    } catch (error) {
      if (error instanceof SidecarConfigError) {
        console.error(`agentid sidecar: ${error.message}`);
        return 1;
      }
      throw error;
    }
    if (level === undefined && running.config.logLevel && isLogLevel(running.config.logLevel))
      logger.level = running.config.logLevel;
    return new Promise<number>((resolve) => {
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal }, "draining in-flight requests");
        running.close().then(
          () => {
            logger.info("sidecar stopped");
            logger.flush();
            resolve(0);
          },
          (error: unknown) => {
            logger.error({ err: (error as Error).message }, "shutdown failed");
            resolve(1);
          },
        );
      };
      process.once("SIGTERM", () => stop("SIGTERM"));
      process.once("SIGINT", () => stop("SIGINT"));
    });
  },
};
