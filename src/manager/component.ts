import type { Registry } from "prom-client";
import type { KubeClient } from "../kube/client.ts";
import type { Informer, KubeObject } from "../kube/informer.ts";
import type { KubeConfigLike } from "../kube/kubeconfig.ts";
import type { Logger } from "../lib/log.ts";

/**
 * The plug-in point of `agentid manager` (docs/manager.md). The operator and the admission webhook are
 * components: each gets the shared caches, the kube client, a logger and the metrics registry, and the
 * manager starts and stops them. Neither imports the other; only `src/manager/` knows both.
 */

/** What a cache watches. Two components asking for the same spec share one informer. */
export interface CacheSpec {
  /** List path, e.g. "/apis/agentid.io/v1alpha1/agentidentities" or "/api/v1/serviceaccounts". */
  path: string;
  /** Name for logs and metrics, e.g. "agentidentities". */
  resource: string;
  labelSelector?: string;
  fieldSelector?: string;
}

export interface SharedCaches {
  /**
   * The informer for a spec, created on first use. Only while components are being built: the manager
   * starts every informer asked for, waits until all have listed once, and only then starts components.
   * Handlers registered here see every event from the first list on.
   */
  informer<T extends KubeObject>(spec: CacheSpec): Informer<T>;
  /** True once every informer has listed once. */
  hasSynced(): boolean;
}

export interface ManagerContext {
  kubeConfig: KubeConfigLike;
  /** The shared client (one connection pool, counted in the metrics). For components that run on every replica. */
  kube: KubeClient;
  /**
   * The same client fenced to the current leadership term: requests fail at once (FencedError) on a
   * replica that is not the leader, and requests in flight are aborted when the lease is lost. Leader-only
   * components write through this one.
   */
  leaderKube: KubeClient;
  caches: SharedCaches;
  logger: Logger;
  /** The manager's Prometheus registry, served on /metrics. */
  registry: Registry;
  /** This replica's identity in the leader-election Lease. */
  replica: string;
  isLeader(): boolean;
}

export interface ManagerComponent {
  /** Short name for logs and /readyz, e.g. "operator" or "webhook". */
  readonly name: string;
  /**
   * True: started when this replica becomes the leader and stopped (drained) when it stops being the
   * leader, possibly several times in one process. False: started once on every replica after the caches
   * have synced (an admission webhook must answer on every replica).
   */
  readonly needsLeaderElection: boolean;
  /**
   * Starts the component. `signal` aborts when the component must stop: at the end of the leadership term
   * for leader-only components, at shutdown for the others. Resolves once the component is running.
   */
  start(signal: AbortSignal): Promise<void> | void;
  /** Stops and waits until no work of this component is running any more. */
  stop(): Promise<void>;
  /** Contributes to /readyz: false keeps the replica out of a Service's endpoints. */
  ready(): boolean;
  /** Releases what the component holds (servers, connection pools), once, when the manager shuts down. */
  close?(): Promise<void>;
}

/** Builds a component. Called once per manager, before the caches start, so it can ask for informers. */
export type ComponentFactory = (context: ManagerContext) => ManagerComponent | Promise<ManagerComponent>;
