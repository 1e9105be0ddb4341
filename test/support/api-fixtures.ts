import type {
  AgentIdentity,
  AgentIdentityBlueprint,
  AgentIdentityBlueprintSpec,
  AgentIdentitySpec,
} from "../../src/api/types.ts";

/** Objects the API's unit tests share (not a test file). */

export const TENANT = "11111111-1111-1111-1111-111111111111";
export const BLUEPRINT = "22222222-2222-2222-2222-222222222222";
export const AGENT = "33333333-3333-3333-3333-333333333333";
export const OTHER_AGENT = "44444444-4444-4444-4444-444444444444";

export function blueprint(
  spec: Partial<AgentIdentityBlueprintSpec> = {},
  name = "bp",
): AgentIdentityBlueprint {
  return {
    apiVersion: "agentid.io/v1alpha1",
    kind: "AgentIdentityBlueprint",
    metadata: { name, generation: 1 },
    spec: {
      tenantId: TENANT,
      clientId: BLUEPRINT,
      cloud: "AzurePublic",
      credential: { workloadIdentity: {} },
      admits: [{ namespaces: ["ns"], agents: { allowed: [AGENT] } }],
      ...spec,
    },
  };
}

export function identity(
  spec: Partial<AgentIdentitySpec> = {},
  name = "agent",
  namespace = "ns",
): AgentIdentity {
  return {
    apiVersion: "agentid.io/v1alpha1",
    kind: "AgentIdentity",
    metadata: { name, namespace, generation: 1 },
    spec: { blueprintRef: { name: "bp" }, agent: { clientId: AGENT }, serviceAccountName: name, ...spec },
  };
}
