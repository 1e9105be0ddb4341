import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createKubeClient, isApiError, type KubeClient } from "../../src/kube/client.ts";
import { MWC_PATH } from "../../src/webhook/certificate-manager.ts";
import { identityPathOf } from "../../src/webhook/index.ts";
import { ensureIdentityEditorRole, namespaceUserClient } from "./namespace-user.ts";
import { AGENT, eventsFor } from "./operator-support.ts";
import {
  createReadyIdentity,
  createTestBlueprint,
  useTestWebhook,
  useWebhookControlPlane,
  waitUntilServed,
} from "./webhook-support.ts";

/**
 * The real kube-apiserver calls the webhook (the chart's configuration, pointed at this process) and
 * stores what it answers: injected pods, pods it never sees, and refusals with our message.
 */

interface Container {
  name: string;
  env?: Array<{ name: string; value?: string }>;
  volumeMounts?: Array<{ name: string }>;
  restartPolicy?: string;
}
interface Pod {
  metadata: { name: string; annotations?: Record<string, string> };
  spec: { initContainers?: Container[]; containers: Container[]; volumes?: Array<{ name: string }> };
}

const { run, cp } = useWebhookControlPlane("webhook");
const hook = useTestWebhook(cp, { run });
const users: KubeClient[] = [];

beforeAll(async () => {
  await ensureIdentityEditorRole(hook.kube);
});
afterAll(async () => {
  for (const user of users) await user.close();
});

/** alice: a namespace user (the `edit` role's rules and agentid-identity-editor) of the test's namespace. */
async function alice(): Promise<KubeClient> {
  const user = await namespaceUserClient(hook.kube, cp, cp.namespace);
  users.push(user);
  return user;
}

/** Every review the webhook answered, whatever its outcome; or those refused for `reason`. */
async function reviews(reason?: string): Promise<number> {
  const metric = await hook.registry.getSingleMetric("agentid_webhook_reviews_total")?.get();
  return (metric?.values ?? [])
    .filter((v) => reason === undefined || (v.labels.outcome === "refused" && v.labels.reason === reason))
    .reduce((n, v) => n + v.value, 0);
}

const podsPath = (ns: string) => `/api/v1/namespaces/${ns}/pods`;

function appPod(overrides: { metadata?: Record<string, unknown>; spec?: Record<string, unknown> } = {}) {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { generateName: "agent-", labels: { "agentid.io/inject": "true" }, ...overrides.metadata },
    spec: {
      serviceAccountName: "research-agent",
      containers: [{ name: "app", image: "ghcr.io/contoso/research:1.4" }],
      ...overrides.spec,
    },
  };
}

async function create(body: unknown, ns = cp.namespace, as = hook.kube): Promise<Pod> {
  return as.create<Pod>(podsPath(ns), body);
}

/** The message the API server sends the client (what kubectl prints after "Error from server"). */
async function refusal(body: unknown, ns = cp.namespace, as = hook.kube): Promise<string> {
  try {
    await create(body, ns, as);
  } catch (error) {
    if (isApiError(error)) return error.message;
    throw error;
  }
  throw new Error("the pod was admitted");
}

function expectInjected(pod: Pod) {
  const sidecar = pod.spec.initContainers?.[0];
  expect(sidecar?.name).toBe("agentid-sidecar");
  expect(sidecar?.restartPolicy).toBe("Always"); // v1.34: native sidecar
  expect(sidecar?.volumeMounts?.map((m) => m.name)).toEqual(["agentid-token"]);
  expect(pod.spec.volumes?.map((v) => v.name)).toContain("agentid-token");
  expect(pod.metadata.annotations?.["agentid.io/injected"]).toMatch(/^research-agent@\d+$/);
  for (const c of pod.spec.containers) {
    expect(c.env).toContainEqual({ name: "SIDECAR_URL", value: "http://127.0.0.1:5000" });
    expect(c.volumeMounts?.map((m) => m.name) ?? []).not.toContain("agentid-token");
  }
}

describe("webhook against the API server", () => {
  beforeEach(async () => {
    await createTestBlueprint(hook.kube, cp.namespace);
    await createReadyIdentity(hook.kube, cp.namespace, "research-agent");
    await waitUntilServed(hook.kube, cp.namespace, "research-agent");
  });

  it("injects a Deployment-style pod that has only generateName, and a labelled pod with a name", async () => {
    const generated = await create(appPod());
    expect(generated.metadata.name).toMatch(/^agent-/);
    expectInjected(generated);
    const named = await create(
      appPod({ metadata: { name: "research", labels: { "agentid.io/inject": "true" } } }),
    );
    expectInjected(named);
    // What the API server stored is what it returned.
    expectInjected(await hook.kube.get<Pod>(`${podsPath(cp.namespace)}/research`));
  });

  it("injects an annotated pod of a namespace labelled agentid.io/injection=enabled, and leaves its other pods alone", async () => {
    await hook.kube.patch(`/api/v1/namespaces/${cp.namespace}`, "merge", {
      metadata: { labels: { "agentid.io/injection": "enabled" } },
    });
    const annotated = appPod({
      metadata: { annotations: { "agentid.io/identity": "research-agent" }, labels: {} },
    });
    await expect
      .poll(async () => {
        const pod = await hook.kube.request<Pod>("POST", podsPath(cp.namespace), {
          query: { dryRun: "All" },
          body: annotated,
        });
        return pod.spec.initContainers?.[0]?.name;
      })
      .toBe("agentid-sidecar");
    expectInjected(await create(annotated));
    const plain = await create(appPod({ metadata: { labels: {} } }));
    expect(plain.spec.initContainers).toBeUndefined();
    expect(plain.metadata.annotations?.["agentid.io/injected"]).toBeUndefined();
  });

  it("is never sent an unlabelled pod", async () => {
    const before = await hook.registry.getSingleMetricAsString("agentid_webhook_reviews_total");
    const plain = await create(appPod({ metadata: { labels: { app: "research" } } }));
    expect(plain.spec.initContainers).toBeUndefined();
    expect(plain.metadata.annotations).toBeUndefined();
    // A labelled pod after it is reviewed; the counters moved by exactly that one review.
    expectInjected(await create(appPod()));
    const after = await hook.registry.getSingleMetricAsString("agentid_webhook_reviews_total");
    const injected = (text: string) => Number(/outcome="injected",reason=""\} (\d+)/.exec(text)?.[1] ?? 0);
    const skipped = (text: string) => Number(/outcome="skipped",reason=""\} (\d+)/.exec(text)?.[1] ?? 0);
    expect(injected(after) - injected(before)).toBe(1);
    expect(skipped(after)).toBe(skipped(before));
  });

  it("is admitted in a namespace that enforces Pod Security restricted", async () => {
    await hook.kube.patch(`/api/v1/namespaces/${cp.namespace}`, "merge", {
      metadata: { labels: { "pod-security.kubernetes.io/enforce": "restricted" } },
    });
    const restricted = {
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    };
    const pod = await create(
      appPod({
        spec: {
          containers: [{ name: "app", image: "ghcr.io/contoso/research:1.4", securityContext: restricted }],
        },
      }),
    );
    expectInjected(pod);
    // The same namespace refuses a pod that is not restricted: the label is enforced.
    const message = await refusal(appPod({ metadata: { labels: {} } }));
    expect(message).toContain("violates PodSecurity");
  });

  it("refuses each unsafe pod with our message, and records an Event on the AgentIdentity", async () => {
    const cases: Array<[string, ReturnType<typeof appPod>, string]> = [
      ["hostNetwork", appPod({ spec: { hostNetwork: true } }), "the pod sets hostNetwork: true"],
      [
        "hostPort",
        appPod({
          spec: { containers: [{ name: "app", image: "a", ports: [{ containerPort: 80, hostPort: 8080 }] }] },
        }),
        "container 'app' asks for hostPort 8080",
      ],
      [
        "shareProcessNamespace",
        appPod({ spec: { shareProcessNamespace: true } }),
        "shareProcessNamespace: true",
      ],
      [
        "exchange token",
        appPod({
          spec: {
            volumes: [
              {
                name: "t",
                projected: {
                  sources: [{ serviceAccountToken: { audience: "api://AzureADTokenExchange", path: "t" } }],
                },
              },
            ],
          },
        }),
        "volume 't' projects a service-account token for the audience api://AzureADTokenExchange",
      ],
      [
        "port in use",
        appPod({ spec: { containers: [{ name: "app", image: "a", ports: [{ containerPort: 5000 }] }] } }),
        "container 'app' uses port 5000",
      ],
      [
        "bad annotation",
        appPod({ metadata: { annotations: { "agentid.io/sidecar-memory-limit": "lots" } } }),
        "annotation agentid.io/sidecar-memory-limit: 'lots' is not a Kubernetes quantity",
      ],
      [
        "ServiceAccount mismatch",
        appPod({
          metadata: { annotations: { "agentid.io/identity": "research-agent" } },
          spec: { serviceAccountName: "default" },
        }),
        "AgentIdentity research-agent binds ServiceAccount research-agent, but the pod runs as default",
      ],
      [
        "missing identity",
        appPod({ metadata: { annotations: { "agentid.io/identity": "writer" } } }),
        "AgentIdentity writer does not exist in namespace",
      ],
    ];
    for (const [what, body, expected] of cases) {
      const message = await refusal(body);
      expect(message, what).toContain("denied the request: agentid: ");
      expect(message, what).toContain(expected);
    }
    await createTestBlueprint(hook.kube, `${cp.namespace}-closed`, {
      admits: [{ namespaces: ["elsewhere"] }],
    });
    await createReadyIdentity(hook.kube, cp.namespace, "closed", {
      blueprintRef: { name: `${cp.namespace}-closed` },
    });
    const closed = await refusal(appPod({ spec: { serviceAccountName: "closed" } }));
    expect(closed).toContain(
      `AgentIdentityBlueprint ${cp.namespace}-closed does not admit namespace ${cp.namespace}`,
    );
    await createReadyIdentity(hook.kube, cp.namespace, "not-ready", {}, false);
    // At once, with the status written just after the object: a cache that has not caught up yet (no
    // status, "the operator has not reported") is checked against the API server before the refusal.
    expect(await refusal(appPod({ spec: { serviceAccountName: "not-ready" } }))).toContain(
      "AgentIdentity not-ready is not Ready (FederationNotVerified: the federated credential is missing)",
    );
    await expect
      .poll(
        async () =>
          (await eventsFor(hook.kube, cp.namespace, "research-agent")).find((e) => e.reason === "PodRefused")
            ?.type,
      )
      .toBe("Warning");
    // A selection refusal is recorded on the identity the annotation names, too.
    await expect
      .poll(async () =>
        (await eventsFor(hook.kube, cp.namespace, "research-agent")).some((e) =>
          e.message?.includes(
            "AgentIdentity research-agent binds ServiceAccount research-agent, but the pod runs as default",
          ),
        ),
      )
      .toBe(true);
    const refusals = hook.logs.filter((l) => l.includes('"pod refused"') && l.includes(cp.namespace));
    expect(refusals.length).toBeGreaterThanOrEqual(cases.length + 1);
    expect(refusals.some((l) => l.includes('"reasons":["HostNetwork"]'))).toBe(true);
  });

  it("injects a pod created right after its identity became Ready, without waiting for the cache", async () => {
    // Whether the cache is behind at that moment depends on the informer's timing; when it is, the one
    // re-check reads the Ready status from the API server (the not-Ready case above shows the re-check
    // deterministically; test/webhook/review-events.test.ts counts its reads).
    const late = await createReadyIdentity(hook.kube, cp.namespace, "late", {}, false);
    await hook.kube.replace(`${identityPathOf(cp.namespace, "late")}/status`, {
      ...late,
      status: {
        ...late.status,
        conditions: (late.status?.conditions ?? []).map((c) => ({
          ...c,
          status: "True",
          reason: "Bound",
          message: "test",
        })),
      },
    });
    const pod = await create(appPod({ spec: { serviceAccountName: "late" } }));
    expect(pod.metadata.annotations?.["agentid.io/injected"]).toMatch(/^late@\d+$/);
  });

  it("refuses an ephemeral container that mounts the token or targets the sidecar, allows a plain one", async () => {
    const pod = await create(
      appPod({ metadata: { name: "debugme", labels: { "agentid.io/inject": "true" } } }),
    );
    expectInjected(pod);
    const path = `${podsPath(cp.namespace)}/debugme/ephemeralcontainers`;
    const add = (container: Record<string, unknown>) =>
      hook.kube.patch(path, "strategic", {
        spec: { ephemeralContainers: [{ image: "busybox:1.37", ...container }] },
      });
    const mounted = await add({
      name: "steal",
      volumeMounts: [{ name: "agentid-token", mountPath: "/t" }],
    }).then(
      () => "admitted",
      (e: Error) => e.message,
    );
    expect(mounted).toContain("ephemeral container 'steal' mounts the volume agentid-token");
    const targeted = await add({ name: "peek", targetContainerName: "agentid-sidecar" }).then(
      () => "admitted",
      (e: Error) => e.message,
    );
    expect(targeted).toContain("targets agentid-sidecar");
    await add({ name: "debug", targetContainerName: "app" });
    const after = await hook.kube.get<{ spec: { ephemeralContainers?: Array<{ name: string }> } }>(
      `${podsPath(cp.namespace)}/debugme`,
    );
    expect(after.spec.ephemeralContainers?.map((c) => c.name)).toEqual(["debug"]);
  });

  it("still refuses an ephemeral container on an injected pod whose author removed its opt-in label and mark", async () => {
    const pod = await create(
      appPod({ metadata: { name: "relabelled", labels: { "agentid.io/inject": "true" } } }),
    );
    expectInjected(pod);
    const podPath = `${podsPath(cp.namespace)}/relabelled`;
    // A pod UPDATE of metadata only: the webhook does not review it.
    await hook.kube.patch(podPath, "json", [
      { op: "remove", path: "/metadata/labels/agentid.io~1inject" },
      { op: "remove", path: "/metadata/annotations/agentid.io~1injected" },
    ]);
    const stolen = await hook.kube
      .patch(`${podPath}/ephemeralcontainers`, "strategic", {
        spec: {
          ephemeralContainers: [
            {
              name: "steal",
              image: "busybox:1.37",
              volumeMounts: [{ name: "agentid-token", mountPath: "/t" }],
            },
          ],
        },
      })
      .then(
        () => "admitted",
        (e: Error) => e.message,
      );
    expect(stolen).toContain("ephemeral container 'steal' mounts the volume agentid-token");
  });

  it("refuses a namespace user's pod that mounts the token volume, reads the client secret or pre-creates the sidecar", async () => {
    const user = await alice();
    // A development client secret, which the blueprint allows in this namespace.
    await createTestBlueprint(hook.kube, `${cp.namespace}-secret`, {
      admits: [{ namespaces: [cp.namespace], agents: { allowed: [AGENT] }, developmentSecrets: true }],
    });
    await createReadyIdentity(hook.kube, cp.namespace, "secretive", {
      blueprintRef: { name: `${cp.namespace}-secret` },
      clientSecretRef: { name: "blueprint-secret", key: "secret" },
    });
    const image = "ghcr.io/contoso/research:1.4";
    const cases: Array<[string, string, ReturnType<typeof appPod>, string]> = [
      [
        "token volume mounted",
        "TokenVolumeMount",
        appPod({
          spec: {
            containers: [{ name: "app", image, volumeMounts: [{ name: "agentid-token", mountPath: "/t" }] }],
          },
        }),
        "container 'app' mounts the volume agentid-token, which only the agentid sidecar may mount",
      ],
      [
        "token volume mounted by an init container",
        "TokenVolumeMount",
        appPod({
          spec: {
            initContainers: [
              { name: "setup", image, volumeMounts: [{ name: "agentid-token", mountPath: "/t" }] },
            ],
          },
        }),
        "init container 'setup' mounts the volume agentid-token",
      ],
      [
        "client secret in the environment",
        "CredentialSecret",
        appPod({
          spec: {
            serviceAccountName: "secretive",
            containers: [
              {
                name: "app",
                image,
                env: [
                  { name: "S", valueFrom: { secretKeyRef: { name: "blueprint-secret", key: "secret" } } },
                ],
              },
            ],
          },
        }),
        "container 'app' reads Secret blueprint-secret, the AgentIdentity's client secret, through its environment",
      ],
      [
        "client secret as a volume",
        "CredentialSecret",
        appPod({
          spec: {
            serviceAccountName: "secretive",
            volumes: [{ name: "creds", secret: { secretName: "blueprint-secret" } }],
            containers: [{ name: "app", image, volumeMounts: [{ name: "creds", mountPath: "/c" }] }],
          },
        }),
        "container 'app' mounts volume 'creds' with Secret blueprint-secret, the AgentIdentity's client secret",
      ],
      [
        "a container named like the sidecar",
        "ReservedName",
        appPod({
          spec: {
            containers: [
              { name: "app", image },
              { name: "agentid-sidecar", image },
            ],
          },
        }),
        "container 'agentid-sidecar': the name agentid-sidecar is reserved for the sidecar agentid injects",
      ],
      [
        "a native sidecar named like ours",
        "ReservedName",
        appPod({ spec: { initContainers: [{ name: "agentid-sidecar", image, restartPolicy: "Always" }] } }),
        "init container 'agentid-sidecar': the name agentid-sidecar is reserved",
      ],
    ];
    for (const [what, reason, body, expected] of cases) {
      const before = await reviews(reason);
      const message = await refusal(body, cp.namespace, user);
      expect(message, what).toContain(
        'admission webhook "inject.pods.agentid.io" denied the request: agentid: ',
      );
      expect(message, what).toContain(expected);
      expect(await reviews(reason), what).toBe(before + 1);
    }
    // The same namespace user's ordinary labelled pod is injected: the refusals above are the pods', not hers.
    expectInjected(await create(appPod(), cp.namespace, user));
  });

  it("is never sent a pod of the manager's namespace or kube-system, though it would refuse it", async () => {
    // A pod every entry refuses (hostNetwork), once labelled, once annotated in an injection-enabled
    // namespace; and kubectl debug mounting the token into a pod that carries the sidecar's names.
    const labelled = appPod({ spec: { hostNetwork: true } });
    const annotated = appPod({
      metadata: { labels: {}, annotations: { "agentid.io/identity": "research-agent" } },
      spec: { hostNetwork: true },
    });
    const ours = appPod({
      metadata: { name: "ours", labels: {} },
      spec: {
        containers: [
          { name: "app", image: "app:1" },
          { name: "agentid-sidecar", image: "app:1" },
        ],
        volumes: [{ name: "agentid-token", emptyDir: {} }],
      },
    });
    const steal = {
      spec: {
        ephemeralContainers: [
          {
            name: "steal",
            image: "busybox:1.37",
            volumeMounts: [{ name: "agentid-token", mountPath: "/t" }],
          },
        ],
      },
    };
    // Where the webhook is sent them, it refuses each.
    await hook.kube.patch(`/api/v1/namespaces/${cp.namespace}`, "merge", {
      metadata: { labels: { "agentid.io/injection": "enabled" } },
    });
    expect(await refusal(labelled)).toContain("the pod sets hostNetwork: true");
    await expect.poll(() => refusal(annotated)).toContain("the pod sets hostNetwork: true");
    await create(ours);
    expect(
      await hook.kube.patch(`${podsPath(cp.namespace)}/ours/ephemeralcontainers`, "strategic", steal).then(
        () => "admitted",
        (e: Error) => e.message,
      ),
    ).toContain("ephemeral container 'steal' mounts the volume agentid-token");

    // The excluded namespaces get every label this file's configuration selects by (the test's run and
    // injection enabled), so only the chart's exclusion by name can keep those pods from the webhook.
    const excluded = [hook.managerNamespace, "kube-system"];
    const labels = { "agentid-test-run": run, "agentid.io/injection": "enabled" };
    const created: string[] = [];
    try {
      for (const ns of excluded)
        await hook.kube.patch(`/api/v1/namespaces/${ns}`, "merge", { metadata: { labels } });
      await untilLabelsSeen(excluded, labels);
      const before = await reviews();
      for (const ns of excluded) {
        for (const body of [labelled, annotated]) {
          const pod = await create(body, ns);
          created.push(`${podsPath(ns)}/${pod.metadata.name}`);
          expect(pod.spec.initContainers, ns).toBeUndefined();
          expect(pod.metadata.annotations?.["agentid.io/injected"], ns).toBeUndefined();
        }
        await create(ours, ns);
        created.push(`${podsPath(ns)}/ours`);
        const debugged = await hook.kube.patch<{ spec: { ephemeralContainers?: Array<{ name: string }> } }>(
          `${podsPath(ns)}/ours/ephemeralcontainers`,
          "strategic",
          steal,
        );
        expect(
          debugged.spec.ephemeralContainers?.map((c) => c.name),
          ns,
        ).toEqual(["steal"]);
      }
      expect(await reviews()).toBe(before);
    } finally {
      for (const path of created) await hook.kube.delete(path).catch(() => undefined);
      for (const ns of excluded)
        await hook.kube.patch(`/api/v1/namespaces/${ns}`, "merge", {
          metadata: { labels: { "agentid-test-run": null, "agentid.io/injection": null } },
        });
    }
  });
});

/**
 * Waits until the API server's namespace cache (which webhook namespaceSelectors read) holds `labels` on
 * each namespace: a throwaway configuration selecting them, for ConfigMaps, with nothing listening, fails
 * a dry-run ConfigMap in each once it does. Without this, a pod created a moment after labelling could
 * miss the webhook for the stale cache instead of the chart's exclusion.
 */
async function untilLabelsSeen(namespaces: string[], labels: Record<string, string>): Promise<void> {
  const name = `agentid-probe-${run}`;
  const kube = createKubeClient(cp.kubeConfig);
  await kube.create(MWC_PATH, {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "MutatingWebhookConfiguration",
    metadata: { name },
    webhooks: [
      {
        name: "probe.agentid.io",
        admissionReviewVersions: ["v1"],
        sideEffects: "None",
        failurePolicy: "Fail",
        timeoutSeconds: 1,
        clientConfig: { url: "https://127.0.0.1:1/probe" },
        rules: [{ apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["configmaps"] }],
        namespaceSelector: { matchLabels: labels },
      },
    ],
  });
  try {
    for (const ns of namespaces) {
      await expect
        .poll(() =>
          kube
            .request("POST", `/api/v1/namespaces/${ns}/configmaps`, {
              query: { dryRun: "All" },
              body: { apiVersion: "v1", kind: "ConfigMap", metadata: { generateName: "probe-" } },
            })
            .then(
              () => "admitted",
              (e: Error) => e.message,
            ),
        )
        .toContain('failed calling webhook "probe.agentid.io"');
    }
  } finally {
    await kube.delete(`${MWC_PATH}/${name}`);
    await kube.close();
  }
}
