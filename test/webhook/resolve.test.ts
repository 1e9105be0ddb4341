import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import type { AgentIdentity, AgentIdentityBlueprint } from "../../src/api/types.ts";
import { createResolve, MISSING_BLUEPRINT_TTL_MS } from "../../src/webhook/index.ts";
import { type NamespaceObject, ReadBudget } from "../../src/webhook/reads.ts";
import type { Resolved } from "../../src/webhook/review.ts";
import { resolveTarget } from "../../src/webhook/target.ts";

/**
 * How the webhook finds an identity's blueprint and namespace (index.ts, createResolve): from the caches,
 * from the API server on a miss, and the namespace from the API server when the review re-checks a refusal
 * (`freshNamespace`). The caches and the API server are in-memory stores; API reads are counted.
 */

const docs = parseAllDocuments(
  readFileSync(new URL("../fixtures/webhook/objects.yaml", import.meta.url), "utf8"),
).map((d) => d.toJSON());
const BLUEPRINT = docs.find((d) => d.kind === "AgentIdentityBlueprint") as AgentIdentityBlueprint;
const IDENTITY = docs.find((d) => d.kind === "AgentIdentity") as AgentIdentity;
const labelled: NamespaceObject = {
  metadata: { name: "research", labels: { "agentid.io/blueprint": "contoso-research" } },
};
const unlabelled: NamespaceObject = { metadata: { name: "research", labels: {} } };

function store<T extends { metadata: { name: string } }>(objects: T[]) {
  return { get: (_ns: string | undefined, name: string) => objects.find((o) => o.metadata.name === name) };
}

function setup(
  cache: { blueprints: AgentIdentityBlueprint[]; namespaces: NamespaceObject[] },
  apiNamespace: NamespaceObject,
  clock: { now: number } = { now: 0 },
) {
  const reads = { blueprint: 0, namespace: 0 };
  const resolve = createResolve({
    now: () => clock.now,
    blueprints: store(cache.blueprints),
    namespaces: store(cache.namespaces),
    api: {
      blueprint: async (name) => {
        reads.blueprint++;
        return name === BLUEPRINT.metadata.name ? BLUEPRINT : undefined;
      },
      namespace: async () => {
        reads.namespace++;
        return apiNamespace;
      },
    },
    target: (input) => resolveTarget({ ...input, allowedAuthorityHosts: [] }),
  });
  return { resolve, reads };
}

/** The answer, waited for when it is a promise (it must never be `undefined` here). */
async function answer(value: Resolved | Promise<Resolved> | undefined): Promise<Resolved> {
  const resolved = await value;
  if (!resolved) throw new Error("resolve wanted to read without a budget");
  return resolved;
}

describe("createResolve", () => {
  it("answers at once from the caches, with no read", () => {
    const { resolve, reads } = setup({ blueprints: [BLUEPRINT], namespaces: [labelled] }, unlabelled);
    const result = resolve(IDENTITY, "research");
    expect(result).not.toBeInstanceOf(Promise);
    expect((result as { ok: boolean } | undefined)?.ok).toBe(true);
    expect(reads).toEqual({ blueprint: 0, namespace: 0 });
  });

  it("reads what the caches miss, under the review's budget; without one it says it would have to read", async () => {
    const { resolve, reads } = setup({ blueprints: [], namespaces: [] }, labelled);
    expect(resolve(IDENTITY, "research")).toBeUndefined();
    expect(reads).toEqual({ blueprint: 0, namespace: 0 });
    expect((await answer(resolve(IDENTITY, "research", { budget: new ReadBudget() }))).ok).toBe(true);
    expect(reads).toEqual({ blueprint: 1, namespace: 1 });
  });

  it("reads the namespace from the API server when asked for a fresh one, whatever the cache holds", async () => {
    const { resolve, reads } = setup({ blueprints: [BLUEPRINT], namespaces: [unlabelled] }, labelled);
    const cached = await answer(resolve(IDENTITY, "research"));
    expect(cached.ok).toBe(false);
    expect(!cached.ok && cached.recheck).toBe("namespace");
    expect(reads).toEqual({ blueprint: 0, namespace: 0 });
    const budget = new ReadBudget();
    expect((await answer(resolve(IDENTITY, "research", { freshNamespace: true, budget }))).ok).toBe(true);
    expect(reads).toEqual({ blueprint: 0, namespace: 1 });
  });

  it("remembers a blueprint that does not exist for a few seconds; the cache still wins at once", async () => {
    const clock = { now: 1_000_000 };
    const blueprints: AgentIdentityBlueprint[] = [];
    const { resolve, reads } = setup({ blueprints, namespaces: [labelled] }, labelled, clock);
    const orphan = structuredClone(IDENTITY);
    orphan.spec.blueprintRef.name = "not-there";
    const budget = () => ({ budget: new ReadBudget() });
    const first = await answer(resolve(orphan, "research", budget()));
    expect(!first.ok && first.refusal.reason).toBe("BlueprintNotFound");
    expect(reads.blueprint).toBe(1);
    // Within the TTL: the same refusal at once, without a read (and without a budget).
    clock.now += MISSING_BLUEPRINT_TTL_MS - 1;
    const again = resolve(orphan, "research");
    expect(again).not.toBeInstanceOf(Promise);
    expect((again as Extract<Resolved, { ok: false }> | undefined)?.refusal.reason).toBe("BlueprintNotFound");
    expect(reads.blueprint).toBe(1);
    // After it: read again.
    clock.now += 2;
    await answer(resolve(orphan, "research", budget()));
    expect(reads.blueprint).toBe(2);
    // A blueprint the shared cache holds is used at once, remembered miss or not.
    blueprints.push({ ...BLUEPRINT, metadata: { ...BLUEPRINT.metadata, name: "not-there" } });
    const found = resolve(orphan, "research");
    expect(found).not.toBeInstanceOf(Promise);
    expect((found as Resolved | undefined)?.ok).toBe(true);
    expect(reads.blueprint).toBe(2);
  });
});
