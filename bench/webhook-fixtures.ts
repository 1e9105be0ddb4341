import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import type { AgentIdentity, AgentIdentityBlueprint } from "../src/api/types.ts";
import { ObjectStore } from "../src/kube/store.ts";
import { createLogger } from "../src/lib/log.ts";
import { createReviewer } from "../src/webhook/review.ts";
import { DEFAULT_RESOURCES, sidecarSettings } from "../src/webhook/settings.ts";
import { createTargetCache } from "../src/webhook/target.ts";

/**
 * The reviewer both webhook benches judge with (bench/webhook-server.ts over HTTPS, bench/webhook-review-
 * cost.ts in process): the whole review (selection, blueprint and namespace checks, rendering, mutation)
 * over the golden fixtures' objects, held in the informer's own store (src/kube/store.ts) as the manager
 * holds them. Every object gets a fixed uid and resourceVersion, as objects from the API server have, so
 * that two commits answer byte for byte alike. Nothing is read from an API server: every review of the
 * typical pod is answered from the caches, as in a running cluster.
 */
export function fixtureReviewer() {
  const docs = parseAllDocuments(
    readFileSync(new URL("../test/fixtures/webhook/objects.yaml", import.meta.url), "utf8"),
  ).map((d, i) => {
    const doc = d.toJSON();
    doc.metadata = {
      uid: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
      resourceVersion: String(1000 + i),
      ...doc.metadata,
    };
    return doc;
  });
  const identities = new ObjectStore<AgentIdentity>();
  identities.replace(docs.filter((d) => d.kind === "AgentIdentity"));
  const blueprints = new Map<string, AgentIdentityBlueprint>(
    docs.filter((d) => d.kind === "AgentIdentityBlueprint").map((d) => [d.metadata.name, d]),
  );
  const namespaces = new Map<string, Record<string, string>>(
    docs.filter((d) => d.kind === "Namespace").map((d) => [d.metadata.name, d.metadata.labels ?? {}]),
  );
  const settings = sidecarSettings({
    image: "ghcr.io/agentid/sidecar:bench",
    native: true,
    defaultResources: DEFAULT_RESOURCES,
  });
  const resolveTarget = createTargetCache();
  return createReviewer({
    identities: {
      cached: (ns, name) => identities.get(ns, name),
      cachedList: (ns) => identities.list(ns),
      read: async () => undefined,
      list: async () => [],
    },
    resolve: (identity, namespace) =>
      resolveTarget({
        identity,
        blueprint: blueprints.get(identity.spec.blueprintRef.name),
        namespace: { name: namespace, labels: namespaces.get(namespace) ?? {} },
        allowedAuthorityHosts: [],
      }),
    settings: () => settings,
    logger: createLogger({ name: "bench", level: "silent" }),
  });
}
