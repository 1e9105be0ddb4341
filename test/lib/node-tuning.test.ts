import { describe, expect, it } from "vitest";
import { flagName, missingTuning, type Tuning } from "../../src/lib/node-tuning.ts";

const tuning: Tuning = {
  flags: ["--max-semi-space-size=1", "--no-maglev"],
  env: { MALLOC_ARENA_MAX: "1" },
};

describe("flagName", () => {
  it.each([
    ["--max-semi-space-size=8", "max-semi-space-size"],
    ["--max_semi_space_size", "max-semi-space-size"],
    ["--no-maglev", "maglev"],
    ["--maglev", "maglev"],
    ["8", undefined],
  ])("%s names %s", (arg, name) => {
    expect(flagName(arg)).toBe(name);
  });
});

describe("missingTuning", () => {
  it("names what is missing and respects a flag the user gave in any form, or through NODE_OPTIONS", () => {
    expect(missingTuning({ execArgv: [], env: {} }, tuning)).toEqual({
      flags: ["--max-semi-space-size=1", "--no-maglev"],
      env: ["MALLOC_ARENA_MAX"],
    });
    expect(
      missingTuning(
        { execArgv: ["--maglev"], env: { NODE_OPTIONS: "--max_semi_space_size=16", MALLOC_ARENA_MAX: "4" } },
        tuning,
      ),
    ).toEqual({ flags: [], env: [] });
  });
});
