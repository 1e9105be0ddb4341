import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, request } from "undici";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createKubeClient } from "../../src/kube/client.ts";
import { loadInClusterConfig } from "../../src/kube/kubeconfig.ts";
import type { LeaseObject } from "../../src/kube/lease.ts";
import { createLogger } from "../../src/lib/log.ts";
import { leaseNamespaceFrom } from "../../src/manager/command.ts";
import { type RunningManager, startManager } from "../../src/manager/manager.ts";
import { useControlPlane } from "../support/controlplane.ts";
import { apiServerAddress, createNamespace } from "./kube-support.ts";
import { ensureCrd } from "./operator-support.ts";

/** The manager's defaults against a real API server: the Lease where it runs, /metrics behind TokenReview + SubjectAccessReview. */
const cp = useControlPlane({ namespacePrefix: "mgr-defaults" });
const admin = createKubeClient(cp.kubeConfig);
const managers: RunningManager[] = [];
const cleanup: Array<() => Promise<unknown>> = [];
const logger = createLogger({ name: "manager", level: "silent" });
const rbac = "/apis/rbac.authorization.k8s.io/v1";

beforeAll(() => ensureCrd(cp.kubeConfig));
afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => m.stop()));
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => {});
});
afterAll(() => admin.close());

async function serviceAccountToken(namespace: string, name: string): Promise<string> {
  await admin.create(`/api/v1/namespaces/${namespace}/serviceaccounts`, {
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: { name },
  });
  const answer = await admin.create<{ status: { token: string } }>(
    `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`,
    { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 3600 } },
  );
  return answer.status.token;
}

async function bindClusterRole(role: string, namespace: string, serviceAccount: string): Promise<void> {
  const name = `${role}-${namespace}-${serviceAccount}`;
  await admin.create(`${rbac}/clusterrolebindings`, {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role },
    subjects: [{ kind: "ServiceAccount", name: serviceAccount, namespace }],
  });
  cleanup.push(() => admin.delete(`${rbac}/clusterrolebindings/${name}`));
}

describe("the manager's defaults from where it runs", () => {
  it("puts its Lease in the namespace of the in-cluster namespace file", async () => {
    const home = await createNamespace(admin, "agentid-home");
    cleanup.push(() => admin.delete(`/api/v1/namespaces/${home}`));
    const token = await serviceAccountToken(home, "agentid-manager");
    await bindClusterRole("cluster-admin", home, "agentid-manager");
    // What the kubelet mounts into the pod: token, CA and namespace files, and the service's address.
    const dir = mkdtempSync(join(tmpdir(), "agentid-incluster-"));
    writeFileSync(join(dir, "token"), token);
    writeFileSync(join(dir, "ca.crt"), cp.caPem);
    writeFileSync(join(dir, "namespace"), `${home}\n`);
    const { host, port } = apiServerAddress(cp.kubeConfig);
    const kubeConfig = loadInClusterConfig(
      { KUBERNETES_SERVICE_HOST: host, KUBERNETES_SERVICE_PORT: String(port) },
      dir,
    );
    const m = await startManager({
      kubeConfig,
      logger,
      namespace: cp.namespace,
      leaseNamespace: leaseNamespaceFrom(undefined, kubeConfig.namespace),
      verify: false,
    });
    managers.push(m);
    await expect
      .poll(
        () =>
          admin.getOptional<LeaseObject>(
            `/apis/coordination.k8s.io/v1/namespaces/${home}/leases/agentid-manager`,
          ),
        {
          timeout: 15_000,
        },
      )
      .toMatchObject({ spec: { holderIdentity: m.identity } });
    expect(
      await admin.getOptional(`/apis/coordination.k8s.io/v1/namespaces/default/leases/agentid-manager`),
    ).toBeUndefined();
  });

  it("serves /metrics over HTTPS only to callers the API server authorizes for get /metrics", async () => {
    const m = await startManager({
      kubeConfig: cp.kubeConfig,
      logger,
      namespace: cp.namespace,
      leaseNamespace: cp.namespace,
      verify: false,
      metrics: { host: "127.0.0.1", port: 0, secure: true },
    });
    managers.push(m);
    expect(m.metricsUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const reader = `agentid-metrics-reader-${cp.namespace}`;
    await admin.create(`${rbac}/clusterroles`, {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: { name: reader },
      rules: [{ nonResourceURLs: ["/metrics"], verbs: ["get"] }],
    });
    cleanup.push(() => admin.delete(`${rbac}/clusterroles/${reader}`));
    const scraper = await serviceAccountToken(cp.namespace, "scraper");
    await bindClusterRole(reader, cp.namespace, "scraper");
    const stranger = await serviceAccountToken(cp.namespace, "stranger");

    // The certificate is self-signed (as controller-runtime's is); the point here is who gets an answer.
    const agent = new Agent({ connect: { rejectUnauthorized: false } });
    cleanup.push(() => agent.close());
    const scrape = async (authorization?: string) => {
      const res = await request(`${m.metricsUrl}/metrics`, {
        dispatcher: agent,
        headers: authorization ? { authorization } : {},
      });
      return { status: res.statusCode, text: await res.body.text() };
    };
    expect((await scrape()).status).toBe(401);
    expect((await scrape("Bearer not-a-token")).status).toBe(401);
    const denied = await scrape(`Bearer ${stranger}`);
    expect(denied).toEqual({
      status: 403,
      text: `system:serviceaccount:${cp.namespace}:stranger may not get /metrics`,
    });
    const allowed = await scrape(`Bearer ${scraper}`);
    expect(allowed.status).toBe(200);
    expect(allowed.text).toContain("agentid_kube_requests_total");
    // Plain HTTP on the same port gets no metrics.
    await expect(fetch(`${m.metricsUrl?.replace("https:", "http:")}/metrics`)).rejects.toThrow(
      "fetch failed",
    );
    // Decisions are cached by token: a second scrape asks the API server nothing more.
    const reviews = () => m.requestCounts()["POST tokenreviews"] ?? 0;
    const before = reviews();
    expect((await scrape(`Bearer ${scraper}`)).status).toBe(200);
    expect(reviews()).toBe(before);
  });
});
