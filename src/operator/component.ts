import { API_VERSION, PLURAL } from "../api/constants.ts";
import type { AgentIdentity } from "../api/types.ts";
import { createWorkQueue, type WorkQueue } from "../kube/queue.ts";
import { keyOf } from "../kube/store.ts";
import { scrubTokens } from "../lib/log.ts";
import type { ComponentFactory, ManagerComponent } from "../manager/component.ts";
import { createEventSink } from "./events.ts";
import { createGraphFederation, type GraphOptions } from "./graph.ts";
import { outboundDispatcher } from "./https.ts";
import { createIssuerSource } from "./issuer.ts";
import { createOperatorMetrics } from "./metrics.ts";
import { createReconciler } from "./reconciler.ts";
import { DEFAULT_VERIFICATION_POLICY, type VerificationPolicy } from "./schedule.ts";
import { type ServiceAccountObject, serviceAccountPath } from "./service-account.ts";
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
  /** Graph mode; off when absent. */
  graph?: Omit<GraphOptions, "dispatcher">;
  /** Wait after writing a Graph credential before verifying it (default 15 s). */
  graphPropagationMs?: number;
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
    const serviceAccounts = ctx.caches.informer<ServiceAccountObject>({
      path: options.namespace ? serviceAccountPath(options.namespace) : "/api/v1/serviceaccounts",
      resource: "serviceaccounts",
    });
    const metrics = createOperatorMetrics(ctx.registry, {
      queueDepth: () => queue?.length() ?? 0,
      identities: () => identities.list(),
    });
    const kube = ctx.leaderKube;
    const dispatcher = outboundDispatcher(options.caPems ?? []);
    const ownWrites = new Map<string, string>();
    const events = createEventSink(ctx.kubeConfig, kube, log, ctx.replica);
    const reconcile = createReconciler({
      kube,
      identities,
      serviceAccounts,
      issuer: createIssuerSource({ kube, ...(options.issuer ? { override: options.issuer } : {}) }),
      ...(options.verify === false ? {} : { verifier: createVerifier({ kube, dispatcher }) }),
      ...(options.graph ? { graph: createGraphFederation({ ...options.graph, dispatcher }) } : {}),
      events,
      policy: options.verificationPolicy ?? DEFAULT_VERIFICATION_POLICY,
      logger: log,
      onStatusWritten: (key, rv) => ownWrites.set(key, rv),
      ...(options.graphPropagationMs !== undefined ? { graphPropagationMs: options.graphPropagationMs } : {}),
    });

    const enqueue = (key: string) => queue?.add(key);
    /** Identities of a namespace that bind a ServiceAccount: a change to one concerns all (conflicts). */
    const bindersOf = (namespace: string | undefined, sa: string) =>
      identities
        .list(namespace)
        .filter((i) => i.spec.serviceAccountName === sa)
        .map(keyOf);
    identities.onAdd((obj) => {
      enqueue(keyOf(obj));
      for (const k of bindersOf(obj.metadata.namespace, obj.spec.serviceAccountName)) enqueue(k);
    });
    identities.onUpdate((obj, old) => {
      const key = keyOf(obj);
      if (ownWrites.get(key) === obj.metadata.resourceVersion) {
        ownWrites.delete(key); // the echo of our own status write: nothing new to decide
        return;
      }
      enqueue(key);
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
    });
    const onServiceAccount = (sa: ServiceAccountObject) => {
      for (const k of bindersOf(sa.metadata.namespace, sa.metadata.name)) enqueue(k);
    };
    serviceAccounts.onAdd(onServiceAccount);
    serviceAccounts.onUpdate(onServiceAccount);
    serviceAccounts.onDelete(onServiceAccount);

    const component: ManagerComponent = {
      name: "operator",
      needsLeaderElection: true,
      start() {
        const q = createWorkQueue({
          logger: log,
          onError: (key, error) =>
            log.warn({ key, err: scrubTokens((error as Error).message) }, "reconcile failed"),
        });
        queue = q;
        for (const identity of identities.list()) q.add(keyOf(identity));
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
        // The fenced client has aborted the requests in flight, so the running workers end promptly.
        await q?.shutdown();
        await events.flush();
      },
      ready: () => identities.hasSynced() && serviceAccounts.hasSynced(),
      async close() {
        await dispatcher.close();
      },
    };
    return component;
  };
}
