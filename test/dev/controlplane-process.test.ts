import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  ownedDirs,
  reportUnexpectedExits,
  startProcess,
  waitWhileRunning,
} from "../../src/dev/controlplane-process.ts";

/** A PID that is not running: beyond the kernel's default pid_max. */
const DEAD_PID = 4_194_305;

const roots: string[] = [];
afterAll(async () => {
  for (const root of roots) await rm(root, { recursive: true, force: true });
});
const tempDir = async (name: string) => {
  const dir = await mkdtemp(join(tmpdir(), `agentid-${name}-test-`));
  roots.push(dir);
  return dir;
};

describe("ownedDirs (the stale-run scan of control planes and clusters)", () => {
  it("sorts a prefix's directories by whether their owner runs, and leaves out those without an owner", async () => {
    const root = await tempDir("owned");
    const make = async (name: string, pid?: number) => {
      await mkdir(join(root, name));
      if (pid !== undefined) await writeFile(join(root, name, "owner.json"), JSON.stringify({ pid }));
    };
    await make("run-live", process.pid);
    await make("run-dead", DEAD_PID);
    await make("run-starting");
    await make("other-dead", DEAD_PID);
    const ownerOf = (dir: string) => {
      try {
        return JSON.parse(readFileSync(join(dir, "owner.json"), "utf8")) as { pid: number };
      } catch {
        return undefined;
      }
    };
    expect(ownedDirs(root, "run-", ownerOf, false)).toEqual([
      { dir: join(root, "run-dead"), owner: { pid: DEAD_PID } },
    ]);
    expect(ownedDirs(root, "run-", ownerOf, true)).toEqual([
      { dir: join(root, "run-live"), owner: { pid: process.pid } },
    ]);
    expect(ownedDirs(join(root, "missing"), "run-", ownerOf, false)).toEqual([]);
  });
});

describe("waitWhileRunning (how control planes and clusters wait for their processes)", () => {
  const wait = waitWhileRunning(
    (message, exited) => new Error(exited ? `${message} [${exited.name}]` : message),
    1,
  );

  it("answers what the probe answers once it is not undefined, and keeps what it last threw", async () => {
    let calls = 0;
    const value = await wait("the third call", Date.now() + 30_000, [], async () => {
      calls++;
      if (calls < 3) throw new Error(`not yet ${calls}`);
      return calls;
    });
    expect(value).toBe(3);
    await expect(
      wait("nothing", Date.now() + 50, [], () => Promise.reject(new Error("refused"))),
    ).rejects.toThrow("timed out waiting for nothing (last: refused)");
  });

  it("fails at once, naming the process, when one of the processes has exited", async () => {
    const root = await tempDir("wait");
    const quitter = startProcess("quitter", process.execPath, ["-e", "process.exit(3)"], join(root, "log"));
    await quitter.exited;
    let probed = false;
    await expect(
      wait("readiness", Date.now() + 30_000, [quitter], async () => {
        probed = true;
        return undefined;
      }),
    ).rejects.toThrow("quitter exited while waiting for readiness [quitter]");
    expect(probed).toBe(false);
  });
});

describe("reportUnexpectedExits", () => {
  it("reports a process that exits while its owner runs, with its log, and not one its owner stopped", async () => {
    const root = await tempDir("exits");
    const script = 'console.log("the last words"); process.exit(3)';
    const lines: string[] = [];
    const crashed = startProcess("crashed", process.execPath, ["-e", script], join(root, "crashed.log"));
    reportUnexpectedExits(
      [crashed],
      (line) => lines.push(line),
      () => false,
    );
    const stopped = startProcess("stopped", process.execPath, ["-e", script], join(root, "stopped.log"));
    reportUnexpectedExits(
      [stopped],
      (line) => lines.push(line),
      () => true,
    );
    await Promise.all([crashed.exited, stopped.exited]);
    // A report's first line is written as soon as the exit is seen, before this await resumes.
    expect(lines.filter((line) => line.includes("stopped"))).toEqual([]);
    await expect.poll(() => lines.length).toBe(2);
    expect(lines[0]).toBe(
      `crashed exited unexpectedly (code 3); last lines of ${join(root, "crashed.log")}:`,
    );
    expect(lines[1]).toContain("the last words");
  });
});
