import { Counter, type Registry } from "prom-client";
import type { Logger } from "../lib/log.ts";
import { scrubTokens } from "../lib/log.ts";
import { replaceControls } from "../lib/text.ts";
import { createKubeClient, isConflict, isNotFound, type KubeClient, PATCH_CONTENT_TYPES } from "./client.ts";
import {
  AGGREGATE_LIMIT,
  type AggregateLimit,
  aggregate,
  type BucketLimit,
  COMBINED_PREFIX,
  lruSet,
  messageDigest,
  namespaceKey,
  OBJECT_LIMIT,
  type SimilarEvents,
  similarKey,
  type TokenBucket,
  takeToken,
} from "./event-limits.ts";
import type { KubeConfigLike } from "./kubeconfig.ts";
import type { KubeObject } from "./store.ts";

/**
 * Writes core/v1 Events about objects, the way client-go's recorder does, so that no caller (nor a user who
 * can make a caller report something) floods the API server:
 *
 * - a repeat of the same event (same object, type, reason and message) bumps `count` and `lastTimestamp` on
 *   the existing Event instead of creating a new one;
 * - similar events with different messages are combined from the 11th distinct message within 10 minutes
 *   (event-limits.ts, `aggregate`);
 * - each object, type and reason has a token bucket (25 writes, then one every 5 minutes; optionally a
 *   second one per namespace, type and reason): what is over it is dropped, counted in
 *   `agentid_events_dropped_total`, and the next write that is allowed carries the full count;
 * - at most `maxInFlight` writes run at once; behind them at most `maxQueued` wait (a repeat of a waiting
 *   event joins it), and what does not fit is dropped and counted;
 * - `close()` ends the recorder: what waits is dropped, writes in flight get a short while, then are aborted.
 *
 * Messages are scrubbed of tokens and secrets before they leave the process.
 */

export type EventType = "Normal" | "Warning";

export interface EventLimits {
  /** Per source, involved object, type and reason. */
  perObject: BucketLimit;
  /** Per source, namespace of the involved object, type and reason, on top of `perObject`; none by default. */
  perNamespace?: BucketLimit;
  aggregate: AggregateLimit;
  /** Writes to the API server at once. */
  maxInFlight: number;
  /** Writes waiting behind those in flight; more are dropped. */
  maxQueued: number;
}

export const DEFAULT_EVENT_LIMITS: EventLimits = {
  perObject: OBJECT_LIMIT,
  aggregate: AGGREGATE_LIMIT,
  maxInFlight: 4,
  // client-go's broadcaster queues 1000 events before it drops.
  maxQueued: 1000,
};

export interface EventRecorderOptions {
  kubeConfig: KubeConfigLike;
  client?: KubeClient;
  /** `source.component` and `reportingComponent`, e.g. "agentid-manager". */
  component: string;
  /** `reportingInstance`, e.g. the pod name. */
  instance?: string;
  logger: Logger;
  /** Where `agentid_events_dropped_total` goes (the manager's registry); without one drops are only logged. */
  registry?: Registry;
  limits?: Partial<EventLimits>;
  /** Entries each cache keeps (events for counting, groups, buckets; default 4096, least recently used evicted). */
  maxCacheEntries?: number;
  now?: () => number;
  /** How long `close()` waits for the writes in flight before it aborts them (default 1 s). */
  closeWaitMs?: number;
  /**
   * The term the writes belong to (the operator's leadership term, whose fenced client refuses every write
   * once it ends): when it aborts, the recorder closes at once, before a write that fails can start the next.
   */
  signal?: AbortSignal;
}

export interface EventRecorder {
  /**
   * Records an event without waiting; failures and drops are logged and counted, never thrown (events are
   * best effort). Only a programming error throws: a reason that is not UpperCamelCase, an object without kind.
   */
  record(obj: KubeObject, type: EventType, reason: string, message: string): void;
  /** Resolves when every event accepted so far has been written (or has failed). */
  flush(): Promise<void>;
  /**
   * Ends the recorder for good: the writes still waiting are dropped, and so is every event recorded from
   * now on (counted as `shutdown`); the writes in flight get `closeWaitMs`, then are aborted. Logs one line
   * when anything was lost. Safe to call more than once.
   */
  close(): Promise<void>;
}

/**
 * rate_limited: over a budget; queue_full: too many writes waiting; shutdown: waiting, in flight or
 * recorded when the recorder was closed (the process stops, or the operator's leadership term ended).
 */
export type DropReason = "rate_limited" | "queue_full" | "shutdown";

export const DROPPED_METRIC = "agentid_events_dropped_total";

/** The counter of dropped events, shared by every recorder on one registry (the operator's and the webhook's). */
export function droppedEventsCounter(registry: Registry): Counter<"component" | "reason"> {
  const existing = registry.getSingleMetric(DROPPED_METRIC);
  if (existing) return existing as Counter<"component" | "reason">;
  return new Counter({
    name: DROPPED_METRIC,
    help: "Events not written, by recording component and reason (rate_limited: over the per-object or per-namespace budget; queue_full: too many writes waiting; shutdown: not yet written when the recorder was closed).",
    labelNames: ["component", "reason"],
    registers: [registry],
  });
}

/** Longest message we send; the API server rejects very long ones and a person reads the start anyway. */
export const MAX_EVENT_MESSAGE = 1024;

const SECRET_PATTERNS: Array<[RegExp, string]> = [
  [/\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, "$1 [redacted]"],
  [
    /\b(client_secret|client_assertion|assertion|password|secret|access_token|refresh_token|id_token)=[^&\s"']+/gi,
    "$1=[redacted]",
  ],
  [
    /("(?:client_secret|clientSecret|client_assertion|password|secret|access_token|refresh_token|id_token)"\s*:\s*)"[^"]*"/gi,
    '$1"[redacted]"',
  ],
];

/**
 * Removes tokens and secret-looking values, replaces control characters (src/lib/text.ts: a line break or
 * tab by a space, ANSI escapes, other C0/C1 and bidi overrides by `?`) and caps the length. What a user
 * sends can reach a message (a pod's fields in a webhook refusal); an Event is one line for `kubectl
 * describe` and `kubectl get events`, so none of its callers needs a line break (an Entra error's
 * "Trace ID" lines read as well on one line).
 */
export function sanitizeEventMessage(message: string): string {
  let text = scrubTokens(replaceControls(message));
  for (const [pattern, replacement] of SECRET_PATTERNS) text = text.replace(pattern, replacement);
  return text.length > MAX_EVENT_MESSAGE ? `${text.slice(0, MAX_EVENT_MESSAGE - 3)}...` : text;
}

const REASON = /^[A-Z][A-Za-z0-9]{0,127}$/;

export function eventKey(obj: KubeObject, type: EventType, reason: string, message: string): string {
  const m = obj.metadata;
  return JSON.stringify([
    obj.apiVersion,
    obj.kind,
    m.namespace ?? "",
    m.name,
    m.uid ?? "",
    type,
    reason,
    message,
  ]);
}

/** The Event object for a first occurrence. Cluster-scoped objects get their events in "default". */
export function buildEvent(
  obj: KubeObject,
  type: EventType,
  reason: string,
  message: string,
  source: { component: string; instance?: string },
  nowMs: number,
): Record<string, unknown> & { metadata: { name: string; namespace: string } } {
  const m = obj.metadata;
  const namespace = m.namespace ?? "default";
  const timestamp = eventTime(nowMs);
  // Name like client-go's "<object>.<unix nanos in hex>": unique per object and time.
  const suffix = (BigInt(nowMs) * 1_000_000n + BigInt(Math.floor(Math.random() * 1_000_000))).toString(16);
  return {
    apiVersion: "v1",
    kind: "Event",
    metadata: { name: `${m.name.slice(0, 200)}.${suffix}`, namespace },
    involvedObject: {
      apiVersion: obj.apiVersion,
      kind: obj.kind,
      name: m.name,
      ...(m.namespace ? { namespace: m.namespace } : {}),
      ...(m.uid ? { uid: m.uid } : {}),
      ...(m.resourceVersion ? { resourceVersion: m.resourceVersion } : {}),
    },
    type,
    reason,
    message,
    count: 1,
    firstTimestamp: timestamp,
    lastTimestamp: timestamp,
    eventTime: null,
    source: { component: source.component },
    reportingComponent: source.component,
    reportingInstance: source.instance ?? "",
  };
}

/** Event timestamps are whole seconds (metav1.Time). */
function eventTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

type EventBody = ReturnType<typeof buildEvent>;

/** What the API server should hold for one event key: created with `body`, or patched to its count. */
interface Write {
  namespace: string;
  name: string;
  body: EventBody;
  /** The first write of this Event (or repeats joined to it while it waited): create, don't patch. */
  create: boolean;
}

interface Observed {
  name: string;
  namespace: string;
  count: number;
  firstTimestamp: string;
}

interface Budget extends TokenBucket {
  /** A drop was logged since the bucket last allowed a write (one debug line per object per window). */
  reported: boolean;
}

export function createEventRecorder(options: EventRecorderOptions): EventRecorder {
  const client = options.client ?? createKubeClient(options.kubeConfig);
  const log = options.logger.child({ component: "events" });
  const max = options.maxCacheEntries ?? 4096;
  const now = options.now ?? Date.now;
  const closeWaitMs = options.closeWaitMs ?? 1_000;
  const limits: EventLimits = { ...DEFAULT_EVENT_LIMITS, ...options.limits };
  const component = options.component;
  const dropped = options.registry ? droppedEventsCounter(options.registry) : undefined;
  // Each Map iterates in insertion order, which gives LRU eviction (lruSet).
  const seen = new Map<string, Observed>();
  const groups = new Map<string, SimilarEvents>();
  const objectBudgets = new Map<string, Budget>();
  const namespaceBudgets = new Map<string, Budget>();
  // key -> the latest write waiting for it; a key is never written twice at once, so counts land in order.
  const waiting = new Map<string, Write>();
  const inFlight = new Set<string>();
  let idle: Array<() => void> = [];
  let queueFullReported = false;
  // Aborted by close() once the writes in flight have had their while.
  const aborter = new AbortController();
  let closing: Promise<void> | undefined;
  /** Writes that failed or were aborted after close() began: reported in close()'s one line, not each. */
  let lostInFlight = 0;

  function drop(reason: DropReason, count = 1): void {
    dropped?.inc({ component, reason }, count);
  }

  /** Takes a token from the bucket under `key`; logs the first refusal of each window. */
  function allow(
    budgets: Map<string, Budget>,
    key: string,
    limit: BucketLimit,
    what: Record<string, string>,
  ): boolean {
    const previous = budgets.get(key);
    const { allowed, bucket } = takeToken(previous, now(), limit);
    if (!allowed && !previous?.reported) {
      log.debug(
        { ...what, burst: limit.burst, refillSeconds: limit.refillMs / 1000 },
        "event budget used up; dropping events until it refills",
      );
    }
    lruSet(budgets, key, { ...bucket, reported: !allowed }, max);
    return allowed;
  }

  async function send(write: Write): Promise<void> {
    const base = `/api/v1/namespaces/${encodeURIComponent(write.namespace)}/events`;
    const { body } = write;
    const signal = aborter.signal;
    const create = () => client.request("POST", base, { body, signal });
    const patch = () =>
      client.request("PATCH", `${base}/${encodeURIComponent(write.name)}`, {
        body: { count: body.count, lastTimestamp: body.lastTimestamp, message: body.message },
        contentType: PATCH_CONTENT_TYPES.merge,
        signal,
      });
    if (write.create) {
      try {
        await create();
      } catch (error) {
        // A create that timed out on our side but reached etcd: count on it.
        if (!isConflict(error)) throw error;
        await patch();
      }
      return;
    }
    try {
      await patch();
    } catch (error) {
      // Events expire (1 h by default), and a first write may have been dropped or failed: start a new one
      // carrying the running count.
      if (!isNotFound(error)) throw error;
      await create();
    }
  }

  function pump(): void {
    while (!closing && inFlight.size < limits.maxInFlight) {
      let next: [string, Write] | undefined;
      for (const entry of waiting) {
        if (!inFlight.has(entry[0])) {
          next = entry;
          break;
        }
      }
      if (!next) break;
      const [key, write] = next;
      waiting.delete(key);
      inFlight.add(key);
      send(write)
        .catch((error: unknown) => {
          if (closing) {
            // Aborted by close(), or by the end of a term (the fenced client) that close() follows.
            lostInFlight++;
            drop("shutdown");
            return;
          }
          const err = scrubTokens(error instanceof Error ? error.message : String(error));
          log.warn(
            { err, reason: write.body.reason, object: `${write.namespace}/${write.name}` },
            "could not write event",
          );
        })
        .finally(() => {
          inFlight.delete(key);
          pump();
        });
    }
    if (waiting.size === 0 && inFlight.size === 0) {
      queueFullReported = false;
      const resolve = idle;
      idle = [];
      for (const r of resolve) r();
    }
  }

  function flush(): Promise<void> {
    if (waiting.size === 0 && inFlight.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => idle.push(resolve));
  }

  async function close(): Promise<void> {
    const discarded = waiting.size;
    waiting.clear();
    if (discarded > 0) drop("shutdown", discarded);
    const writing = inFlight.size;
    if (writing > 0) {
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, closeWaitMs);
      });
      await Promise.race([flush(), expired]);
      clearTimeout(timer);
      // Whatever is still in flight would hold the shutdown up to the request timeout on a silent API server.
      aborter.abort();
      await flush();
    }
    if (discarded > 0 || lostInFlight > 0) {
      log.warn(
        { dropped: discarded, abandoned: lostInFlight, inFlight: writing },
        "event recorder closed: events not written",
      );
    }
  }

  function accept(obj: KubeObject, type: EventType, reason: string, rawMessage: string): void {
    const at = now();
    let message = sanitizeEventMessage(rawMessage);
    const similar = similarKey(component, obj, type, reason);
    const grouped = aggregate(groups.get(similar), messageDigest(message), at, limits.aggregate);
    lruSet(groups, similar, grouped.group, max);
    if (grouped.combine) message = sanitizeEventMessage(`${COMBINED_PREFIX}${message}`);
    // A combined event has one key per group, so every further similar event counts on it.
    const key = grouped.combine ? `${similar}combined` : eventKey(obj, type, reason, message);
    const previous = seen.get(key);
    const body = buildEvent(
      obj,
      type,
      reason,
      message,
      { component, ...(options.instance ? { instance: options.instance } : {}) },
      at,
    );
    if (previous) {
      body.metadata.name = previous.name;
      body.metadata.namespace = previous.namespace;
      body.count = previous.count + 1;
      body.firstTimestamp = previous.firstTimestamp;
    }
    const observed: Observed = {
      name: body.metadata.name,
      namespace: body.metadata.namespace,
      count: body.count as number,
      firstTimestamp: body.firstTimestamp as string,
    };
    // Counted even when dropped below (as client-go does): the next write that is allowed carries the total.
    lruSet(seen, key, observed, max);
    const object = `${obj.metadata.namespace ?? ""}/${obj.metadata.name}`;
    // The budget is the group's (object, type and reason): one reason's flood leaves the others theirs.
    if (!allow(objectBudgets, similar, limits.perObject, { object, type, reason })) {
      drop("rate_limited");
      return;
    }
    const perNamespace = limits.perNamespace;
    const namespace = obj.metadata.namespace ?? "";
    const nsKey = namespaceKey(component, namespace, type, reason);
    if (perNamespace && !allow(namespaceBudgets, nsKey, perNamespace, { namespace, type, reason })) {
      drop("rate_limited");
      return;
    }
    const joined = waiting.get(key);
    const write: Write = {
      namespace: observed.namespace,
      name: observed.name,
      body,
      create: observed.count === 1 || (joined?.create ?? false),
    };
    if (!joined && waiting.size >= limits.maxQueued) {
      if (!queueFullReported) {
        log.warn({ maxQueued: limits.maxQueued, reason, object }, "too many events waiting; dropping events");
        queueFullReported = true;
      }
      drop("queue_full");
      return;
    }
    // A repeat of a waiting event replaces it: one write carries both counts.
    waiting.set(key, write);
    pump();
  }

  function closeOnce(): Promise<void> {
    closing ??= close();
    return closing;
  }
  if (options.signal?.aborted) void closeOnce();
  else options.signal?.addEventListener("abort", () => void closeOnce(), { once: true });

  return {
    record(obj, type, reason, rawMessage) {
      if (!REASON.test(reason))
        throw new Error(`event reason must be UpperCamelCase, got ${JSON.stringify(reason)}`);
      if (!obj.apiVersion || !obj.kind) throw new Error("events need the object's apiVersion and kind");
      if (closing) {
        drop("shutdown");
        return;
      }
      try {
        accept(obj, type, reason, rawMessage);
      } catch (error) {
        const err = scrubTokens(error instanceof Error ? error.message : String(error));
        log.warn({ err, reason }, "could not record event");
      }
    },
    flush,
    close: closeOnce,
  };
}
