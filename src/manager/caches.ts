import type { KubeClient } from "../kube/client.ts";
import {
  createInformer,
  type Informer,
  type KubeObject,
  stripManagedFields,
  type WatchRestartReason,
} from "../kube/informer.ts";
import type { KubeConfigLike } from "../kube/kubeconfig.ts";
import type { Logger } from "../lib/log.ts";
import type { CacheSpec, SharedCaches } from "./component.ts";

export interface CacheOptions {
  kubeConfig: KubeConfigLike;
  client: KubeClient;
  logger: Logger;
  resyncIntervalMs?: number;
  onWatchRestart?: (resource: string, reason: WatchRestartReason) => void;
}

export interface ManagedCaches extends SharedCaches {
  /** Starts every informer asked for and resolves once all have listed once. No new informers after this. */
  start(): Promise<void>;
  stop(): void;
}

function cacheKey(spec: CacheSpec): string {
  return JSON.stringify([spec.path, spec.labelSelector ?? "", spec.fieldSelector ?? ""]);
}

/** One informer per distinct spec, shared by every component of the manager (controller-runtime's cache). */
export function createSharedCaches(options: CacheOptions): ManagedCaches {
  const informers = new Map<string, Informer<KubeObject>>();
  let started = false;
  return {
    informer<T extends KubeObject>(spec: CacheSpec): Informer<T> {
      const key = cacheKey(spec);
      const existing = informers.get(key);
      if (existing) return existing as unknown as Informer<T>;
      if (started)
        throw new Error(`cache for ${spec.resource} asked for after the caches started: ask in the factory`);
      const informer = createInformer<T>({
        kubeConfig: options.kubeConfig,
        client: options.client,
        path: spec.path,
        ...(spec.labelSelector ? { labelSelector: spec.labelSelector } : {}),
        ...(spec.fieldSelector ? { fieldSelector: spec.fieldSelector } : {}),
        logger: options.logger.child({ informer: spec.resource }),
        // Nothing in the manager reads managedFields; keeping them would cost memory for every object.
        transform: stripManagedFields,
        ...(options.resyncIntervalMs !== undefined ? { resyncIntervalMs: options.resyncIntervalMs } : {}),
        onWatchRestart: (reason) => options.onWatchRestart?.(spec.resource, reason),
      });
      informers.set(key, informer as unknown as Informer<KubeObject>);
      return informer;
    },
    hasSynced: () => [...informers.values()].every((i) => i.hasSynced()),
    async start() {
      started = true;
      await Promise.all([...informers.values()].map((i) => i.start()));
    },
    stop() {
      for (const informer of informers.values()) informer.stop();
    },
  };
}
