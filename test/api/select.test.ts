import { describe, expect, it } from "vitest";
import { selectIdentityForPod, serviceAccountHolder } from "../../src/api/select.ts";
import type { AgentIdentity } from "../../src/api/types.ts";
import { identity } from "../support/api-fixtures.ts";

function make(name: string, sa: string, created: string, namespace = "ns", deleting = false): AgentIdentity {
  const i = identity({ serviceAccountName: sa }, name, namespace);
  i.metadata.creationTimestamp = created;
  if (deleting) i.metadata.deletionTimestamp = "2026-01-02T00:00:00Z";
  return i;
}

const T0 = "2026-01-01T00:00:00Z";
const T1 = "2026-01-01T00:00:01Z";
const all = [
  make("a", "sa-a", T0),
  make("b-new", "sa-b", T1),
  make("b-old", "sa-b", T0),
  make("x", "sa-x", T0, "other"),
  make("gone", "sa-g", T0, "ns", true),
  make("d", "default", T0),
  make("same-z", "sa-s", T0),
  make("same-a", "sa-s", T0),
];

describe("serviceAccountHolder", () => {
  it("is the oldest live identity, then the first by name", () => {
    expect(serviceAccountHolder(all, "ns", "sa-b")?.metadata.name).toBe("b-old");
    expect(serviceAccountHolder(all, "ns", "sa-s")?.metadata.name).toBe("same-a");
    expect(serviceAccountHolder(all, "ns", "sa-g")).toBeUndefined();
    expect(serviceAccountHolder(all, "ns", "sa-x")).toBeUndefined();
  });
  it("passes to the next one when the holder is being deleted", () => {
    const deleting = all.map((i) =>
      i.metadata.name === "b-old" ? { ...i, metadata: { ...i.metadata, deletionTimestamp: T1 } } : i,
    );
    expect(serviceAccountHolder(deleting, "ns", "sa-b")?.metadata.name).toBe("b-new");
  });
});

describe("selectIdentityForPod", () => {
  it.each([
    [
      "the annotation names it",
      { annotations: { "agentid.io/identity": "a" }, serviceAccountName: "sa-a" },
      "a",
    ],
    ["the identity binding the ServiceAccount", { serviceAccountName: "sa-a" }, "a"],
    ["the default ServiceAccount when none is set", {}, "d"],
    ["the oldest of two identities for one ServiceAccount", { serviceAccountName: "sa-b" }, "b-old"],
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
    [
      "the newer identity of a taken ServiceAccount",
      { annotations: { "agentid.io/identity": "b-new" }, serviceAccountName: "sa-b" },
      "ServiceAccountTaken",
    ],
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
