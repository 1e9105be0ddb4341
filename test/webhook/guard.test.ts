import { describe, expect, it } from "vitest";
import type { AgentIdentity } from "../../src/api/types.ts";
import { parseGuardReview } from "../../src/webhook/guard-review.ts";
import type { JsonObject } from "../../src/webhook/raw.ts";
import { ApiReadTimeoutError } from "../../src/webhook/reads.ts";
import type { IdentitySource } from "../../src/webhook/select.ts";
import {
  appPod,
  BOUND_SA,
  guardFor,
  IDENTITIES,
  inject,
  MANAGER_USER,
  OWN_TOKEN_VOLUME,
  request,
} from "./guard-support.ts";
import { settings as testSettings } from "./support.ts";

/**
 * The guard's decisions through its review (guard-review.ts), against the fixtures' Ready AgentIdentity
 * research-agent (ServiceAccount research-agent, namespace research). Each attack of docs/webhook.md "The
 * guard" is a row; so is what must keep working (the kubelet, the manager, other ServiceAccounts, injected
 * pods).
 */

const native = testSettings({ native: true });
const guard = guardFor(native);

async function outcome(req: Parameters<typeof guard>[0]) {
  const result = await guard(req);
  return {
    outcome: result.outcome,
    reason: result.reason,
    message: result.response.status?.message ?? "",
  };
}

const tokenRequest = (audiences: string[]): JsonObject => ({
  apiVersion: "authentication.k8s.io/v1",
  kind: "TokenRequest",
  spec: { audiences, expirationSeconds: 3600 },
});

describe("TokenRequests", () => {
  const EXCHANGE = "api://AzureADTokenExchange";
  it.each([
    {
      case: "a namespace user, exchange audience, bound ServiceAccount",
      sa: BOUND_SA,
      audiences: [EXCHANGE],
      user: "system:serviceaccount:research:alice",
      groups: ["system:serviceaccounts"],
      want: "refused",
    },
    {
      case: "the audience spelled in another case with a trailing slash",
      sa: BOUND_SA,
      audiences: ["https://kubernetes.default.svc", "API://azureadtokenexchange/"],
      user: "alice",
      groups: [],
      want: "refused",
    },
    {
      case: "someone claiming a node's name without the group",
      sa: BOUND_SA,
      audiences: [EXCHANGE],
      user: "system:node:worker-1",
      groups: ["system:authenticated"],
      want: "refused",
    },
    {
      case: "the kubelet (projected volume of the injected pod)",
      sa: BOUND_SA,
      audiences: [EXCHANGE],
      user: "system:node:worker-1",
      groups: ["system:nodes", "system:authenticated"],
      want: "skipped",
    },
    {
      case: "the manager's own verification",
      sa: BOUND_SA,
      audiences: [EXCHANGE],
      user: MANAGER_USER,
      groups: ["system:serviceaccounts"],
      want: "skipped",
    },
    {
      case: "another audience for the bound ServiceAccount",
      sa: BOUND_SA,
      audiences: ["vault"],
      user: "alice",
      groups: [],
      want: "skipped",
    },
    {
      case: "the exchange audience for a ServiceAccount no AgentIdentity binds (azure-workload-identity)",
      sa: "payments",
      audiences: [EXCHANGE],
      user: "alice",
      groups: [],
      want: "allowed",
    },
  ])("$case: $want", async ({ sa, audiences, user, groups, want }) => {
    const result = await outcome(request("token", tokenRequest(audiences), { name: sa, user, groups }));
    expect(result.outcome).toBe(want);
    if (want === "refused") {
      expect(result.reason).toBe("ExchangeTokenRequest");
      expect(result.message).toContain(`ServiceAccount ${BOUND_SA}`);
      expect(result.message).toContain("AgentIdentity research-agent binds");
      expect(result.message).toContain("SIDECAR_URL");
    }
  });

  it.each([
    {
      case: "the ServiceAccount it held before a rename (status.serviceAccount)",
      status: { serviceAccount: "old-agent" },
    },
    {
      case: "the subject of its federated credential",
      status: { federatedCredential: { subject: "system:serviceaccount:research:old-agent" } },
    },
    {
      case: "the subject of its federated credential, while it is being deleted",
      status: { federatedCredential: { subject: "system:serviceaccount:research:old-agent" } },
      deleting: true,
    },
  ])(
    "refuses for a ServiceAccount an AgentIdentity no longer names but still binds: $case",
    async ({ status, deleting }) => {
      const renamed: AgentIdentity[] = IDENTITIES.map((i) => ({
        ...i,
        metadata: { ...i.metadata, ...(deleting ? { deletionTimestamp: "2026-12-06T09:00:00Z" } : {}) },
        status: { ...i.status, ...status },
      }));
      const guardRenamed = guardFor(native, renamed);
      const token = request("token", tokenRequest(["api://AzureADTokenExchange"]), { name: "old-agent" });
      expect((await guardRenamed(token)).outcome).toBe("refused");
      // A pod of the old account that projects the token (not what the webhook injects for anyone).
      const pod = appPod({
        serviceAccountName: "old-agent",
        volumes: [OWN_TOKEN_VOLUME],
        containers: [{ name: "app", image: "app:1", volumeMounts: [{ name: "my-token", mountPath: "/t" }] }],
      });
      expect((await guardRenamed(request("pod", pod))).outcome).toBe("refused");
      // The subject of another namespace's account binds nothing here.
      const elsewhere = IDENTITIES.map((i) => ({
        ...i,
        status: { federatedCredential: { subject: "system:serviceaccount:other:old-agent" } },
      }));
      expect((await guardFor(native, elsewhere)(token)).outcome).toBe("allowed");
    },
  );

  // Concurrent LISTs of one namespace are one request in reads.ts (test/webhook/reads.test.ts), under the
  // source the guard is given here; this is the guard's own memory of an unbound account.
  it("takes an unbound account as unbound for a moment", async () => {
    let lists = 0;
    let time = 0;
    let cache: AgentIdentity[] = [];
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const source: IdentitySource = {
      cached: () => undefined,
      cachedList: () => cache,
      read: async () => undefined,
      list: async () => {
        lists += 1;
        await gate;
        return [];
      },
    };
    const g = guardFor(native, IDENTITIES, {}, { identities: source, now: () => time, unboundTtlMs: 2000 });
    const ask = (sa: string) =>
      g(request("token", tokenRequest(["api://AzureADTokenExchange"]), { name: sa }));
    const first = ask("payments");
    release();
    expect((await first).outcome).toBe("allowed");
    expect(lists).toBe(1);
    time = 1999;
    expect((await ask("payments")).outcome).toBe("allowed");
    expect(lists).toBe(1);
    time = 2001;
    expect((await ask("payments")).outcome).toBe("allowed");
    expect(lists).toBe(2);
    // The shared cache is asked first: an identity it holds binds at once, remembered miss or not.
    cache = IDENTITIES.map((i) => ({ ...i, spec: { ...i.spec, serviceAccountName: "payments" } }));
    expect((await ask("payments")).outcome).toBe("refused");
  });

  it("refuses for an AgentIdentity being deleted too (its federated credential may still stand)", async () => {
    const deleting: AgentIdentity[] = IDENTITIES.map((i) => ({
      ...i,
      metadata: { ...i.metadata, deletionTimestamp: "2026-12-06T09:00:00Z" },
    }));
    const result = await guardFor(
      native,
      deleting,
    )(request("token", tokenRequest(["api://AzureADTokenExchange"]), { name: BOUND_SA }));
    expect(result.outcome).toBe("refused");
  });
});

describe("pod CREATE", () => {
  it.each([{ native: true }, { native: false }])(
    "an injected pod passes (native sidecar: $native), with and without its inject label",
    async ({ native: n }) => {
      const s = testSettings({ native: n });
      const pod = await inject(appPod(), s);
      expect((await guardFor(s)(request("pod", pod))).outcome).toBe("allowed");
      // kubectl debug --copy-to without --set-image: the same pod, no label, still exactly what we render.
      const copy = structuredClone(pod) as { metadata: JsonObject };
      copy.metadata.labels = {};
      expect((await guardFor(s)(request("pod", copy))).outcome).toBe("allowed");
    },
  );

  it("an injected pod passes when another webhook tightened the sidecar's securityContext or the API server defaulted fields", async () => {
    const pod = (await inject(appPod(), native)) as { spec: { initContainers: JsonObject[] } };
    const sidecar = pod.spec.initContainers[0] as JsonObject;
    sidecar.securityContext = { ...(sidecar.securityContext as JsonObject), privileged: false };
    sidecar.imagePullPolicy = "IfNotPresent";
    sidecar.terminationMessagePath = "/dev/termination-log";
    // A probe's thresholds, where the render has a probe (it may wait in a postStart hook instead).
    const probe = sidecar.startupProbe as JsonObject | undefined;
    if (probe) probe.successThreshold = 1;
    expect((await guard(request("pod", pod as unknown as JsonObject))).outcome).toBe("allowed");
  });

  it("a pod without an exchange-token volume is not looked at", async () => {
    expect((await guard(request("pod", appPod()))).outcome).toBe("skipped");
  });

  it("a pod of a ServiceAccount no AgentIdentity binds may project the token (azure-workload-identity)", async () => {
    const pod = appPod({
      serviceAccountName: "payments",
      volumes: [OWN_TOKEN_VOLUME],
      containers: [{ name: "app", image: "app:1", volumeMounts: [{ name: "my-token", mountPath: "/t" }] }],
    });
    expect((await guard(request("pod", pod))).outcome).toBe("allowed");
  });

  type Change = (pod: { metadata: JsonObject; spec: Record<string, JsonObject[]> }) => void;
  const sidecarOf = (pod: { spec: Record<string, JsonObject[]> }) =>
    (pod.spec.initContainers ?? []).find((c) => c.name === "agentid-sidecar") as JsonObject;
  const attacks: Array<{ case: string; change: Change; reason: string; says: string }> = [
    {
      case: "kubectl debug --copy-to --set-image agentid-sidecar=evil",
      change: (p) => {
        sidecarOf(p).image = "evil:1";
      },
      reason: "NotInjected",
      says: "image",
    },
    {
      case: "the sidecar's command replaced",
      change: (p) => {
        sidecarOf(p).command = ["/bin/sh", "-c", "cat /var/run/secrets/agentid/token/*"];
      },
      reason: "NotInjected",
      says: "command",
    },
    {
      case: "a postStart hook that runs the author's command in the sidecar",
      change: (p) => {
        sidecarOf(p).lifecycle = { postStart: { exec: { command: ["node", "-e", "steal()"] } } };
      },
      reason: "NotInjected",
      says: "lifecycle",
    },
    {
      case: "NODE_OPTIONS added to the sidecar's environment",
      change: (p) => {
        (sidecarOf(p).env as JsonObject[]).push({ name: "NODE_OPTIONS", value: "--require /evil/x.js" });
      },
      reason: "NotInjected",
      says: "env",
    },
    {
      case: "another volume mounted into the sidecar",
      change: (p) => {
        (sidecarOf(p).volumeMounts as JsonObject[]).push({ name: "evil", mountPath: "/evil" });
        p.spec.volumes?.push({ name: "evil", emptyDir: {} });
      },
      reason: "NotInjected",
      says: "volumeMounts",
    },
    {
      case: "the app container mounts the token volume",
      change: (p) => {
        (p.spec.containers?.[0] as JsonObject).volumeMounts = [{ name: "agentid-token", mountPath: "/t" }];
      },
      reason: "TokenVolumeMount",
      says: "only the agentid sidecar may mount",
    },
    {
      case: "an init container mounts the token volume",
      change: (p) => {
        p.spec.initContainers?.push({
          name: "copy",
          image: "busybox",
          volumeMounts: [{ name: "agentid-token", mountPath: "/t" }],
        });
      },
      reason: "TokenVolumeMount",
      says: "init container 'copy'",
    },
    {
      case: "a second exchange-token volume for the app",
      change: (p) => {
        p.spec.volumes?.push(OWN_TOKEN_VOLUME);
      },
      reason: "ExchangeTokenVolume",
      says: "my-token",
    },
    {
      case: "shareProcessNamespace (the app reads the sidecar's files under /proc)",
      change: (p) => {
        (p.spec as unknown as JsonObject).shareProcessNamespace = true;
      },
      reason: "SharedProcessNamespace",
      says: "shareProcessNamespace",
    },
    {
      case: "the token volume's audience or lifetime changed",
      change: (p) => {
        const v = p.spec.volumes?.find((x) => x.name === "agentid-token") as {
          projected: { sources: Array<{ serviceAccountToken: JsonObject }> };
        };
        (
          v.projected.sources[0] as { serviceAccountToken: JsonObject }
        ).serviceAccountToken.expirationSeconds = 86400 * 7;
      },
      reason: "NotInjected",
      says: "volume agentid-token",
    },
  ];

  it.each(attacks)("refuses a copy of an injected pod with $case", async ({ change, reason, says }) => {
    const pod = (await inject(appPod(), native)) as unknown as Parameters<Change>[0];
    change(pod);
    const result = await outcome(request("pod", pod as unknown as JsonObject));
    expect(result.outcome).toBe("refused");
    expect(result.reason).toBe(reason);
    expect(result.message).toContain(says);
  });

  type Spec = { initContainers?: JsonObject[]; containers: JsonObject[] };
  const placements: Array<{ case: string; native: boolean; move: (spec: Spec) => void }> = [
    {
      // The exec attack: the API server picks the only regular container for an exec naming none.
      case: "the sidecar moved to be the only regular container, restartPolicy dropped",
      native: true,
      move: (spec) => {
        const sidecar = spec.initContainers?.shift() as JsonObject;
        delete sidecar.restartPolicy;
        spec.containers = [sidecar];
      },
    },
    {
      case: "the sidecar moved in front of the app, restartPolicy dropped",
      native: true,
      move: (spec) => {
        const sidecar = spec.initContainers?.shift() as JsonObject;
        delete sidecar.restartPolicy;
        spec.containers.unshift(sidecar);
      },
    },
    {
      case: "the native sidecar's restartPolicy dropped (a plain init container)",
      native: true,
      move: (spec) => {
        delete ((spec.initContainers ?? [])[0] as JsonObject).restartPolicy;
      },
    },
    {
      case: "the app container removed (the sidecar alone)",
      native: false,
      move: (spec) => {
        spec.containers = spec.containers.slice(0, 1);
      },
    },
    {
      case: "the sidecar behind the app",
      native: false,
      move: (spec) => {
        spec.containers.reverse();
      },
    },
    {
      case: "the sidecar moved to the init containers",
      native: false,
      move: (spec) => {
        spec.initContainers = [spec.containers.shift() as JsonObject];
      },
    },
  ];

  it.each(placements)(
    "refuses a copy of an injected pod with $case (native: $native)",
    async ({ native: n, move }) => {
      const s = testSettings({ native: n });
      const pod = (await inject(appPod(), s)) as unknown as { metadata: JsonObject; spec: Spec };
      pod.metadata.labels = {};
      move(pod.spec);
      const result = await guardFor(s)(request("pod", pod as unknown as JsonObject));
      expect(result.outcome).toBe("refused");
      expect(result.reason).toBe("NotInjected");
      expect(result.response.status?.message).toContain("placement");
    },
  );

  it("refuses a pod of its own that projects the token for the bound ServiceAccount (no sidecar)", async () => {
    const pod = appPod(
      {
        volumes: [OWN_TOKEN_VOLUME],
        containers: [{ name: "app", image: "app:1", volumeMounts: [{ name: "my-token", mountPath: "/t" }] }],
      },
      { labels: {} },
    );
    const result = await outcome(request("pod", pod));
    expect(result.outcome).toBe("refused");
    expect(result.reason).toBe("NotInjected");
    expect(result.message).toMatch(
      /AgentIdentity research-agent binds.*label the pod \(template\) agentid.io\/inject=true/,
    );
  });

  it("refuses the injected shape when the identity cannot be injected now (not Ready)", async () => {
    const pod = await inject(appPod(), native);
    const notReady = IDENTITIES.map((i) => ({ ...i, status: { observedGeneration: 2, conditions: [] } }));
    const result = await guardFor(native, notReady)(request("pod", pod));
    expect(result.outcome).toBe("refused");
    expect(result.response.status?.message).toContain("is not Ready");
  });

  it("checks a not-Ready identity in its cache against the API server once, as the webhook does", async () => {
    // The webhook injected the pod after its one re-check found the identity Ready; the guard's cache is as
    // far behind, and must not refuse what the webhook admitted.
    const pod = await inject(appPod(), native);
    const notReady = IDENTITIES.map((i) => ({ ...i, status: { observedGeneration: 2, conditions: [] } }));
    let reads = 0;
    const lagging: IdentitySource = {
      cached: (_ns, name) => notReady.find((i) => i.metadata.name === name),
      cachedList: () => notReady,
      read: async (_ns, name) => {
        reads++;
        return IDENTITIES.find((i) => i.metadata.name === name);
      },
      list: async () => {
        reads++;
        return IDENTITIES;
      },
    };
    const result = await guardFor(native, IDENTITIES, {}, { identities: lagging })(request("pod", pod));
    expect(result.outcome).toBe("allowed");
    expect(reads).toBe(1);
  });

  it("refuses with what it could not read when an API read passes its deadline, with no Event", async () => {
    const pod = await inject(appPod(), native);
    const events: string[] = [];
    const slow: IdentitySource = {
      cached: () => undefined,
      cachedList: () => [],
      read: () =>
        Promise.reject(
          new ApiReadTimeoutError("read AgentIdentity research-agent in namespace research", 3000),
        ),
      list: () =>
        Promise.reject(new ApiReadTimeoutError("list the AgentIdentities of namespace research", 3000)),
    };
    const result = await guardFor(
      native,
      IDENTITIES,
      {},
      {
        identities: slow,
        recordRefusal: (identity) => events.push(identity.metadata.name),
      },
    )(request("pod", pod));
    expect(result.outcome).toBe("refused");
    expect(result.reason).toBe("ApiServerTimeout");
    expect(result.response.status?.message).toMatch(
      /^agentid: could not .* from the API server within 3 s; try again$/,
    );
    expect(events).toEqual([]);
  });

  it("refuses a sidecar this replica would render with another image (no tag tolerance)", async () => {
    const pod = await inject(appPod(), testSettings({ native: true, image: "ghcr.io/agentid/sidecar:old" }));
    expect((await guard(request("pod", pod))).outcome).toBe("refused");
  });

  it.each<[string, JsonObject]>([
    ["securityContext", { privileged: true }],
    ["tty", { tty: true }],
    ["stdin", { stdin: true }],
  ])("refuses an injected sidecar with a looser %s", async (field, change) => {
    const pod = (await inject(appPod(), native)) as { spec: { initContainers: JsonObject[] } };
    const sidecar = pod.spec.initContainers[0] as JsonObject;
    pod.spec.initContainers[0] =
      field === "securityContext"
        ? { ...sidecar, securityContext: { ...(sidecar.securityContext as JsonObject), ...change } }
        : { ...sidecar, ...change };
    const { outcome: got, message } = await outcome(request("pod", pod as unknown as JsonObject));
    expect(got).toBe("refused");
    expect(message).toContain(`renders (${field})`);
  });

  it("names at most ten refusals in its answer, the last saying there are more", async () => {
    const pod = (await inject(appPod(), native)) as { spec: { containers: JsonObject[] } };
    const ports = Array.from({ length: 1000 }, (_, i) => ({ containerPort: 8000 + i, hostPort: 8000 + i }));
    pod.spec.containers.push({ name: "app2", image: "a:1", ports });
    const { outcome: got, message } = await outcome(request("pod", pod as unknown as JsonObject));
    expect(got).toBe("refused");
    expect(message.match(/asks for hostPort/g)).toHaveLength(10);
    expect(message).toMatch(
      /hostPort 8009; .*; and more \(at most 10 are named at once: fix these and try again\)$/,
    );
  });
});

describe("pod UPDATE and ephemeral containers", () => {
  async function injected() {
    return (await inject(appPod(), native)) as unknown as {
      metadata: JsonObject;
      spec: { initContainers: JsonObject[]; containers: JsonObject[]; ephemeralContainers?: JsonObject[] };
    };
  }

  it("refuses a new image for the sidecar, allows a new image for the app", async () => {
    const old = await injected();
    const swapped = structuredClone(old);
    (swapped.spec.initContainers[0] as JsonObject).image = "evil:1";
    const refused = await outcome(
      request("pod-update", swapped as unknown as JsonObject, { oldObject: old as unknown as JsonObject }),
    );
    expect(refused).toMatchObject({ outcome: "refused", reason: "SidecarImageChanged" });
    expect(refused.message).toContain("container 'agentid-sidecar'");
    const app = structuredClone(old);
    (app.spec.containers[0] as JsonObject).image = "ghcr.io/contoso/research:1.5";
    expect(
      (
        await guard(
          request("pod-update", app as unknown as JsonObject, { oldObject: old as unknown as JsonObject }),
        )
      ).outcome,
    ).toBe("allowed");
  });

  it("refuses the sidecar's new image even when no AgentIdentity binds the account any more", async () => {
    const old = await injected();
    const swapped = structuredClone(old);
    (swapped.spec.initContainers[0] as JsonObject).image = "evil:1";
    const result = await guardFor(
      native,
      [],
    )(request("pod-update", swapped as unknown as JsonObject, { oldObject: old as unknown as JsonObject }));
    expect(result.outcome).toBe("refused");
  });

  it("allows a new image for a token-mounting container of a ServiceAccount no AgentIdentity binds", async () => {
    const old = appPod({
      serviceAccountName: "payments",
      volumes: [OWN_TOKEN_VOLUME],
      containers: [{ name: "app", image: "app:1", volumeMounts: [{ name: "my-token", mountPath: "/t" }] }],
    });
    const changed = structuredClone(old) as { spec: { containers: JsonObject[] } };
    (changed.spec.containers[0] as JsonObject).image = "app:2";
    expect(
      (await guard(request("pod-update", changed as unknown as JsonObject, { oldObject: old }))).outcome,
    ).toBe("allowed");
  });

  it.each([
    {
      case: "mounts the token volume",
      container: {
        name: "debugger",
        image: "busybox",
        volumeMounts: [{ name: "agentid-token", mountPath: "/t" }],
      },
      want: "refused",
    },
    {
      case: "targets the sidecar",
      container: { name: "debugger", image: "busybox", targetContainerName: "agentid-sidecar" },
      want: "refused",
    },
    {
      case: "targets the app",
      container: { name: "debugger", image: "busybox", targetContainerName: "app" },
      want: "allowed",
    },
  ])("an ephemeral container that $case: $want", async ({ container, want }) => {
    const old = await injected();
    const debugged = structuredClone(old);
    debugged.spec.ephemeralContainers = [container as unknown as JsonObject];
    const result = await guard(
      request("ephemeral", debugged as unknown as JsonObject, { oldObject: old as unknown as JsonObject }),
    );
    expect(result.outcome).toBe(want);
  });
});

describe("exec and attach", () => {
  const container = (name: string) => ({ name, image: `${name}:1` });
  // What the API server holds: a pod whose only regular container is named agentid-sidecar (of a
  // ServiceAccount nobody binds, so no token volume and the pod guard never looked at it), a pod with two
  // regular containers, and an injected pod (native: the app is the only regular container).
  const pods: Record<string, JsonObject> = {
    lonely: appPod({ containers: [container("agentid-sidecar")] }),
    two: appPod({ containers: [container("agentid-sidecar"), container("app")] }),
    none: appPod({ containers: [] }),
  };
  it.each([
    { kind: "exec" as const, pod: "research-1", container: "agentid-sidecar", want: "refused" },
    { kind: "attach" as const, pod: "research-1", container: "agentid-sidecar", want: "refused" },
    { kind: "exec" as const, pod: "research-1", container: "app", want: "skipped" },
    { kind: "exec" as const, pod: "lonely", container: "app", want: "skipped" },
    { kind: "exec" as const, pod: "lonely", container: undefined, want: "refused" },
    { kind: "exec" as const, pod: "lonely", container: "", want: "refused" },
    { kind: "attach" as const, pod: "lonely", container: undefined, want: "refused" },
    { kind: "exec" as const, pod: "injected", container: undefined, want: "skipped" },
    // The API server refuses these itself ("a container name must be specified").
    { kind: "exec" as const, pod: "two", container: undefined, want: "skipped" },
    { kind: "exec" as const, pod: "none", container: undefined, want: "skipped" },
    { kind: "exec" as const, pod: "missing", container: undefined, want: "skipped" },
  ])("$kind into $pod, container $container: $want", async ({ kind, pod, container, want }) => {
    const options: JsonObject = {
      kind: kind === "exec" ? "PodExecOptions" : "PodAttachOptions",
      stdout: true,
    };
    if (container !== undefined) options.container = container;
    const all = { ...pods, injected: await inject(appPod(), native) };
    const result = await guardFor(native, IDENTITIES, all)(request(kind, options, { name: pod }));
    expect(result.outcome).toBe(want);
    if (want === "refused") {
      const message = result.response.status?.message ?? "";
      expect(result.reason).toBe("SidecarExec");
      expect(message).toMatch(/^agentid: .*agentid-sidecar is refused.*port-forward/);
      if (!container) expect(message).toContain("names no container");
    }
  });
});

describe("parseGuardReview", () => {
  const review = (request: JsonObject) => ({
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request,
  });
  it("reads a TokenRequest review: the ServiceAccount is the request's name, groups from userInfo", () => {
    const parsed = parseGuardReview(
      review({
        uid: "1",
        operation: "CREATE",
        namespace: "research",
        name: BOUND_SA,
        resource: { group: "", version: "v1", resource: "serviceaccounts" },
        subResource: "token",
        object: tokenRequest(["api://AzureADTokenExchange"]),
        userInfo: { username: "alice", groups: ["g1", 7] },
      }),
    );
    expect(parsed).toMatchObject({
      ok: true,
      request: { kind: "token", name: BOUND_SA, user: "alice", groups: ["g1"] },
    });
  });

  it.each([
    { case: "not an object", body: "x", status: 400 },
    { case: "another kind", body: { apiVersion: "admission.k8s.io/v1", kind: "Pod" }, status: 400 },
    { case: "no uid", body: review({}), status: 400 },
    {
      case: "a resource the guard does not judge",
      body: review({
        uid: "1",
        operation: "CREATE",
        resource: { group: "", version: "v1", resource: "secrets" },
        object: {},
      }),
      status: 200,
    },
    {
      case: "pods/portforward (allowed by the configuration, never sent)",
      body: review({
        uid: "1",
        operation: "CONNECT",
        namespace: "n",
        subResource: "portforward",
        resource: { group: "", version: "v1", resource: "pods" },
        object: {},
      }),
      status: 200,
    },
    {
      case: "no namespace",
      body: review({
        uid: "1",
        operation: "CREATE",
        resource: { group: "", version: "v1", resource: "pods" },
        object: {},
      }),
      status: 200,
    },
  ])("refuses $case", ({ body, status }) => {
    const parsed = parseGuardReview(body);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.httpStatus).toBe(status);
  });
});
