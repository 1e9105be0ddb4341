import { readdirSync, readFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { applyCrd, type RawObject } from "../../src/dev/controlplane-helpers.ts";
import { isApiError } from "../../src/kube/client.ts";
import { type ChartObject, renderChart, roleBindingsPath, tokenRequesterBinding } from "../support/chart.ts";
import { WEBHOOK_SERVICE_ACCOUNT } from "./global-setup.ts";
import {
  appScript,
  createAndTimeToAppRunning,
  EMULATOR_CA_CONFIGMAP,
  isRunning,
  type Pod,
  status,
} from "./support/pods.ts";
import { clientOf, e2eTarget, kubeConfigOf, podLog } from "./support/target.ts";

const { target, unavailable } = e2eTarget();
const NS = "agentid-system";
const CRDS = new URL("../../crds/", import.meta.url);
const IDENTITY = "webhook-agent";
const BLUEPRINT_NAME = "e2e-blueprint";

/** Where each kind the chart renders is created (the chart is applied as plain manifests). */
function collection(object: ChartObject): string {
  const ns = object.metadata.namespace ?? NS;
  const rbac = "/apis/rbac.authorization.k8s.io/v1";
  const paths: Record<string, string> = {
    ServiceAccount: `/api/v1/namespaces/${ns}/serviceaccounts`,
    Service: `/api/v1/namespaces/${ns}/services`,
    ClusterRole: `${rbac}/clusterroles`,
    ClusterRoleBinding: `${rbac}/clusterrolebindings`,
    Role: `${rbac}/namespaces/${ns}/roles`,
    RoleBinding: `${rbac}/namespaces/${ns}/rolebindings`,
    MutatingWebhookConfiguration: "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
    ValidatingWebhookConfiguration: "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
  };
  const path = paths[object.kind];
  if (!path) throw new Error(`no collection for ${object.kind}`);
  return path;
}

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

// The whole path of the issue: the manager runs as a pod from the manager image with the chart's RBAC and
// webhook configuration, the API server calls its webhook through the Service (at the pod's IP), the webhook
// injects the sidecar into a labelled pod, and the injected sidecar gets the app an agent token.
describe.skipIf(unavailable !== undefined)("the manager image with its webhook on the local cluster", () => {
  const client = target ? clientOf(target) : undefined;
  afterAll(async () => {
    await client?.close();
  });

  it("runs the manager from its image until /readyz answers, with the chart's RBAC and webhook configuration", async () => {
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
    await client.create(`/api/v1/namespaces/${NS}/configmaps`, {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: EMULATOR_CA_CONFIGMAP },
      data: { "ca.pem": target.emulator.caPem },
    });
    for (const object of renderChart({ name: "agentid", namespace: NS })) {
      await client.create(collection(object), object);
    }
    const labels = { "app.kubernetes.io/name": "agentid", "app.kubernetes.io/component": "manager" };
    await client.create(`/apis/apps/v1/namespaces/${NS}/deployments`, {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "agentid-manager", labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: "agentid-manager",
            // The manager needs no service-link variables. They once clashed with --webhook-port's variable
            // (AGENTID_WEBHOOK_PORT=tcp://<ip>:443, found by this test); test/manager/service-links.test.ts
            // now keeps the manager's variables apart from them.
            enableServiceLinks: false,
            containers: [
              {
                name: "manager",
                image: target.images.manager,
                imagePullPolicy: "IfNotPresent",
                args: [
                  "manager",
                  "--sidecar-image",
                  target.images.sidecarTrustingEmulator,
                  "--sidecar-image-pull-policy",
                  "IfNotPresent",
                  "--allowed-authority-hosts",
                  target.emulator.instance,
                  "--ca-file",
                  "/etc/agentid/emulator-ca/ca.pem",
                ],
                env: [
                  { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
                ],
                ports: [{ containerPort: 9443, name: "webhook" }],
                readinessProbe: { httpGet: { path: "/readyz", port: 8081 }, periodSeconds: 1 },
                volumeMounts: [
                  { name: "emulator-ca", mountPath: "/etc/agentid/emulator-ca", readOnly: true },
                ],
                securityContext: {
                  runAsNonRoot: true,
                  allowPrivilegeEscalation: false,
                  readOnlyRootFilesystem: true,
                  capabilities: { drop: ["ALL"] },
                  seccompProfile: { type: "RuntimeDefault" },
                },
              },
            ],
            volumes: [{ name: "emulator-ca", configMap: { name: EMULATOR_CA_CONFIGMAP } }],
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
        labelSelector: "app.kubernetes.io/component=manager",
      });
      pod = pods.items[0];
      if (pod && runningAt === undefined && isRunning(pod, "manager")) runningAt = Date.now();
      if (pod && status(pod, "manager")?.ready) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const ready = pod !== undefined && status(pod, "manager")?.ready === true;
    if (!ready && pod)
      console.log(await podLog(target, NS, pod.metadata.name, "manager").catch((e: Error) => e.message));
    expect(ready, JSON.stringify(pod?.status)).toBe(true);
    console.log(
      `proved: the manager image ran as a non-root user on a read-only root filesystem with the chart's RBAC and answered /readyz (webhook certificate loaded, caches synced); container start → ready about ${runningAt ? Date.now() - runningAt : "?"} ms (polled every 100 ms, readiness probe period 1 s)`,
    );
  });

  it("injects the sidecar into a labelled pod, and the injected sidecar gets the app an agent token", async () => {
    if (!target || !client) return;
    const ns = target.agentNamespace;
    // This namespace verifies its workload identity: it lets the manager request the ServiceAccount's token.
    await client.create(roleBindingsPath(ns), tokenRequesterBinding(NS));
    await client.create("/apis/agentid.io/v1alpha1/agentidentityblueprints", {
      apiVersion: "agentid.io/v1alpha1",
      kind: "AgentIdentityBlueprint",
      metadata: { name: BLUEPRINT_NAME },
      spec: {
        tenantId: target.emulator.tenantId,
        cloud: "Custom",
        authorityHost: target.emulator.instance,
        clientId: target.emulator.blueprintAppId,
        credential: { workloadIdentity: {} },
        federation: { management: "Manual" },
        admits: [{ namespaces: [ns], agents: { allowed: [target.emulator.agentAppId] } }],
      },
    });
    await client.create(`/apis/agentid.io/v1alpha1/namespaces/${ns}/agentidentities`, {
      apiVersion: "agentid.io/v1alpha1",
      kind: "AgentIdentity",
      metadata: { name: IDENTITY },
      spec: {
        blueprintRef: { name: BLUEPRINT_NAME },
        agent: { clientId: target.emulator.agentAppId },
        serviceAccountName: WEBHOOK_SERVICE_ACCOUNT,
        downstreamApis: [
          {
            name: "graph-app",
            baseUrl: "https://graph.microsoft.com/v1.0/",
            scopes: ["https://graph.microsoft.com/.default"],
            requestAppToken: true,
          },
        ],
        // A locked sidecar refuses a request without AgentIdentity (that would be the blueprint's own token), and
        // naming it is an agent parameter, which this route allows only with the flag.
        sidecar: { allowOverrides: { getAuthorizationHeaderUnauthenticated: true } },
      },
    });
    // The operator (in the same manager pod) ensures the ServiceAccount and proves the federated credential
    // with a real token exchange against the emulator before the identity is Ready.
    let conditions: Condition[] = [];
    await expect
      .poll(
        async () => {
          const identity = await client.get<{ status?: { conditions?: Condition[] } }>(
            `/apis/agentid.io/v1alpha1/namespaces/${ns}/agentidentities/${IDENTITY}`,
          );
          conditions = identity.status?.conditions ?? [];
          return conditions.find((c) => c.type === "Ready")?.status;
        },
        { timeout: 120_000, interval: 500 },
      )
      .toBe("True");

    const { pod, ms } = await createAndTimeToAppRunning(client, {
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name: "injected-app",
        namespace: ns,
        labels: { "agentid.io/inject": "true" },
        annotations: { "agentid.io/identity": IDENTITY },
      },
      spec: {
        serviceAccountName: WEBHOOK_SERVICE_ACCOUNT,
        automountServiceAccountToken: false,
        terminationGracePeriodSeconds: 5,
        containers: [
          {
            name: "app",
            image: target.images.sidecar,
            imagePullPolicy: "IfNotPresent",
            command: [
              "/usr/local/bin/node",
              "--input-type=module",
              "-e",
              // The sidecar is locked to the identity's agent; the request names it (without it, it would ask
              // for the blueprint's own token, which a locked sidecar refuses).
              appScript({ agentAppId: target.emulator.agentAppId, stay: true }),
            ],
            securityContext: {
              runAsNonRoot: true,
              runAsUser: 65532,
              allowPrivilegeEscalation: false,
              readOnlyRootFilesystem: true,
              capabilities: { drop: ["ALL"] },
              seccompProfile: { type: "RuntimeDefault" },
            },
          },
        ],
      },
    });
    const stored = await client.get<{
      metadata: { annotations?: Record<string, string> };
      spec: { initContainers?: { name: string; restartPolicy?: string }[] };
    }>(`/api/v1/namespaces/${ns}/pods/injected-app`);
    expect(stored.metadata.annotations?.["agentid.io/injected"]).toMatch(new RegExp(`^${IDENTITY}@\\d+$`));
    expect(stored.spec.initContainers?.[0]).toMatchObject({
      name: "agentid-sidecar",
      restartPolicy: "Always",
    });
    expect(status(pod, "agentid-sidecar")?.started).toBe(true);

    let line = "";
    await expect
      .poll(
        async () => {
          line = (await podLog(target, ns, "injected-app", "app")).trim().split("\n")[0] ?? "";
          return line.length > 0;
        },
        { timeout: 60_000, interval: 250 },
      )
      .toBe(true);
    const report = JSON.parse(line) as {
      status: number;
      appid?: string;
      tokenFileVisible: boolean;
      error?: string;
    };
    if (report.status !== 200) {
      console.log(
        `app: ${line}\nsidecar log:\n${(await podLog(target, ns, "injected-app", "agentid-sidecar")).slice(-3000)}`,
      );
    }
    expect(report).toMatchObject({ status: 200, appid: target.emulator.agentAppId, tokenFileVisible: false });
    console.log(
      `proved: the webhook (manager pod, called through its Service) injected a native sidecar into a labelled pod; the sidecar started first, read the projected token and the app got an agent token through SIDECAR_URL; pod create → app running ${ms} ms`,
    );

    // The guard, served by the same manager pod: the kubelet's TokenRequest for the sidecar's projected
    // token passed it (above); anyone else's, even a cluster admin's, for this bound ServiceAccount is refused.
    const refused = await client
      .create(`/api/v1/namespaces/${ns}/serviceaccounts/${WEBHOOK_SERVICE_ACCOUNT}/token`, {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenRequest",
        spec: { audiences: ["api://AzureADTokenExchange"], expirationSeconds: 600 },
      })
      .then(
        () => "admitted",
        (error: unknown) => (isApiError(error) ? error.message : String(error)),
      );
    expect(refused).toContain('admission webhook "token.guard.agentid.io" denied the request: agentid:');
    expect(refused).not.toMatch(/eyJ[\w-]+\.[\w-]+/);
    console.log(
      "proved: the guard (same manager pod) let the kubelet's TokenRequest for the sidecar's token through and refused a direct one for the bound ServiceAccount",
    );
  });
});
