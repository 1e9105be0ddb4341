import { describe, expect, it } from "vitest";
import { missingTuning, SIDECAR_TUNING, tuningWarning } from "../../src/sidecar/tuning.ts";

describe("missingTuning", () => {
  it("reports every flag and variable of a bare start", () => {
    expect(missingTuning({ execArgv: [], env: {} })).toEqual({
      flags: [...SIDECAR_TUNING.flags],
      env: Object.keys(SIDECAR_TUNING.env),
    });
    expect(tuningWarning({ execArgv: [], env: {} })).toMatch(/^started without MALLOC_ARENA_MAX=1 /);
  });

  it("counts a flag given in any form or through NODE_OPTIONS, and a variable set to anything", () => {
    const p = {
      execArgv: ["--maglev"],
      env: { NODE_OPTIONS: "--optimize_for_size", MALLOC_ARENA_MAX: "2", MALLOC_MMAP_THRESHOLD_: "1" },
    };
    expect(missingTuning(p)).toEqual({ flags: [], env: [] });
    expect(tuningWarning(p)).toBeUndefined();
    expect(missingTuning({ execArgv: ["--no-maglev"], env: {} }).flags).toEqual(["--optimize-for-size"]);
  });
});
