import { describe, expect, it } from "vitest";
import { flagName, reexecPlan, type Tuning } from "../../src/lib/reexec.ts";

const tuning: Tuning = {
  flags: ["--max-semi-space-size=1", "--no-maglev"],
  env: { MALLOC_ARENA_MAX: "1" },
  marker: "TEST_REEXEC",
};
const base = { execPath: "/node", execArgv: [], argv: ["/node", "/app/cli.js", "sidecar", "--x"], env: {} };

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

describe("reexecPlan", () => {
  it("puts the flags before the script, keeps node flags and arguments, and sets the environment", () => {
    expect(reexecPlan({ ...base, execArgv: ["--enable-source-maps"] }, tuning)).toEqual({
      args: [
        "/node",
        "--max-semi-space-size=1",
        "--no-maglev",
        "--enable-source-maps",
        "/app/cli.js",
        "sidecar",
        "--x",
      ],
      env: { MALLOC_ARENA_MAX: "1" },
    });
  });

  it("leaves out what the user set: a flag in any spelling, NODE_OPTIONS, an environment variable", () => {
    expect(
      reexecPlan(
        {
          ...base,
          execArgv: ["--maglev"],
          env: { NODE_OPTIONS: "--max_semi_space_size=16", MALLOC_ARENA_MAX: "4" },
        },
        tuning,
      ),
    ).toBeUndefined();
    expect(reexecPlan({ ...base, env: { MALLOC_ARENA_MAX: "4" } }, tuning)?.env).toEqual({});
  });

  it("never runs twice", () => {
    expect(reexecPlan({ ...base, env: { TEST_REEXEC: "1" } }, tuning)).toBeUndefined();
  });
});
