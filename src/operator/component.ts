import { API_VERSION, PLURAL } from "../api/constants.ts";
import type { AgentIdentity, AgentIdentityBlueprint } from "../api/types.ts";
import { createWorkQueue, type WorkQueue } from "../kube/queue.ts";
import { type KubeObject, keyOf } from "../kube/store.ts";
import { scrubTokens } from "../lib/log.ts";
import type { ComponentFactory, ManagerComponent } from "../manager/component.ts";
import { blueprintPath, createBlueprintReconciler } from "./blueprint-reconciler.ts";
import { createEventSink } from "./events.ts";
import { createGraphClient, type GraphOptions } from "./graph.ts";
import { outboundDispatcher } from "./https.ts";
import { createIssuerSource } from "./issuer.ts";
import { createOperatorMetrics } from "./metrics.ts";
import { createReconciler, GRAPH_RECHECK_MS, type NamespaceObject } from "./reconciler.ts";
import { DEFAULT_VERIFICATION_POLICY, type VerificationPolicy } from "./schedule.ts";
import {
  SERVICE_ACCOUNT_SELECTOR,
  type ServiceAccountObject,
  serviceAccountPath,
} from "./service-account.ts";
import { createCredentialObservations } from "./sweep.ts";
import { createVerifier } from "./verify.ts";

/** The operator's settings (the manager's flags that concern reconciling). */
export interface OperatorOptions {
  /** Watch one namespace only; all namespaces when absent. */
  namespace?: string;
  verify?: boolean;
  verificationPolicy?: VerificationPolicy;
  /** Service-account issuer override (else discovered from the API server). */
  issuer?: string;
  /** Extra CAs trusted for Entra and Graph (e.g. a local emulator's). */
  caPems?: string[];
  /** Authority hosts a blueprint with cloud Custom may name (--allowed-authority-hosts); none by default. */
  allowedAuthorityHosts?: string[];
  /**
   * The manager's own namespace (the chart's release namespace): AgentIdentities there are refused, as in
   * kube-system, because the webhooks never see it.
   */
  managerNamespace?: string;
  /** Graph mode; off when absent. */
  graph?: Omit<GraphOptions, "dispatcher">;
  /** Wait after writing a Graph credential before verifying it (default 15 s). */
  graphPropagationMs?: number;
  /** Re-check Graph-mode credentials this often, so one deleted in Entra is recreated (default 10 min). */
  graphRecheckMs?: number;
  concurrency?: number;
}

export function identitiesPath(namespace?: string): string {
  return namespace
    ? `/apis/${API_VERSION}/namespaces/${encodeURIComponent(namespace)}/${PLURAL}`
    : `/apis/${API_VERSION}/${PLURAL}`;
}

/** The cache of AgentIdentities, shared with the webhook (same spec, same informer). */
export function identitiesCache(namespace?: string) {
  return { path: identitiesPath(namespace), resource: "agentidentities" };
}

/** The cache of AgentIdentityBlueprints (cluster-scoped), shared with the webhook. */
export function blueprintsCache() {
  return { path: blueprintPath(), resource: "agentidentityblueprints" };
}

/** Namespace labels, for the blueprints' namespace selectors; shared with the webhook. */
export function namespacesCache(namespace?: string) {
  return {
    path: "/api/v1/namespaces",
    resource: "namespaces",
    ...(namespace ? { fieldSelector: `metadata.name=${namespace}` } : {}),
  };
}

/** Only ServiceAccounts labelled for an AgentIdentity (created by the operator or opted in). */
export function serviceAccountsCache(namespace?: string) {
  return {
    path: namespace ? serviceAccountPath(namespace) : "/api/v1/serviceaccounts",
    resource: "serviceaccounts",
    labelSelector: SERVICE_ACCOUNT_SELECTOR,
  };
}

/**
 * The AgentIdentity operator as a leader-only manager component: it registers its watches on the shared
 * caches when built, and runs its work queue only while this replica leads. Every write goes through the
 * fenced client, so nothing is written after the lease is lost.
 */
export function operatorComponent(options: OperatorOptions): ComponentFactory {
  return (ctx) => {
    const log = ctx.logger;
    let queue: WorkQueue | undefined;
    const identities = ctx.caches.informer<AgentIdentity>(identitiesCache(options.namespace));
    const serviceAccounts = ctx.caches.informer<ServiceAccountObject>(
      serviceAccountsCache(options.namespace),
    );
    const blueprints = ctx.caches.informer<AgentIdentityBlueprint & KubeObject>(blueprintsCache());
    const namespaces = ctx.caches.informer<NamespaceObject>(namespacesCache(options.namespace));
    const metrics = createOperatorMetrics(ctx.registry, {
      queueDepth: () => queue?.length() ?? 0,
      identities: () => identities.list(),
    });
    const kube = ctx.leaderKube;
    /** The current leadership term; no call to Entra or Graph is sent once it has ended. */
    let term: AbortSignal | undefined;
    const fence = () => term ?? NOT_LEADING;
    const dispatcher = outboundDispatcher(options.caPems ?? [], { fence });
    const ownWrites = new Map<string, string>();
    const events = createEventSink(ctx.kubeConfig, kube, log, ctx.replica, ctx.registry);
    const issuer = createIssuerSource({ kube, ...(options.issuer ? { override: options.issuer } : {}) });
    const allowedAuthorityHosts = options.allowedAuthorityHosts ?? [];
    const credentialCounts = new Map<string, number>();
    // Graph mode: every answer about an application's credentials is kept, for the sweep of orphans.
    const observations = createCredentialObservations();
    const graphClient = options.graph
      ? (() => {
          const client = createGraphClient({ ...options.graph, dispatcher, fence });
          return { ...client, federation: observations.observe(client.federation) };
        })()
      : undefined;
    const reconcileIdentity = createReconciler({
      kube,
      identities,
      blueprints,
      namespaces,
      serviceAccounts,
      issuer,
      allowedAuthorityHosts,
      ...(options.managerNamespace ? { managerNamespace: options.managerNamespace } : {}),
      ...(options.verify === false ? {} : { verifier: createVerifier({ kube, dispatcher }) }),
      ...(graphClient ? { graph: graphClient } : {}),
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
      credentialCount: (name) => {
        const bp = blueprints.get(undefined, name);
        return (
          (bp && observations.get(bp.spec.tenantId, bp.spec.clientId)?.length) ?? credentialCounts.get(name)
        );
      },
      ...(graphClient
        ? {
            sweep: {
              federation: graphClient.federation,
              observed: observations.get,
              ...(options.namespace ? { namespace: options.namespace } : {}),
              events,
              logger: log,
              recheckMs: options.graphRecheckMs ?? GRAPH_RECHECK_MS,
              onSwept: (name: string) => {
                for (const k of usersOf(name)) enqueue(k);
              },
            },
          }
        : {}),
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
    /**
     * Identities of a namespace that use a blueprint with a per-namespace cap (admits[].maxIdentities):
     * when one of them goes or changes, the next in line may get its place.
     */
    const cappedPeersOf = (obj: AgentIdentity) => {
      const name = obj.spec.blueprintRef?.name;
      const bp = name ? blueprints.get(undefined, name) : undefined;
      if (!bp?.spec.admits?.some((rule) => rule.maxIdentities !== undefined)) return [];
      return identities
        .list(obj.metadata.namespace)
        .filter((i) => i.spec.blueprintRef?.name === name)
        .map(keyOf);
    };
    identities.onAdd((obj) => {
      enqueue(keyOf(obj));
      for (const k of bindersOf(obj.metadata.namespace, obj.spec.serviceAccountName)) enqueue(k);
      if (obj.spec.blueprintRef?.name) enqueue(obj.spec.blueprintRef.name);
    });
    identities.onUpdate((obj, old) => {
      const key = keyOf(obj);
      if (ownWrites.get(key) === obj.metadata.resourceVersion) {
        ownWrites.delete(key); // the echo of our own status write: nothing new to decide
        reconcileIdentity.forgetWrite(key);
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
      if (
        old.metadata.generation !== obj.metadata.generation ||
        Boolean(old.metadata.deletionTimestamp) !== Boolean(obj.metadata.deletionTimestamp)
      )
        for (const k of [...cappedPeersOf(old), ...cappedPeersOf(obj)]) enqueue(k);
    });
    identities.onDelete((obj) => {
      ownWrites.delete(keyOf(obj));
      reconcileIdentity.forgetWrite(keyOf(obj));
      for (const k of bindersOf(obj.metadata.namespace, obj.spec.serviceAccountName)) enqueue(k);
      for (const k of cappedPeersOf(obj)) enqueue(k);
      if (obj.spec.blueprintRef?.name) enqueue(obj.spec.blueprintRef.name);
    });
    /**
     * A manager that watches one namespace (--namespace) sees only that namespace's identities, so it
     * reports the status of the blueprints they use and leaves every other blueprint alone (several such
     * managers must not fight over one blueprint's status); a cluster-wide manager reports them all.
     */
    const mine = (blueprint: string) => !options.namespace || usersOf(blueprint).length > 0;
    const onBlueprint = (bp: AgentIdentityBlueprint) => {
      if (mine(bp.metadata.name)) enqueue(bp.metadata.name);
      for (const k of usersOf(bp.metadata.name)) enqueue(k);
    };
    blueprints.onAdd(onBlueprint);
    blueprints.onUpdate((bp, old) => {
      // The operator's own status writes change neither spec nor deletion: only the blueprint reacts.
      if (
        bp.metadata.generation === old.metadata.generation &&
        bp.metadata.deletionTimestamp === old.metadata.deletionTimestamp
      )
        return;
      onBlueprint(bp);
    });
    blueprints.onDelete(onBlueprint);
    const onNamespace = (ns: NamespaceObject, old?: NamespaceObject) => {
      if (old && sameLabels(old.metadata.labels, ns.metadata.labels)) return;
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

    const component: ManagerComponent = {
      name: "operator",
      needsLeaderElection: true,
      start(signal) {
        term = signal;
        events.open(signal);
        const q = createWorkQueue({
          logger: log,
          onError: (key, error) =>
            log.warn({ key, err: scrubTokens((error as Error).message) }, "reconcile failed"),
        });
        queue = q;
        for (const identity of identities.list()) q.add(keyOf(identity));
        for (const blueprint of blueprints.list())
          if (mine(blueprint.metadata.name)) q.add(blueprint.metadata.name);
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
      async stop() {
        const q = queue;
        queue = undefined;
        // The term's Event recorder closed when the term ended (the fenced client would refuse what waited):
        // this waits for it, and drops what the draining workers still report.
        const closingEvents = events.close();
        // The fenced client has aborted the requests in flight, so the running workers end promptly.
        await q?.shutdown();
        await closingEvents;
      },
      ready: () =>
        identities.hasSynced() &&
        serviceAccounts.hasSynced() &&
        blueprints.hasSynced() &&
        namespaces.hasSynced(),
      async close() {
        await dispatcher.close();
      },
    };
    return component;
  };
}

/** Before the first term: nothing is sent. */
const NOT_LEADING = AbortSignal.abort();

function sameLabels(a: Record<string, string> = {}, b: Record<string, string> = {}): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}
