import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentIdentity, AgentIdentityBlueprint } from "../../src/api/types.ts";
import { createNamespace } from "../../src/dev/controlplane-helpers.ts";
import { createKubeClient, type KubeClient } from "../../src/kube/client.ts";
import { serviceAccountPath } from "../../src/operator/service-account.ts";
import { createVerifier } from "../../src/operator/verify.ts";
import { identityPathOf } from "../../src/webhook/index.ts";
import { connectControlPlane } from "../support/controlplane.ts";
import { ensureIdentityEditorRole, kubeConfigAs, namespaceUserClient } from "./namespace-user.ts";
import { eventsFor } from "./operator-support.ts";
import {
  CONFIGURATION_PATHS,
  createReadyIdentity,
  createTestBlueprint,
  newRun,
  refusal,
  useTestWebhook,
  waitUntilServed,
} from "./webhook-support.ts";

/**
 * The guard against the real API server, configured as the chart configures it (its matchConditions
 * evaluated by the API server): every way docs/webhook.md lists for a namespace user (alice: the built-in
 * `edit` role in her namespace, nothing more) to get the exchange-audience token of a ServiceAccount an
 * AgentIdentity binds, tried through the API server, gets our refusal; what must keep working still works.
 */

interface Container {
  name: string;
  image: string;
  env?: Array<{ name: string; value?: string }>;
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}
interface Pod {
  metadata: {
    name: string;
    uid: string;
    annotations?: Record<string, string>;
    labels?: Record<string, string>;
  };
  spec: { initContainers?: Container[]; containers: Container[]; volumes?: Array<{ name: string }> } & Record<
    string,
    unknown
  >;
}

const EXCHANGE = "api://AzureADTokenExchange";
const run = newRun();
const cp = connectControlPlane();
// One namespace for the whole file: the attacks build on one injected pod, in order.
const ns = `guard-${run}`;
const hook = useTestWebhook(cp, { run });
let alice: KubeClient;

beforeAll(async () => {
  await createNamespace(cp.kubeConfig, ns, { "agentid-test-run": run });
  await ensureIdentityEditorRole(hook.kube);
});
afterAll(async () => {
  await alice?.close();
});

const podsPath = () => `/api/v1/namespaces/${ns}/pods`;
const tokenPath = (sa: string) => `${serviceAccountPath(ns, sa)}/token`;
const tokenRequest = (audiences: string[]) => ({
  apiVersion: "authentication.k8s.io/v1",
  kind: "TokenRequest",
  spec: { audiences, expirationSeconds: 3600 },
});

/** How many reviews of a kind reached the guard (the API server's matchConditions filter before that). */
async function guardReviews(kind: string): Promise<number> {
  const metric = await hook.registry.getSingleMetric("agentid_webhook_guard_reviews_total")?.get();
  return (metric?.values ?? []).filter((v) => v.labels.kind === kind).reduce((n, v) => n + v.value, 0);
}

function appPod(name: string, spec: Record<string, unknown> = {}, labels = { "agentid.io/inject": "true" }) {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, labels },
    spec: {
      serviceAccountName: "research-agent",
      containers: [{ name: "app", image: "ghcr.io/contoso/research:1.4" }],
      ...spec,
    },
  };
}

const ownTokenVolume = {
  name: "my-token",
  projected: { sources: [{ serviceAccountToken: { audience: EXCHANGE, path: "token" } }] },
};

/** The stored pod as a new pod (what `kubectl debug --copy-to` sends): no labels, a new name. */
function copyOf(pod: Pod, name: string): Pod {
  return {
    metadata: { name, annotations: pod.metadata.annotations } as Pod["metadata"],
    spec: structuredClone(pod.spec),
  };
}

const sidecarOf = (pod: Pod) =>
  pod.spec.initContainers?.find((c) => c.name === "agentid-sidecar") as Container;

describe("the guard against the API server, as a namespace user", () => {
  let injected: Pod;

  beforeAll(async () => {
    const admin = hook.kube;
    await createTestBlueprint(admin, ns);
    await createReadyIdentity(admin, ns, "research-agent");
    for (const sa of ["research-agent", "payments"])
      await admin.create(serviceAccountPath(ns), {
        apiVersion: "v1",
        kind: "ServiceAccount",
        metadata: { name: sa },
      });
    alice = await namespaceUserClient(admin, cp, ns);
    await waitUntilServed(admin, ns, "research-agent");
    injected = await alice.create<Pod>(podsPath(), appPod("research"));
    expect(sidecarOf(injected).image).toBe("ghcr.io/agentid/sidecar:test");
  });

  it("admits the injected pod alice created (the guard saw it after the mutation) and a pod without a token", async () => {
    expect(injected.spec.volumes?.map((v) => v.name)).toContain("agentid-token");
    // The pod alice sends has no token volume: the API server sends it to the guard only because the
    // mutating webhook, which runs first, added one; the guard then admits what was injected.
    const sent = await guardReviews("pod");
    const second = await alice.create<Pod>(podsPath(), appPod("research-2"));
    expect(sidecarOf(second).name).toBe("agentid-sidecar");
    expect(await guardReviews("pod")).toBe(sent + 1);
    await alice.create(podsPath(), appPod("plain", {}, {} as { "agentid.io/inject": "true" }));
    expect(await guardReviews("pod")).toBe(sent + 1);
  });

  it("refuses a pod of her own, not selected for injection, that projects the token for the bound ServiceAccount", async () => {
    const message = await refusal(
      alice.create(
        podsPath(),
        appPod(
          "own-token",
          {
            volumes: [ownTokenVolume],
            containers: [
              { name: "app", image: "app:1", volumeMounts: [{ name: "my-token", mountPath: "/t" }] },
            ],
          },
          {} as { "agentid.io/inject": "true" },
        ),
      ),
    );
    expect(message).toContain('admission webhook "pods.guard.agentid.io" denied the request: agentid:');
    expect(message).toContain("AgentIdentity research-agent binds");
    expect(message).toContain("label the pod (template) agentid.io/inject=true");
  });

  it("still admits the same pod for a ServiceAccount no AgentIdentity binds (azure-workload-identity)", async () => {
    const pod = await alice.create<Pod>(
      podsPath(),
      appPod(
        "workload-identity",
        {
          serviceAccountName: "payments",
          volumes: [ownTokenVolume],
          containers: [
            { name: "app", image: "app:1", volumeMounts: [{ name: "my-token", mountPath: "/t" }] },
          ],
        },
        {} as { "agentid.io/inject": "true" },
      ),
    );
    expect(pod.spec.volumes?.map((v) => v.name)).toContain("my-token");
  });

  it("refuses kubectl create token for the bound ServiceAccount with the exchange audience", async () => {
    const message = await refusal(alice.create(tokenPath("research-agent"), tokenRequest([EXCHANGE])));
    expect(message).toContain('admission webhook "token.guard.agentid.io" denied the request: agentid:');
    expect(message).toContain("TokenRequest for ServiceAccount research-agent");
    // Spelled differently: the API server's matchCondition and the manager compare it the same way.
    expect(
      await refusal(alice.create(tokenPath("research-agent"), tokenRequest(["API://AzureADTokenExchange/"]))),
    ).toContain("agentid:");
  });

  it("still issues tokens with another audience, and the exchange audience for an unbound ServiceAccount", async () => {
    const other = await alice.create<{ status: { token: string } }>(
      tokenPath("research-agent"),
      tokenRequest(["vault"]),
    );
    expect(other.status.token).toMatch(/^eyJ/);
    const unbound = await alice.create<{ status: { token: string } }>(
      tokenPath("payments"),
      tokenRequest([EXCHANGE]),
    );
    expect(unbound.status.token).toMatch(/^eyJ/);
  });

  it("refuses the token of a ServiceAccount an AgentIdentity still binds through its status (renamed, or being deleted)", async () => {
    const admin = hook.kube;
    for (const sa of ["renamed-old", "leaving-old"])
      await admin.create(serviceAccountPath(ns), {
        apiVersion: "v1",
        kind: "ServiceAccount",
        metadata: { name: sa },
      });
    // Renamed: the spec names the new account, the status still the old one (the operator has not caught
    // up, or the credential for the old subject stands).
    const renamed = await createReadyIdentity(admin, ns, "renamed", { serviceAccountName: "renamed-new" });
    await admin.replace(`${identityPathOf(ns, "renamed")}/status`, {
      ...renamed,
      status: { ...renamed.status, serviceAccount: "renamed-old" },
    });
    // Being deleted (a finalizer holds it), its federated credential's subject the old account.
    const leaving = await createReadyIdentity(admin, ns, "leaving", { serviceAccountName: "leaving-new" });
    await admin.replace(`${identityPathOf(ns, "leaving")}/status`, {
      ...leaving,
      status: {
        ...leaving.status,
        federatedCredential: { subject: `system:serviceaccount:${ns}:leaving-old` },
      },
    });
    await admin.patch(identityPathOf(ns, "leaving"), "merge", {
      metadata: { finalizers: ["agentid.io/test-hold"] },
    });
    await admin.delete(identityPathOf(ns, "leaving"));
    try {
      const old = await refusal(alice.create(tokenPath("renamed-old"), tokenRequest([EXCHANGE])));
      expect(old).toContain('admission webhook "token.guard.agentid.io" denied the request: agentid:');
      expect(old).toContain("AgentIdentity renamed binds");
      const gone = await refusal(alice.create(tokenPath("leaving-old"), tokenRequest([EXCHANGE])));
      expect(gone).toContain("AgentIdentity leaving binds");
    } finally {
      await admin.patch(identityPathOf(ns, "leaving"), "merge", { metadata: { finalizers: null } });
    }
  });

  it("a verification the guard refuses (a user it does not know as the manager's) reports TokenRequestDenied, not missing RBAC", async () => {
    // The operator's verifier running as alice: the API server passes RBAC (edit may create tokens), and
    // the guard refuses. Nothing reaches Entra: the dispatcher is never used.
    const dispatcher = new Agent();
    try {
      const verifier = createVerifier({ kube: alice, dispatcher });
      const identity = await hook.kube.get<AgentIdentity>(identityPathOf(ns, "research-agent"));
      const blueprint = await hook.kube.get<AgentIdentityBlueprint>(
        `/apis/agentid.io/v1alpha1/agentidentityblueprints/${identity.spec.blueprintRef.name}`,
      );
      const result = await verifier.verify(
        { identity, blueprint, agentClientId: "33333333-3333-3333-3333-333333333333" },
        {
          kind: "serviceAccountToken",
          serviceAccount: {
            name: "research-agent",
            labels: { "agentid.io/agentidentity": "research-agent" },
          },
        },
        { tenantId: "t", blueprintClientId: "b" },
      );
      expect(result).toMatchObject({ state: "tokenForbidden", reason: "TokenRequestDenied" });
      const message = result.state === "tokenForbidden" ? result.message : "";
      expect(message).toContain(
        "The admission webhook token.guard.agentid.io refused the manager a TokenRequest",
      );
      expect(message).not.toContain("kubectl create rolebinding");
      expect(message).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./);
    } finally {
      await dispatcher.close();
    }
  });

  it("issues the token to the manager (its own user, and the chart's agentid-manager ServiceAccount) and to a kubelet", async () => {
    // The webhook of this test runs as the cluster admin: the manager learnt that user at start.
    const sent = await guardReviews("token");
    const own = await hook.kube.create<{ status: { token: string } }>(
      tokenPath("research-agent"),
      tokenRequest([EXCHANGE]),
    );
    expect(own.status.token).toMatch(/^eyJ/);
    expect(await guardReviews("token")).toBe(sent + 1); // sent, and let through by the manager
    // The chart's manager ServiceAccount is exempted by a matchCondition, before the webhook is called.
    const admin = hook.kube;
    await admin.create(serviceAccountPath(hook.managerNamespace), {
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: { name: "agentid-manager" },
    });
    await admin.create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`, {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: { name: "verify" },
      rules: [{ apiGroups: [""], resources: ["serviceaccounts/token"], verbs: ["create"] }],
    });
    await admin.create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: "verify" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "verify" },
      subjects: [
        { kind: "ServiceAccount", name: "agentid-manager", namespace: hook.managerNamespace },
        { kind: "User", name: "system:node:guard-node", apiGroup: "rbac.authorization.k8s.io" },
      ],
    });
    const manager = createKubeClient(await kubeConfigAs(admin, cp, hook.managerNamespace, "agentid-manager"));
    try {
      const minted = await manager.create<{ status: { token: string } }>(
        tokenPath("research-agent"),
        tokenRequest([EXCHANGE]),
      );
      expect(minted.status.token).toMatch(/^eyJ/);
      expect(await guardReviews("token")).toBe(sent + 1); // never sent
    } finally {
      await manager.close();
    }
    // A kubelet (user system:node:<name>, group system:nodes) mints the projected token of the pods it runs.
    const asNode = await impersonated("POST", tokenPath("research-agent"), tokenRequest([EXCHANGE]), {
      user: "system:node:guard-node",
      groups: ["system:nodes"],
    });
    expect(asNode.status, asNode.body).toBe(201);
    expect(await guardReviews("token")).toBe(sent + 1); // never sent
    // The same user name without the group is no kubelet.
    const fake = await impersonated("POST", tokenPath("research-agent"), tokenRequest([EXCHANGE]), {
      user: "system:node:guard-node",
      groups: ["system:serviceaccounts"],
    });
    expect(fake.status).toBe(403);
    expect(fake.body).toContain("agentid:");
  });

  it("refuses exec and attach into the sidecar before any node is involved, and lets exec into the app through", async () => {
    // POST is SPDY's verb (kubectl before 1.30, kubectl cp), GET the WebSocket one (kubectl 1.30+).
    const connect = (sub: string, container: string, method: "POST" | "GET" = "POST") =>
      alice.request(method, `${podsPath()}/research/${sub}`, {
        query: { container, command: "cat", stdout: "true", stderr: "true" },
      });
    for (const [sub, method] of [
      ["exec", "POST"],
      ["exec", "GET"],
      ["attach", "POST"],
    ] as const) {
      const message = await refusal(connect(sub, "agentid-sidecar", method));
      expect(message).toContain('admission webhook "exec.guard.agentid.io" denied the request: agentid:');
      expect(message).toContain("the container agentid-sidecar is refused");
    }
    // The pod has no node: exec into the app fails further on, in the API server, not at the guard.
    const app = await refusal(connect("exec", "app"));
    expect(app).not.toContain("agentid");
    expect(app).toMatch(/host/i);
  });

  it("refuses exec and attach naming no container when the API server would pick agentid-sidecar", async () => {
    // No container parameter (a raw API client; kubectl always names one): the API server picks the pod's
    // only regular container. A pod whose only one is named agentid-sidecar (no token: the pod guard had
    // no reason to look) is the shape the attack needs.
    const unnamed = (pod: string, sub = "exec", method: "POST" | "GET" = "POST") =>
      alice.request(method, `${podsPath()}/${pod}/${sub}`, {
        query: { command: "cat", stdout: "true", stderr: "true" },
      });
    await alice.create(podsPath(), {
      ...appPod("lonely", { containers: [{ name: "agentid-sidecar", image: "busybox" }] }, {} as never),
    });
    for (const [sub, method] of [
      ["exec", "POST"],
      ["exec", "GET"],
      ["attach", "POST"],
    ] as const) {
      const message = await refusal(unnamed("lonely", sub, method));
      expect(message).toContain('admission webhook "exec.guard.agentid.io" denied the request: agentid:');
      expect(message).toContain("names no container");
    }
    // The injected pod: its only regular container is the app (the sidecar is a native one), so the guard
    // lets it through and the API server goes on (and fails: the pod has no node).
    const app = await refusal(unnamed("research"));
    expect(app).not.toContain("agentid");
    expect(app).toMatch(/host/i);
    // Two regular containers: the API server asks for a name itself.
    await alice.create(podsPath(), {
      ...appPod(
        "two-containers",
        {
          containers: [
            { name: "app", image: "app:1" },
            { name: "agentid-sidecar", image: "busybox" },
          ],
        },
        {} as never,
      ),
    });
    const two = await refusal(unnamed("two-containers"));
    expect(two).not.toContain("agentid:");
    expect(two).toContain("a container name must be specified");
  });

  it("refuses an UPDATE that swaps the sidecar's image, and allows one that changes the app's", async () => {
    const current = await alice.get<Pod>(`${podsPath()}/research`);
    const swapped = structuredClone(current);
    sidecarOf(swapped).image = "evil.example/steal:1";
    const message = await refusal(alice.replace(`${podsPath()}/research`, swapped));
    expect(message).toContain('admission webhook "updates.guard.agentid.io" denied the request: agentid:');
    expect(message).toContain("container 'agentid-sidecar' holds the service-account token");
    const app = structuredClone(current);
    (app.spec.containers[0] as Container).image = "ghcr.io/contoso/research:1.5";
    const updated = await alice.replace<Pod>(`${podsPath()}/research`, app);
    expect(updated.spec.containers[0]?.image).toBe("ghcr.io/contoso/research:1.5");
    expect(sidecarOf(updated).image).toBe("ghcr.io/agentid/sidecar:test");
  });

  it("refuses a copy of the injected pod with another sidecar image or environment (kubectl debug --copy-to)", async () => {
    const evilImage = copyOf(injected, "copy-image");
    sidecarOf(evilImage).image = "evil.example/steal:1";
    const image = await refusal(alice.create(podsPath(), evilImage));
    expect(image).toContain('admission webhook "pods.guard.agentid.io" denied the request: agentid:');
    expect(image).toMatch(/differs from what AgentIdentity research-agent renders \(image/);
    const evilEnv = copyOf(injected, "copy-env");
    sidecarOf(evilEnv).env?.push({ name: "NODE_OPTIONS", value: "--require /evil.js" });
    expect(await refusal(alice.create(podsPath(), evilEnv))).toMatch(/renders \(env/);
    // The sidecar as the copy's only regular container (restartPolicy dropped): an exec naming no
    // container would reach it. Refused: not where the webhook puts it.
    const moved = copyOf(injected, "copy-moved");
    const sidecar = sidecarOf(moved) as Container & { restartPolicy?: string };
    delete sidecar.restartPolicy;
    moved.spec.initContainers = moved.spec.initContainers?.filter((c) => c !== sidecar);
    moved.spec.containers = [sidecar];
    const placed = await refusal(alice.create(podsPath(), moved));
    expect(placed).toContain('admission webhook "pods.guard.agentid.io" denied the request: agentid:');
    expect(placed).toContain("placement");
    // An exact copy runs our sidecar locked to its agent, as the original does: admitted.
    const exact = await alice.create<Pod>(podsPath(), copyOf(injected, "copy-exact"));
    expect(sidecarOf(exact).image).toBe("ghcr.io/agentid/sidecar:test");
  });

  it("refuses an ephemeral container that mounts the token; allows kubectl debug of the app", async () => {
    const ephemeral = (as: KubeClient, c: Record<string, unknown>) =>
      as.patch(`${podsPath()}/research/ephemeralcontainers`, "strategic", {
        spec: { ephemeralContainers: [{ image: "busybox", ...c }] },
      });
    // The built-in edit role does not grant pods/ephemeralcontainers at all; someone who has it (here the
    // cluster admin, whom admission judges too) is refused the token.
    expect(await refusal(ephemeral(alice, { name: "thief" }))).toContain(
      'cannot patch resource "pods/ephemeralcontainers"',
    );
    const message = await refusal(
      ephemeral(hook.kube, { name: "thief", volumeMounts: [{ name: "agentid-token", mountPath: "/t" }] }),
    );
    expect(message).toMatch(/agentid: .*agentid-token/);
    await ephemeral(hook.kube, { name: "debugger", targetContainerName: "app" });
  });

  it("is sent only what could yield the token (the chart's matchConditions, evaluated by the API server)", async () => {
    const count = guardReviews;
    const before = {
      token: await count("token"),
      pod: await count("pod"),
      update: await count("pod-update"),
    };
    // A label on an injected pod, a pod without a token, a token for another audience: not sent.
    await alice.patch(`${podsPath()}/research`, "merge", { metadata: { labels: { tier: "gold" } } });
    await alice.create(podsPath(), appPod("plain-2", {}, {} as { "agentid.io/inject": "true" }));
    await alice.create(tokenPath("research-agent"), tokenRequest(["vault"]));
    expect({
      token: await count("token"),
      pod: await count("pod"),
      update: await count("pod-update"),
    }).toEqual(before);
    // The leader wrote the serving CA into the guard's configuration as into the mutating one.
    const bundles = await Promise.all(
      Object.values(CONFIGURATION_PATHS).map(async (path) =>
        (
          await hook.kube.get<{ webhooks: Array<{ clientConfig: { caBundle?: string } }> }>(
            `${path}/${hook.configurationName}`,
          )
        ).webhooks.map((w) => w.clientConfig.caBundle),
      ),
    );
    expect(new Set(bundles.flat()).size).toBe(1);
    expect(bundles.flat()[0]).toBeTruthy();
  });

  it("records each refusal: a log line with the user and reason, an Event on the AgentIdentity, no token", async () => {
    const lines = hook.logs.filter((l) => l.includes("request refused by the guard") && l.includes(ns));
    const reasons = new Set(lines.flatMap((l) => (JSON.parse(l) as { reasons: string[] }).reasons));
    for (const r of ["ExchangeTokenRequest", "NotInjected", "SidecarExec", "SidecarImageChanged"])
      expect(reasons).toContain(r);
    expect(lines.join("\n")).toContain(`system:serviceaccount:${ns}:alice`);
    expect(hook.logs.join("\n")).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./);
    await expect
      .poll(async () => (await eventsFor(hook.kube, ns, "research-agent")).map((e) => e.reason))
      .toEqual(expect.arrayContaining(["TokenRequestRefused", "PodRefused"]));
    const metrics = await hook.registry.getSingleMetricAsString("agentid_webhook_guard_reviews_total");
    expect(metrics).toMatch(/kind="token",outcome="refused",reason="ExchangeTokenRequest"} [1-9]/);
    expect(metrics).toMatch(/kind="exec",outcome="refused",reason="SidecarExec"} [1-9]/);
  });
});

/** A request as the cluster admin impersonating a user and groups (what a kubelet's credential carries). */
async function impersonated(
  method: "POST",
  path: string,
  body: unknown,
  as: { user: string; groups: [string] },
): Promise<{ status: number; body: string }> {
  const dispatcher = new Agent({ connect: { ca: cp.caPem, cert: cp.adminCertPem, key: cp.adminKeyPem } });
  try {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "impersonate-user": as.user,
      // One group: the API server reads each Impersonate-Group header line as one group.
      "impersonate-group": as.groups[0],
    };
    const res = await request(`${cp.server}${path}`, {
      method,
      body: JSON.stringify(body),
      headers,
      dispatcher,
    });
    return { status: res.statusCode, body: await res.body.text() };
  } finally {
    await dispatcher.close();
  }
}
