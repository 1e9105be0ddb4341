import { readFileSync } from "node:fs";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import type { AgentIdentity } from "../../src/api/types.ts";
import type { RunningEmulator } from "../../src/emulator/index.ts";
import { createKubeClient, isApiError } from "../../src/kube/client.ts";
import type { RunningManager } from "../../src/operator/manager.ts";
import { identityPath } from "../../src/operator/reconciler.ts";
import { useControlPlane } from "../support/controlplane.ts";
import { LogCapture, startTestEmulator, startTestManager } from "./operator-fixture.ts";
import { condition, createIdentity, ensureCrd, eventually } from "./operator-support.ts";

/**
 * The chart's RBAC is enough for the manager and no more: the manager runs as a ServiceAccount bound only
 * to charts/agentid/templates/clusterrole.yaml, and cannot read Secrets until a namespace opts in.
 */
const cp = useControlPlane({ namespacePrefix: "rbac" });
const admin = createKubeClient(cp.kubeConfig);
let emu: RunningEmulator;
let running: RunningManager | undefined;
const logs = new LogCapture();

beforeAll(async () => {
  await ensureCrd(cp.kubeConfig);
  emu = await startTestEmulator(cp);
});
afterEach(async () => {
  await running?.stop();
  running = undefined;
});
afterAll(async () => {
  await emu?.close();
  await admin.close();
});

function renderRbac(
  namespace: string,
): Array<{ kind: string; metadata: { name: string; namespace?: string } }> {
  const text = readFileSync(
    new URL("../../charts/agentid/templates/clusterrole.yaml", import.meta.url),
    "utf8",
  )
    .replaceAll("{{ .Release.Name | quote }}", JSON.stringify("agentid"))
    .replaceAll("{{ .Release.Namespace | quote }}", JSON.stringify(namespace));
  return parseAllDocuments(text).map((d) => d.toJSON());
}

async function applyOrReplace(path: string, body: { metadata: { name: string } }): Promise<void> {
  try {
    await admin.create(path, body);
  } catch (error) {
    if (!isApiError(error, 409)) throw error;
    const current = await admin.get<{ metadata: { resourceVersion: string } }>(
      `${path}/${body.metadata.name}`,
    );
    await admin.replace(`${path}/${body.metadata.name}`, {
      ...body,
      metadata: { ...body.metadata, resourceVersion: current.metadata.resourceVersion },
    });
  }
}

/** A kubeconfig that authenticates as a ServiceAccount with a TokenRequest token. */
async function kubeConfigAs(namespace: string, serviceAccount: string): Promise<KubeConfig> {
  const answer = await admin.create<{ status: { token: string } }>(
    `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`,
    {
      apiVersion: "authentication.k8s.io/v1",
      kind: "TokenRequest",
      spec: { expirationSeconds: 3600 },
    },
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
    users: [{ name: "u", token: answer.status.token }],
    contexts: [{ name: "c", cluster: "c", user: "u" }],
    currentContext: "c",
  });
  return kc;
}

describe("the manager's RBAC (charts/agentid/templates/clusterrole.yaml)", () => {
  it("reconciles with only the chart's permissions and reads a Secret only where a RoleBinding allows it", async () => {
    const ns = cp.namespace;
    await admin.create(`/api/v1/namespaces/${ns}/serviceaccounts`, {
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: { name: "manager" },
    });
    const subject = [{ kind: "ServiceAccount", name: "manager", namespace: ns }];
    for (const doc of renderRbac(ns)) {
      if (doc.kind === "ClusterRole")
        await applyOrReplace("/apis/rbac.authorization.k8s.io/v1/clusterroles", doc);
      else await admin.create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`, doc);
    }
    const crbName = `agentid-manager-${ns}`;
    await admin.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: crbName },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "agentid-manager" },
      subjects: subject,
    });
    await admin.create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: "agentid-manager-leader-election" },
      roleRef: {
        apiGroup: "rbac.authorization.k8s.io",
        kind: "Role",
        name: "agentid-manager-leader-election",
      },
      subjects: subject,
    });
    const asManager = await kubeConfigAs(ns, "manager");
    const managerClient = createKubeClient(asManager);
    try {
      // No Secret access anywhere without the opt-in.
      await expect(managerClient.get(`/api/v1/namespaces/${ns}/secrets`)).rejects.toMatchObject({
        status: 403,
      });

      running = await startTestManager({ ...cp, kubeConfig: asManager }, emu, ns, logs, { verify: true });
      await createIdentity(admin, ns, "workload", {});
      await createIdentity(admin, ns, "secretive", {
        clientSecretRef: { name: "bp", key: "secret" },
      });
      const read = (name: string) => admin.getOptional<AgentIdentity>(identityPath(ns, name));
      const until = (name: string, reason: string) =>
        eventually(`${name} Ready reason ${reason}`, async () => {
          const identity = await read(name);
          return condition(identity, "Ready")?.reason === reason ? identity : undefined;
        });
      const workload = await eventually("workload Verified", async () => {
        const identity = await read("workload");
        return condition(identity, "Verified")?.status === "True" ? identity : undefined;
      });
      expect(workload.status?.serviceAccount).toBe("workload");
      await until("secretive", "SecretAccessDenied");

      await admin.create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "RoleBinding",
        metadata: { name: "agentid-secret-reader" },
        roleRef: {
          apiGroup: "rbac.authorization.k8s.io",
          kind: "ClusterRole",
          name: "agentid-secret-reader",
        },
        subjects: subject,
      });
      await admin.patch(identityPath(ns, "secretive"), "merge", {
        metadata: { annotations: { retry: "1" } },
        spec: { agentId: "9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d" },
      });
      await until("secretive", "SecretNotFound");
      // get-by-name only: listing stays forbidden even in the opted-in namespace.
      await expect(managerClient.get(`/api/v1/namespaces/${ns}/secrets`)).rejects.toMatchObject({
        status: 403,
      });

      await admin.delete(identityPath(ns, "workload"));
      await eventually("workload deleted (finalizer removed by the manager)", async () =>
        (await read("workload")) ? undefined : true,
      );
    } finally {
      await managerClient.close();
      await admin.delete(`/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${crbName}`).catch(() => {});
    }
  });
});
