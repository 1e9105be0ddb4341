import { readdirSync, readFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { applyCrd, type RawObject } from "../../src/dev/controlplane-helpers.ts";
import { type ChartObject, RBAC_KINDS, renderChart } from "../support/chart.ts";
import { isRunning, type Pod, status } from "./support/pods.ts";
import { clientOf, e2eTarget, kubeConfigOf } from "./support/target.ts";

const { target, unavailable } = e2eTarget();
const NS = "agentid-system";
const CRDS = new URL("../../crds/", import.meta.url);

function collection(object: ChartObject): string {
  const ns = object.metadata.namespace ?? NS;
  const rbac = "/apis/rbac.authorization.k8s.io/v1";
  switch (object.kind) {
    case "ServiceAccount":
      return `/api/v1/namespaces/${ns}/serviceaccounts`;
    case "ClusterRole":
      return `${rbac}/clusterroles`;
    case "ClusterRoleBinding":
      return `${rbac}/clusterrolebindings`;
    case "Role":
      return `${rbac}/namespaces/${ns}/roles`;
    case "RoleBinding":
      return `${rbac}/namespaces/${ns}/rolebindings`;
    default:
      throw new Error(`no collection for ${object.kind}`);
  }
}

// The manager image as a Deployment with the chart's least-privilege RBAC: it starts as a pod, reaches the
// API server through the `kubernetes` Service, and reports ready.
describe.skipIf(unavailable !== undefined)("the manager image on the local cluster", () => {
  const client = target ? clientOf(target) : undefined;
  afterAll(async () => {
    await client?.close();
  });

  it("runs the manager from its image with the chart's RBAC until /readyz answers", async () => {
    if (!target || !client) return;
    const kc = kubeConfigOf(target);
    for (const file of readdirSync(CRDS).filter((f) => f.endsWith(".yaml"))) {
      await applyCrd(kc, parse(readFileSync(new URL(file, CRDS), "utf8")) as RawObject);
    }
    await client.create("/api/v1/namespaces", {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: NS },
    });
    const rbac = renderChart({ name: "agentid", namespace: NS }).filter((o) => RBAC_KINDS.includes(o.kind));
    for (const object of rbac) await client.create(collection(object), object);
    await client.create(`/apis/apps/v1/namespaces/${NS}/deployments`, {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "agentid-manager" },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: "agentid-manager" } },
        template: {
          metadata: { labels: { app: "agentid-manager" } },
          spec: {
            serviceAccountName: "agentid-manager",
            containers: [
              {
                name: "manager",
                image: target.images.manager,
                imagePullPolicy: "IfNotPresent",
                args: ["manager", "--no-verify"],
                env: [
                  { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
                ],
                readinessProbe: { httpGet: { path: "/readyz", port: 8081 }, periodSeconds: 1 },
                securityContext: {
                  runAsNonRoot: true,
                  allowPrivilegeEscalation: false,
                  readOnlyRootFilesystem: true,
                  capabilities: { drop: ["ALL"] },
                },
              },
            ],
          },
        },
      },
    });
    // Polled every 100 ms: when the container is first seen running, and when first seen ready.
    let runningAt: number | undefined;
    let pod: Pod | undefined;
    const deadline = Date.now() + 180_000;
    while (Date.now() < deadline) {
      const pods = await client.get<{ items: Pod[] }>(`/api/v1/namespaces/${NS}/pods`, {
        labelSelector: "app=agentid-manager",
      });
      pod = pods.items[0];
      if (pod && runningAt === undefined && isRunning(pod, "manager")) runningAt = Date.now();
      if (pod && status(pod, "manager")?.ready) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(pod && status(pod, "manager")?.ready, JSON.stringify(pod?.status)).toBe(true);
    expect(status(pod as Pod, "manager")?.restartCount).toBe(0);
    console.log(
      `proved: the manager image ran as uid 65532 on a read-only root filesystem with the chart's RBAC and answered /readyz; container start → ready about ${runningAt ? Date.now() - runningAt : "?"} ms (polled every 100 ms; probe period 1 s)`,
    );
  });
});
