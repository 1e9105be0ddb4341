import { KubeConfig } from "@kubernetes/client-node";
import { createKubeClient, isApiError, type KubeClient } from "../../src/kube/client.ts";
import { serviceAccountPath } from "../../src/operator/service-account.ts";
import { renderChart } from "../support/chart.ts";
import type { ConnectedControlPlane } from "../support/controlplane.ts";

/**
 * The attacker of the trust-model tests: a namespace user with what the built-in `edit` role holds (the
 * bootstrap roles it aggregates: this control plane runs no aggregation controller) plus the chart's
 * opt-in `agentid-identity-editor`, in one namespace, never cluster-admin.
 */
const RBAC = "/apis/rbac.authorization.k8s.io/v1";

/** Creates the chart's agentid-identity-editor ClusterRole (once per control plane). */
export async function ensureIdentityEditorRole(admin: KubeClient): Promise<void> {
  const editor = renderChart({ name: "agentid", namespace: "agentid-system" }).find(
    (o) => o.kind === "ClusterRole" && o.metadata.name === "agentid-identity-editor",
  );
  if (!editor) throw new Error("the chart has no agentid-identity-editor role");
  try {
    await admin.create(`${RBAC}/clusterroles`, editor);
  } catch (error) {
    if (!isApiError(error, 409)) throw error;
  }
}

/** A client with the credentials of `alice`, a ServiceAccount bound to those roles in `namespace` only. */
export async function namespaceUserClient(
  admin: KubeClient,
  cp: ConnectedControlPlane,
  namespace: string,
): Promise<KubeClient> {
  await admin.create(serviceAccountPath(namespace), {
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: { name: "alice" },
  });
  for (const role of ["system:aggregate-to-edit", "system:aggregate-to-view", "agentid-identity-editor"]) {
    await admin.create(`${RBAC}/namespaces/${namespace}/rolebindings`, {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: `alice-${role.replaceAll(":", "-")}` },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role },
      subjects: [{ kind: "ServiceAccount", name: "alice", namespace }],
    });
  }
  return createKubeClient(await kubeConfigAs(admin, cp, namespace, "alice"));
}

/** A kubeconfig that authenticates as a ServiceAccount, with a TokenRequest token (one hour). */
export async function kubeConfigAs(
  admin: KubeClient,
  cp: ConnectedControlPlane,
  namespace: string,
  serviceAccount: string,
): Promise<KubeConfig> {
  const answer = await admin.create<{ status: { token: string } }>(
    `${serviceAccountPath(namespace, serviceAccount)}/token`,
    { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 3600 } },
  );
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      {
        name: "c",
        server: cp.server,
        caData: Buffer.from(cp.caPem).toString("base64"),
        skipTLSVerify: false,
      },
    ],
    users: [{ name: serviceAccount, token: answer.status.token }],
    contexts: [{ name: "c", cluster: "c", user: serviceAccount }],
    currentContext: "c",
  });
  return kc;
}
