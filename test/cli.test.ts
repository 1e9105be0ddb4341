import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const cli = new URL("../bin/agentid.js", import.meta.url).pathname;

async function agentid(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("agentid CLI (a real process)", () => {
  it("prints the command list for --help and exits 0", async () => {
    const result = await agentid("--help");
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("Usage: agentid <command>");
  });

  it("exits 2 with one line for an unknown command", async () => {
    const result = await agentid("frobnicate");
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toContain("unknown command 'frobnicate'");
  });
});
