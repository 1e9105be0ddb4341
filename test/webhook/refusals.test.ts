import { describe, expect, it } from "vitest";
import { SIDECAR_CONTAINER } from "../../src/api/constants.ts";
import { ANNOTATION_INIT_CONTAINERS, MAX_INIT_CONTAINER_NAMES } from "../../src/webhook/annotations.ts";
import { podCreateRefusals } from "../../src/webhook/guard.ts";
import { mutatePod, tokenVolume } from "../../src/webhook/mutate.ts";
import type { JsonObject } from "../../src/webhook/raw.ts";
import {
  ephemeralRefusals,
  limitRefusals,
  MAX_CONTAINERS_PER_LIST,
  MAX_REFUSALS,
  MAX_VOLUMES,
  podRefusals,
} from "../../src/webhook/refusals.ts";
import { settings, target } from "./support.ts";

/** The size cap and which container counts as the injected sidecar (the rest: golden fixtures, properties). */

const containers = (n: number, prefix = "c"): JsonObject[] =>
  Array.from({ length: n }, (_, i) => ({ name: `${prefix}${i}`, image: "app:1" }));

function pod(spec: JsonObject): JsonObject {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "p" },
    spec: { containers: containers(1), ...spec },
  };
}

const check = (p: JsonObject) => podRefusals({ pod: p, port: 5000, secretNames: [], injected: false });

describe("pods larger than any real one", () => {
  it("are refused with one clear refusal, before anything else is checked", () => {
    for (const field of ["containers", "initContainers", "ephemeralContainers"]) {
      // A host port in the first container would be refused too: the cap answers alone, without the walk.
      const list = containers(MAX_CONTAINERS_PER_LIST + 1);
      list[0] = { ...list[0], ports: [{ containerPort: 80, hostPort: 80 }] };
      const refusals = check(pod({ [field]: list }));
      expect(refusals).toEqual([
        {
          reason: "TooLarge",
          message: `the pod has ${MAX_CONTAINERS_PER_LIST + 1} ${field}; agentid admits at most ${MAX_CONTAINERS_PER_LIST} per list, split the workload into several pods`,
        },
      ]);
    }
    const volumes = Array.from({ length: MAX_VOLUMES + 1 }, (_, i) => ({ name: `v${i}`, emptyDir: {} }));
    expect(check(pod({ volumes })).map((r) => r.reason)).toEqual(["TooLarge"]);
    expect(check(pod({ volumes }))[0]?.message).toContain(`${MAX_VOLUMES + 1} volumes`);
  });

  it("at the cap are judged as usual", () => {
    expect(check(pod({ containers: containers(MAX_CONTAINERS_PER_LIST) }))).toEqual([]);
    const volumes = Array.from({ length: MAX_VOLUMES }, (_, i) => ({ name: `v${i}`, emptyDir: {} }));
    expect(check(pod({ volumes, initContainers: containers(MAX_CONTAINERS_PER_LIST, "i") }))).toEqual([]);
  });

  it("refuses the mutation of such a pod, and kubectl debug once a pod has that many ephemeral containers", () => {
    const result = mutatePod({
      pod: pod({ containers: containers(MAX_CONTAINERS_PER_LIST + 1) }),
      target: target(),
      settings: settings(),
    });
    expect(result.allowed).toBe(false);
    if (!result.allowed) expect(result.refusals.map((r) => r.reason)).toEqual(["TooLarge"]);
    const old = pod({ ephemeralContainers: containers(MAX_CONTAINERS_PER_LIST, "e") });
    const debugged = pod({ ephemeralContainers: containers(MAX_CONTAINERS_PER_LIST + 1, "e") });
    expect(ephemeralRefusals(debugged, old, 5000, []).map((r) => r.reason)).toEqual(["TooLarge"]);
    const fewer = pod({ ephemeralContainers: containers(2, "e") });
    expect(ephemeralRefusals(fewer, pod({}), 5000, [])).toEqual([]);
  });
});

describe("the init-containers annotation of a large pod", () => {
  // Names no init container has: had the annotation been looked at, it would add a BadAnnotation refusal.
  const names = (n: number) => Array.from({ length: n }, (_, i) => `x${i}`).join(",");
  const annotated = (spec: JsonObject, value: string): JsonObject => ({
    ...pod(spec),
    metadata: { name: "p", annotations: { [ANNOTATION_INIT_CONTAINERS]: value } },
  });

  it("is not read when the pod is over the size cap: the TooLarge refusal answers alone", () => {
    const big = annotated({ initContainers: containers(MAX_CONTAINERS_PER_LIST + 1, "i") }, names(10_000));
    const result = mutatePod({ pod: big, target: target(), settings: settings() });
    expect(result).toEqual({ allowed: false, refusals: [expect.objectContaining({ reason: "TooLarge" })] });
  });

  it("is refused with a clear message when it lists more names than a pod may have init containers", () => {
    const p = annotated({ initContainers: containers(2, "i") }, names(MAX_INIT_CONTAINER_NAMES + 1));
    const result = mutatePod({ pod: p, target: target(), settings: settings() });
    expect(result).toEqual({
      allowed: false,
      refusals: [
        {
          reason: "BadAnnotation",
          message: `annotation ${ANNOTATION_INIT_CONTAINERS} lists ${MAX_INIT_CONTAINER_NAMES + 1} names; agentid accepts at most ${MAX_INIT_CONTAINER_NAMES}, list only the init containers that need SIDECAR_URL`,
        },
      ],
    });
  });

  it("repeats at most ten unknown names and counts the rest", () => {
    const p = annotated({ initContainers: containers(2, "i") }, `i0,${names(25)}`);
    const result = mutatePod({ pod: p, target: target(), settings: settings() });
    expect(result.allowed).toBe(false);
    if (result.allowed) return;
    const message = result.refusals[0]?.message ?? "";
    expect(message).toContain("'x0', 'x1'");
    expect(message).toContain("'x9', 15 more, which are not init containers");
    expect(message).not.toContain("'x10'");
  });
});

describe("the guard's check of a pod over the size cap", () => {
  it("answers with the TooLarge refusal alone, without comparing the sidecar", () => {
    // A sidecar that differs from the rendered one (image, command...) would add a NotInjected refusal.
    const p = pod({
      initContainers: [{ name: SIDECAR_CONTAINER, image: "other:1", restartPolicy: "Always" }],
      containers: containers(MAX_CONTAINERS_PER_LIST + 1),
      volumes: [tokenVolume(target()) as JsonObject],
    });
    const refusals = podCreateRefusals(p, "research-agent", {
      ok: true,
      target: target(),
      settings: settings(),
    });
    expect(refusals.map((r) => r.reason)).toEqual(["TooLarge"]);
  });
});

describe("a pod refused for many things", () => {
  it("stops the walk once there are more refusals than an answer names, and the answer says there are more", () => {
    const ports = Array.from({ length: 200_000 }, () => ({ hostPort: 1 }));
    const refusals = check(pod({ containers: [{ name: "app", image: "a:1", ports }] }));
    expect(refusals).toHaveLength(MAX_REFUSALS + 1);
    const shown = limitRefusals(refusals);
    expect(shown).toHaveLength(MAX_REFUSALS);
    expect(shown.map((r) => r.reason)).toEqual(Array(MAX_REFUSALS).fill("HostPort"));
    expect(shown[MAX_REFUSALS - 1]?.message).toMatch(
      /asks for hostPort 1; .*; and more \(at most 10 are named at once: fix these and try again\)$/,
    );
    expect(shown[0]?.message).not.toContain("and more");
    // At the cap nothing is added.
    expect(limitRefusals(refusals.slice(0, MAX_REFUSALS))).toEqual(refusals.slice(0, MAX_REFUSALS));
  });

  it("stops in every list: mounts, environment, volumes, containers", () => {
    const mounts = Array.from({ length: 1000 }, () => ({ name: "agentid-token", mountPath: "/t" }));
    expect(check(pod({ containers: [{ name: "a", volumeMounts: mounts }] }))).toHaveLength(MAX_REFUSALS + 1);
    const env = Array.from({ length: 1000 }, () => ({
      name: "X",
      valueFrom: { secretKeyRef: { name: "s" } },
    }));
    const withSecret = podRefusals({
      pod: pod({ containers: [{ name: "a", env, envFrom: env.map(() => ({ secretRef: { name: "s" } })) }] }),
      port: 5000,
      secretNames: ["s"],
      injected: false,
    });
    expect(withSecret).toHaveLength(MAX_REFUSALS + 1);
    const volumes = Array.from({ length: MAX_VOLUMES }, () => ({ name: "agentid-token", emptyDir: {} }));
    expect(check(pod({ volumes }))).toHaveLength(MAX_REFUSALS + 1);
    const named = containers(MAX_CONTAINERS_PER_LIST).map((c) => ({ ...c, name: SIDECAR_CONTAINER }));
    expect(check(pod({ containers: named }))).toHaveLength(MAX_REFUSALS + 1);
  });

  it("repeats at most 64 characters of a name the pod's author chose", () => {
    const name = "n".repeat(100_000);
    const [refusal] = check(pod({ containers: [{ name, ports: [{ hostPort: 1 }] }] }));
    expect(refusal?.message).toBe(
      `container '${"n".repeat(64)}…' asks for hostPort 1; remove it (a host port would expose the pod beyond its own network namespace)`,
    );
  });
});

describe("the injected sidecar", () => {
  const sidecar = { name: SIDECAR_CONTAINER, image: "s:1", ports: [{ containerPort: 5000 }] };

  it("is skipped only where it sits; another container with its name is refused", () => {
    const p = pod({ initContainers: [sidecar], containers: [{ name: "app", image: "a:1" }, sidecar] });
    const input = { pod: p, port: 5000, secretNames: [], injected: true };
    const refusals = podRefusals({ ...input, sidecarAt: { field: "initContainers", index: 0 } });
    expect(refusals.map((r) => r.reason)).toEqual(["ReservedName", "PortInUse"]);
    expect(refusals[0]?.message).toMatch(/^container 'agentid-sidecar'/);
    // Where it sits in containers instead, the init container is the impostor.
    const other = podRefusals({ ...input, sidecarAt: { field: "containers", index: 1 } });
    expect(other[0]?.message).toMatch(/^init container 'agentid-sidecar'/);
    expect(
      podRefusals({
        ...input,
        pod: pod({ initContainers: [sidecar] }),
        sidecarAt: { field: "initContainers", index: 0 },
      }),
    ).toEqual([]);
  });
});
