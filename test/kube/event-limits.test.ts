import { describe, expect, it } from "vitest";
import {
  AGGREGATE_LIMIT,
  aggregate,
  lruSet,
  messageDigest,
  namespaceKey,
  OBJECT_LIMIT,
  type SimilarEvents,
  similarKey,
  type TokenBucket,
  takeToken,
} from "../../src/kube/event-limits.ts";

const MINUTE = 60_000;
const identity = {
  apiVersion: "agentid.io/v1alpha1",
  kind: "AgentIdentity",
  metadata: { name: "agent", namespace: "team", uid: "u-1" },
};

/** Takes `n` tokens at time `at`, answering how many were allowed and the bucket after. */
function takeMany(bucket: TokenBucket | undefined, n: number, at: number) {
  let current = bucket;
  let allowed = 0;
  for (let i = 0; i < n; i++) {
    const result = takeToken(current, at, OBJECT_LIMIT);
    current = result.bucket;
    if (result.allowed) allowed++;
  }
  return { allowed, bucket: current };
}

describe("takeToken (client-go's defaults: burst 25, one token every 5 minutes)", () => {
  it("allows a burst of 25 and then nothing at the same moment", () => {
    const { allowed, bucket } = takeMany(undefined, 100, 0);
    expect(allowed).toBe(25);
    expect(bucket?.tokens).toBeLessThan(1);
  });

  it("gives one token back every 5 minutes and no more than the burst", () => {
    const empty = takeMany(undefined, 25, 0).bucket;
    expect(takeToken(empty, 5 * MINUTE - 1, OBJECT_LIMIT).allowed).toBe(false);
    expect(takeMany(empty, 5, 5 * MINUTE).allowed).toBe(1);
    expect(takeMany(empty, 5, 15 * MINUTE).allowed).toBe(3);
    // A day later the bucket is full again, not fuller.
    expect(takeMany(empty, 100, 24 * 60 * MINUTE).allowed).toBe(25);
  });

  it("keeps the fraction of a token earned while refusing", () => {
    let bucket = takeMany(undefined, 25, 0).bucket;
    // Refused attempts every minute still let the bucket fill: the fifth minute brings a token.
    const decisions: boolean[] = [];
    for (let minute = 1; minute <= 5; minute++) {
      const result = takeToken(bucket, minute * MINUTE, OBJECT_LIMIT);
      bucket = result.bucket;
      decisions.push(result.allowed);
    }
    expect(decisions).toEqual([false, false, false, false, true]);
  });

  it("refills nothing when the clock steps back", () => {
    const empty = takeMany(undefined, 25, 10 * MINUTE).bucket;
    expect(takeToken(empty, 0, OBJECT_LIMIT).allowed).toBe(false);
  });
});

/** Feeds messages to one group at the given times; answers which were combined. */
function combineAll(messages: Array<[string, number]>, start?: SimilarEvents) {
  let group = start;
  return messages.map(([message, at]) => {
    const result = aggregate(group, messageDigest(message), at, AGGREGATE_LIMIT);
    group = result.group;
    return result.combine;
  });
}

describe("aggregate (more than 10 distinct messages within 10 minutes are combined)", () => {
  it("writes the first 10 distinct messages as themselves and combines from the 11th", () => {
    const messages = Array.from({ length: 15 }, (_, i): [string, number] => [
      `hostPort ${8000 + i}`,
      i * 1000,
    ]);
    expect(combineAll(messages)).toEqual([...Array(10).fill(false), ...Array(5).fill(true)]);
  });

  it("keeps a repeated message on its own event, also after the group combines", () => {
    const distinct = Array.from({ length: 12 }, (_, i): [string, number] => [`m${i}`, 0]);
    expect(combineAll([...distinct, ["m3", 1000], ["m3", 2000]]).slice(-2)).toEqual([false, false]);
  });

  it("starts over after 10 minutes without a similar event, and not before", () => {
    const ten = Array.from({ length: 10 }, (_, i): [string, number] => [`m${i}`, 0]);
    expect(combineAll([...ten, ["late", 10 * MINUTE]]).at(-1)).toBe(true);
    expect(combineAll([...ten, ["late", 10 * MINUTE + 1]]).at(-1)).toBe(false);
  });

  it("keeps the window open while similar events keep coming", () => {
    // Eleven distinct messages, one every 9 minutes: each arrives inside the window of the previous one.
    const slow = Array.from({ length: 11 }, (_, i): [string, number] => [`m${i}`, i * 9 * MINUTE]);
    expect(combineAll(slow).at(-1)).toBe(true);
  });

  it("remembers at most maxDistinct digests, each short", () => {
    let group: SimilarEvents | undefined;
    for (let i = 0; i < 1000; i++) {
      group = aggregate(group, messageDigest(`m${i}`.repeat(100)), i, AGGREGATE_LIMIT).group;
    }
    expect(group?.messages).toHaveLength(AGGREGATE_LIMIT.maxDistinct);
    for (const digest of group?.messages ?? []) expect(digest.length).toBeLessThanOrEqual(22);
  });
});

describe("keys", () => {
  it("similarKey (the per-object budget's and aggregation's key) separates components and objects, never messages", () => {
    const base = similarKey("agentid-webhook", identity, "Warning", "PodRefused");
    expect(similarKey("agentid-manager", identity, "Warning", "PodRefused")).not.toBe(base);
    expect(
      similarKey(
        "agentid-webhook",
        { ...identity, metadata: { ...identity.metadata, uid: "u-2" } },
        "Warning",
        "PodRefused",
      ),
    ).not.toBe(base);
    expect(
      similarKey(
        "agentid-webhook",
        { ...identity, metadata: { ...identity.metadata, namespace: "other" } },
        "Warning",
        "PodRefused",
      ),
    ).not.toBe(base);
  });

  it("namespaceKey separates components, namespaces, types and reasons", () => {
    const base = namespaceKey("agentid-webhook", "team", "Warning", "PodRefused");
    expect(namespaceKey("agentid-webhook", "team", "Warning", "PodRefused")).toBe(base);
    expect(namespaceKey("agentid-manager", "team", "Warning", "PodRefused")).not.toBe(base);
    expect(namespaceKey("agentid-webhook", "other", "Warning", "PodRefused")).not.toBe(base);
    expect(namespaceKey("agentid-webhook", "team", "Normal", "PodRefused")).not.toBe(base);
    expect(namespaceKey("agentid-webhook", "team", "Warning", "TokenRequestRefused")).not.toBe(base);
  });

  it("similarKey groups by object, type and reason", () => {
    const base = similarKey("c", identity, "Warning", "PodRefused");
    expect(similarKey("c", identity, "Warning", "PodRefused")).toBe(base);
    expect(similarKey("c", identity, "Normal", "PodRefused")).not.toBe(base);
    expect(similarKey("c", identity, "Warning", "TokenRequestRefused")).not.toBe(base);
    expect(
      similarKey(
        "c",
        { ...identity, metadata: { ...identity.metadata, name: "b" } },
        "Warning",
        "PodRefused",
      ),
    ).not.toBe(base);
  });

  it("keeps names that contain the separator of a joined key apart", () => {
    const a = { ...identity, metadata: { name: "a", namespace: "bc" } };
    const b = { ...identity, metadata: { name: "ab", namespace: "c" } };
    expect(similarKey("x", a, "Warning", "R")).not.toBe(similarKey("x", b, "Warning", "R"));
  });
});

describe("lruSet", () => {
  it("evicts the least recently set entry", () => {
    const map = new Map<string, number>();
    lruSet(map, "a", 1, 2);
    lruSet(map, "b", 2, 2);
    lruSet(map, "a", 3, 2);
    lruSet(map, "c", 4, 2);
    expect([...map.keys()]).toEqual(["a", "c"]);
    expect(map.get("a")).toBe(3);
  });
});
