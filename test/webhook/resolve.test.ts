import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import type { AgentIdentity, AgentIdentityBlueprint } from "../../src/api/types.ts";
import { createResolve } from "../../src/webhook/index.ts";
import type { NamespaceObject } from "../../src/webhook/reads.ts";
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
) {
  const reads = { blueprint: 0, namespace: 0 };
  const resolve = createResolve({
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

describe("createResolve", () => {
  it("answers at once from the caches, with no read", () => {
    const { resolve, reads } = setup({ blueprints: [BLUEPRINT], namespaces: [labelled] }, unlabelled);
    const result = resolve(IDENTITY, "research");
    expect(result).not.toBeInstanceOf(Promise);
    expect((result as { ok: boolean }).ok).toBe(true);
    expect(reads).toEqual({ blueprint: 0, namespace: 0 });
  });

  it("reads what the caches miss", async () => {
    const { resolve, reads } = setup({ blueprints: [], namespaces: [] }, labelled);
    expect((await resolve(IDENTITY, "research")).ok).toBe(true);
    expect(reads).toEqual({ blueprint: 1, namespace: 1 });
  });

  it("reads the namespace from the API server when asked for a fresh one, whatever the cache holds", async () => {
    const { resolve, reads } = setup({ blueprints: [BLUEPRINT], namespaces: [unlabelled] }, labelled);
    const cached = await resolve(IDENTITY, "research");
    expect(cached.ok).toBe(false);
    expect(!cached.ok && cached.recheck).toBe("namespace");
    expect(reads).toEqual({ blueprint: 0, namespace: 0 });
    expect((await resolve(IDENTITY, "research", { freshNamespace: true })).ok).toBe(true);
    expect(reads).toEqual({ blueprint: 0, namespace: 1 });
  });
});
