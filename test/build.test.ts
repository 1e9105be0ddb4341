import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = new URL("..", import.meta.url).pathname;

// Production images run the compiled JavaScript (no type stripping at run time: less memory, faster start),
// so the build must emit a runnable CLI whose lazily imported commands resolve.
describe("npm run build output", () => {
  let outDir = "";
  afterAll(async () => {
    if (outDir) await rm(outDir, { recursive: true, force: true });
  });

  it("emits a CLI whose every command loads from JavaScript", async () => {
    // Inside the project (git-ignored .cache/) so that ESM resolves packages from its node_modules.
    await mkdir(join(root, ".cache"), { recursive: true });
    outDir = await mkdtemp(join(root, ".cache", "build-test-"));
    const tsc = join(root, "node_modules/.bin/tsc");
    await run(tsc, ["-p", join(root, "tsconfig.build.json"), "--outDir", outDir], { cwd: root });
    for (const command of ["sidecar", "manager", "emulator"]) {
      const { stdout } = await run(process.execPath, [join(outDir, "cli.js"), command, "--help"], {
        cwd: root,
      });
      expect(stdout).toContain(`Usage: agentid ${command}`);
    }
  });
});
