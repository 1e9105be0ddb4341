import { Agent, request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import type { AgentIdentity } from "../../src/api/types.ts";
import { createKubeClient, isApiError, type KubeClient } from "../../src/kube/client.ts";
import type { RunningManager } from "../../src/manager/manager.ts";
import { identityPath } from "../../src/operator/reconciler.ts";
import { type ChartObject, RBAC_KINDS, renderChart } from "../support/chart.ts";
import { createNamespace } from "./kube-support.ts";
import { kubeConfigAs as kubeConfigOf } from "./namespace-user.ts";
import { onEmulator } from "./operator-fixture.ts";
import { useOperatorHarness } from "./operator-harness.ts";
import { AGENT, condition, createBlueprint, createIdentity, identityBody } from "./operator-support.ts";

/**
 * The chart's RBAC is enough for the manager and no more: the manager runs as the chart's ServiceAccount
 * with exactly the rules and bindings of charts/agentid/templates, and the test checks, as the manager,
 * what those rules must not allow.
 */
const op = useOperatorHarness({ namespacePrefix: "rbac" });
const { cp, admin } = op;
const rbac = "/apis/rbac.authorization.k8s.io/v1";
let running: RunningManager | undefined;
const cleanup: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  // The manager stops before the RBAC it runs with goes.
  await running?.stop();
  running = undefined;
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => {});
});

const COLLECTIONS: Record<string, string> = {
  ServiceAccount: "/api/v1/namespaces/{ns}/serviceaccounts",
  ClusterRole: `${rbac}/clusterroles`,
  ClusterRoleBinding: `${rbac}/clusterrolebindings`,
  Role: `${rbac}/namespaces/{ns}/roles`,
  RoleBinding: `${rbac}/namespaces/{ns}/rolebindings`,
};

async function apply(object: ChartObject): Promise<void> {
  const path = (COLLECTIONS[object.kind] ?? "").replace("{ns}", object.metadata.namespace ?? "");
  try {
    await admin.create(path, object);
  } catch (error) {
    if (!isApiError(error, 409)) throw error;
    const current = await admin.get<{ metadata: { resourceVersion: string } }>(
      `${path}/${object.metadata.name}`,
    );
    await admin.replace(`${path}/${object.metadata.name}`, {
      ...object,
      metadata: { ...object.metadata, resourceVersion: current.metadata.resourceVersion },
    });
  }
}

/** A kubeconfig as a ServiceAccount (test/integration/namespace-user.ts). */
const kubeConfigAs = (namespace: string, serviceAccount: string) =>
  kubeConfigOf(admin, cp, namespace, serviceAccount);

async function serviceAccount(namespace: string, name: string): Promise<void> {
  await admin.create(`/api/v1/namespaces/${namespace}/serviceaccounts`, {
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: { name },
  });
}

async function roleBinding(
  namespace: string,
  name: string,
  clusterRole: string,
  subject: object,
): Promise<void> {
  await admin.create(`${rbac}/namespaces/${namespace}/rolebindings`, {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: { name },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: clusterRole },
    subjects: [subject],
  });
}

/** What the API server says this client may do (SelfSubjectAccessReview, which every user may ask). */
async function can(
  client: KubeClient,
  verb: string,
  resource: string,
  options: { namespace?: string; group?: string; subresource?: string; name?: string } = {},
): Promise<boolean> {
  const review = await client.create<{ status?: { allowed?: boolean } }>(
    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
    {
      apiVersion: "authorization.k8s.io/v1",
      kind: "SelfSubjectAccessReview",
      spec: { resourceAttributes: { verb, resource, group: options.group ?? "", ...options } },
    },
  );
  return review.status?.allowed === true;
}

describe("the manager's RBAC (charts/agentid/templates)", () => {
  it("nothing in the chart is aggregated into the built-in roles", () => {
    const roles = renderChart({ name: "agentid", namespace: "agentid-system" }).filter(
      (o) => o.kind === "ClusterRole",
    );
    expect(roles.map((r) => r.metadata.name)).toContain("agentid-identity-editor");
    for (const role of roles)
      expect(Object.keys(role.metadata.labels ?? {}).filter((l) => l.includes("aggregate-to-"))).toEqual([]);
  });

  it("reconciles with only the chart's permissions, and those permissions stop where they should", async () => {
    const ns = cp.namespace;
    const release = await createNamespace(admin, "agentid-system");
    cleanup.push(() => admin.delete(`/api/v1/namespaces/${release}`));
    const chart = renderChart({ name: "agentid", namespace: release }).filter((o) =>
      RBAC_KINDS.includes(o.kind),
    );
    for (const object of chart) await apply(object);
    const subject = { kind: "ServiceAccount", name: "agentid-manager", namespace: release };
    const asManager = await kubeConfigAs(release, "agentid-manager");
    const manager = createKubeClient(asManager);
    cleanup.push(() => manager.close());

    // What the manager must not be able to do, asked of the API server as the manager.
    for (const verb of ["patch", "update"])
      expect(await can(manager, verb, "serviceaccounts", { namespace: ns })).toBe(false);
    for (const verb of ["get", "list", "watch"])
      expect(await can(manager, verb, "secrets", { namespace: ns })).toBe(false);
    expect(await can(manager, "list", "secrets")).toBe(false);
    expect(
      await can(manager, "create", "rolebindings", { namespace: ns, group: "rbac.authorization.k8s.io" }),
    ).toBe(false);
    expect(await can(manager, "create", "agentidentities", { namespace: ns, group: "agentid.io" })).toBe(
      false,
    );
    expect(
      await can(manager, "update", "agentidentityblueprints", { group: "agentid.io", name: "any" }),
    ).toBe(false);
    expect(await can(manager, "create", "tokenreviews", { group: "authentication.k8s.io" })).toBe(false);
    expect(
      await can(manager, "update", "leases", {
        namespace: release,
        group: "coordination.k8s.io",
        name: "other",
      }),
    ).toBe(false);
    expect(await can(manager, "create", "leases", { namespace: ns, group: "coordination.k8s.io" })).toBe(
      false,
    );
    // TokenRequest only where a namespace binds agentid-token-requester (below).
    expect(
      await can(manager, "create", "serviceaccounts", { namespace: ns, subresource: "token", name: "x" }),
    ).toBe(false);
    // …and what it needs.
    expect(
      await can(manager, "update", "leases", {
        namespace: release,
        group: "coordination.k8s.io",
        name: "agentid-manager",
      }),
    ).toBe(true);

    // /metrics exposed: bind the metrics-auth role (as the chart's docs say) and a reader for the scraper.
    await apply({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: `agentid-metrics-auth-${release}` },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "agentid-metrics-auth" },
      subjects: [subject],
    });
    cleanup.push(() => admin.delete(`${rbac}/clusterrolebindings/agentid-metrics-auth-${release}`));
    await serviceAccount(release, "scraper");
    await apply({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: `agentid-metrics-reader-${release}` },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "agentid-metrics-reader" },
      subjects: [{ kind: "ServiceAccount", name: "scraper", namespace: release }],
    });
    cleanup.push(() => admin.delete(`${rbac}/clusterrolebindings/agentid-metrics-reader-${release}`));

    running = await op.manager(
      { verify: true, leaseNamespace: release, metrics: { host: "127.0.0.1", port: 0, secure: true } },
      { kubeConfig: asManager, namespace: ns },
    );
    await createBlueprint(admin, ns, {
      ...onEmulator(op.emu),
      federation: { management: "Graph" },
      admits: [{ namespaces: [ns], agents: { allowed: [AGENT] }, developmentSecrets: true }],
    });
    await createIdentity(admin, ns, "workload");
    await createIdentity(admin, ns, "secretive", { clientSecretRef: { name: "bp", key: "secret" } });
    const read = (name: string) => admin.getOptional<AgentIdentity>(identityPath(ns, name));
    const reason = async (name: string) => condition(await read(name), "Ready")?.reason;

    // The namespace has not bound agentid-token-requester: a clear condition naming the RoleBinding, even
    // though the operator wrote the Graph credential, and no token anywhere.
    await expect.poll(() => reason("workload"), { timeout: 30_000 }).toBe("TokenRequestForbidden");
    const refused = await read("workload");
    expect(condition(refused, "Ready")?.status).toBe("Unknown");
    expect(condition(refused, "Verified")).toMatchObject({
      status: "Unknown",
      reason: "TokenRequestForbidden",
    });
    expect(condition(refused, "Ready")?.message).toContain(
      `kubectl create rolebinding agentid-token-requester --clusterrole agentid-token-requester --serviceaccount ${release}:agentid-manager -n ${ns}`,
    );
    expect(JSON.stringify(refused?.status)).not.toMatch(/eyJ[\w-]+\.[\w-]+/);
    expect(condition(refused, "FederationConfigured")?.status).toBe("True");
    // A change that is not to the spec reconciles the identity again but does not retry the TokenRequest
    // before --verify-retry (counted at the end from the manager's metrics).
    await admin.patch(identityPath(ns, "workload"), "merge", { metadata: { labels: { touched: "yes" } } });

    await expect.poll(() => reason("secretive"), { timeout: 30_000 }).toBe("SecretAccessDenied");

    // The namespace opts in to Secret reads by name.
    await roleBinding(ns, "agentid-secret-reader", "agentid-secret-reader", subject);
    // The API server's authorizer learns of a new RoleBinding through its own watch: wait for it.
    await expect.poll(() => can(manager, "get", "secrets", { namespace: ns, name: "bp" })).toBe(true);
    expect(await can(manager, "list", "secrets", { namespace: ns })).toBe(false);
    await admin.patch(identityPath(ns, "secretive"), "merge", {
      spec: { sidecar: { port: 5001 } },
    });
    await expect.poll(() => reason("secretive"), { timeout: 30_000 }).toBe("SecretNotFound");

    // The namespace opts in to verification: the next attempt (the retry interval, or here a spec change)
    // verifies with a real TokenRequest.
    await roleBinding(ns, "agentid-token-requester", "agentid-token-requester", subject);
    await expect
      .poll(() =>
        can(manager, "create", "serviceaccounts", { namespace: ns, subresource: "token", name: "x" }),
      )
      .toBe(true);
    expect(await can(manager, "create", "serviceaccounts", { subresource: "token", name: "x" })).toBe(false);
    await admin.patch(identityPath(ns, "workload"), "merge", { spec: { sidecar: { port: 5002 } } });
    await expect
      .poll(async () => condition(await read("workload"), "Verified")?.status, { timeout: 30_000 })
      .toBe("True");
    expect(await reason("workload")).toBe("Ready");
    expect((await read("workload"))?.status?.serviceAccount).toBe("workload");

    // The exposed /metrics works with the metrics-auth role, for the reader only.
    const insecure = new Agent({ connect: { rejectUnauthorized: false } });
    cleanup.push(() => insecure.close());
    const scraperToken = (
      await admin.create<{ status: { token: string } }>(
        `/api/v1/namespaces/${release}/serviceaccounts/scraper/token`,
        {
          apiVersion: "authentication.k8s.io/v1",
          kind: "TokenRequest",
          spec: { expirationSeconds: 600 },
        },
      )
    ).status.token;
    const scrape = await request(`${running.metricsUrl}/metrics`, {
      dispatcher: insecure,
      headers: { authorization: `Bearer ${scraperToken}` },
    });
    expect(scrape.statusCode).toBe(200);
    const metrics = await scrape.body.text();
    expect(metrics).toContain("agentid_reconciles_total");
    // No retry storm: the refused TokenRequest was made once, although the identity was reconciled again
    // (the label) and the Secret steps took seconds, in which the queue's backoff would have retried often.
    const forbidden = metrics
      .split("\n")
      .find((l) => l.includes('resource="serviceaccounts/token"') && l.includes('code="403"'));
    expect(forbidden?.split(" ").at(-1)).toBe("1");
    expect(op.logs.text()).not.toMatch(/eyJ[\w-]+\.[\w-]+\.[\w-]+/);

    await admin.delete(identityPath(ns, "workload"));
    await expect.poll(() => read("workload"), { timeout: 30_000 }).toBeUndefined();
  });

  it("lets a namespace user create AgentIdentities only once granted agentid-identity-editor, not through edit", async () => {
    const ns = cp.namespace;
    await serviceAccount(ns, "developer");
    const developer = { kind: "ServiceAccount", name: "developer", namespace: ns };
    // What the built-in edit role holds. Its rules are filled in by kube-controller-manager's aggregation
    // controller, which this control plane does not run, so bind the bootstrap roles it aggregates.
    await roleBinding(ns, "developer-edit", "system:aggregate-to-edit", developer);
    await roleBinding(ns, "developer-view", "system:aggregate-to-view", developer);
    const asDeveloper = createKubeClient(await kubeConfigAs(ns, "developer"));
    cleanup.push(() => asDeveloper.close());
    const body = identityBody(ns, "mine");
    await expect.poll(() => can(asDeveloper, "create", "configmaps", { namespace: ns })).toBe(true);
    await expect(asDeveloper.create(identityPath(ns), body)).rejects.toMatchObject({ status: 403 });

    for (const object of renderChart({ name: "agentid", namespace: "agentid-system" }))
      if (object.metadata.name === "agentid-identity-editor") await apply(object);
    await roleBinding(ns, "developer-identities", "agentid-identity-editor", developer);
    await expect
      .poll(() => can(asDeveloper, "create", "agentidentities", { namespace: ns, group: "agentid.io" }))
      .toBe(true);
    await asDeveloper.create(identityPath(ns), body);
    expect((await admin.getOptional<AgentIdentity>(identityPath(ns, "mine")))?.metadata.name).toBe("mine");
    // The role gives no way to the platform's blueprints.
    expect(await can(asDeveloper, "create", "agentidentityblueprints", { group: "agentid.io" })).toBe(false);
  });
});
