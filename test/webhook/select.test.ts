import { describe, expect, it } from "vitest";
import type { AgentIdentity } from "../../src/api/types.ts";
import { resolveResources } from "../../src/webhook/annotations.ts";
import { type IdentitySource, selectIdentity, wantsInjection } from "../../src/webhook/select.ts";
import { DEFAULT_RESOURCES, nativeSidecarsFromVersion } from "../../src/webhook/settings.ts";
import { identity as makeIdentity } from "../support/api-fixtures.ts";

const id = (name: string, sa: string, opts: { deleting?: boolean; created?: string } = {}): AgentIdentity => {
  const i = makeIdentity({ serviceAccountName: sa }, name, "ns");
  i.metadata.creationTimestamp = opts.created ?? "2026-12-01T00:00:00Z";
  if (opts.deleting) i.metadata.deletionTimestamp = "2026-12-02T00:00:00Z";
  return i;
};

/** An identity source whose cache holds `cached` and whose API server holds `stored`; counts API reads. */
function source(cached: AgentIdentity[], stored: AgentIdentity[] = cached) {
  const calls = { read: 0, list: 0 };
  const s: IdentitySource = {
    cached: (_ns, name) => cached.find((i) => i.metadata.name === name),
    cachedList: () => cached,
    read: async (_ns, name) => {
      calls.read++;
      return stored.find((i) => i.metadata.name === name);
    },
    list: async () => {
      calls.list++;
      return stored;
    },
  };
  return { s, calls };
}
const pod = (sa?: string, identity?: string) => ({
  metadata: { generateName: "x-", ...(identity ? { annotations: { "agentid.io/identity": identity } } : {}) },
  spec: { ...(sa ? { serviceAccountName: sa } : {}), containers: [] },
});

describe("selectIdentity", () => {
  it("takes the named identity from the cache without an API call", async () => {
    const { s, calls } = source([id("a", "sa1"), id("b", "sa2")]);
    const r = await selectIdentity(pod("sa2", "b"), "ns", s);
    expect(r.ok && r.identity.metadata.name).toBe("b");
    expect(calls).toEqual({ read: 0, list: 0 });
  });

  it("asks the API server when the cache knows nothing (an identity created just before the pod)", async () => {
    const { s, calls } = source([], [id("a", "sa1")]);
    // A pod that names its identity: one GET of it.
    expect((await selectIdentity(pod("sa1", "a"), "ns", s)).ok).toBe(true);
    expect(calls).toEqual({ read: 1, list: 0 });
    // One that names none: the namespace's list.
    expect((await selectIdentity(pod("sa1"), "ns", s)).ok).toBe(true);
    expect(calls).toEqual({ read: 1, list: 1 });
  });

  it("falls back to the identity holding the ServiceAccount (`default` when unset; the oldest of several)", async () => {
    const { s } = source([
      id("newer", "default", { created: "2026-12-03T00:00:00Z" }),
      id("older", "default", { created: "2026-12-01T00:00:00Z" }),
    ]);
    const r = await selectIdentity(pod(), "ns", s);
    expect(r.ok && r.identity.metadata.name).toBe("older");
    const taken = await selectIdentity(pod(undefined, "newer"), "ns", s);
    expect(!taken.ok && taken.refusal.message).toContain("held by the older AgentIdentity older");
  });

  it("refuses a missing, deleting or other-ServiceAccount identity with what to change", async () => {
    const { s } = source([id("a", "sa1"), id("gone", "sa2", { deleting: true })]);
    const missing = await selectIdentity(pod("sa1", "nope"), "ns", s);
    expect(!missing.ok && missing.refusal.reason).toBe("IdentityNotFound");
    expect(!missing.ok && missing.refusal.message).toContain("create the AgentIdentity");
    const deleting = await selectIdentity(pod("sa2", "gone"), "ns", s);
    expect(!deleting.ok && deleting.refusal.reason).toBe("IdentityNotReady");
    const mismatch = await selectIdentity(pod("other", "a"), "ns", s);
    expect(!mismatch.ok && mismatch.refusal.message).toContain(
      "binds ServiceAccount sa1, but the pod runs as other",
    );
    const none = await selectIdentity(pod("sa3"), "ns", s);
    expect(!none.ok && none.refusal.reason).toBe("IdentityNotFound");
  });

  it("hands back the identity a refusal concerns (for its Event), and says whether the API server answered", async () => {
    const older = id("older", "sa1", { created: "2026-11-01T00:00:00Z" });
    const newer = id("newer", "sa1");
    const { s } = source([older, newer, id("gone", "sa2", { deleting: true })]);
    const mismatch = await selectIdentity(pod("other", "older"), "ns", s);
    expect(!mismatch.ok && mismatch.identity?.metadata.name).toBe("older");
    const taken = await selectIdentity(pod("sa1", "newer"), "ns", s);
    expect(!taken.ok && taken.identity?.metadata.name).toBe("newer");
    const deleting = await selectIdentity(pod("sa2", "gone"), "ns", s);
    expect(!deleting.ok && deleting.identity?.metadata.name).toBe("gone");
    expect(deleting.fresh).toBe(false);
    const missing = await selectIdentity(pod("sa1", "nope"), "ns", s);
    expect(!missing.ok && missing.identity).toBeUndefined();
    expect(missing.fresh).toBe(true);
  });

  it("knows which pods asked for injection", () => {
    expect(wantsInjection({ metadata: { labels: { "agentid.io/inject": "true" } } })).toBe(true);
    expect(wantsInjection({ metadata: { labels: { "agentid.io/inject": "false" } } })).toBe(false);
    expect(wantsInjection(pod(undefined, "a"))).toBe(true);
    expect(wantsInjection(pod())).toBe(false);
  });
});

describe("settings and annotations", () => {
  it("uses native sidecars from Kubernetes 1.29", () => {
    expect(nativeSidecarsFromVersion({ gitVersion: "v1.34.4" })).toBe(true);
    expect(nativeSidecarsFromVersion({ gitVersion: "v1.29.0-eks-1" })).toBe(true);
    expect(nativeSidecarsFromVersion({ major: "1", minor: "28+" })).toBe(false);
    expect(nativeSidecarsFromVersion({})).toBe(false);
  });

  it("merges resources: defaults, identity, annotations; empty omits; bad values and request > limit refused", () => {
    const r = resolveResources(
      DEFAULT_RESOURCES,
      { limits: { memory: "200Mi" } },
      { "agentid.io/sidecar-cpu-limit": "" },
    );
    expect(r).toEqual({
      ok: true,
      value: { requests: { cpu: "25m", memory: "96Mi" }, limits: { memory: "200Mi" } },
    });
    const bad = resolveResources(DEFAULT_RESOURCES, undefined, { "agentid.io/sidecar-cpu-request": "-1" });
    expect(!bad.ok && bad.message).toContain("agentid.io/sidecar-cpu-request");
    const inverted = resolveResources(DEFAULT_RESOURCES, undefined, {
      "agentid.io/sidecar-memory-request": "1Gi",
    });
    expect(!inverted.ok && inverted.message).toContain("above its limit");
    const decimal = resolveResources(DEFAULT_RESOURCES, undefined, {
      "agentid.io/sidecar-cpu-request": "0.1",
    });
    expect(decimal.ok && decimal.value.requests?.cpu).toBe("0.1");
  });
});
