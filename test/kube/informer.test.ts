import { describe, expect, it } from "vitest";
import { planRestart } from "../../src/kube/informer.ts";

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
