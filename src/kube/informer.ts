import type { Logger } from "../lib/log.ts";
import { scrubTokens } from "../lib/log.ts";
import { type BackoffPolicy, createBackoff, jittered, type Random, sleep } from "./backoff.ts";
import { createKubeClient, isGone, type KubeClient, type Query } from "./client.ts";
import type { KubeConfigLike } from "./kubeconfig.ts";
import {
  createLineSplitter,
  isKubeObject,
  type KubeObject,
  ObjectStore,
  parseWatchEvent,
  type StoreEvent,
} from "./store.ts";

export type { KubeObject, ObjectMeta } from "./store.ts";

/**
 * A list+watch cache that never loses an event. It replaces client-node's ListWatch (see
 * docs/kube-client.md): every failure leads to a retry, never to a stopped informer; a relist diffs against
 * the cache so deletes that happened while we were not watching are delivered; a watch that goes silent
 * (no event and no bookmark for `stallTimeoutMs`) is treated as dead.
 */

/** Why a watch was re-opened: `closed` (server ended it normally), `gone` (410, relist), `error`, `stall`. */
export type WatchRestartReason = "closed" | "gone" | "error" | "stall";

export interface InformerOptions<T extends KubeObject = KubeObject> {
  kubeConfig: KubeConfigLike;
  /** Share one client (connection pool, request counter) between informers; made from kubeConfig if absent. */
  client?: KubeClient;
  /** List path, e.g. "/apis/agentid.io/v1alpha1/agentidentities" or "/api/v1/namespaces/ns/serviceaccounts". */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
  /**
   * Periodic resync: every cached object is delivered again to the update handlers (with `old === obj`),
   * from memory, as client-go's resync does; the API server is not asked (default 10 min, jittered ±10%;
   * 0 turns it off). Only a 410 relists.
   */
  resyncIntervalMs?: number;
  /** Server-side watch timeout (default 300 s, jittered ±20% so watches of many replicas do not align). */
  watchTimeoutSeconds?: number;
  /** A watch with no event and no bookmark for this long is restarted (default 150 s; bookmarks come about every minute). */
  stallTimeoutMs?: number;
  /** Items per list page (default 500). */
  pageSize?: number;
  /** Retry backoff after errors (default 800 ms doubling to 30 s, ±50% jitter). */
  backoff?: BackoffPolicy;
  logger: Logger;
  /**
   * Applied to every object before it enters the cache and reaches the handlers, e.g. to drop fields no
   * handler reads (controller-runtime's cache transforms). Must not change identity fields.
   */
  transform?: (obj: T) => T;
  onWatchRestart?: (reason: WatchRestartReason) => void;
  random?: Random;
}

export interface Informer<T extends KubeObject> {
  onAdd(fn: (obj: T) => void): void;
  onUpdate(fn: (obj: T, old: T) => void): void;
  onDelete(fn: (obj: T) => void): void;
  /** Starts the loop; resolves after the first full list, rejects if stopped before that. */
  start(): Promise<void>;
  stop(): void;
  hasSynced(): boolean;
  get(namespace: string | undefined, name: string): T | undefined;
  list(namespace?: string): T[];
  /** The resourceVersion the next watch would start from ("" before the first list). */
  lastResourceVersion(): string;
}

const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 800, maxMs: 30_000, factor: 2, jitter: 0.5 };
/** A watch that ends sooner than this after opening counts as a failure, so a flapping server is not hammered. */
const MIN_HEALTHY_WATCH_MS = 1_000;

interface ListResponse {
  apiVersion?: string;
  kind?: string;
  metadata?: { resourceVersion?: string; continue?: string };
  items?: unknown[];
}

interface WatchOutcome {
  reason: WatchRestartReason | "stopped";
  resourceVersion: string;
  error?: unknown;
  healthy: boolean;
}

export interface RestartPlan {
  /** Throw the resourceVersion away and list again (diffing against the cache). */
  relist: boolean;
  /** The watch ran long enough to prove the server healthy: the next failure starts with a short delay. */
  resetBackoff: boolean;
  /** Wait for the next backoff delay before reconnecting. */
  wait: boolean;
}

/**
 * What to do after a watch ended. A normal end and a 410 reconnect at once, unless the watch died within
 * a second of opening: then a server that keeps ending watches early is not hammered. Only a 410 relists:
 * every other restart resumes from the last resourceVersion.
 */
export function planRestart(reason: WatchRestartReason, healthy: boolean): RestartPlan {
  const planned = reason === "closed" || reason === "gone";
  return { relist: reason === "gone", resetBackoff: healthy, wait: !(planned && healthy) };
}

function describe(error: unknown): string {
  return scrubTokens(error instanceof Error ? `${error.name}: ${error.message}` : String(error));
}

/**
 * Drops `metadata.managedFields` (server-side apply bookkeeping, often a third of an object's size): no
 * handler reads it, and an update without it leaves the server's copy as it is.
 */
export function stripManagedFields<T extends KubeObject>(obj: T): T {
  if (!("managedFields" in obj.metadata)) return obj;
  const { managedFields: _dropped, ...metadata } = obj.metadata as T["metadata"] & {
    managedFields?: unknown;
  };
  return { ...obj, metadata } as T;
}

export function createInformer<T extends KubeObject>(options: InformerOptions<T>): Informer<T> {
  const { path, logger } = options;
  const log = logger.child({ informer: path });
  const random = options.random ?? Math.random;
  const client = options.client ?? createKubeClient(options.kubeConfig);
  const ownsClient = options.client === undefined;
  const resyncIntervalMs = options.resyncIntervalMs ?? 10 * 60_000;
  const watchTimeoutSeconds = options.watchTimeoutSeconds ?? 300;
  const stallTimeoutMs = options.stallTimeoutMs ?? 150_000;
  const pageSize = options.pageSize ?? 500;
  const backoff = createBackoff(options.backoff ?? DEFAULT_BACKOFF, random);
  const store = new ObjectStore<T>();
  const transform = options.transform ?? ((obj: T) => obj);
  const addHandlers: Array<(obj: T) => void> = [];
  const updateHandlers: Array<(obj: T, old: T) => void> = [];
  const deleteHandlers: Array<(obj: T) => void> = [];
  const stopController = new AbortController();
  let synced = false;
  let running = false;
  let resourceVersion = "";
  let resolveSynced: () => void = () => {};
  let rejectSynced: (error: Error) => void = () => {};
  const syncedPromise = new Promise<void>((resolve, reject) => {
    resolveSynced = resolve;
    rejectSynced = reject;
  });
  // Callers that never await start() must not see an unhandled rejection when stopping early.
  syncedPromise.catch(() => {});

  const selectors = (): Query => ({
    labelSelector: options.labelSelector,
    fieldSelector: options.fieldSelector,
  });

  function dispatch(events: StoreEvent<T>[]): void {
    for (const event of events) {
      try {
        if (event.type === "add") for (const fn of addHandlers) fn(event.obj);
        else if (event.type === "update") for (const fn of updateHandlers) fn(event.obj, event.old);
        else for (const fn of deleteHandlers) fn(event.obj);
      } catch (error) {
        // A handler bug must not stop the informer or skip the remaining events.
        log.error({ err: describe(error), event: event.type }, "informer handler threw");
      }
    }
  }

  let resyncTimer: NodeJS.Timeout | undefined;
  /** Replays the cache to the update handlers, from memory, every resync interval. */
  function scheduleResync(): void {
    if (resyncIntervalMs <= 0 || stopController.signal.aborted) return;
    resyncTimer = setTimeout(
      () => {
        const objects = store.list();
        log.debug({ objects: objects.length }, "resync: replaying the cache");
        dispatch(objects.map((obj) => ({ type: "update" as const, obj, old: obj })));
        scheduleResync();
      },
      jittered(resyncIntervalMs, 0.1, random),
    );
    resyncTimer.unref();
  }

  async function relist(): Promise<string> {
    const items: T[] = [];
    let continueToken: string | undefined;
    let listRv = "";
    do {
      const page = await client.request<ListResponse>("GET", path, {
        query: { ...selectors(), limit: pageSize, continue: continueToken },
        // stop() must not wait for a slow list to finish.
        signal: stopController.signal,
      });
      // Lists omit kind/apiVersion on items (watch events carry them); fill them in so handlers see one shape.
      const kind = page.kind?.endsWith("List") ? page.kind.slice(0, -4) : undefined;
      for (const item of page.items ?? []) {
        if (!isKubeObject(item)) throw new Error(`list of ${path} returned an item without metadata.name`);
        items.push(
          transform({
            ...(page.apiVersion ? { apiVersion: page.apiVersion } : {}),
            ...(kind ? { kind } : {}),
            ...item,
          } as T),
        );
      }
      listRv = page.metadata?.resourceVersion ?? listRv;
      continueToken = page.metadata?.continue || undefined;
    } while (continueToken);
    if (!listRv) throw new Error(`list of ${path} returned no resourceVersion`);
    dispatch(store.replace(items));
    log.debug({ items: items.length, resourceVersion: listRv }, "listed");
    return listRv;
  }

  async function watchOnce(fromRv: string): Promise<WatchOutcome> {
    const controller = new AbortController();
    const openedAt = Date.now();
    let rv = fromRv;
    let abortReason: WatchOutcome["reason"] | undefined;
    const abort = (reason: WatchOutcome["reason"]) => {
      abortReason ??= reason;
      controller.abort();
    };
    const onStop = () => abort("stopped");
    stopController.signal.addEventListener("abort", onStop, { once: true });
    let stallTimer: NodeJS.Timeout | undefined;
    const armStall = () => {
      clearTimeout(stallTimer);
      stallTimer = setTimeout(() => abort("stall"), stallTimeoutMs);
    };
    const outcome = (reason: WatchOutcome["reason"], error?: unknown): WatchOutcome => ({
      reason,
      resourceVersion: rv,
      error,
      healthy: Date.now() - openedAt >= MIN_HEALTHY_WATCH_MS,
    });
    armStall();
    try {
      const timeoutSeconds = Math.max(1, Math.round(jittered(watchTimeoutSeconds, 0.2, random)));
      const body = await client.stream(
        path,
        { ...selectors(), watch: 1, resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds },
        controller.signal,
      );
      const splitter = createLineSplitter();
      for await (const chunk of body) {
        armStall();
        for (const line of splitter.push(chunk)) {
          const event = parseWatchEvent<T>(line);
          if (event.type === "ERROR") {
            // 410 Expired/Gone: our resourceVersion was compacted away; only a relist can catch up.
            if (event.code === 410) return outcome("gone");
            return outcome("error", new Error(`watch error ${event.code} ${event.reason}: ${event.message}`));
          }
          if (event.type === "BOOKMARK") {
            rv = event.resourceVersion;
            continue;
          }
          const objectRv = event.object.metadata.resourceVersion;
          dispatch(store.apply(event.type, transform(event.object)));
          if (objectRv) rv = objectRv;
          // A handler may have stopped the informer: deliver nothing more.
          if (stopController.signal.aborted) return outcome("stopped");
        }
      }
      return abortReason ? outcome(abortReason) : outcome("closed");
    } catch (error) {
      if (abortReason) return outcome(abortReason);
      if (isGone(error)) return outcome("gone");
      return outcome("error", error);
    } finally {
      clearTimeout(stallTimer);
      stopController.signal.removeEventListener("abort", onStop);
      controller.abort();
    }
  }

  async function loop(): Promise<void> {
    const stopSignal = stopController.signal;
    let needList = true;
    while (!stopSignal.aborted) {
      if (needList) {
        try {
          resourceVersion = await relist();
        } catch (error) {
          if (stopSignal.aborted) break;
          const delay = backoff.next();
          log.warn({ err: describe(error), retryInMs: delay }, "list failed; retrying");
          await sleep(delay, stopSignal);
          continue;
        }
        needList = false;
        if (!synced) {
          synced = true;
          resolveSynced();
          scheduleResync();
        }
      }
      const result = await watchOnce(resourceVersion);
      resourceVersion = result.resourceVersion;
      if (result.reason === "stopped" || stopSignal.aborted) break;
      options.onWatchRestart?.(result.reason);
      const plan = planRestart(result.reason, result.healthy);
      if (plan.resetBackoff) backoff.reset();
      if (plan.relist) needList = true;
      if (result.reason === "gone")
        log.info({ resourceVersion }, "watch resourceVersion expired (410); relisting");
      if (!plan.wait) {
        log.debug({ reason: result.reason, resourceVersion }, "reopening the watch");
        continue;
      }
      const delay = backoff.next();
      log.warn(
        {
          reason: result.reason,
          err: result.error ? describe(result.error) : undefined,
          retryInMs: delay,
          resourceVersion,
        },
        "watch interrupted; restarting",
      );
      await sleep(delay, stopSignal);
    }
    running = false;
    clearTimeout(resyncTimer);
    if (ownsClient) await client.close().catch(() => {});
  }

  return {
    onAdd: (fn) => void addHandlers.push(fn),
    onUpdate: (fn) => void updateHandlers.push(fn),
    onDelete: (fn) => void deleteHandlers.push(fn),
    start() {
      if (stopController.signal.aborted) return Promise.reject(new Error(`informer for ${path} was stopped`));
      if (!running) {
        running = true;
        void loop().catch((error: unknown) => {
          // Unreachable by design (every step catches); logged loudly in case a future change breaks that.
          log.fatal({ err: describe(error) }, "informer loop crashed");
        });
      }
      return syncedPromise;
    },
    stop() {
      if (stopController.signal.aborted) return;
      stopController.abort();
      clearTimeout(resyncTimer);
      if (!synced) rejectSynced(new Error(`informer for ${path} stopped before its first list`));
    },
    hasSynced: () => synced,
    get: (namespace, name) => store.get(namespace, name),
    list: (namespace) => store.list(namespace),
    lastResourceVersion: () => resourceVersion,
  };
}
