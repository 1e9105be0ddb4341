import { readFileSync } from "node:fs";
import jsonpatch, { type Operation } from "fast-json-patch";
import { parseAllDocuments } from "yaml";
import type { AgentIdentity, AgentIdentityBlueprint } from "../../src/api/types.ts";
import { createLogger } from "../../src/lib/log.ts";
import type { AdmissionRequest } from "../../src/webhook/admission.ts";
import {
  createGuard,
  type GuardDeps,
  type GuardKind,
  type GuardRequest,
} from "../../src/webhook/guard-review.ts";
import type { JsonObject } from "../../src/webhook/raw.ts";
import { createReviewer } from "../../src/webhook/review.ts";
import type { IdentitySource } from "../../src/webhook/select.ts";
import { resolveTarget } from "../../src/webhook/target.ts";
import type { SidecarSettings } from "../../src/webhook/types.ts";

/**
 * The guard and the mutating reviewer over the same objects (test/fixtures/webhook/objects.yaml: the
 * research namespace, its Ready AgentIdentity research-agent bound to ServiceAccount research-agent, the
 * blueprint admitting it), so a test can inject a pod exactly as the webhook does and hand it to the guard.
 */

const docs = parseAllDocuments(
  readFileSync(new URL("../fixtures/webhook/objects.yaml", import.meta.url), "utf8"),
).map((d) => d.toJSON());
export const IDENTITIES: AgentIdentity[] = docs.filter((d) => d.kind === "AgentIdentity");
const BLUEPRINTS: AgentIdentityBlueprint[] = docs.filter((d) => d.kind === "AgentIdentityBlueprint");
const NAMESPACES: Array<{ metadata: { name: string; labels?: Record<string, string> } }> = docs.filter(
  (d) => d.kind === "Namespace",
);
export const NS = "research";
export const BOUND_SA = "research-agent";
export const MANAGER_USER = "system:serviceaccount:agentid-system:agentid-manager";

/** The cache and the API server hold the same identities (no race here). */
function source(identities: AgentIdentity[]): IdentitySource {
  const inNs = (ns: string) => identities.filter((i) => i.metadata.namespace === ns);
  return {
    cached: (ns, name) => inNs(ns).find((i) => i.metadata.name === name),
    cachedList: inNs,
    read: async (ns, name) => inNs(ns).find((i) => i.metadata.name === name),
    list: async (ns) => inNs(ns),
  };
}

const resolve = async (identity: AgentIdentity, namespace: string) =>
  resolveTarget({
    identity,
    blueprint: BLUEPRINTS.find((b) => b.metadata.name === identity.spec.blueprintRef.name),
    namespace: {
      name: namespace,
      labels: NAMESPACES.find((n) => n.metadata.name === namespace)?.metadata.labels ?? {},
    },
    allowedAuthorityHosts: [],
  });

const silent = createLogger({ name: "guard-test", level: "silent" });

/** `pods`: what the API server holds, by name (the guard reads a pod for an exec that names no container). */
export function guardFor(
  settings: SidecarSettings,
  identities: AgentIdentity[] = IDENTITIES,
  pods: Record<string, JsonObject> = {},
  extra: Partial<GuardDeps> = {},
) {
  return createGuard({
    identities: source(identities),
    resolve,
    settings: () => settings,
    trustedUsers: () => [MANAGER_USER],
    readPod: async (ns, name) => (ns === NS ? pods[name] : undefined),
    ...extra,
    logger: silent,
  });
}

/** The pod as the mutating webhook leaves it (throws when the webhook refuses it). */
export async function inject(pod: JsonObject, settings: SidecarSettings): Promise<JsonObject> {
  const reviewer = createReviewer({
    identities: source(IDENTITIES),
    resolve,
    settings: () => settings,
    logger: silent,
  });
  const request: AdmissionRequest = {
    uid: "m",
    operation: "CREATE",
    namespace: NS,
    resource: "pods",
    subResource: "",
    object: pod,
    oldObject: undefined,
    dryRun: false,
    user: "alice",
  };
  const { response } = await reviewer(request);
  if (!response.allowed) throw new Error(`the webhook refused the pod: ${response.status?.message}`);
  const patch = response.patch
    ? (JSON.parse(Buffer.from(response.patch, "base64").toString()) as Operation[])
    : [];
  return jsonpatch.applyPatch(structuredClone(pod), patch, true, false).newDocument;
}

export function request(
  kind: GuardKind,
  object: JsonObject,
  extra: Partial<GuardRequest> = {},
): GuardRequest {
  const operation =
    kind === "token" || kind === "pod"
      ? "CREATE"
      : kind === "exec" || kind === "attach"
        ? "CONNECT"
        : "UPDATE";
  return {
    uid: "g",
    kind,
    operation,
    namespace: NS,
    name: "",
    object,
    oldObject: undefined,
    user: "alice",
    groups: ["system:serviceaccounts", "system:authenticated"],
    dryRun: false,
    ...extra,
  };
}

export function appPod(spec: JsonObject = {}, metadata: JsonObject = {}): JsonObject {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { generateName: "research-", labels: { "agentid.io/inject": "true" }, ...metadata },
    spec: {
      serviceAccountName: BOUND_SA,
      containers: [{ name: "app", image: "ghcr.io/contoso/research:1.4" }],
      ...spec,
    },
  };
}

export const OWN_TOKEN_VOLUME: JsonObject = {
  name: "my-token",
  projected: {
    sources: [
      {
        serviceAccountToken: {
          audience: "api://AzureADTokenExchange",
          path: "token",
          expirationSeconds: 3600,
        },
      },
    ],
  },
};
