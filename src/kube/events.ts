import type { Logger } from "../lib/log.ts";
import { scrubTokens } from "../lib/log.ts";
import { createKubeClient, isNotFound, type KubeClient } from "./client.ts";
import type { KubeConfigLike } from "./kubeconfig.ts";
import type { KubeObject } from "./store.ts";

/**
 * Writes core/v1 Events about objects, the way client-go's recorder does: a repeat of the same event
 * (same object, type, reason and message) bumps `count` and `lastTimestamp` on the existing Event instead
 * of creating a new one. Messages are scrubbed of tokens and secrets before they leave the process.
 */

export type EventType = "Normal" | "Warning";

export interface EventRecorderOptions {
  kubeConfig: KubeConfigLike;
  client?: KubeClient;
  /** `source.component` and `reportingComponent`, e.g. "agentid-manager". */
  component: string;
  /** `reportingInstance`, e.g. the pod name. */
  instance?: string;
  logger: Logger;
  /** How many distinct events to remember for de-duplication (default 4096, least recently used evicted). */
  maxCacheEntries?: number;
  now?: () => number;
}

export interface EventRecorder {
  /** Records an event without waiting; failures are logged, never thrown (events are best effort). */
  record(obj: KubeObject, type: EventType, reason: string, message: string): void;
  /** Resolves when every event recorded so far has been written (or has failed). */
  flush(): Promise<void>;
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

/** Removes tokens and secret-looking values and caps the length. */
export function sanitizeEventMessage(message: string): string {
  let text = scrubTokens(message);
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
  const timestamp = new Date(nowMs).toISOString().replace(/\.\d{3}Z$/, "Z");
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

export function createEventRecorder(options: EventRecorderOptions): EventRecorder {
  const client = options.client ?? createKubeClient(options.kubeConfig);
  const log = options.logger.child({ component: "events" });
  const max = options.maxCacheEntries ?? 4096;
  const now = options.now ?? Date.now;
  // key -> the Event we wrote for it; a Map iterates in insertion order, which gives us LRU eviction.
  const seen = new Map<string, { name: string; namespace: string; count: number }>();
  // key -> the write in flight, so repeats of one event are counted in order and never race.
  const chains = new Map<string, Promise<void>>();
  const pending = new Set<Promise<void>>();

  function remember(key: string, value: { name: string; namespace: string; count: number }): void {
    seen.delete(key);
    seen.set(key, value);
    if (seen.size > max) {
      const oldest = seen.keys().next().value;
      if (oldest !== undefined) seen.delete(oldest);
    }
  }

  async function create(
    obj: KubeObject,
    type: EventType,
    reason: string,
    message: string,
    key: string,
    count: number,
  ) {
    const event = buildEvent(
      obj,
      type,
      reason,
      message,
      { component: options.component, instance: options.instance },
      now(),
    );
    event.count = count;
    const ns = event.metadata.namespace;
    await client.create(`/api/v1/namespaces/${encodeURIComponent(ns)}/events`, event);
    remember(key, { name: event.metadata.name, namespace: ns, count });
  }

  async function write(
    obj: KubeObject,
    type: EventType,
    reason: string,
    message: string,
    key: string,
  ): Promise<void> {
    const previous = seen.get(key);
    if (!previous) {
      await create(obj, type, reason, message, key, 1);
      return;
    }
    const count = previous.count + 1;
    const path = `/api/v1/namespaces/${encodeURIComponent(previous.namespace)}/events/${encodeURIComponent(previous.name)}`;
    try {
      const lastTimestamp = new Date(now()).toISOString().replace(/\.\d{3}Z$/, "Z");
      await client.patch(path, "merge", { count, lastTimestamp });
      remember(key, { ...previous, count });
    } catch (error) {
      // Events expire (1 h by default); start a new one carrying the running count.
      if (!isNotFound(error)) throw error;
      await create(obj, type, reason, message, key, count);
    }
  }

  return {
    record(obj, type, reason, rawMessage) {
      if (!REASON.test(reason))
        throw new Error(`event reason must be UpperCamelCase, got ${JSON.stringify(reason)}`);
      if (!obj.apiVersion || !obj.kind) throw new Error("events need the object's apiVersion and kind");
      const message = sanitizeEventMessage(rawMessage);
      const key = eventKey(obj, type, reason, message);
      const before = chains.get(key) ?? Promise.resolve();
      const next = before
        .then(() => write(obj, type, reason, message, key))
        .catch((error: unknown) => {
          const err = scrubTokens(error instanceof Error ? error.message : String(error));
          log.warn(
            { err, reason, object: `${obj.metadata.namespace ?? ""}/${obj.metadata.name}` },
            "could not write event",
          );
        })
        .finally(() => {
          if (chains.get(key) === next) chains.delete(key);
          pending.delete(next);
        });
      chains.set(key, next);
      pending.add(next);
    },
    async flush() {
      while (pending.size > 0) await Promise.all([...pending]);
    },
  };
}
