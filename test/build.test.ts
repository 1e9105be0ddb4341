import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = new URL("..", import.meta.url).pathname;

/** The folders of src/ whose code the images run (manager, webhook, sidecar, emulator and what they share). */
const SHIPPED_DIRS = ["api", "emulator", "kube", "lib", "manager", "operator", "sidecar", "webhook"];

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => relative(dir, join(e.parentPath, e.name)));
}

// Production images run the compiled JavaScript (no type stripping at run time: less memory, faster start),
// so the build must emit a runnable CLI whose lazily imported commands resolve, and nothing the images do
// not run: no tests, test helpers, code generators or the local control plane.
describe("npm run build output", () => {
  let outDir = "";
  beforeAll(async () => {
    // Inside the project (git-ignored .cache/) so that ESM resolves packages from its node_modules.
    await mkdir(join(root, ".cache"), { recursive: true });
    outDir = await mkdtemp(join(root, ".cache", "build-test-"));
    const tsc = join(root, "node_modules/.bin/tsc");
    await run(tsc, ["-p", join(root, "tsconfig.build.json"), "--outDir", outDir], { cwd: root });
  });
  afterAll(async () => {
    if (outDir) await rm(outDir, { recursive: true, force: true });
  });

  it("emits a CLI whose every command loads from JavaScript", async () => {
    for (const command of ["sidecar", "manager", "emulator"]) {
      const { stdout } = await run(process.execPath, [join(outDir, "cli.js"), command, "--help"], {
        cwd: root,
      });
      expect(stdout).toContain(`Usage: agentid ${command}`);
    }
  });

  it("contains only the CLI and the folders the images run", async () => {
    const files = (await filesUnder(outDir)).filter((f) => f.endsWith(".js"));
    expect(files).toContain("cli.js");
    expect(files).toContain("sidecar/command.js");
    const outside = files.filter((f) => f !== "cli.js" && !SHIPPED_DIRS.includes(f.split("/")[0] ?? ""));
    expect(
      outside,
      "files outside the shipped folders: src/dev is the playground's, not the images'; if the CLI gains a command that needs it, decide here whether the images carry it",
    ).toEqual([]);
    const testSupport = files.filter((f) =>
      /(^|[/.-])(test|tests|testing|harness|generate|codegen)([/.-]|$)/.test(f),
    );
    expect(testSupport, "test support or generators in the build").toEqual([]);
  });
});

describe("source layout", () => {
  it("keeps tests, test helpers and generators out of src/", async () => {
    const files = await filesUnder(join(root, "src"));
    expect(files.length).toBeGreaterThan(50);
    const misplaced = files.filter((f) =>
      /(\.test\.ts$|(^|\/)(testing|test-harness|generate-[^/]*|codegen)\.ts$)/.test(f),
    );
    expect(
      misplaced,
      "tests belong under test/<module>/, helpers under test/support/, generators in scripts/",
    ).toEqual([]);
  });
});
