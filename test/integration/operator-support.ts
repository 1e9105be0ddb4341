import { readFileSync } from "node:fs";
import type { KubeConfig } from "@kubernetes/client-node";
import { parse } from "yaml";
import type {
  AgentIdentity,
  AgentIdentityBlueprint,
  AgentIdentityBlueprintSpec,
  AgentIdentitySpec,
} from "../../src/api/types.ts";
import { applyCrd, type RawObject } from "../../src/dev/controlplane-helpers.ts";
import { isApiError, type KubeClient } from "../../src/kube/client.ts";
import { blueprintPath } from "../../src/operator/blueprint-reconciler.ts";
import { identityPath } from "../../src/operator/reconciler.ts";

/** Shared helpers of the operator's integration tests (not a test file). */

export const TENANT = "6f1d2c3b-0a9e-4d8c-b7a6-112233445566";
export const BLUEPRINT = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9";
export const AGENT = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d";

let applied = false;
/** Applies both CRDs (the blueprint first: identities reference it). */
export async function ensureCrd(kubeConfig: KubeConfig): Promise<void> {
  if (applied) return;
  for (const file of ["agentid.io_agentidentityblueprints.yaml", "agentid.io_agentidentities.yaml"]) {
    const crd = parse(readFileSync(new URL(`../../crds/${file}`, import.meta.url), "utf8")) as RawObject;
    // Test files run in parallel against one API server and may apply the CRD at the same moment: a
    // replace that loses the race gets 409, so try again.
    for (let attempt = 1; ; attempt++) {
      try {
        await applyCrd(kubeConfig, crd);
        break;
      } catch (error) {
        if (!isApiError(error, 409) || attempt >= 5) throw error;
      }
    }
  }
  applied = true;
}

/** An identity of blueprint `blueprint` (default: the one named after the namespace) acting as AGENT. */
export function identityBody(
  namespace: string,
  name: string,
  spec: Partial<AgentIdentitySpec> = {},
): AgentIdentity {
  return {
    apiVersion: "agentid.io/v1alpha1",
    kind: "AgentIdentity",
    metadata: { name, namespace },
    spec: {
      blueprintRef: { name: namespace },
      agent: { clientId: AGENT },
      serviceAccountName: name,
      ...spec,
    },
  };
}

/**
 * A blueprint named after the test's namespace (blueprints are cluster-scoped and test files share one
 * API server), admitting that namespace and AGENT, on the given authority host (Custom).
 */
export function blueprintBody(
  name: string,
  spec: Partial<AgentIdentityBlueprintSpec> = {},
): AgentIdentityBlueprint {
  return {
    apiVersion: "agentid.io/v1alpha1",
    kind: "AgentIdentityBlueprint",
    metadata: { name },
    spec: {
      tenantId: TENANT,
      clientId: BLUEPRINT,
      admits: [{ namespaces: [name], agents: { allowed: [AGENT] } }],
      ...spec,
    },
  };
}

export async function createBlueprint(
  kube: KubeClient,
  name: string,
  spec: Partial<AgentIdentityBlueprintSpec> = {},
): Promise<AgentIdentityBlueprint> {
  return kube.create<AgentIdentityBlueprint>(blueprintPath(), blueprintBody(name, spec));
}

export async function createIdentity(
  kube: KubeClient,
  namespace: string,
  name: string,
  spec: Partial<AgentIdentitySpec> = {},
): Promise<AgentIdentity> {
  return kube.create<AgentIdentity>(identityPath(namespace), identityBody(namespace, name, spec));
}

export function condition(identity: AgentIdentity | undefined, type: string) {
  return identity?.status?.conditions?.find((c) => c.type === type);
}

export interface EventObject {
  reason?: string;
  message?: string;
  type?: string;
  involvedObject?: { name?: string; kind?: string };
}

export async function eventsFor(kube: KubeClient, namespace: string, name: string): Promise<EventObject[]> {
  const list = await kube.get<{ items: EventObject[] }>(`/api/v1/namespaces/${namespace}/events`);
  return list.items.filter(
    (e) => e.involvedObject?.name === name && e.involvedObject.kind === "AgentIdentity",
  );
}
