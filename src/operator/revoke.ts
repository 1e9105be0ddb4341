import { blueprintAdmitsIdentity } from "../api/admit.ts";
import {
  type AgentIdentity,
  type AgentIdentityBlueprint,
  credentialKind,
  type FederatedCredentialStatus,
  federationMode,
} from "../api/types.ts";
import { serviceAccountSubject } from "./federation.ts";

/** Where the operator wrote a credential: what status.federatedCredential.blueprint records. */
export type BlueprintRecord = Required<NonNullable<FederatedCredentialStatus["blueprint"]>>;

/** A credential the operator wrote to Graph, with the blueprint application it lives on. */
export interface WrittenCredential {
  name: string;
  blueprint: BlueprintRecord;
}

export function blueprintRecord(blueprint: AgentIdentityBlueprint): BlueprintRecord {
  return {
    name: blueprint.metadata.name,
    tenantId: blueprint.spec.tenantId,
    clientId: blueprint.spec.clientId,
  };
}

/** The same application in Entra (ids compare case-insensitively, as Entra does). */
export function sameApplication(
  a: Pick<BlueprintRecord, "tenantId" | "clientId">,
  b: Pick<BlueprintRecord, "tenantId" | "clientId">,
): boolean {
  return (
    a.tenantId.toLowerCase() === b.tenantId.toLowerCase() &&
    a.clientId.toLowerCase() === b.clientId.toLowerCase()
  );
}

/**
 * The credential the operator wrote for this identity, from status alone (no request): the recorded
 * blueprint, or, for a status written before the blueprint was recorded, the current blueprint when that
 * one is in Graph mode for a workload identity (the only case in which the operator wrote anything).
 */
export function writtenCredential(
  identity: AgentIdentity,
  current: AgentIdentityBlueprint | undefined,
): WrittenCredential | undefined {
  const recorded = identity.status?.federatedCredential;
  if (!recorded?.name) return undefined;
  const b = recorded.blueprint;
  if (b?.tenantId && b.clientId) {
    return {
      name: recorded.name,
      blueprint: { name: b.name ?? "", tenantId: b.tenantId, clientId: b.clientId },
    };
  }
  if (
    current &&
    current.metadata.name === identity.spec.blueprintRef.name &&
    federationMode(current) === "Graph" &&
    credentialKind(identity, current) === "workloadIdentity"
  )
    return { name: recorded.name, blueprint: blueprintRecord(current) };
  return undefined;
}

/**
 * The recorded credential lives on another application than the current blueprint's: the identity moved
 * (spec.blueprintRef, or the blueprint's tenant/client id changed), and the old application must stop
 * trusting the ServiceAccount.
 */
export function movedCredential(
  identity: AgentIdentity,
  current: AgentIdentityBlueprint,
): WrittenCredential | undefined {
  const written = writtenCredential(identity, current);
  if (!written) return undefined;
  return sameApplication(written.blueprint, blueprintRecord(current)) ? undefined : written;
}

/**
 * Another identity of the same ServiceAccount and blueprint that is not being deleted and that the
 * blueprint admits (namespace and agent): it relies on the same credential (issuer + subject), so that
 * one stays. One the blueprint no longer admits is no heir: un-admitting a namespace revokes for all.
 */
export function credentialHeir(
  identity: AgentIdentity,
  sameNamespace: readonly AgentIdentity[],
  blueprintName: string,
  blueprint: AgentIdentityBlueprint | undefined,
  namespaceLabels: Record<string, string> | undefined,
): AgentIdentity | undefined {
  if (!blueprint || blueprint.metadata.name !== blueprintName) return undefined;
  const namespace = {
    name: identity.metadata.namespace,
    ...(namespaceLabels ? { labels: namespaceLabels } : {}),
  };
  return sameNamespace.find(
    (other) =>
      other.metadata.name !== identity.metadata.name &&
      other.metadata.namespace === identity.metadata.namespace &&
      !other.metadata.deletionTimestamp &&
      other.spec.serviceAccountName === identity.spec.serviceAccountName &&
      other.spec.blueprintRef.name === blueprintName &&
      blueprintAdmitsIdentity(blueprint, namespace, other).allowed,
  );
}

/** Only a credential whose subject is a ServiceAccount of this namespace is ever removed, whatever status says. */
export function namespaceSubjectPrefix(namespace: string): string {
  return serviceAccountSubject(namespace, "");
}
