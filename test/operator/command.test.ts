import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { MANAGER_TUNING } from "../../src/manager/v8-flags.ts";

const run = promisify(execFile);
const cli = new URL("../../bin/agentid.js", import.meta.url).pathname;

async function agentid(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, ...args], {
      env: { ...process.env, KUBECONFIG: "" },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("agentid manager (a real process)", () => {
  it("documents every option in --help", async () => {
    const result = await agentid("manager", "--help");
    expect(result.code).toBe(0);
    for (const option of [
      "--namespace",
      "--lease-namespace",
      "--health-port",
      "--log-level",
      "--no-verify",
      "--ca-file",
      "--graph-client-id",
      "--issuer",
      "--shutdown-grace-period",
    ]) {
      expect(result.stdout).toContain(option);
    }
    // The grace period's default is listed with it.
    expect(result.stdout).toMatch(/--shutdown-grace-period[\s\S]*default: 20s/);
    // The start command's node flags, docs/operator.md "Memory".
    for (const flag of MANAGER_TUNING.flags) expect(result.stdout).toContain(flag);
  });

  it.each([
    [["--log-level", "loud"], "--log-level must be one of"],
    [["--concurrency", "0"], "--concurrency must be an integer"],
    [["--verify-interval", "soon"], "--verify-interval must be a duration"],
    [["--shutdown-grace-period", "soon"], "--shutdown-grace-period must be a duration"],
    [["--shutdown-grace-period", "0s"], "--shutdown-grace-period must be from 1ms to 1h"],
    [["--frobnicate"], "Unknown option"],
    [["--issuer", "http://kubernetes.default.svc"], "--issuer must be an https URL"],
    [
      ["--graph-client-id", "11111111-1111-1111-1111-111111111111"],
      "--graph-client-id needs --graph-token-file",
    ],
  ])("exits 2 with one line for %j", async (args, message) => {
    const result = await agentid("manager", ...args);
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toContain(message);
  });

  it("fails clearly for an unreadable CA bundle", async () => {
    const result = await agentid("manager", "--ca-file", "/nonexistent/ca.pem");
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("cannot read CA bundle /nonexistent/ca.pem");
  });
});
