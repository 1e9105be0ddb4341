import { createHash } from "node:crypto";
import type { KubeObject } from "./store.ts";

/**
 * The decisions that keep the event recorder (events.ts) from flooding the API server, as pure functions of
 * their state and the time, after client-go's EventCorrelator (tools/record/events_cache.go):
 *
 * - a token bucket per source, involved object, type and reason (burst 25, one token back every 5 minutes):
 *   an object that keeps failing, or a user who keeps making it fail, gets a bounded number of writes, and
 *   one reason's flood (PodRefused, or Normal OrphanedCredentialRemoved on a blueprint every namespace shares)
 *   does not use up the budget of another (TokenRequestRefused, the Warning OrphanedCredentialNotRemoved);
 * - aggregation of similar events (same object, type and reason, different messages): from the 11th distinct
 *   message within 10 minutes on, they become one event "(combined from similar events): <latest message>",
 *   so varying the message (a different hostPort each time) does not make a new Event per attempt.
 */

export interface BucketLimit {
  /** Tokens a new bucket holds: writes allowed in a burst. */
  burst: number;
  /** One token comes back every this many milliseconds, up to `burst`. */
  refillMs: number;
}

export interface TokenBucket {
  tokens: number;
  /** When `tokens` was last computed (ms). */
  at: number;
}

/** client-go's defaults: 25 events about an object, then one every 5 minutes. */
export const OBJECT_LIMIT: BucketLimit = { burst: 25, refillMs: 5 * 60_000 };

/** Takes one token if there is one. A bucket never seen starts full. */
export function takeToken(
  bucket: TokenBucket | undefined,
  now: number,
  limit: BucketLimit,
): { allowed: boolean; bucket: TokenBucket } {
  const start = bucket ?? { tokens: limit.burst, at: now };
  // A clock that steps back refills nothing rather than draining the bucket.
  const elapsed = Math.max(0, now - start.at);
  const tokens = Math.min(limit.burst, start.tokens + elapsed / limit.refillMs);
  // The epsilon keeps refills summed from fractions (0.2 + 0.2 + ...) from falling just short of a token.
  if (tokens >= 1 - 1e-9) return { allowed: true, bucket: { tokens: Math.max(0, tokens - 1), at: now } };
  return { allowed: false, bucket: { tokens, at: now } };
}

export interface AggregateLimit {
  /** Distinct messages written as themselves within the window; further distinct ones are combined. */
  maxDistinct: number;
  /** A group whose last similar event is older than this starts over. */
  windowMs: number;
}

/** client-go's defaults: more than 10 distinct messages within 10 minutes are combined. */
export const AGGREGATE_LIMIT: AggregateLimit = { maxDistinct: 10, windowMs: 10 * 60_000 };

export const COMBINED_PREFIX = "(combined from similar events): ";

export interface SimilarEvents {
  /** Digests of the distinct messages written as themselves (at most `maxDistinct`). */
  messages: readonly string[];
  /** When the last similar event was seen (ms). */
  at: number;
}

/**
 * Whether an event joins the combined event of its group. A message seen before in the window keeps its own
 * event (its repeats are counted there); the first `maxDistinct` distinct messages too; any other is combined.
 */
export function aggregate(
  group: SimilarEvents | undefined,
  messageDigest: string,
  now: number,
  limit: AggregateLimit,
): { group: SimilarEvents; combine: boolean } {
  const current = group && now - group.at <= limit.windowMs ? group : { messages: [], at: now };
  if (current.messages.includes(messageDigest)) return { group: { ...current, at: now }, combine: false };
  if (current.messages.length < limit.maxDistinct) {
    return { group: { messages: [...current.messages, messageDigest], at: now }, combine: false };
  }
  return { group: { ...current, at: now }, combine: true };
}

/** A short digest of a message, so that a group remembers messages without holding up to 1 KiB each. */
export function messageDigest(message: string): string {
  return createHash("sha256").update(message).digest("base64url").slice(0, 22);
}

function objectParts(obj: KubeObject): string[] {
  const m = obj.metadata;
  return [obj.apiVersion ?? "", obj.kind ?? "", m.namespace ?? "", m.name, m.uid ?? ""];
}

/**
 * The key of the per-object budget and of aggregation: who writes (component), about which object, with
 * which type and reason, never the message. client-go's spam filter keys on the object alone, so there a
 * flood of one reason starves every other reason about the object; its aggregator keys on the reason too.
 */
export function similarKey(component: string, obj: KubeObject, type: string, reason: string): string {
  return JSON.stringify([component, ...objectParts(obj), type, reason]);
}

/** The key of a per-namespace budget (the webhook's): the namespace, type and reason. */
export function namespaceKey(component: string, namespace: string, type: string, reason: string): string {
  return JSON.stringify([component, namespace, type, reason]);
}

/** Sets `key` as the most recently used entry and evicts the least recently used beyond `max`. */
export function lruSet<V>(map: Map<string, V>, key: string, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > max) {
    const oldest = map.keys().next().value;
    if (oldest === undefined) break;
    map.delete(oldest);
  }
}
