import type {
  AgentIdentityBlueprintSpec,
  AgentIdentityBlueprintStatus,
  AgentIdentitySpec,
  AgentIdentityStatus,
} from "./types.generated.ts";

export type {
  AgentIdentityBlueprintSpec,
  AgentIdentityBlueprintStatus,
  AgentIdentitySpec,
  AgentIdentityStatus,
} from "./types.generated.ts";

/** Friendly names for parts of the generated types (indexed from them, so they cannot drift either). */
export type AgentSpec = AgentIdentitySpec["agent"];
export type DownstreamApi = NonNullable<AgentIdentitySpec["downstreamApis"]>[number];
export type SidecarOverrides = NonNullable<AgentIdentitySpec["sidecar"]>;
export type SidecarResources = NonNullable<SidecarOverrides["resources"]>;
export type ClientSecretRef = NonNullable<AgentIdentitySpec["clientSecretRef"]>;
export type FederatedCredentialStatus = NonNullable<AgentIdentityStatus["federatedCredential"]>;
export type AgentStatus = NonNullable<AgentIdentityStatus["agent"]>;
export type Condition = NonNullable<AgentIdentityStatus["conditions"]>[number];
export type ConditionStatus = Condition["status"];
export type Cloud = NonNullable<AgentIdentityBlueprintSpec["cloud"]>;
export type BlueprintCredential = NonNullable<AgentIdentityBlueprintSpec["credential"]>;
export type BlueprintAdmits = NonNullable<AgentIdentityBlueprintSpec["admits"]>;
/** One entry of spec.admits: some namespaces and what they may do with the blueprint. */
export type AdmitRule = BlueprintAdmits[number];
export type LabelSelector = NonNullable<AdmitRule["namespaceSelector"]>;
export type FederationMode = NonNullable<NonNullable<AgentIdentityBlueprintSpec["federation"]>["management"]>;
export type AgentCreationCredential = NonNullable<
  NonNullable<AgentIdentityBlueprintSpec["agentCreation"]>["credential"]
>;

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
}

/** Metadata of a cluster-scoped object: no namespace. */
export type ClusterObjectMeta = Omit<ObjectMeta, "namespace"> & { namespace?: undefined };

export interface AgentIdentity {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec: AgentIdentitySpec;
  status?: AgentIdentityStatus;
}

export interface AgentIdentityBlueprint {
  apiVersion?: string;
  kind?: string;
  metadata: ClusterObjectMeta;
  spec: AgentIdentityBlueprintSpec;
  status?: AgentIdentityBlueprintStatus;
}

/** How the sidecar proves itself as the blueprint for one identity. */
export type CredentialKind = "workloadIdentity" | "managedIdentity" | "clientSecret";

/**
 * The credential the sidecar of this identity uses: the identity's development client secret when it
 * names one (whether the blueprint allows it is `blueprintAdmits`' question), else the blueprint's.
 */
export function credentialKind(identity: AgentIdentity, blueprint: AgentIdentityBlueprint): CredentialKind {
  if (identity.spec.clientSecretRef) return "clientSecret";
  return blueprint.spec.credential?.managedIdentity ? "managedIdentity" : "workloadIdentity";
}

export function federationMode(blueprint: AgentIdentityBlueprint): FederationMode {
  return blueprint.spec.federation?.management ?? "Manual";
}
