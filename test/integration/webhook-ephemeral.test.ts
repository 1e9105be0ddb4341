import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNamespace } from "../../src/dev/controlplane-helpers.ts";
import { createKubeClient, type KubeClient } from "../../src/kube/client.ts";
import { MWC_PATH } from "../../src/webhook/certificate-manager.ts";
import { ensureIdentityEditorRole, namespaceUserClient } from "./namespace-user.ts";
import {
  createReadyIdentity,
  createTestBlueprint,
  namesOf,
  newRun,
  refusal,
  renderConfiguration,
  useTestWebhook,
  useWebhookControlPlane,
  waitUntilServed,
} from "./webhook-support.ts";

/**
 * The `ephemeral.pods.agentid.io` entry (kubectl debug) fails closed, narrowly: the API server evaluates the
 * chart's matchConditions and sends only pods that carry the agentid-sidecar container or the
 * agentid-token volume (names a pod cannot shed: its containers and volumes are immutable). Everything is
 * tried as alice, a namespace user (the built-in `edit` role, which does not grant
 * pods/ephemeralcontainers, plus a Role of her namespace that does, as a namespace admin would give it).
 */

const { run, cp } = useWebhookControlPlane("ephemeral");
const hook = useTestWebhook(cp, { run });
let admin: KubeClient;
const users: KubeClient[] = [];

beforeAll(async () => {
  admin = createKubeClient(cp.kubeConfig);
  await ensureIdentityEditorRole(admin);
});
afterAll(async () => {
  for (const user of users) await user.close();
  await admin?.close();
});

const RBAC = "/apis/rbac.authorization.k8s.io/v1";
const podsPath = (ns: string) => `/api/v1/namespaces/${ns}/pods`;

interface Pod {
  metadata: { name: string; annotations?: Record<string, string> };
  spec: {
    initContainers?: Array<{ name: string }>;
    containers: Array<{ name: string }>;
    ephemeralContainers?: Array<{ name: string }>;
    volumes?: Array<{ name: string }>;
  };
}

/** alice in `ns`: `edit`, and kubectl debug (pods/ephemeralcontainers) in that namespace only. */
async function aliceIn(ns: string): Promise<KubeClient> {
  await admin.create(`${RBAC}/namespaces/${ns}/roles`, {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "Role",
    metadata: { name: "debugger" },
    rules: [{ apiGroups: [""], resources: ["pods/ephemeralcontainers"], verbs: ["get", "patch", "update"] }],
  });
  await admin.create(`${RBAC}/namespaces/${ns}/rolebindings`, {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: { name: "alice-debugger" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "debugger" },
    subjects: [{ kind: "ServiceAccount", name: "alice", namespace: ns }],
  });
  const alice = await namespaceUserClient(admin, cp, ns);
  users.push(alice);
  return alice;
}

function pod(name: string, spec: Record<string, unknown> = {}, metadata: Record<string, unknown> = {}) {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, ...metadata },
    spec: { containers: [{ name: "app", image: "ghcr.io/contoso/research:1.4" }], ...spec },
  };
}

/** `kubectl debug <pod> --image=busybox`: adds one ephemeral container. */
function debug(as: KubeClient, ns: string, podName: string, container: Record<string, unknown>) {
  return as.patch<Pod>(`${podsPath(ns)}/${podName}/ephemeralcontainers`, "strategic", {
    spec: { ephemeralContainers: [{ image: "busybox:1.37", ...container }] },
  });
}

/** Every review the test webhook answered, whatever its outcome. */
async function reviews(): Promise<number> {
  const metric = await hook.registry.getSingleMetric("agentid_webhook_reviews_total")?.get();
  return (metric?.values ?? []).reduce((n, v) => n + v.value, 0);
}

describe("kubectl debug while the webhook does not answer", () => {
  it("works on every pod without the sidecar or its token volume, and fails closed on pods with either", async () => {
    // A configuration of its own, as the chart renders it, pointing at a loopback port nothing listens on
    // (a manager that is down), for one namespace of its own.
    const down = newRun();
    const ns = `ephemeral-down-${down}`;
    const name = `agentid-webhook-${down}`;
    await createNamespace(cp.kubeConfig, ns, { "agentid-test-run": down });
    const config = renderConfiguration(name, namesOf(down).managerNamespace, "https://127.0.0.1:1", down);
    await admin.create(MWC_PATH, config);
    try {
      const alice = await aliceIn(ns);
      const sidecar = { name: "agentid-sidecar", image: "ghcr.io/agentid/sidecar:1" };
      // None of these is sent on CREATE (no opt-in label; the namespace does not enable injection).
      const fixtures = [
        pod("plain"),
        // The mark and the opt-in label are the author's to write and to remove: they do not select.
        pod("marked", {}, { annotations: { "agentid.io/injected": "research-agent@1" } }),
        pod("native-sidecar", { initContainers: [{ ...sidecar, restartPolicy: "Always" }] }),
        pod("sidecar-first", { containers: [sidecar, { name: "app", image: "app:1" }] }),
        pod("token-volume", { volumes: [{ name: "agentid-token", emptyDir: {} }] }),
      ];
      for (const f of fixtures) await alice.create(podsPath(ns), f);

      // The API server applies a new configuration asynchronously: wait until it is in force.
      let attempt = 0;
      await expect
        .poll(() => refusal(debug(alice, ns, "native-sidecar", { name: `probe-${attempt++}` })))
        .toContain('failed calling webhook "ephemeral.pods.agentid.io"');
      for (const ours of ["sidecar-first", "token-volume"]) {
        expect(await refusal(debug(alice, ns, ours, { name: "debugger" })), ours).toContain(
          'failed calling webhook "ephemeral.pods.agentid.io"',
        );
      }
      for (const other of ["plain", "marked"]) {
        const debugged = await debug(alice, ns, other, { name: "debugger", targetContainerName: "app" });
        expect(
          debugged.spec.ephemeralContainers?.map((c) => c.name),
          other,
        ).toEqual(["debugger"]);
      }
    } finally {
      await admin.delete(`${MWC_PATH}/${name}`);
    }
  });
});

describe("kubectl debug of an injected pod", () => {
  it("is still sent (after the author removed the label and the mark) and refused a container that mounts the token", async () => {
    const ns = cp.namespace;
    await createTestBlueprint(admin, ns);
    await createReadyIdentity(admin, ns, "research-agent");
    const alice = await aliceIn(ns);
    await waitUntilServed(admin, ns, "research-agent");
    const injected = await alice.create<Pod>(
      podsPath(ns),
      pod("research", { serviceAccountName: "research-agent" }, { labels: { "agentid.io/inject": "true" } }),
    );
    expect(injected.spec.initContainers?.[0]?.name).toBe("agentid-sidecar");
    await alice.create(podsPath(ns), pod("plain"));

    // A pod without the sidecar is not sent at all: the webhook answers no review for it.
    const before = await reviews();
    const plain = await debug(alice, ns, "plain", { name: "debugger" });
    expect(plain.spec.ephemeralContainers?.map((c) => c.name)).toEqual(["debugger"]);
    expect(await reviews()).toBe(before);

    const steal = { name: "steal", volumeMounts: [{ name: "agentid-token", mountPath: "/t" }] };
    const message = await refusal(debug(alice, ns, "research", steal));
    expect(message).toContain('admission webhook "ephemeral.pods.agentid.io" denied the request: agentid:');
    expect(message).toContain("ephemeral container 'steal' mounts the volume agentid-token");
    expect(await reviews()).toBe(before + 1);

    // The opt-in label and the mark are hers to remove (a pod UPDATE no webhook entry sees); the sidecar
    // and its volume are not, so the pod is still sent and still refused.
    await alice.patch(`${podsPath(ns)}/research`, "json", [
      { op: "remove", path: "/metadata/labels/agentid.io~1inject" },
      { op: "remove", path: "/metadata/annotations/agentid.io~1injected" },
    ]);
    expect(await refusal(debug(alice, ns, "research", steal))).toContain(
      "ephemeral container 'steal' mounts the volume agentid-token",
    );
    expect(await reviews()).toBe(before + 2);

    // Debugging the app is what kubectl debug is for: sent, and allowed.
    const debugged = await debug(alice, ns, "research", { name: "debugger", targetContainerName: "app" });
    expect(debugged.spec.ephemeralContainers?.map((c) => c.name)).toEqual(["debugger"]);
    expect(await reviews()).toBe(before + 3);
  });
});
