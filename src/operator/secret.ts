import type { AgentIdentity } from "../api/types.ts";
import { checkSecretReference, type SecretKeys } from "../api/validate.ts";
import { isApiError, type KubeClient } from "../kube/client.ts";
import type { Observations } from "./status.ts";

/**
 * Reads the one Secret spec.clientSecretRef names, by name, in the identity's own namespace, when a reconcile needs it: no list, no
 * watch, no cache, so the manager never holds other Secrets. The value is returned for the verification
 * only and must not be kept.
 */
export async function readReferencedSecret(
  kube: KubeClient,
  identity: AgentIdentity,
): Promise<{ observation: Observations["secret"]; value?: string }> {
  const ref = identity.spec.clientSecretRef;
  if (!ref) return { observation: { state: "notRequired" } };
  const path = `/api/v1/namespaces/${encodeURIComponent(identity.metadata.namespace)}/secrets/${encodeURIComponent(ref.name)}`;
  let secret: SecretKeys | undefined;
  try {
    secret = await kube.getOptional<SecretKeys>(path);
  } catch (error) {
    if (isApiError(error, 403)) {
      return {
        observation: {
          state: "problem",
          reason: "SecretAccessDenied",
          message: `The manager may not read Secrets in namespace ${identity.metadata.namespace}: bind the ClusterRole agentid-secret-reader to its ServiceAccount with a RoleBinding in this namespace (see docs/operator.md).`,
        },
      };
    }
    throw error;
  }
  const check = checkSecretReference(secret, ref);
  if (!check.ok) return { observation: { state: "problem", reason: check.reason, message: check.message } };
  const encoded = secret?.data?.[ref.key];
  const value =
    encoded !== undefined ? Buffer.from(encoded, "base64").toString("utf8") : secret?.stringData?.[ref.key];
  return { observation: { state: "ok" }, ...(value ? { value } : {}) };
}
