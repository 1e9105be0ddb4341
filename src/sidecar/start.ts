import type { AddressInfo } from "node:net";
import Fastify, { type FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { createLogger } from "../lib/log.ts";
import { loadMsal } from "./acquire/msal.ts";
import { createNetworkClient } from "./acquire/network.ts";
import type { RetryPolicy } from "./acquire/retry.ts";
import { TokenService } from "./acquire/service.ts";
import { formatProblems, loadConfig } from "./config/load.ts";
import type { SidecarConfig } from "./config/types.ts";
import { loadCredentials } from "./credentials.ts";
import { createDownstreamClient } from "./downstream.ts";
import { HostFilter } from "./hosts.ts";
import { InboundValidator } from "./inbound.ts";
import type { MetricsSink, PromMetrics } from "./metrics.ts";
import { createOutbound, proxyVariables } from "./outbound.ts";
import type { RouteContext } from "./routes/context.ts";
import { buildServer, NO_SCHEMA_COMPILERS } from "./server.ts";
import { TokenCache } from "./tokens/cache.ts";
import { SessionStore } from "./tokens/sessions.ts";

export interface StartOptions {
  env: NodeJS.ProcessEnv;
  appSettingsPath?: string;
  logger?: Logger;
  /** PEM of extra CAs trusted for Entra and downstream calls (added to the system roots). */
  extraCaPem?: string;
  /** Serve Prometheus metrics on this port (off when undefined). */
  metricsPort?: number;
  metricsHost?: string;
  cacheMaxEntries?: number;
  entraTimeoutMs?: number;
  downstreamTimeoutMs?: number;
  maxDownstreamResponseBytes?: number;
  retry?: RetryPolicy;
  /** Minimum time between JWKS downloads for an unknown key id (default 5 s). */
  jwksCooldownMs?: number;
  /** The token cache's clock (default Date.now): tests move it instead of waiting for tokens to age. */
  now?: () => number;
}

export interface RunningSidecar {
  url: string;
  port: number;
  metricsUrl?: string;
  config: SidecarConfig;
  /** Stops accepting, lets in-flight requests finish, then releases everything. */
  close(): Promise<void>;
}

/** Start-up failed because of the configuration; `message` lists every problem. */
export class SidecarConfigError extends Error {
  override name = "SidecarConfigError";
  readonly problems: string[];
  constructor(problems: string[]) {
    super(formatProblems(problems));
    this.problems = problems;
  }
}

export async function startSidecar(options: StartOptions): Promise<RunningSidecar> {
  const { config, problems, warnings } = loadConfig(options.env, options.appSettingsPath);
  if (!config) throw new SidecarConfigError(problems);
  const logger = options.logger ?? createLogger({ name: "sidecar" });
  if (config.logLevel && !options.logger) logger.level = config.logLevel;
  for (const w of warnings) logger.warn(w);

  const outbound = createOutbound({
    ...(options.extraCaPem ? { extraCaPem: options.extraCaPem } : {}),
    proxyEnv: options.env,
  });
  const proxies = proxyVariables(options.env);
  if (proxies) {
    // The proxy's URL may carry a user and password: log the variables' names and the hosts only.
    const hostOf = (v: string | undefined) => {
      try {
        return v ? new URL(v).host : undefined;
      } catch {
        return "(not a URL)";
      }
    };
    logger.info(
      {
        https: hostOf(proxies.https_proxy ?? proxies.HTTPS_PROXY),
        http: hostOf(proxies.http_proxy ?? proxies.HTTP_PROXY),
        noProxy: proxies.no_proxy ?? proxies.NO_PROXY,
      },
      "outbound requests go through the configured proxy",
    );
  }
  // prom-client is loaded only when metrics are asked for.
  let prom: PromMetrics | undefined;
  if (options.metricsPort !== undefined)
    prom = (await import("./metrics.ts")).createPromMetrics(() => cache.size);
  const metrics: MetricsSink | undefined = prom?.sink;
  const networkClient = createNetworkClient({
    outbound,
    timeoutMs: options.entraTimeoutMs ?? 10_000,
    ...(metrics
      ? { observe: (_url: string, status: number, seconds: number) => metrics.entraRequest(status, seconds) }
      : {}),
  });
  const { loaded, problems: credentialProblems } = await loadCredentials(config.credentials, networkClient, {
    outbound,
    instance: config.instance,
    tenantId: config.tenantId,
    env: options.env,
    logger,
  });
  // No credential configured at all is a /Validate-only deployment; configured ones that all fail are not.
  if (loaded.length === 0 && config.credentials.length > 0) {
    outbound.close();
    throw new SidecarConfigError(
      credentialProblems.length > 0 ? credentialProblems : ["no usable client credential"],
    );
  }
  for (const p of credentialProblems) logger.warn(`${p}; using ${loaded[0]?.label}`);

  const cache = new TokenCache({
    maxEntries: options.cacheMaxEntries ?? 10_000,
    ...(options.now ? { now: options.now } : {}),
    // No event callbacks at all without metrics: a cache hit then calls nothing.
    ...(metrics
      ? {
          events: {
            hit: () => metrics.cacheEvent("hit"),
            miss: () => metrics.cacheEvent("miss"),
            refresh: (outcome: "ok" | "error") => metrics.cacheEvent(`refresh_${outcome}`),
            evict: () => metrics.cacheEvent("evict"),
          },
        }
      : {}),
    onRefreshError: (_key, error) =>
      logger.warn(
        { err: error instanceof Error ? error.message : "unknown" },
        "background token refresh failed; serving the cached token",
      ),
  });
  const sessions = new SessionStore(config.longRunningObo);
  const sessionSweep = setInterval(() => sessions.sweep(), 60_000);
  sessionSweep.unref();
  const tokens = new TokenService({
    sessions,
    instance: config.instance,
    clientId: config.clientId,
    credentials: loaded,
    networkClient,
    logger,
    cache,
    ...(metrics ? { metrics } : {}),
    ...(options.retry ? { retry: options.retry } : {}),
  });
  const ctx: RouteContext = {
    config,
    tokens,
    inbound: new InboundValidator({
      instance: config.instance,
      tenantId: config.tenantId,
      audiences: config.audiences,
      outbound,
      ...(options.jwksCooldownMs !== undefined ? { jwksCooldownMs: options.jwksCooldownMs } : {}),
    }),
    downstream: createDownstreamClient({
      outbound,
      allowRedirects: config.allowOutboundRedirects,
      timeoutMs: options.downstreamTimeoutMs ?? 30_000,
      maxResponseBytes: options.maxDownstreamResponseBytes ?? 16 * 1024 * 1024,
    }),
    state: { ready: false, shuttingDown: false },
    log: logger,
  };
  if (config.allowNonLoopbackCallers)
    logger.warn(
      { listen: config.listen, allowedHosts: config.allowedHosts },
      "Sidecar:AllowNonLoopbackCallers is true: any host that can reach this address can get this sidecar's tokens; keep it off the network (a private network of containers only) and list the names callers use in AllowedHosts",
    );
  const app = buildServer(ctx, {
    callers: { allowNonLoopback: config.allowNonLoopbackCallers, hosts: new HostFilter(config.allowedHosts) },
    ...(metrics ? { metrics } : {}),
  });
  await app.listen({ host: config.listen.host, port: config.listen.port });
  const port = (app.server.address() as AddressInfo).port;
  const host = config.listen.host.includes(":") ? `[${config.listen.host}]` : config.listen.host;
  const url = `http://${host === "0.0.0.0" ? "127.0.0.1" : host === "[::]" ? "[::1]" : host}:${port}`;

  let metricsApp: FastifyInstance | undefined;
  let metricsUrl: string | undefined;
  if (options.metricsPort !== undefined && prom) {
    const registry = prom.registry;
    // No schemas here either, so Ajv is not loaded for it.
    const mapp = Fastify({ logger: false, schemaController: NO_SCHEMA_COMPILERS });
    metricsApp = mapp;
    mapp.get("/metrics", async (_req, reply) =>
      reply.type(registry.contentType).send(await registry.metrics()),
    );
    await mapp.listen({ host: options.metricsHost ?? "0.0.0.0", port: options.metricsPort });
    const mport = (mapp.server.address() as AddressInfo).port;
    metricsUrl = `http://127.0.0.1:${mport}/metrics`;
  }
  // Load msal-node before the first token
  // request needs them, but after the first readiness answer: loading blocks the event loop for a few
  // hundred milliseconds, which would otherwise delay that answer (the pod's start). Without a probe, a
  // second after listening; any request that comes first loads what it needs itself.
  let warmed = false;
  const warmUp = () => {
    if (warmed) return;
    warmed = true;
    clearTimeout(warmTimer);
    loadMsal().catch((error: unknown) =>
      logger.error({ err: (error as Error).message }, "cannot load msal-node"),
    );
  };
  const warmTimer = setTimeout(warmUp, 1000);
  warmTimer.unref();
  ctx.warmUp = warmUp;
  ctx.state.ready = true;
  logger.info(
    {
      url,
      metrics: metricsUrl,
      apis: [...config.apis.keys()],
      credential: loaded[0]?.label,
      // Since the process started: the sidecar's own part of a pod's start (docs/cluster.md).
      readyAfterMs: Math.round(performance.now()),
    },
    "sidecar ready",
  );

  return {
    url,
    port,
    config,
    ...(metricsUrl ? { metricsUrl } : {}),
    async close() {
      ctx.state.shuttingDown = true;
      clearTimeout(warmTimer);
      // Connections that turn idle while draining are closed too (Node only closes those idle at the start).
      const sweeper = setInterval(() => app.server.closeIdleConnections(), 100);
      try {
        await app.close();
      } finally {
        clearInterval(sweeper);
      }
      await metricsApp?.close();
      clearInterval(sessionSweep);
      cache.close();
      outbound.close();
    },
  };
}
