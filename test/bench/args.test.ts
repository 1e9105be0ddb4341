import { describe, expect, it } from "vitest";
import { argsProblem, numberFlag } from "../../bench/args.ts";

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
});
