import jsonpatch, { type Operation } from "fast-json-patch";
import { describe, expect, it } from "vitest";
import { mutatePod } from "../../src/webhook/mutate.ts";
import type { JsonObject } from "../../src/webhook/raw.ts";
import { settings, target } from "./support.ts";

/**
 * A pod that arrives with the mark agentid.io/injected and an agentid-sidecar is judged as the guard judges
 * one (sidecar.ts, sidecarDifferences), for every kind of credential: a client-secret pod, which the guard
 * never sees, included. Each change alone must refuse; what other webhooks add without loosening must not.
 */

const clientSecret = target({ projectedToken: false, secretNames: ["research-agent-secret"] });

function injectedPod(): JsonObject {
  const pod: JsonObject = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "p" },
    spec: { serviceAccountName: "research-agent", containers: [{ name: "app", image: "a:1" }] },
  };
  const result = mutatePod({ pod, target: clientSecret, settings: settings() });
  if (!result.allowed) throw new Error("the plain pod must be injected");
  return jsonpatch.applyPatch(pod, result.patch as Operation[], false, false).newDocument as JsonObject;
}

function judge(change: Operation[]) {
  const pod = jsonpatch.applyPatch(injectedPod(), change, false, false).newDocument;
  return mutatePod({ pod, target: clientSecret, settings: settings() });
}

const sidecar = "/spec/initContainers/0";

describe("a forged injection of a client-secret pod", () => {
  it("is allowed unchanged when it is exactly what the webhook renders (reinvocation)", () => {
    expect(judge([])).toMatchObject({ allowed: true, patch: [], injectedNow: false });
  });

  const cases: Array<[string, Operation[]]> = [
    ["image", [{ op: "replace", path: `${sidecar}/image`, value: "ghcr.io/agentid/sidecar:old" }]],
    [
      "lifecycle",
      [{ op: "replace", path: `${sidecar}/lifecycle`, value: { postStart: { exec: { command: ["sh"] } } } }],
    ],
    [
      "livenessProbe",
      [{ op: "add", path: `${sidecar}/livenessProbe`, value: { exec: { command: ["sh"] } } }],
    ],
    [
      "readinessProbe",
      [{ op: "add", path: `${sidecar}/readinessProbe`, value: { exec: { command: ["sh"] } } }],
    ],
    ["startupProbe", [{ op: "add", path: `${sidecar}/startupProbe`, value: { exec: { command: ["sh"] } } }]],
    ["workingDir", [{ op: "add", path: `${sidecar}/workingDir`, value: "/tmp" }]],
    ["securityContext", [{ op: "add", path: `${sidecar}/securityContext/privileged`, value: true }]],
    [
      "securityContext",
      [{ op: "replace", path: `${sidecar}/securityContext/allowPrivilegeEscalation`, value: true }],
    ],
    [
      "securityContext",
      [{ op: "add", path: `${sidecar}/securityContext/capabilities/add`, value: ["SYS_PTRACE"] }],
    ],
    ["securityContext", [{ op: "replace", path: `${sidecar}/securityContext/runAsUser`, value: 0 }]],
    [
      "securityContext",
      [{ op: "replace", path: `${sidecar}/securityContext/seccompProfile`, value: { type: "Unconfined" } }],
    ],
    ["securityContext", [{ op: "add", path: `${sidecar}/securityContext/procMount`, value: "Unmasked" }]],
    ["securityContext", [{ op: "remove", path: `${sidecar}/securityContext` }]],
    ["stdin", [{ op: "add", path: `${sidecar}/stdin`, value: true }]],
    ["tty", [{ op: "add", path: `${sidecar}/tty`, value: true }]],
  ];
  for (const [field, change] of cases) {
    it(`is refused for its ${field}: ${JSON.stringify(change[0])}`, () => {
      const result = judge(change);
      expect(result.allowed).toBe(false);
      if (result.allowed) return;
      expect(result.refusals).toHaveLength(1);
      expect(result.refusals[0]?.reason).toBe("ReservedName");
      expect(result.refusals[0]?.message).toContain(`whose ${field} differs from what AgentIdentity`);
    });
  }

  it("is refused for what another webhook adds to its environment or mounts, saying what differs and what to do, never a value", () => {
    // A proxy webhook's variables and a CA-bundle mount, added after our injection (reinvocation): the
    // check stays strict (NODE_OPTIONS or a mount would change what runs beside the token), the message
    // names the fields, both possible authors and the fix for each.
    const proxy = "http://user:pr0xy-pa55word@proxy.contoso.com:3128";
    const result = judge([
      { op: "add", path: `${sidecar}/env/-`, value: { name: "HTTPS_PROXY", value: proxy } },
      {
        op: "add",
        path: `${sidecar}/volumeMounts`,
        value: [{ name: "ca-bundle", mountPath: "/etc/ssl/certs" }],
      },
    ]);
    expect(result.allowed).toBe(false);
    if (result.allowed) return;
    expect(result.refusals.map((r) => r.reason)).toEqual(["ReservedName"]);
    const message = result.refusals[0]?.message ?? "";
    expect(message).toContain(
      "whose env, volumeMounts differ from what AgentIdentity research-agent renders now",
    );
    expect(message).toContain(
      "Either the pod's author wrote or changed that container, or another mutating webhook",
    );
    expect(message).toContain(
      "exclude the container agentid-sidecar from it (for example with its container-name filter)",
    );
    expect(message).toContain("remove the annotation and the container and let agentid inject the sidecar");
    expect(message).not.toContain("HTTPS_PROXY");
    expect(message).not.toContain(proxy);
    expect(message).not.toContain("ca-bundle");
  });

  it("is not refused for what another webhook adds without loosening anything", () => {
    const result = judge([
      { op: "add", path: `${sidecar}/securityContext/privileged`, value: false },
      { op: "add", path: `${sidecar}/securityContext/seLinuxOptions`, value: { type: "spc_t" } },
      { op: "add", path: `${sidecar}/securityContext/procMount`, value: "Default" },
      { op: "add", path: `${sidecar}/tty`, value: false },
      { op: "add", path: `${sidecar}/terminationMessagePath`, value: "/dev/termination-log" },
    ]);
    expect(result).toMatchObject({ allowed: true, patch: [] });
  });
});
