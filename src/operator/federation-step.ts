import {
  type AgentIdentity,
  type AgentIdentityBlueprint,
  credentialKind,
  federationMode,
} from "../api/types.ts";
import { scrubTokens } from "../lib/log.ts";
import {
  desiredFederatedCredential,
  federatedCredentialStatus,
  serviceAccountSubject,
} from "./federation.ts";
import type { GraphFederation } from "./graph.ts";
import type { IssuerSource } from "./issuer.ts";
import { blueprintRecord, movedCredential, namespaceSubjectPrefix } from "./revoke.ts";
import type { Observations } from "./status.ts";

/** The issuer a blueprint's credentials trust: its own setting, else the manager's (flag or discovered). */
export async function issuerFor(blueprint: AgentIdentityBlueprint, source: IssuerSource): Promise<string> {
  return blueprint.spec.credential?.workloadIdentity?.issuer ?? (await source.get());
}

/**
 * The federation step of a reconcile, from the blueprint's configuration only: which issuer, which
 * credential, and in Graph mode making it so. `fresh` tells that Graph was just written, so verification
 * should wait for Entra to catch up; `count` is how many credentials the blueprint holds (Graph mode).
 */
export async function observeFederation(
  identity: AgentIdentity,
  blueprint: AgentIdentityBlueprint,
  deps: { issuer: IssuerSource; graph?: GraphFederation },
): Promise<{ obs: Observations["federation"]; issuer?: string; fresh: boolean; count?: number }> {
  const moved = movedCredential(identity, blueprint);
  if (moved && deps.graph) {
    // The identity moved to another blueprint (application): the one it left must stop trusting the
    // ServiceAccount before the new one is written. Checked: until it is gone the identity is not Ready,
    // and status keeps pointing at the old application so that the removal is retried (or done on deletion).
    const removed = await deps.graph.remove(
      moved.blueprint.tenantId,
      moved.blueprint.clientId,
      moved.name,
      namespaceSubjectPrefix(identity.metadata.namespace),
    );
    if (!removed.ok) {
      const previous = identity.status?.federatedCredential;
      return {
        obs: {
          state: "graphFailed",
          ...(previous ? { credential: previous } : {}),
          reason: "PreviousCredentialNotRemoved",
          message: `Cannot remove federated credential ${moved.name} from the previous blueprint ${moved.blueprint.name} (application ${moved.blueprint.clientId}): ${removed.message}`,
          retry: removed.retry,
        },
        fresh: false,
      };
    }
  }
  const kind = credentialKind(identity, blueprint);
  if (kind !== "workloadIdentity") {
    return {
      obs: {
        state: "notRequired",
        message:
          kind === "clientSecret"
            ? "The identity uses a development client secret; no federated credential is needed."
            : "The blueprint uses a managed identity; its federated credential trusts the managed identity, not this cluster.",
      },
      fresh: false,
    };
  }
  let issuer: string;
  try {
    issuer = await issuerFor(blueprint, deps.issuer);
  } catch (error) {
    return {
      obs: {
        state: "issuerUnknown",
        message: `Cannot discover the cluster's service-account issuer: ${scrubTokens((error as Error).message)}`,
      },
      fresh: false,
    };
  }
  const { namespace } = identity.metadata;
  const desired = desiredFederatedCredential(namespace, identity.spec.serviceAccountName, issuer);
  const tenantId = blueprint.spec.tenantId;
  const appId = blueprint.spec.clientId;
  if (federationMode(blueprint) !== "Graph")
    return {
      obs: { state: "manual", credential: federatedCredentialStatus(appId, desired) },
      issuer,
      fresh: false,
    };
  // Recorded with the application it is written to, so that a later move or refusal removes it from there.
  const credential = { ...federatedCredentialStatus(appId, desired), blueprint: blueprintRecord(blueprint) };
  if (!deps.graph) {
    // Nothing is written without Graph: keep the record of one written earlier (so that it is still
    // removed once Graph is back), else show the credential without claiming it was written.
    const written = identity.status?.federatedCredential;
    return {
      obs: {
        state: "graphFailed",
        credential: written?.blueprint ? written : federatedCredentialStatus(appId, desired),
        reason: "GraphNotConfigured",
        message:
          "The blueprint's federation.management is Graph but the manager has no Graph credential (--graph-client-id and a token or secret file).",
        retry: false,
      },
      issuer,
      fresh: false,
    };
  }
  const outcome = await deps.graph.ensure(tenantId, appId, desired);
  if (!outcome.ok)
    return {
      obs: {
        state: "graphFailed",
        credential,
        reason: outcome.reason,
        message: outcome.message,
        retry: outcome.retry,
      },
      issuer,
      fresh: false,
    };
  const previous = identity.status?.federatedCredential;
  if (previous?.name && previous.name !== desired.name && !moved) {
    // Issuer or ServiceAccount changed: the old credential trusts something this identity no longer uses.
    // Checked, not ignored: until it is gone the identity is not Ready. Only a credential for a subject of
    // this namespace is ever removed, whatever status says.
    const removed = await deps.graph.remove(
      tenantId,
      appId,
      previous.name,
      `${serviceAccountSubject(namespace, "")}`,
    );
    if (!removed.ok) {
      return {
        obs: {
          state: "graphFailed",
          credential: previous,
          reason: "OutdatedCredentialNotRemoved",
          message: `Cannot remove the outdated federated credential ${previous.name}: ${removed.message}`,
          retry: removed.retry,
        },
        issuer,
        fresh: false,
      };
    }
  }
  return {
    obs: { state: "graph", credential, reason: outcome.reason, message: outcome.message },
    issuer,
    fresh: outcome.reason === "CredentialCreated" || outcome.reason === "CredentialUpdated",
    count: outcome.count,
  };
}
