import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const root = new URL("..", import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), "utf8");
const pkg = JSON.parse(read("package.json")) as {
  engines: { node: string };
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  optionalDependencies?: Record<string, string>;
};

describe("package.json", () => {
  it("names the same Node.js major in engines, the node dev dependency and scripts/check-node.ts", () => {
    const engines = /^>=(\d+)$/.exec(pkg.engines.node)?.[1];
    const devNode = /^\^(\d+)\./.exec(pkg.devDependencies.node ?? "")?.[1];
    const checked = /major < (\d+)\)/.exec(read("scripts/check-node.ts"))?.[1];
    expect(engines).toBeDefined();
    expect({ devNode, checked }).toEqual({ devNode: engines, checked: engines });
  });

  it("has every dependency's reason in docs/dependencies.md", () => {
    const doc = read("docs/dependencies.md");
    // The first column of the table: each row names its packages in backticks.
    const documented = new Set(
      doc
        .split("\n")
        .filter((line) => line.startsWith("| `"))
        .flatMap((line) => [...(line.split("|")[1] ?? "").matchAll(/`([^`]+)`/g)].map((m) => m[1])),
    );
    const all = [
      ...Object.keys(pkg.dependencies),
      ...Object.keys(pkg.devDependencies),
      ...Object.keys(pkg.optionalDependencies ?? {}),
    ];
    expect(all.filter((name) => !documented.has(name))).toEqual([]);
    expect(
      [...documented].filter((name) => !all.includes(name ?? "")),
      "documented but not in package.json",
    ).toEqual([]);
  });
});
