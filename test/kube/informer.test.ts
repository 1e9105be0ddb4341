import { describe, expect, it } from "vitest";
import { planRestart, stripManagedFields } from "../../src/kube/informer.ts";

describe("planRestart", () => {
  it.each([
    // reason, healthy, relist, resetBackoff, wait
    ["closed", true, false, true, false],
    ["closed", false, false, false, true],
    ["gone", true, true, true, false],
    ["gone", false, true, false, true],
    ["error", true, false, true, true],
    ["error", false, false, false, true],
    ["stall", true, false, true, true],
  ] as const)(
    "%s (healthy: %s) → relist %s, reset %s, wait %s",
    (reason, healthy, relist, resetBackoff, wait) => {
      expect(planRestart(reason, healthy)).toEqual({ relist, resetBackoff, wait });
    },
  );
});

describe("stripManagedFields", () => {
  it("drops managedFields and keeps everything else, without touching the original", () => {
    const obj = {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "a", namespace: "n", resourceVersion: "7", managedFields: [{ manager: "kubectl" }] },
      data: { k: "v" },
    };
    expect(stripManagedFields(obj)).toEqual({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "a", namespace: "n", resourceVersion: "7" },
      data: { k: "v" },
    });
    expect(obj.metadata.managedFields).toHaveLength(1);
    const bare = { metadata: { name: "b" } };
    expect(stripManagedFields(bare)).toBe(bare);
  });
});
