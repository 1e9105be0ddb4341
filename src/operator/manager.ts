import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import Fastify, { type FastifyInstance } from "fastify";
import type { Dispatcher } from "undici";
import { API_VERSION, PLURAL } from "../api/constants.ts";
import type { AgentIdentity, AgentIdentityBlueprint } from "../api/types.ts";
import { createKubeClient, type KubeClient } from "../kube/client.ts";
import { createInformer, type Informer } from "../kube/informer.ts";
import type { KubeConfigLike } from "../kube/kubeconfig.ts";
import { createLeaderElector, type LeaderElector } from "../kube/leader.ts";
import { createWorkQueue, type WorkQueue } from "../kube/queue.ts";
import { type KubeObject, keyOf } from "../kube/store.ts";
import type { Logger } from "../lib/log.ts";
import { scrubTokens } from "../lib/log.ts";
import { blueprintPath, createBlueprintReconciler } from "./blueprint-reconciler.ts";
import { createEventSink } from "./events.ts";
import { createGraphClient, type GraphOptions } from "./graph.ts";
import { outboundDispatcher } from "./https.ts";
import { createIssuerSource } from "./issuer.ts";
import { createManagerMetrics, type ManagerMetrics, resourceOf } from "./metrics.ts";
import { createReconciler, type NamespaceObject } from "./reconciler.ts";
import { DEFAULT_VERIFICATION_POLICY, type VerificationPolicy } from "./schedule.ts";
import {
  SERVICE_ACCOUNT_SELECTOR,
  type ServiceAccountObject,
  serviceAccountPath,
} from "./service-account.ts";
import { createVerifier } from "./verify.ts";

export interface ManagerOptions {
  kubeConfig: KubeConfigLike;
  logger: Logger;
  /** Watch one namespace only; all namespaces when absent. */
  namespace?: string;
  leaseNamespace: string;
  leaseName?: string;
  /** Unique per replica; default hostname plus a random suffix. */
  identity?: string;
  leaseDurationSeconds?: number;
  renewDeadlineSeconds?: number;
  retryPeriodSeconds?: number;
  /** Health and metrics server; off when absent. Port 0 picks a free port. */
  health?: { host: string; port: number };
  verify?: boolean;
  verificationPolicy?: VerificationPolicy;
  /** Service-account issuer override (else discovered from the API server). */
  issuer?: string;
  /** Extra CAs trusted for Entra and Graph (e.g. a local emulator's). */
  caPems?: string[];
  /** Authority hosts a blueprint with cloud Custom may name (--allowed-authority-hosts); none by default. */
  allowedAuthorityHosts?: string[];
  /** Graph mode; off when absent. */
  graph?: Omit<GraphOptions, "dispatcher">;
  /** Wait after writing a Graph credential before verifying it (default 15 s). */
  graphPropagationMs?: number;
  /** Re-check Graph-mode credentials this often (default 10 min). */
  graphRecheckMs?: number;
  concurrency?: number;
  resyncIntervalMs?: number;
}

export interface RunningManager {
  /** Base URL of the health and metrics server, when enabled. */
  url?: string;
  identity: string;
  /** The shared AgentIdentity cache (read-only use), e.g. for the admission webhook in the same process. */
  identities: Pick<Informer<AgentIdentity>, "get" | "list" | "hasSynced">;
  /** The shared AgentIdentityBlueprint cache (read-only use), for the webhook. */
  blueprints: Pick<Informer<AgentIdentityBlueprint>, "get" | "list" | "hasSynced">;
  isLeader(): boolean;
  hasSynced(): boolean;
  metrics: ManagerMetrics;
  /** Requests sent to the API server so far, by "VERB resource" (watch streams included). */
  requestCounts(): Record<string, number>;
  stop(): Promise<void>;
}

function identitiesPath(namespace?: string): string {
  return namespace
    ? `/apis/${API_VERSION}/namespaces/${encodeURIComponent(namespace)}/${PLURAL}`
    : `/apis/${API_VERSION}/${PLURAL}`;
}

export async function startManager(options: ManagerOptions): Promise<RunningManager> {
  const log = options.logger;
  const replica = options.identity ?? `${hostname()}-${randomBytes(4).toString("hex")}`;
  let queue: WorkQueue | undefined;
  const counts: Record<string, number> = {};
  // Every metric source is wired before the client exists, so the very first request is counted.
  const metricsHolder: { m?: ManagerMetrics; identities?: Informer<AgentIdentity> } = {};
  const kube: KubeClient = createKubeClient(options.kubeConfig, {
    onRequest(info) {
      const resource = resourceOf(info.path);
      const key = `${info.watch ? "WATCH" : info.method} ${resource}`;
      counts[key] = (counts[key] ?? 0) + 1;
      metricsHolder.m?.kubeRequests.inc({
        verb: info.watch ? "WATCH" : info.method,
        resource,
        code: String(info.status),
      });
    },
  });
  const metrics = createManagerMetrics({
    queueDepth: () => queue?.length() ?? 0,
    identities: () => metricsHolder.identities?.list() ?? [],
  });
  metricsHolder.m = metrics;

  const informer = <T extends KubeObject>(
    path: string,
    resource: string,
    selectors: { labelSelector?: string; fieldSelector?: string } = {},
  ) =>
    createInformer<T>({
      kubeConfig: options.kubeConfig,
      client: kube,
      path,
      ...selectors,
      logger: log.child({ informer: resource }),
      ...(options.resyncIntervalMs !== undefined ? { resyncIntervalMs: options.resyncIntervalMs } : {}),
      onWatchRestart: (reason) => metrics.watchRestarts.inc({ resource, reason }),
    });
  const identities = informer<AgentIdentity>(identitiesPath(options.namespace), "agentidentities");
  // Only the ServiceAccounts labelled for an AgentIdentity: never every account of the cluster.
  const serviceAccounts = informer<ServiceAccountObject>(
    options.namespace ? serviceAccountPath(options.namespace) : "/api/v1/serviceaccounts",
    "serviceaccounts",
    { labelSelector: SERVICE_ACCOUNT_SELECTOR },
  );
  const blueprints = informer<AgentIdentityBlueprint & KubeObject>(
    blueprintPath(),
    "agentidentityblueprints",
  );
  // Namespace labels feed the blueprints' namespace selectors.
  const namespaces = informer<NamespaceObject>(
    "/api/v1/namespaces",
    "namespaces",
    options.namespace ? { fieldSelector: `metadata.name=${options.namespace}` } : {},
  );
  metricsHolder.identities = identities;

  const dispatcher: Dispatcher = outboundDispatcher(options.caPems ?? []);
  const ownWrites = new Map<string, string>();
  const events = createEventSink(options.kubeConfig, kube, log, replica);
  const issuer = createIssuerSource({ kube, ...(options.issuer ? { override: options.issuer } : {}) });
  const allowedAuthorityHosts = options.allowedAuthorityHosts ?? [];
  const credentialCounts = new Map<string, number>();
  const reconcileIdentity = createReconciler({
    kube,
    identities,
    blueprints,
    namespaces,
    serviceAccounts,
    issuer,
    allowedAuthorityHosts,
    ...(options.verify === false ? {} : { verifier: createVerifier({ kube, dispatcher }) }),
    ...(options.graph ? { graph: createGraphClient({ ...options.graph, dispatcher }) } : {}),
    events,
    policy: options.verificationPolicy ?? DEFAULT_VERIFICATION_POLICY,
    logger: log,
    onStatusWritten: (key, rv) => ownWrites.set(key, rv),
    onCredentialCount: (name, count) => {
      if (credentialCounts.get(name) !== count) {
        credentialCounts.set(name, count);
        enqueue(name);
      }
    },
    ...(options.graphPropagationMs !== undefined ? { graphPropagationMs: options.graphPropagationMs } : {}),
    ...(options.graphRecheckMs !== undefined ? { graphRecheckMs: options.graphRecheckMs } : {}),
  });
  const reconcileBlueprint = createBlueprintReconciler({
    kube,
    blueprints,
    identities,
    issuer,
    allowedAuthorityHosts,
    credentialCount: (name) => credentialCounts.get(name),
  });
  // One queue: namespaced keys are AgentIdentities, cluster-scoped keys (no "/") blueprints.
  const reconcile = (key: string) => (key.includes("/") ? reconcileIdentity(key) : reconcileBlueprint(key));

  const enqueue = (key: string) => queue?.add(key);
  /** Identities of a namespace that bind a ServiceAccount: a change to one concerns all (conflicts). */
  const bindersOf = (namespace: string | undefined, sa: string) =>
    identities
      .list(namespace)
      .filter((i) => i.spec.serviceAccountName === sa)
      .map(keyOf);
  /** Identities that use a blueprint: a change to it (admission, cloud, federation) concerns them all. */
  const usersOf = (blueprint: string) =>
    identities
      .list()
      .filter((i) => i.spec.blueprintRef?.name === blueprint)
      .map(keyOf);
  identities.onAdd((obj) => {
    enqueue(keyOf(obj));
    for (const k of bindersOf(obj.metadata.namespace, obj.spec.serviceAccountName)) enqueue(k);
    if (obj.spec.blueprintRef?.name) enqueue(obj.spec.blueprintRef.name);
  });
  identities.onUpdate((obj, old) => {
    const key = keyOf(obj);
    if (ownWrites.get(key) === obj.metadata.resourceVersion) {
      ownWrites.delete(key); // the echo of our own status write: nothing new to decide
      return;
    }
    enqueue(key);
    if (
      Boolean(old.metadata.deletionTimestamp) !== Boolean(obj.metadata.deletionTimestamp) &&
      obj.spec.blueprintRef?.name
    )
      enqueue(obj.spec.blueprintRef.name);
    if (
      old.spec.serviceAccountName !== obj.spec.serviceAccountName ||
      Boolean(old.metadata.deletionTimestamp) !== Boolean(obj.metadata.deletionTimestamp)
    ) {
      for (const k of [
        ...bindersOf(obj.metadata.namespace, old.spec.serviceAccountName),
        ...bindersOf(obj.metadata.namespace, obj.spec.serviceAccountName),
      ])
        enqueue(k);
    }
  });
  identities.onDelete((obj) => {
    ownWrites.delete(keyOf(obj));
    for (const k of bindersOf(obj.metadata.namespace, obj.spec.serviceAccountName)) enqueue(k);
    if (obj.spec.blueprintRef?.name) enqueue(obj.spec.blueprintRef.name);
  });
  const onBlueprint = (bp: AgentIdentityBlueprint) => {
    enqueue(bp.metadata.name);
    for (const k of usersOf(bp.metadata.name)) enqueue(k);
  };
  blueprints.onAdd(onBlueprint);
  blueprints.onUpdate((bp, old) => {
    // The operator's own status writes change neither spec nor deletion: only the blueprint itself reacts.
    if (
      bp.metadata.generation === old.metadata.generation &&
      bp.metadata.deletionTimestamp === old.metadata.deletionTimestamp
    )
      return;
    onBlueprint(bp);
  });
  blueprints.onDelete(onBlueprint);
  const onNamespace = (ns: NamespaceObject, old?: NamespaceObject) => {
    if (old && jsonEqualLabels(old.metadata.labels, ns.metadata.labels)) return;
    for (const i of identities.list(ns.metadata.name)) enqueue(keyOf(i));
  };
  namespaces.onAdd((ns) => onNamespace(ns));
  namespaces.onUpdate((ns, old) => onNamespace(ns, old));
  const onServiceAccount = (sa: ServiceAccountObject) => {
    for (const k of bindersOf(sa.metadata.namespace, sa.metadata.name)) enqueue(k);
  };
  serviceAccounts.onAdd(onServiceAccount);
  serviceAccounts.onUpdate(onServiceAccount);
  serviceAccounts.onDelete(onServiceAccount);

  await Promise.all([identities.start(), serviceAccounts.start(), blueprints.start(), namespaces.start()]);
  log.info(
    { identities: identities.list().length, namespace: options.namespace ?? "(all)" },
    "caches synced",
  );

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
  });
  elector.run({
    onStartedLeading() {
      log.info({ identity: replica }, "leading: reconciling");
      metrics.leader.set(1);
      const q = createWorkQueue({
        logger: log,
        onError: (key, error) =>
          log.warn({ key, err: scrubTokens((error as Error).message) }, "reconcile failed"),
      });
      queue = q;
      for (const identity of identities.list()) q.add(keyOf(identity));
      for (const blueprint of blueprints.list()) q.add(blueprint.metadata.name);
      q.run(async (key) => {
        const end = metrics.reconcileDuration.startTimer();
        try {
          const result = await reconcile(key);
          const label = result?.requeue ? "requeue" : "success";
          metrics.reconciles.inc({ result: label });
          const seconds = end({ result: label });
          log.debug({ key, result: label, requeueAfterMs: result?.requeueAfterMs, seconds }, "reconciled");
          return result;
        } catch (error) {
          metrics.reconciles.inc({ result: "error" });
          end({ result: "error" });
          throw error;
        }
      }, options.concurrency ?? 8);
    },
    onStoppedLeading() {
      log.info({ identity: replica }, "stopped leading");
      metrics.leader.set(0);
      const q = queue;
      queue = undefined;
      void q?.shutdown();
    },
  });

  const server = options.health
    ? await startHealthServer(options.health, { identities, serviceAccounts, metrics })
    : undefined;
  return {
    ...(server ? { url: serverUrl(server) } : {}),
    identity: replica,
    identities,
    blueprints,
    isLeader: () => elector.isLeader(),
    hasSynced: () =>
      identities.hasSynced() &&
      serviceAccounts.hasSynced() &&
      blueprints.hasSynced() &&
      namespaces.hasSynced(),
    metrics,
    requestCounts: () => ({ ...counts }),
    async stop() {
      await elector.stop();
      await queue?.shutdown();
      await events.flush();
      identities.stop();
      serviceAccounts.stop();
      blueprints.stop();
      namespaces.stop();
      await server?.close();
      await dispatcher.close();
      await kube.close();
    },
  };
}

function serverUrl(server: FastifyInstance): string {
  const address = server.server.address();
  if (!address || typeof address === "string") return String(address);
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}`;
}

async function startHealthServer(
  listen: { host: string; port: number },
  deps: {
    identities: Informer<AgentIdentity>;
    serviceAccounts: Informer<ServiceAccountObject>;
    metrics: ManagerMetrics;
  },
): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  const text = { 200: { type: "string" }, 503: { type: "string" } };
  app.get("/healthz", { schema: { response: text } }, async () => "ok");
  app.get("/readyz", { schema: { response: text } }, async (_req, reply) => {
    const synced = deps.identities.hasSynced() && deps.serviceAccounts.hasSynced();
    return synced ? "ok" : reply.code(503).send("caches not synced");
  });
  app.get("/metrics", { schema: { response: { 200: { type: "string" } } } }, async (_req, reply) => {
    reply.header("content-type", deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });
  await app.listen({ host: listen.host, port: listen.port });
  return app;
}

function jsonEqualLabels(a: Record<string, string> = {}, b: Record<string, string> = {}): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}
