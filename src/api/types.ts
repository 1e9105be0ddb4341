import type { AgentIdentitySpec, AgentIdentityStatus } from "./types.generated.ts";

export type { AgentIdentitySpec, AgentIdentityStatus } from "./types.generated.ts";

/** Friendly names for parts of the generated types (indexed from them, so they cannot drift either). */
export type Blueprint = AgentIdentitySpec["blueprint"];
export type BlueprintCredential = NonNullable<Blueprint["credential"]>;
export type DownstreamApi = NonNullable<AgentIdentitySpec["downstreamApis"]>[string];
export type SidecarOverrides = NonNullable<AgentIdentitySpec["sidecar"]>;
export type Federation = NonNullable<AgentIdentitySpec["federation"]>;
export type FederationMode = NonNullable<Federation["mode"]>;
export type FederatedCredentialStatus = NonNullable<AgentIdentityStatus["federatedCredential"]>;
export type Condition = NonNullable<AgentIdentityStatus["conditions"]>[number];
export type ConditionStatus = Condition["status"];

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

export interface AgentIdentity {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec: AgentIdentitySpec;
  status?: AgentIdentityStatus;
}

/** Which member of blueprint.credential is set; the API server defaults it to workloadIdentity. */
export type CredentialKind = "workloadIdentity" | "managedIdentity" | "clientSecret";

export function credentialKind(spec: AgentIdentitySpec): CredentialKind {
  const c = spec.blueprint.credential;
  if (c?.clientSecret) return "clientSecret";
  if (c?.managedIdentity) return "managedIdentity";
  return "workloadIdentity";
}

export function federationMode(spec: AgentIdentitySpec): FederationMode {
  return spec.federation?.mode ?? "Manual";
}
