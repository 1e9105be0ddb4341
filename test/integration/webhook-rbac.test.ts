import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNamespace } from "../../src/dev/controlplane-helpers.ts";
import { createKubeClient, isApiError, type KubeClient } from "../../src/kube/client.ts";
import { MWC_PATH, secretPath } from "../../src/webhook/certificate-manager.ts";
import { type ChartObject, renderChart } from "../support/chart.ts";
import { kubeConfigAs as kubeConfigOf } from "./namespace-user.ts";
import { ensureCrd } from "./operator-support.ts";
import {
  createReadyIdentity,
  createTestBlueprint,
  namesOf,
  type RunningWebhook,
  startTestWebhook,
  useWebhookControlPlane,
  waitUntilServed,
} from "./webhook-support.ts";

/**
 * The webhook runs on exactly the RBAC of charts/agentid/templates/webhook.yaml: as the manager's
 * ServiceAccount it issues its certificate, keeps the caBundle and injects; and it can touch no other
 * Secret or webhook configuration.
 */
const { run, cp } = useWebhookControlPlane("whrbac");
const admin = createKubeClient(cp.kubeConfig);
const { managerNamespace, configurationName } = namesOf(run);
let hook: RunningWebhook | undefined;
let asManager: KubeClient;

const COLLECTIONS: Record<string, string> = {
  Role: "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
  RoleBinding: "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
  ClusterRole: "/apis/rbac.authorization.k8s.io/v1/clusterroles",
  ClusterRoleBinding: "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
};

/**
 * The webhook's RBAC objects from the chart. Cluster-scoped ones get this run's name (test files run in
 * parallel on one API server), and the ClusterRole's resourceNames this run's configuration.
 */
function webhookRbac(): ChartObject[] {
  const objects = renderChart({ name: "agentid", namespace: managerNamespace }).filter(
    (o) => o.metadata.labels?.["app.kubernetes.io/component"] === "webhook" && o.kind in COLLECTIONS,
  );
  for (const o of objects) {
    if (o.kind === "ClusterRole" || o.kind === "ClusterRoleBinding")
      o.metadata.name = `${o.metadata.name}-${run}`;
    if (o.kind === "ClusterRoleBinding") (o.roleRef as { name: string }).name = `agentid-webhook-${run}`;
    if (o.kind === "ClusterRole") {
      for (const rule of o.rules as Array<{ resources: string[]; resourceNames?: string[] }>) {
        if (rule.resources.some((r) => r.endsWith("webhookconfigurations")))
          rule.resourceNames = [configurationName];
      }
    }
  }
  return objects;
}

/** A kubeconfig as a ServiceAccount (test/integration/namespace-user.ts). */
const kubeConfigAs = (namespace: string, serviceAccount: string) =>
  kubeConfigOf(admin, cp, namespace, serviceAccount);

beforeAll(async () => {
  await ensureCrd(cp.kubeConfig);
  await createNamespace(cp.kubeConfig, managerNamespace);
  await admin.create(`/api/v1/namespaces/${managerNamespace}/serviceaccounts`, {
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: { name: "agentid-manager" },
  });
  const rbac = webhookRbac();
  expect(rbac.map((o) => o.kind).sort()).toEqual([
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
  ]);
  for (const o of rbac) await admin.create((COLLECTIONS[o.kind] ?? "").replace("{ns}", managerNamespace), o);
  const kubeConfig = await kubeConfigAs(managerNamespace, "agentid-manager");
  asManager = createKubeClient(kubeConfig);
  hook = await startTestWebhook(cp, { run, as: kubeConfig });
});
afterAll(async () => {
  await hook?.stop();
  await asManager?.close();
  await admin.close();
});

async function can(verb: string, resource: string, attrs: Record<string, string> = {}): Promise<boolean> {
  const review = await asManager.create<{ status?: { allowed?: boolean } }>(
    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
    {
      apiVersion: "authorization.k8s.io/v1",
      kind: "SelfSubjectAccessReview",
      spec: { resourceAttributes: { verb, resource, group: "", ...attrs } },
    },
  );
  return review.status?.allowed === true;
}

describe("the webhook's RBAC (charts/agentid/templates/webhook.yaml)", () => {
  it("is enough to issue the certificate, keep the caBundle and inject", async () => {
    if (!hook) throw new Error("no webhook");
    // The webhook serves once the leaf is loaded; the leader records the CA's publication just after it
    // patched the caBundle, so wait for that record rather than read it once.
    const published = async () =>
      (
        await admin.get<{ metadata: { annotations?: Record<string, string> } }>(
          secretPath(managerNamespace, "agentid-webhook-tls"),
        )
      ).metadata.annotations?.["agentid.io/ca-published-at"];
    await expect.poll(published).toBeDefined();
    await createTestBlueprint(admin, cp.namespace);
    await createReadyIdentity(admin, cp.namespace, "research-agent");
    await waitUntilServed(admin, cp.namespace, "research-agent");
  });

  it("learns its own user (SelfSubjectReview needs no rule of its own), whom the guard lets mint a verification token", () => {
    const settings = hook?.logs.find((l) => l.includes('"msg":"webhook settings"'));
    expect(settings).toContain(`"self":"system:serviceaccount:${managerNamespace}:agentid-manager"`);
  });

  it("reads the pod of an exec that names no container (pods get), and refuses it when that is the sidecar", async () => {
    await admin.create(`/api/v1/namespaces/${cp.namespace}/pods`, {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "lonely" },
      spec: { containers: [{ name: "agentid-sidecar", image: "busybox" }] },
    });
    const exec = admin.request("POST", `/api/v1/namespaces/${cp.namespace}/pods/lonely/exec`, {
      query: { command: "cat", stdout: "true" },
    });
    await expect(exec).rejects.toSatisfy(
      (e: unknown) =>
        isApiError(e) && e.message.includes("agentid:") && e.message.includes("names no container"),
    );
  });

  it("reaches no other Secret and no other webhook configuration", async () => {
    for (const verb of ["get", "update"])
      expect(await can(verb, "secrets", { namespace: managerNamespace, name: "other" })).toBe(false);
    expect(await can("list", "secrets", { namespace: managerNamespace })).toBe(false);
    expect(await can("get", "secrets", { namespace: cp.namespace, name: "agentid-webhook-tls" })).toBe(false);
    expect(await can("create", "secrets", { namespace: cp.namespace })).toBe(false);
    expect(
      await can("patch", "mutatingwebhookconfigurations", {
        group: "admissionregistration.k8s.io",
        name: "someone-elses",
      }),
    ).toBe(false);
    expect(
      await can("create", "mutatingwebhookconfigurations", { group: "admissionregistration.k8s.io" }),
    ).toBe(false);
    // The guard's ValidatingWebhookConfiguration: its own caBundle, nothing else.
    expect(
      await can("patch", "validatingwebhookconfigurations", {
        group: "admissionregistration.k8s.io",
        name: configurationName,
      }),
    ).toBe(true);
    for (const verb of ["patch", "delete"])
      expect(
        await can(verb, "validatingwebhookconfigurations", {
          group: "admissionregistration.k8s.io",
          name: "someone-elses",
        }),
      ).toBe(false);
    expect(await can("create", "pods", { namespace: cp.namespace })).toBe(false);
    // The guard reads one pod by name (an exec naming no container); it lists and watches none.
    expect(await can("get", "pods", { namespace: cp.namespace, name: "any" })).toBe(true);
    for (const verb of ["list", "watch"])
      expect(await can(verb, "pods", { namespace: cp.namespace })).toBe(false);
    await expect(asManager.get(`${MWC_PATH}/someone-elses`)).rejects.toSatisfy((e: unknown) =>
      isApiError(e, 403),
    );
  });
});
