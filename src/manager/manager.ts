import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { FastifyInstance } from "fastify";
import { createKubeClient, type KubeClient } from "../kube/client.ts";
import { fenceClient } from "../kube/fence.ts";
import type { KubeConfigLike } from "../kube/kubeconfig.ts";
import { createLeaderElector, type LeaderElector } from "../kube/leader.ts";
import type { Logger } from "../lib/log.ts";
import { scrubTokens } from "../lib/log.ts";
import { type OperatorOptions, operatorComponent } from "../operator/component.ts";
import { createSharedCaches } from "./caches.ts";
import type { ComponentFactory, ManagerComponent, ManagerContext } from "./component.ts";
import { serverUrl, startHealthServer, startMetricsServer } from "./health.ts";
import { createManagerMetrics, type ManagerMetrics, resourceOf } from "./metrics.ts";
import { createMetricsAuthorizer } from "./metrics-auth.ts";

/**
 * `agentid manager`: one process, one informer cache, one leader election, several components (the
 * operator, the admission webhook). The manager owns the client, the caches, the Lease, the health and
 * metrics server; components plug in through `ComponentFactory` (component.ts, docs/manager.md).
 */

export interface ManagerOptions extends OperatorOptions {
  kubeConfig: KubeConfigLike;
  logger: Logger;
  leaseNamespace: string;
  leaseName?: string;
  /** Unique per replica; default hostname plus a random suffix. */
  identity?: string;
  leaseDurationSeconds?: number;
  renewDeadlineSeconds?: number;
  retryPeriodSeconds?: number;
  /** Deadline of the one attempt to release the Lease on stop (default 2 s). */
  leaseReleaseTimeoutMs?: number;
  /** `/healthz` and `/readyz` server; off when absent. Port 0 picks a free port. */
  health?: { host: string; port: number };
  /**
   * `/metrics` server; off when absent. Without `secure` only on loopback; with it, HTTPS and every
   * request checked by TokenReview + SubjectAccessReview (docs/manager.md).
   */
  metrics?: { host: string; port: number; secure?: boolean | { certPem: string; keyPem: string } };
  resyncIntervalMs?: number;
  /** Components besides the operator (e.g. the admission webhook), built in this order after it. */
  components?: ComponentFactory[];
}

export interface RunningManager {
  /** Base URL of the health server, when enabled. */
  url?: string;
  /** Base URL of the metrics server, when enabled (https when secure). */
  metricsUrl?: string;
  identity: string;
  isLeader(): boolean;
  hasSynced(): boolean;
  metrics: ManagerMetrics;
  /** Requests sent to the API server so far, by "VERB resource" (watch streams included). */
  requestCounts(): Record<string, number>;
  /**
   * Stops everything: steps down and releases the Lease (one attempt, short deadline), stops and closes
   * the components, the caches, the servers and the client. Not bounded by itself: a component may take
   * as long as its work does; the command bounds it with --shutdown-grace-period and `pendingShutdown`.
   */
  stop(): Promise<void>;
  /** What `stop()` is still waiting for, e.g. ["stopping operator"]; empty before stop and after it. */
  pendingShutdown(): string[];
}

/** Not leading: every fenced request fails at once. */
const NO_TERM = AbortSignal.abort();

function describe(error: unknown): string {
  return scrubTokens(error instanceof Error ? error.message : String(error));
}

export async function startManager(options: ManagerOptions): Promise<RunningManager> {
  const log = options.logger;
  const replica = options.identity ?? `${hostname()}-${randomBytes(4).toString("hex")}`;
  const counts: Record<string, number> = {};
  const metrics = createManagerMetrics();
  const kube: KubeClient = createKubeClient(options.kubeConfig, {
    onRequest(info) {
      const resource = resourceOf(info.path);
      const verb = info.watch ? "WATCH" : info.method;
      const key = `${verb} ${resource}`;
      counts[key] = (counts[key] ?? 0) + 1;
      metrics.kubeRequests.inc({ verb, resource, code: String(info.status) });
    },
  });
  const caches = createSharedCaches({
    kubeConfig: options.kubeConfig,
    client: kube,
    logger: log,
    ...(options.resyncIntervalMs !== undefined ? { resyncIntervalMs: options.resyncIntervalMs } : {}),
    onWatchRestart: (resource, reason) => metrics.watchRestarts.inc({ resource, reason }),
  });
  /** The signal of the current leadership term (aborted by the elector when the term ends). */
  let term: AbortSignal = NO_TERM;
  const context: ManagerContext = {
    kubeConfig: options.kubeConfig,
    kube,
    leaderKube: fenceClient(kube, () => term),
    caches,
    logger: log,
    registry: metrics.registry,
    replica,
    isLeader: () => !term.aborted,
  };
  /** What a stop is waiting for, for the command's log line when its grace period ends. */
  const pending = new Set<string>();
  async function during<T>(what: string, work: () => Promise<T>): Promise<T> {
    pending.add(what);
    try {
      return await work();
    } finally {
      pending.delete(what);
    }
  }
  const factories = [operatorComponent(options), ...(options.components ?? [])];
  const components: ManagerComponent[] = [];
  for (const factory of factories) components.push(await factory(context));
  const leaders = components.filter((c) => c.needsLeaderElection);
  const everywhere = components.filter((c) => !c.needsLeaderElection);

  await caches.start();
  log.info({ namespace: options.namespace ?? "(all)" }, "caches synced");

  const shutdown = new AbortController();
  for (const c of everywhere) await c.start(shutdown.signal);

  const elector: LeaderElector = createLeaderElector({
    kubeConfig: options.kubeConfig,
    client: kube,
    namespace: options.leaseNamespace,
    name: options.leaseName ?? "agentid-manager",
    identity: replica,
    logger: log,
    ...(options.leaseDurationSeconds ? { leaseDurationSeconds: options.leaseDurationSeconds } : {}),
    ...(options.renewDeadlineSeconds ? { renewDeadlineSeconds: options.renewDeadlineSeconds } : {}),
    ...(options.retryPeriodSeconds ? { retryPeriodSeconds: options.retryPeriodSeconds } : {}),
    ...(options.leaseReleaseTimeoutMs ? { releaseTimeoutMs: options.leaseReleaseTimeoutMs } : {}),
  });
  /** Start of the current term's components; a step-down waits for it before stopping them. */
  let starting: Promise<void> = Promise.resolve();
  elector.run({
    onStartedLeading(signal) {
      term = signal;
      log.info({ identity: replica }, "leading: starting leader-only components");
      metrics.leader.set(1);
      starting = (async () => {
        for (const c of leaders) {
          if (signal.aborted) return;
          try {
            await c.start(signal);
          } catch (error) {
            log.error({ component: c.name, err: describe(error) }, "component failed to start");
          }
        }
      })();
    },
    async onStoppedLeading() {
      // The elector aborted the term's signal already: fenced requests fail from here on. Drain every
      // leader-only worker before the elector may campaign again.
      metrics.leader.set(0);
      log.info({ identity: replica }, "stopped leading: draining leader-only components");
      await starting;
      await Promise.all(
        leaders.map((c) =>
          during(`stopping ${c.name}`, () => c.stop()).catch((error: unknown) =>
            log.error({ component: c.name, err: describe(error) }, "stop failed"),
          ),
        ),
      );
      log.info({ identity: replica }, "leader-only components drained");
    },
  });

  const ready = () => {
    if (!caches.hasSynced()) return { ok: false, reason: "caches not synced" };
    const waiting = components.filter((c) => !c.ready()).map((c) => c.name);
    return waiting.length > 0 ? { ok: false, reason: `not ready: ${waiting.join(", ")}` } : { ok: true };
  };
  let server: FastifyInstance | undefined;
  let metricsServer: FastifyInstance | undefined;
  if (options.health) server = await startHealthServer(options.health, { ready });
  if (options.metrics) {
    const { host, port, secure } = options.metrics;
    metricsServer = await startMetricsServer({
      host,
      port,
      registry: metrics.registry,
      ...(secure
        ? {
            secure: {
              authorize: createMetricsAuthorizer({ kube }),
              ...(typeof secure === "object" ? secure : {}),
            },
          }
        : {}),
    });
  }
  return {
    ...(server ? { url: serverUrl(server) } : {}),
    ...(metricsServer
      ? { metricsUrl: serverUrl(metricsServer, options.metrics?.secure ? "https" : "http") }
      : {}),
    identity: replica,
    isLeader: () => elector.isLeader(),
    hasSynced: () => caches.hasSynced(),
    metrics,
    requestCounts: () => ({ ...counts }),
    async stop() {
      await during("stepping down and releasing the lease", () => elector.stop());
      shutdown.abort();
      for (const c of everywhere) await during(`stopping ${c.name}`, () => c.stop()).catch(() => {});
      caches.stop();
      for (const c of components)
        if (c.close)
          await during(`closing ${c.name}`, () => c.close?.() ?? Promise.resolve()).catch(() => {});
      if (server) await during("closing the health server", () => server.close());
      if (metricsServer) await during("closing the metrics server", () => metricsServer.close());
      // Every component has stopped: what is still in flight (a best-effort event, a metrics
      // TokenReview) is abandoned after a second instead of waiting for a silent API server's timeout.
      await during("closing the API client", () => kube.close({ forceAfterMs: 1_000 }));
    },
    pendingShutdown: () => [...pending],
  };
}
