import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, openSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ControlPlane } from "../src/dev/controlplane.ts";
import { createKubeClient, isApiError } from "../src/kube/client.ts";
import { RBAC_KINDS, renderChart, roleBindingsPath, tokenRequesterBinding } from "../test/support/chart.ts";

/**
 * Starts `node <flags> dist/cli.js manager` as production runs it (the image's ENTRYPOINT flags): in a pod, as the chart's ServiceAccount with
 * exactly the chart's RBAC, reading its credentials from /var/run/secrets/kubernetes.io/serviceaccount.
 * The process gets those files in a mount namespace of its own (a tmpfs over /var/run, visible to it
 * alone; needs root, as the local cluster does). Without root it falls back to --kubeconfig, which also
 * loads @kubernetes/client-node (about 55 MB more): the caller is told which.
 */

export interface ManagerProcess {
  child: ChildProcess;
  mode: "in-cluster" | "kubeconfig";
}

const RELEASE = "agentid-system";
const COLLECTIONS: Record<string, string> = {
  ServiceAccount: "/api/v1/namespaces/{ns}/serviceaccounts",
  ClusterRole: "/apis/rbac.authorization.k8s.io/v1/clusterroles",
  ClusterRoleBinding: "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
  Role: "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
  RoleBinding: "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
};

/**
 * The chart's ServiceAccount and RBAC in the release namespace, and a token for it. The namespaces in
 * `verifying` bind agentid-token-requester to the manager, as a namespace that verifies does (the chart
 * binds it nowhere).
 */
async function installChartRbac(cp: ControlPlane, verifying: readonly string[]): Promise<string> {
  const kube = createKubeClient(cp.kubeConfig);
  try {
    await kube
      .create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: RELEASE } })
      .catch((error: unknown) => {
        if (!isApiError(error, 409)) throw error;
      });
    for (const object of renderChart({ name: "agentid", namespace: RELEASE })) {
      if (!RBAC_KINDS.includes(object.kind)) continue;
      const path = (COLLECTIONS[object.kind] ?? "").replace("{ns}", object.metadata.namespace ?? "");
      await kube.create(path, object);
    }
    for (const namespace of verifying) {
      await kube.create(roleBindingsPath(namespace), tokenRequesterBinding(RELEASE));
    }
    const answer = await kube.create<{ status: { token: string } }>(
      `/api/v1/namespaces/${RELEASE}/serviceaccounts/agentid-manager/token`,
      { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 7200 } },
    );
    return answer.status.token;
  } finally {
    await kube.close();
  }
}

const IN_POD = [
  // A tmpfs over /var/run (or what it links to) in this mount namespace only, with the pod's files.
  'run=$(readlink -f /var/run) && mount -t tmpfs agentid-bench "$run"',
  "sa=/var/run/secrets/kubernetes.io/serviceaccount && mkdir -p $sa",
  'cp "$AGENTID_BENCH_SA"/token "$AGENTID_BENCH_SA"/ca.crt "$AGENTID_BENCH_SA"/namespace $sa/',
  'exec "$@"',
].join(" && ");

export async function startManagerProcess(
  cp: ControlPlane,
  cli: string,
  args: string[],
  nodeOptions: string,
  nodeFlags: readonly string[],
  verifying: readonly string[],
): Promise<ManagerProcess> {
  const token = await installChartRbac(cp, verifying);
  const url = new URL(cp.server);
  const dir = mkdtempSync(join(tmpdir(), "agentid-bench-sa-"));
  writeFileSync(join(dir, "token"), token);
  writeFileSync(join(dir, "ca.crt"), cp.caPem);
  writeFileSync(join(dir, "namespace"), RELEASE);
  const env = {
    ...process.env,
    NODE_OPTIONS: nodeOptions,
    KUBECONFIG: "",
    KUBERNETES_SERVICE_HOST: url.hostname,
    KUBERNETES_SERVICE_PORT: url.port || "443",
    AGENTID_BENCH_SA: dir,
  };
  const inPod = process.getuid?.() === 0;
  // The manager logs JSON on stdout; MANAGER_LOG=<file> keeps it (and anything --trace-gc prints).
  const stdout = process.env.MANAGER_LOG ? openSync(process.env.MANAGER_LOG, "a") : "ignore";
  const child = inPod
    ? spawn(
        "unshare",
        [
          "--mount",
          "--propagation",
          "private",
          "sh",
          "-c",
          IN_POD,
          "sh",
          process.execPath,
          ...nodeFlags,
          cli,
          "manager",
          ...args,
        ],
        {
          stdio: ["ignore", stdout, "inherit"],
          env,
        },
      )
    : spawn(
        process.execPath,
        [
          ...nodeFlags,
          cli,
          "manager",
          "--kubeconfig",
          cp.kubeconfigPath,
          "--lease-namespace",
          RELEASE,
          ...args,
        ],
        {
          stdio: ["ignore", stdout, "inherit"],
          env: { ...env, KUBERNETES_SERVICE_HOST: "" },
        },
      );
  return { child, mode: inPod ? "in-cluster" : "kubeconfig" };
}
