import { type AgentIdentity, credentialKind, federationMode } from "../api/types.ts";
import { scrubTokens } from "../lib/log.ts";
import { desiredFederatedCredential, federatedCredentialStatus } from "./federation.ts";
import type { GraphFederation } from "./graph.ts";
import type { IssuerSource } from "./issuer.ts";
import type { Observations } from "./status.ts";

/**
 * The federation step of a reconcile: which issuer, which credential, and in Graph mode making it so.
 * `fresh` tells that Graph was just written, so verification should wait for Entra to catch up.
 */
export async function observeFederation(
  identity: AgentIdentity,
  deps: { issuer: IssuerSource; graph?: GraphFederation },
): Promise<{ obs: Observations["federation"]; issuer?: string; fresh: boolean }> {
  const kind = credentialKind(identity.spec);
  if (kind !== "workloadIdentity") {
    return {
      obs: {
        state: "notRequired",
        message:
          kind === "clientSecret"
            ? "The blueprint uses a client secret; no federated credential is needed."
            : "The blueprint uses a managed identity; its federated credential trusts the managed identity, not this cluster.",
      },
      fresh: false,
    };
  }
  let issuer: string;
  try {
    issuer = identity.spec.federation?.issuer ?? (await deps.issuer.get());
  } catch (error) {
    return {
      obs: {
        state: "issuerUnknown",
        message: `Cannot discover the cluster's service-account issuer: ${scrubTokens((error as Error).message)}`,
      },
      fresh: false,
    };
  }
  const desired = desiredFederatedCredential(
    identity.metadata.namespace,
    identity.spec.serviceAccountName,
    issuer,
  );
  const credential = federatedCredentialStatus(identity.spec.blueprint.clientId, desired);
  if (federationMode(identity.spec) !== "Graph")
    return { obs: { state: "manual", credential }, issuer, fresh: false };
  if (!deps.graph) {
    return {
      obs: {
        state: "graphFailed",
        credential,
        reason: "GraphNotConfigured",
        message:
          "federation.mode is Graph but the manager has no Graph credential (--graph-client-id and a token or secret file).",
      },
      issuer,
      fresh: false,
    };
  }
  const previous = identity.status?.federatedCredential?.name;
  const outcome = await deps.graph.ensure(identity.spec.tenantId, identity.spec.blueprint.clientId, desired);
  if (!outcome.ok)
    return {
      obs: { state: "graphFailed", credential, reason: outcome.reason, message: outcome.message },
      issuer,
      fresh: false,
    };
  if (previous && previous !== desired.name) {
    // Issuer or ServiceAccount changed: the old credential trusts something this identity no longer uses.
    await deps.graph.remove(identity.spec.tenantId, identity.spec.blueprint.clientId, previous);
  }
  return {
    obs: { state: "graph", credential, reason: outcome.reason, message: outcome.message },
    issuer,
    fresh: outcome.reason === "CredentialCreated" || outcome.reason === "CredentialUpdated",
  };
}
