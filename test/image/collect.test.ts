import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const SCRIPT = new URL("../../scripts/image/collect.mjs", import.meta.url).pathname;

/** A tiny compiled app: what the sidecar image's collector must keep, and what it must leave out. */
const FILES: Record<string, string> = {
  "package.json": "{}",
  "dist/cli.js": `const COMMANDS = { sidecar: () => import("./sidecar/command.js"), manager: () => import("./manager/command.js") };\nimport { shared } from "./lib/shared.js";`,
  "dist/lib/shared.js": `export const shared = 1;`,
  "dist/sidecar/command.js": `import fastify from "fastify";\nconst msal = () => process.getBuiltinModule("node:module").createRequire(import.meta.url)("@azure/msal-node");\nconst lazy = () => import("./lazy.js");\nimport { readFileSync } from "node:fs";`,
  "dist/sidecar/lazy.js": `export {};`,
  "dist/manager/command.js": `import k8s from "@kubernetes/client-node";`,
  "node_modules/fastify/package.json": `{"name":"fastify","dependencies":{"pino":"1"}}`,
  "node_modules/fastify/node_modules/pino/package.json": `{"name":"pino"}`,
  "node_modules/@azure/msal-node/package.json": `{"name":"@azure/msal-node"}`,
  "node_modules/@kubernetes/client-node/package.json": `{"name":"@kubernetes/client-node"}`,
};

describe("scripts/image/collect.mjs app", () => {
  let dir = "";
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("keeps the modules reachable from the sidecar command and the packages they import, nothing else", async () => {
    dir = await mkdtemp(join(tmpdir(), "agentid-collect-"));
    const app = join(dir, "app");
    for (const [path, text] of Object.entries(FILES)) {
      await mkdir(dirname(join(app, path)), { recursive: true });
      await writeFile(join(app, path), text);
    }
    const out = join(dir, "out");
    const { stdout } = await run(process.execPath, [
      SCRIPT,
      "app",
      app,
      out,
      "dist/cli.js",
      "dist/sidecar/command.js",
    ]);
    expect(stdout).toContain("(@azure/msal-node, fastify)");
    const kept = (path: string) => existsSync(join(out, path));
    for (const path of [
      "dist/cli.js",
      "dist/lib/shared.js",
      "dist/sidecar/command.js",
      "dist/sidecar/lazy.js",
    ]) {
      expect(kept(path), path).toBe(true);
    }
    // Followed through createRequire(...)("...") and through a package's own dependencies (nested first).
    expect(kept("node_modules/@azure/msal-node/package.json")).toBe(true);
    expect(kept("node_modules/fastify/node_modules/pino/package.json")).toBe(true);
    // The CLI's other commands are loaded only when called: not in the sidecar image.
    expect(kept("dist/manager/command.js")).toBe(false);
    expect(kept("node_modules/@kubernetes/client-node")).toBe(false);
  });
});
