import { describe, expect, it } from "vitest";
import { selectIdentityForPod } from "../../src/api/select.ts";
import type { AgentIdentity } from "../../src/api/types.ts";

function identity(name: string, sa: string, namespace = "ns", deleting = false): AgentIdentity {
  return {
    metadata: { name, namespace, ...(deleting ? { deletionTimestamp: "2026-01-01T00:00:00Z" } : {}) },
    spec: { tenantId: "t", blueprint: { clientId: "b" }, serviceAccountName: sa },
  };
}

const all = [
  identity("a", "sa-a"),
  identity("b", "sa-b"),
  identity("b2", "sa-b"),
  identity("x", "sa-x", "other"),
  identity("gone", "sa-g", "ns", true),
  identity("d", "default"),
];

describe("selectIdentityForPod", () => {
  it.each([
    [
      "the annotation names it",
      { annotations: { "agentid.io/identity": "a" }, serviceAccountName: "sa-a" },
      "a",
    ],
    ["the only identity binding the ServiceAccount", { serviceAccountName: "sa-a" }, "a"],
    ["the default ServiceAccount when none is set", {}, "d"],
    [
      "the annotation settles an ambiguity",
      { annotations: { "agentid.io/identity": "b2" }, serviceAccountName: "sa-b" },
      "b2",
    ],
  ])("picks %s", (_n, pod, expected) => {
    const result = selectIdentityForPod({ namespace: "ns", ...pod }, all);
    expect(result.ok && result.identity.metadata.name).toBe(expected);
  });

  it.each([
    [
      "an identity of another namespace",
      { annotations: { "agentid.io/identity": "x" }, serviceAccountName: "sa-x" },
      "NotFound",
    ],
    [
      "another ServiceAccount's identity",
      { annotations: { "agentid.io/identity": "a" }, serviceAccountName: "sa-b" },
      "ServiceAccountMismatch",
    ],
    ["two identities for one ServiceAccount", { serviceAccountName: "sa-b" }, "Ambiguous"],
    ["no identity for the ServiceAccount", { serviceAccountName: "nobody" }, "NotFound"],
    [
      "an identity being deleted",
      { annotations: { "agentid.io/identity": "gone" }, serviceAccountName: "sa-g" },
      "Deleting",
    ],
    ["only a deleting identity binds it", { serviceAccountName: "sa-g" }, "NotFound"],
  ])("refuses %s", (_n, pod, reason) => {
    const result = selectIdentityForPod({ namespace: "ns", ...pod }, all);
    expect(result).toMatchObject({ ok: false, reason });
  });
});
