import { afterAll, describe, expect, it } from "vitest";
import type { Pod } from "./support/pods.ts";
import { clientOf, e2eTarget } from "./support/target.ts";

const { target, unavailable } = e2eTarget();

interface List<T> {
  items: T[];
}

// What the cluster's controllers do, which the control plane of the integration tests cannot: scheduling,
// ReplicaSets, ServiceAccount defaults, Service endpoints and garbage collection.
describe.skipIf(unavailable !== undefined)("workloads on the local cluster", () => {
  const client = target ? clientOf(target) : undefined;
  afterAll(async () => {
    await client?.close();
  });

  it("runs a Deployment with the default ServiceAccount, lists its pods behind a Service, and collects them when it is deleted", async () => {
    if (!target || !client) return;
    const ns = "e2e-workloads";
    await client.create("/api/v1/namespaces", {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: ns },
    });
    await client.create(`/apis/apps/v1/namespaces/${ns}/deployments`, {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "web" },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: "web" } },
        template: {
          metadata: { labels: { app: "web" } },
          spec: {
            // No serviceAccountName: the ServiceAccount admission plugin sets `default`, which the
            // controller-manager created in the new namespace.
            containers: [
              {
                name: "web",
                image: target.images.sidecar,
                imagePullPolicy: "IfNotPresent",
                command: [
                  "/usr/local/bin/node",
                  "-e",
                  "require('node:http').createServer((q, s) => s.end('ok')).listen(8080)",
                ],
                ports: [{ containerPort: 8080 }],
                readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 },
                securityContext: {
                  runAsNonRoot: true,
                  runAsUser: 65532,
                  readOnlyRootFilesystem: true,
                  allowPrivilegeEscalation: false,
                },
              },
            ],
            terminationGracePeriodSeconds: 2,
          },
        },
      },
    });
    await client.create(`/api/v1/namespaces/${ns}/services`, {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "web" },
      spec: { selector: { app: "web" }, ports: [{ port: 80, targetPort: 8080 }] },
    });

    let pods: Pod[] = [];
    await expect
      .poll(
        async () => {
          pods = (await client.get<List<Pod>>(`/api/v1/namespaces/${ns}/pods`, { labelSelector: "app=web" }))
            .items;
          return pods.filter((p) =>
            p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
          ).length;
        },
        { timeout: 120_000, interval: 250 },
      )
      .toBe(2);
    for (const pod of pods) {
      expect(pod.spec.serviceAccountName).toBe("default");
      expect(pod.spec.nodeName).toBe("agentid-node");
      expect(pod.metadata.ownerReferences?.[0]?.kind).toBe("ReplicaSet");
      expect(pod.status?.podIP).toMatch(/^198\.51\.100\./);
    }
    const podIps = pods.map((p) => p.status?.podIP).sort();
    await expect
      .poll(
        async () => {
          const slices = await client.get<
            List<{ endpoints?: { addresses: string[]; conditions?: { ready?: boolean } }[] }>
          >(`/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`, {
            labelSelector: "kubernetes.io/service-name=web",
          });
          return slices.items
            .flatMap((s) => s.endpoints ?? [])
            .filter((e) => e.conditions?.ready)
            .flatMap((e) => e.addresses)
            .sort();
        },
        { timeout: 60_000, interval: 250 },
      )
      .toEqual(podIps);

    await client.delete(`/apis/apps/v1/namespaces/${ns}/deployments/web`, {
      apiVersion: "v1",
      kind: "DeleteOptions",
      propagationPolicy: "Background",
    });
    await expect
      .poll(
        async () => {
          const replicaSets = await client.get<List<unknown>>(`/apis/apps/v1/namespaces/${ns}/replicasets`);
          const left = await client.get<List<unknown>>(`/api/v1/namespaces/${ns}/pods`);
          return replicaSets.items.length + left.items.length;
        },
        { timeout: 120_000, interval: 250 },
      )
      .toBe(0);
    console.log(
      `proved: Deployment scheduled 2 pods on agentid-node (${podIps.join(", ")}) with the default ServiceAccount, the Service's EndpointSlice listed them, and deleting the Deployment garbage-collected its ReplicaSet and pods`,
    );
  });
});
