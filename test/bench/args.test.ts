import { describe, expect, it } from "vitest";
import { argsProblem, numberFlag, numberListFlag } from "../../bench/args.ts";

const options = { usage: "usage", values: ["rounds", "scenario"], switches: ["no-build"] };

describe("bench command lines", () => {
  it.each([
    [[], undefined],
    [["--rounds", "4", "--no-build"], undefined],
    [["--scenario", "small"], undefined],
    [["--scenrio", "small"], "unknown option --scenrio"],
    [["--rounds"], "--rounds needs a value"],
    [["small"], "unexpected argument small"],
    [["--no-build", "extra"], "unexpected argument extra"],
  ])("%j → %s", (argv, problem) => {
    expect(argsProblem(argv, options)).toBe(problem);
  });

  it("reads a positive number or the fallback, and refuses anything else", () => {
    expect(numberFlag("rounds", 4, ["node", "bench", "--rounds", "7"])).toBe(7);
    expect(numberFlag("rounds", 4, ["node", "bench"])).toBe(4);
    expect(() => numberFlag("rounds", 4, ["node", "bench", "--rounds", "0"])).toThrow(/positive number/);
    expect(() => numberFlag("rounds", 4, ["node", "bench", "--rounds", "many"])).toThrow(/positive number/);
  });

  it("reads a list of numbers in (0, max] or the fallback, and refuses anything else (a repeat too)", () => {
    const loads = (...argv: string[]) => numberListFlag("loads", [0.25, 0.5], 2, ["node", "bench", ...argv]);
    expect(loads()).toEqual([0.25, 0.5]);
    expect(loads("--loads", "0.1,0.5,1.2")).toEqual([0.1, 0.5, 1.2]);
    expect(loads("--loads", "2")).toEqual([2]);
    for (const bad of ["", "0.5,", ",0.5", "0,0.5", "-0.5", "50", "half", "0.5;0.75", "2.01", "0.5,0.50"]) {
      expect(() => loads("--loads", bad)).toThrow(
        /--loads must be comma-separated numbers, each above 0, at most 2 and given once/,
      );
    }
  });
});
